"""Conformance before exposure: a dry run of a new release's contracts on stored state.

:func:`check` decodes the stored head of a namespace through the contracts of
the release about to be deployed, upgraders included, exactly as its boot
would, and reports per section: the entries readable, upgraded and dropped
(with reasons), entries the new release could not write back (its
downgrader or encoder refusing them), and whether the release in service
could read what the new one writes (a rollback). Nothing is written: a store
is opened read-only; an export archive is imported into a temporary store
that is deleted afterwards. ``warmstart check`` runs the same check and
exits 1 when anything would be dropped or unreadable, so a CI job or a
canary gate can run it against a copy of production state (``warmstart
export``).

>>> import msgspec, tempfile
>>> from warmstart import Contract, Store
>>> class QuoteV1(msgspec.Struct):
...     price: float
>>> class Quote(msgspec.Struct):
...     price: float
...     currency: str
>>> path = tempfile.mkdtemp()
>>> with Store(path) as store:
...     _ = store.save("prices", {"quotes": (Contract("quote", QuoteV1), {"A": QuoteV1(1.0)})})
>>> NEW = Contract("quote", Quote, version=2, upgraders={1: lambda q: {**q, "currency": "USD"}})
>>> report = check(path, "prices", [NEW])
>>> report.ok, report.sections[0].status, report.sections[0].upgraded, report.sections[0].rollback
(True, 'upgraded', 1, True)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from warmstart._api import claim
from warmstart.contract import Contract
from warmstart.errors import (
    CheckpointNotFoundError,
    ContractError,
    DecodeError,
    IncompatibleVersionError,
    IntegrityError,
)
from warmstart.exposure import Readable, problems
from warmstart.manifest import SectionManifest
from warmstart.schema import Schema
from warmstart.store import Snapshot, Store

__all__ = ("ConformanceReport", "SectionConformance", "check")


def __dir__() -> tuple[str, ...]:
    return __all__


#: Entries encoded per batch when checking that the new release can write them back.
_BATCH = 2048
#: Reasons kept per section.
_MAX_REASONS = 5

SectionStatus = Literal["ok", "upgraded", "dropped", "unreadable", "unchecked"]


class SectionConformance(msgspec.Struct, frozen=True, kw_only=True):
    """One stored section, read through the new release's contract."""

    section: str
    #: The contract that wrote it (its name).
    contract: str
    #: ``ok`` (read as is), ``upgraded`` (read through upgraders, nothing
    #: lost), ``dropped`` (some entries would be dropped), ``unreadable``
    #: (the section would start cold), ``unchecked`` (no contract given for it).
    status: SectionStatus
    stored_version: int
    #: The version the new release reads into (None: unchecked).
    reader_version: int | None = None
    #: The version the new release writes (the staged one for ``write_version``).
    write_version: int | None = None
    #: Entries stored (after replaying deltas).
    entries: int = 0
    readable: int = 0
    upgraded: int = 0
    dropped: int = 0
    #: Entries read that the new release could not write back (its downgrader or encoder failed).
    unwritable: int = 0
    reasons: tuple[str, ...] = ()
    #: Whether the release that wrote this section could read what the new one
    #: writes (a rollback after the deploy); None: unchecked.
    rollback: bool | None = None
    #: For ``write_version="auto"``: whether it could still read once the new
    #: release writes its own version (after the last old reader is gone).
    rollback_after_switch: bool | None = None
    rollback_reasons: tuple[str, ...] = ()


