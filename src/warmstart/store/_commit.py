"""Committing a generation: its number, its chunks, its manifest and the head.

Private to the store wing: a save (``Store.save``) and a generation that
came from elsewhere (``Inbound``, for an import or a pull) both commit here.
Each runs inside one write transaction that also applies retention, so a
reader sees the old generation or the new one, never a mix.

The manifests say what is stored; the head only says which of them is the
newest. A new generation is numbered after the newest stored one, so a
commit never overwrites a generation, even when the head is damaged, lost,
or names another generation: such a head is set aside (and logged), and the
commit rewrites it.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Collection, Mapping
from typing import Any, Literal

import msgspec

from warmstart._version import version
from warmstart.errors import CheckpointNotFoundError, IntegrityError
from warmstart.manifest import Manifest, SectionManifest
from warmstart.store._prepare import Prepared, StaleBaseError
from warmstart.store._records import MAX_GEN
from warmstart.store._retention import retain
from warmstart.store._tables import Tables

__all__ = ()

log = logging.getLogger("warmstart.store")  # one logger for the whole store


def commit(
    tables: Tables,
    txn: Any,
    namespace: str,
    prepared: list[Prepared],
    *,
    watermark: Any,
    tags: Mapping[str, str] | None,
    keep: int,
    now: Callable[[], float],
    carry: Collection[str] = (),
) -> Manifest:
    """Write a prepared save as the namespace's next generation.

    ``carry`` names sections to copy, by reference, from the head generation
    (those not prepared here): their chunks are already stored.

    Raises:
        StaleBaseError: a section is a delta, but the head is not the
            baseline it was computed against.
    """
    nsid = tables.nsid(txn, namespace, create=True)
    assert nsid is not None
    head, newest = _tip(tables, txn, namespace, nsid)
    delta = any(p.delta for p in prepared)
    # Against the generation each delta was computed on, not the store's
    # current baseline: another save may have moved both since.
    if delta and (head is None or any(p.base != head for p in prepared if p.delta)):
        raise StaleBaseError
    generation = _next_generation(tables, namespace, newest)
    lineage = head[1] if delta and head is not None else os.urandom(8).hex()
    for item in prepared:
        for ref, frame in item.frames:
            tables.put_chunk(txn, nsid, ref.digest, frame)
    manifest = Manifest(
        namespace=namespace,
        generation=generation,
        lineage=lineage,
        created_at=now(),
        library_version=version(),
        host=_hostname(),
        pid=os.getpid(),
        parent=newest or None,
        kind="delta" if delta else "full",
        watermark=watermark,
        tags=dict(tags or {}),
        sections=tuple(p.section for p in prepared)
        + _carried(tables, txn, nsid, head, namespace, carry, {p.name for p in prepared}),
    )
    _publish(tables, txn, nsid, manifest, keep)
    return manifest


def _carried(
    tables: Tables,
    txn: Any,
    nsid: bytes,
    head: tuple[int, str] | None,
    namespace: str,
    carry: Collection[str],
    prepared: set[str],
) -> tuple[SectionManifest, ...]:
    """The head's sections named in ``carry`` (and not prepared), as they are stored."""
    wanted = set(carry) - prepared
    if not wanted or head is None:
        return ()
    try:
        manifest = tables.manifest(txn, nsid, head[0], namespace)
    except (IntegrityError, CheckpointNotFoundError):
        return ()  # nothing sound to carry; the sections start over at their next save
    return tuple(s for s in manifest.sections if s.name in wanted)


def identical(tables: Tables, txn: Any, nsid: bytes, manifest: Manifest) -> int | None:
    """The stored generation holding the same state as ``manifest``, if any."""
    wanted = manifest.signature()
    for generation in tables.generations(txn, nsid):
        try:
            if tables.manifest(txn, nsid, generation).signature() == wanted:
                return generation
        except (IntegrityError, CheckpointNotFoundError):
            continue
    return None


