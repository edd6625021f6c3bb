"""Staged exposure, decided by the live readers: which contract version to write.

During a rolling deploy, instances of the old release still run, restart and
read checkpoints while the new release writes them. A contract with
``write_version="auto"`` leaves the choice to the boot: each live boot
records which versions its contracts can read (:class:`Readable`, in an
:class:`Instance` record with an expiry, refreshed by a heartbeat), and an
auto contract writes the newest version that **every** live reader of its
namespace can read (:func:`choose`): the previous version while one old
reader remains, its own version once the last one is gone (stopped, or its
record expired).

The rules are those of :meth:`warmstart.Contract.plan`, decided from the
schemas alone: a reader reads an older writer through a complete chain of
upgraders (and the same key type), and an equal or newer writer when every
field it requires is written with a readable type (:func:`problems`).

This module does no I/O: the boot keeps the records (``<store>/readers/`` and,
with a remote, under the namespace's remote prefix).

>>> import msgspec, time
>>> from warmstart import Contract
>>> class QuoteV1(msgspec.Struct):
...     price: float
>>> class Quote(msgspec.Struct):                 # v2 renamed price: v1 cannot read it
...     amount: float
>>> V1 = Contract("quote", QuoteV1, version=1)
>>> V2 = Contract("quote", Quote, version=2, upgraders={1: lambda q: {"amount": q["price"]}},
...               write_version="auto", write_type=QuoteV1,
...               downgrader=lambda q: QuoteV1(q.amount))
>>> def instance(*contracts):
...     return Instance(id="host/1-ab", host="host", pid=1, namespace="prices",
...                     started_at=0.0, expires_at=time.time() + 30,
...                     reads=tuple(map(readable, contracts)))
>>> choose(V2, [instance(V1), instance(V2)]).contract.write_version   # an old reader is live
1
>>> choose(V2, [instance(V2)]).contract.write_version                 # the last one is gone
2
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from warmstart._api import claim
from warmstart.contract import Contract
from warmstart.schema import Schema, read_problems

__all__ = ("Choice", "Instance", "Readable", "choose", "problems", "readable")


def __dir__() -> tuple[str, ...]:
    return __all__


class Readable(msgspec.Struct, frozen=True, kw_only=True):
    """What one contract of a live instance can read."""

    #: The contract's name.
    contract: str
    #: The version it reads into.
    version: int
    #: The oldest writer version its chain of upgraders reaches (``version`` without upgraders).
    oldest: int
    #: Its reader schema (fields, types, requiredness, key type).
    schema: Schema


class Instance(msgspec.Struct, frozen=True, kw_only=True):
    """One live boot's record: who it is, what it reads, and until when it counts as live."""

    #: ``host/pid-token``: unique per boot, even when pids repeat across restarts.
    id: str
    host: str
    pid: int
    namespace: str
    started_at: float
    #: Wall-clock time after which the record no longer counts (no heartbeat came).
    expires_at: float
    reads: tuple[Readable, ...] = ()


class Choice(msgspec.Struct, frozen=True, kw_only=True):
    """The contract to write with, and why."""

    contract: Contract[Any]
    #: Why an older version is written (the readers holding it back), or empty.
    held_back_by: tuple[str, ...] = ()


def readable(contract: Contract[Any]) -> Readable:
    """What ``contract`` can read: its version and how far back its upgraders reach.

    >>> import msgspec
    >>> from warmstart import Contract
    >>> class Row(msgspec.Struct):
    ...     name: str
    >>> readable(Contract("row", Row, version=3, upgraders={2: dict, 1: dict})).oldest
    1
    """
    oldest = contract.version
    while oldest - 1 in contract.upgraders:
        oldest -= 1
    return Readable(
        contract=contract.name, version=contract.version, oldest=oldest, schema=contract.schema
    )


def problems(reader: Readable, writer: Schema) -> list[str]:
    """Why ``reader`` could not read data written with ``writer`` (empty: it can).

    The same decision as :meth:`warmstart.Contract.plan`, from the schemas.
    """
    if writer.contract != reader.contract:
        return [f"contract {writer.contract!r} is not {reader.contract!r}"]
    if writer.version < reader.version:
        if writer.version < reader.oldest:
            gap = f"v{reader.version} has no upgraders from v{writer.version}"
            return [f"{gap} (its oldest is v{reader.oldest})"]
        # Upgraders reshape values only: the key type must still read.
        return read_problems(writer, reader.schema, fields=False)
    return read_problems(writer, reader.schema)


def choose(
    contract: Contract[Any], instances: Iterable[Instance], now: float | None = None
) -> Choice:
    """The version ``contract`` should write: the newest every live reader can read.

    A contract that is not ``write_version="auto"`` is returned as it is. An
    auto contract writes its own version when every live instance that reads
    a contract of its name can read it, else the staged previous version
    (what the old release writes itself), with the readers that hold it
    back. ``now`` (wall clock) leaves expired records out; None counts every
    record given.
    """
    if not contract.auto:
        return Choice(contract=contract)
    readers = [
        (instance.id, reads)
        for instance in instances
        if now is None or instance.expires_at > now
        for reads in instance.reads
        if reads.contract == contract.name
    ]
    newest = contract.with_write_version(None)
    held = tuple(
        f"{who} reads {contract.name!r} v{reads.version}: {'; '.join(found)}"
        for who, reads in readers
        if (found := problems(reads, newest.write_schema))
    )
    if not held:
        return Choice(contract=newest)
    # Held back: the staged version (what the old release writes itself),
    # even if some reader cannot read that either.
    return Choice(contract=contract.with_write_version(contract.write_version), held_back_by=held)


claim("warmstart.exposure", Choice, Instance, Readable, choose, problems, readable)