class ConformanceReport(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`check` found, section by section."""

    source: str
    namespace: str
    generation: int
    sections: tuple[SectionConformance, ...]
    #: Contracts given that no stored section was written by.
    unused: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Nothing would be dropped, unreadable or unwritable."""
        return all(
            s.status in ("ok", "upgraded", "unchecked") and not s.unwritable for s in self.sections
        )

    @property
    def rollback_ok(self) -> bool:
        """The release in service could read everything the new one writes."""
        return all(
            s.rollback is not False and s.rollback_after_switch is not False for s in self.sections
        )


def check(
    source: str | os.PathLike[str] | Store,
    namespace: str,
    contracts: Iterable[Contract[Any]] = (),
    *,
    sections: Mapping[str, Contract[Any]] | None = None,
    generation: int | None = None,
    secret: bytes | None = None,
) -> ConformanceReport:
    """Read ``namespace`` of a store (or an export archive) through ``contracts``; write nothing.

    Args:
        source: a store directory (opened read-only), an open ``Store``, or an
            archive file written by ``warmstart.transfer.export``.
        contracts: the new release's contracts, matched to sections by
            contract name.
        sections: section name -> contract, for sections the names do not
            decide (two versions of one contract in one release).
        generation: check this generation instead of the head.
        secret: the store's secret, when its data is MAC'd.

    Raises:
        CheckpointNotFoundError: the namespace (or generation) is not there.
        ContractError: two contracts given share a name (use ``sections``).
    """
    by_section = dict(sections or {})
    by_name = _by_name(contracts)
    with _opened(source, namespace, secret) as (store, where):
        snapshot = store.load(namespace, generation=generation)
        with snapshot:
            checked = tuple(
                _check_section(
                    snapshot,
                    manifest,
                    by_section.get(manifest.name) or by_name.get(manifest.schema.contract),
                )
                for manifest in snapshot.manifest.sections
            )
            written = {s.schema.contract for s in snapshot.manifest.sections}
            return ConformanceReport(
                source=where,
                namespace=namespace,
                generation=snapshot.generation,
                sections=checked,
                unused=tuple(sorted(set(by_name) - written)),
            )


def _by_name(contracts: Iterable[Contract[Any]]) -> dict[str, Contract[Any]]:
    by_name: dict[str, Contract[Any]] = {}
    given: Iterable[object] = contracts  # often built from configuration: checked
    for contract in given:
        if not isinstance(contract, Contract):
            msg = f"Expected warmstart.Contract objects, got {type(contract).__name__}"
            raise TypeError(msg)
        other = by_name.get(contract.name)
        if other is not None and other is not contract:
            msg = (
                f"Expected one contract per name, got two named {contract.name!r} "
                f"(v{other.version} and v{contract.version}); map sections to them instead"
            )
            raise ContractError(msg)
        by_name[contract.name] = contract
    return by_name


@contextlib.contextmanager
def _opened(
    source: str | os.PathLike[str] | Store, namespace: str, secret: bytes | None
) -> Iterator[tuple[Store, str]]:
    """The store to read: the one given, a directory (read-only), or an archive's temp copy."""
    if isinstance(source, Store):
        yield source, str(source.path)
        return
    path = Path(source)
    if path.is_file():
        from warmstart.transfer import import_archive  # noqa: PLC0415 - archives only

        scratch = tempfile.mkdtemp(prefix="warmstart-check-")
        try:
            with Store(scratch, sync=False, secret=secret) as store:
                import_archive(store, path, namespace=namespace)
                yield store, str(path)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return
    if not (path / "data.mdb").is_file():
        msg = f"Expected a store directory or an export archive at {str(path)!r}, found neither"
        raise CheckpointNotFoundError(msg)
    with Store(path, readonly=True, secret=secret) as store:
        yield store, str(path)


def _check_section(
    snapshot: Snapshot, manifest: SectionManifest, contract: Contract[Any] | None
) -> SectionConformance:
    stored = manifest.schema
    base: dict[str, Any] = {
        "section": manifest.name,
        "contract": stored.contract,
        "stored_version": stored.version,
        "entries": manifest.entries,
    }
    if contract is None:
        return SectionConformance(status="unchecked", **base)
    base["reader_version"] = contract.version
    base["write_version"] = contract.write_version
    rollback = _rollback(stored, contract)
    try:
        read = snapshot.read(manifest.name, contract)
    except (IncompatibleVersionError, IntegrityError, DecodeError) as exc:
        return SectionConformance(status="unreadable", reasons=(str(exc),), **base, **rollback)
    stats = read.stats
    reasons = list(stats.reasons)
    unwritable = _unwritable(contract, read.entries, reasons)
    if stats.dropped_invalid:
        status: SectionStatus = "dropped"
    else:
        status = "upgraded" if stats.upgraded else "ok"
    return SectionConformance(
        status=status,
        readable=stats.restored,
        upgraded=stats.upgraded,
        dropped=stats.dropped_invalid,
        unwritable=unwritable,
        reasons=tuple(reasons[:_MAX_REASONS]),
        **base,
        **rollback,
    )


def _rollback(stored: Schema, contract: Contract[Any]) -> dict[str, Any]:
    """Could the release that wrote ``stored`` read what ``contract`` writes?

    That release's contract is known here only by the schema it wrote: it
    reads its own version and any newer one whose fields it finds.
    """
    old = Readable(
        contract=stored.contract, version=stored.version, oldest=stored.version, schema=stored
    )
    found = [
        f"writing v{contract.write_version}: {p}" for p in problems(old, contract.write_schema)
    ]
    out: dict[str, Any] = {"rollback": not found}
    if contract.auto:
        after = problems(old, contract.with_write_version(None).write_schema)
        out["rollback_after_switch"] = not after
        found += [f"writing v{contract.version}: {p}" for p in after]
    out["rollback_reasons"] = tuple(found)
    return out


def _unwritable(contract: Contract[Any], entries: dict[Any, Any], reasons: list[str]) -> int:
    """How many entries the new release could not write back (downgrader, encoder)."""
    writers = [contract]
    if contract.auto:
        writers.append(contract.with_write_version(None))
    failed: set[int] = set()
    keys = list(entries)
    values = list(entries.values())
    for writer in writers:
        for start in range(0, len(keys), _BATCH):
            batch_keys, batch_values = keys[start : start + _BATCH], values[start : start + _BATCH]
            try:
                writer.encode_entries(batch_keys, batch_values)
            except Exception:
                for offset, (key, value) in enumerate(zip(batch_keys, batch_values)):
                    try:
                        writer.encode_entries([key], [value])
                    except Exception as exc:
                        if start + offset not in failed and len(reasons) < _MAX_REASONS:
                            reasons.append(
                                f"cannot write {key!r} as v{writer.write_version}: {exc}"
                            )
                        failed.add(start + offset)
    return len(failed)


claim("warmstart.conformance", ConformanceReport, SectionConformance, check)