def adopt(
    tables: Tables,
    txn: Any,
    namespace: str,
    manifest: Manifest,
    *,
    tag: str,
    source: str,
    keep: int,
) -> tuple[Literal["adopted", "present"], int] | set[bytes]:
    """Commit a generation that came from elsewhere (an import, a pull).

    Inside the caller's write transaction: if every chunk the manifest
    references is present, writes the manifest and the head. The head never moves backwards: the
    generation keeps its number when that is newer than the head, else it
    becomes head + 1; ``tags[tag]`` records ``source``.

    Returns ("adopted" or "present", generation), or the digests still
    missing (nothing of the manifest or head was written then).
    """
    nsid = tables.nsid(txn, namespace, create=True)
    assert nsid is not None
    present = identical(tables, txn, nsid, manifest)
    if present is not None:
        return "present", present
    missing = {d for d in manifest.digests() if tables.chunk(txn, nsid, d) is None}
    if missing:
        return missing
    _, newest = _tip(tables, txn, namespace, nsid)
    newer = newest < manifest.generation
    generation = manifest.generation if newer else _next_generation(tables, namespace, newest)
    adopted = msgspec.structs.replace(
        manifest,
        namespace=namespace,
        generation=generation,
        parent=newest or None,
        tags={**manifest.tags, tag: source},
    )
    _publish(tables, txn, nsid, adopted, keep)
    return "adopted", generation


def _publish(tables: Tables, txn: Any, nsid: bytes, manifest: Manifest, keep: int) -> None:
    """Write the manifest, make it the head, and apply retention."""
    tables.publish(txn, nsid, manifest)
    retain(tables, txn, nsid, manifest, keep)


def _tip(
    tables: Tables, txn: Any, namespace: str, nsid: bytes
) -> tuple[tuple[int, str] | None, int]:
    """(the head if it is sound, else None; the newest stored generation, 0 if none)."""
    stored = tables.generations(txn, nsid)
    newest = stored[0] if stored else 0
    if stored:
        _check_owner(tables, txn, namespace, nsid, newest)
    try:
        head = tables.head(txn, namespace)
    except IntegrityError as exc:
        problem = str(exc)
    else:
        if head is None and not stored:
            return None, 0  # a new namespace
        if head is not None and head[0] == newest:
            return head, newest
        named = "none" if head is None else head[0]
        problem = f"the head names generation {named}, the newest stored is {newest or 'none'}"
    log.warning(
        "namespace %r: %s; commits follow the newest stored generation",
        namespace,
        problem,
        extra={"namespace": namespace},
    )
    return None, newest


def _check_owner(tables: Tables, txn: Any, namespace: str, nsid: bytes, newest: int) -> None:
    """Refuse to commit under an id whose newest manifest belongs to another namespace.

    Only a damaged namespace-id record makes two namespaces share an id; a
    commit there would number itself after the other's generations and its
    retention would expire them.
    """
    try:
        owner = tables.manifest(txn, nsid, newest).namespace
    except IntegrityError:
        return  # a damaged manifest names no owner; retention keeps what it cannot read
    if owner != namespace:
        msg = (
            f"Expected the generations under namespace {namespace!r}'s id to be its own, "
            f"found generation {newest} of namespace {owner!r}: the namespace id record is "
            f"damaged; `warmstart drop` {namespace!r} to start it afresh"
        )
        raise IntegrityError(msg)


def _next_generation(tables: Tables, namespace: str, newest: int) -> int:
    if newest >= MAX_GEN:
        msg = (
            f"Expected a generation number after {newest} for namespace {namespace!r} in "
            f"{tables.where}, there is none: that manifest key is damaged; "
            f"`warmstart drop` the namespace to start it afresh"
        )
        raise IntegrityError(msg)
    return newest + 1


@functools.cache
def _hostname() -> str:
    import socket  # noqa: PLC0415 - only the first save pays for it

    return socket.gethostname()
