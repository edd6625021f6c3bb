"""Committing a generation: its number, its chunks, its manifest and the head.

Private; used by ``store`` (a save) and, directly, by
``transfer`` and ``remote`` (a generation that came from elsewhere). Each
runs inside one write transaction that also applies retention, so a reader
sees the old generation or the new one, never a mix.

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
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from warmstart._prepare import Prepared, StaleBaseError
from warmstart._records import GEN, MAX_GEN, check_namespace, manifest_key, quarantine_key
from warmstart._retention import retain
from warmstart.errors import CheckpointNotFoundError, IntegrityError
from warmstart.manifest import Manifest, encode_manifest

if TYPE_CHECKING:
    from warmstart.store import Store

__all__ = ()

log = logging.getLogger("warmstart.store")  # one logger for the whole store


def commit(
    store: Store,
    txn: Any,
    namespace: str,
    prepared: list[Prepared],
    watermark: Any,
    tags: Mapping[str, str] | None,
) -> Manifest:
    """Write a prepared save as the namespace's next generation.

    Raises:
        StaleBaseError: a section is a delta, but the head is not the
            baseline it was computed against.
    """
    nsid = store._nsid(txn, namespace, create=True)
    assert nsid is not None
    head, newest = _tip(store, txn, namespace, nsid)
    delta = any(p.delta for p in prepared)
    # Against the generation each delta was computed on, not the store's
    # current baseline: another save may have moved both since.
    if delta and (head is None or any(p.base != head for p in prepared if p.delta)):
        raise StaleBaseError
    generation = _next_generation(store, namespace, newest)
    lineage = head[1] if delta and head is not None else os.urandom(8).hex()
    chunks = store._db("chunks")
    for item in prepared:
        for ref, frame in item.frames:
            txn.put(store._chunk_key(nsid, ref.digest), frame, db=chunks, overwrite=False)
    manifest = Manifest(
        namespace=namespace,
        generation=generation,
        lineage=lineage,
        created_at=store.clock(),
        library_version=_library_version(),
        host=_hostname(),
        pid=os.getpid(),
        parent=newest or None,
        kind="delta" if delta else "full",
        watermark=watermark,
        tags=dict(tags or {}),
        sections=tuple(p.section for p in prepared),
    )
    _publish(store, txn, nsid, manifest)
    return manifest


def identical(store: Store, txn: Any, nsid: bytes, manifest: Manifest) -> int | None:
    """The stored generation holding the same state as ``manifest``, if any."""
    wanted = manifest.signature()
    for generation in store._generations(txn, nsid):
        try:
            if store._read_manifest(txn, nsid, generation).signature() == wanted:
                return generation
        except (IntegrityError, CheckpointNotFoundError):
            continue
    return None


def adopt(
    store: Store,
    txn: Any,
    namespace: str,
    manifest: Manifest,
    frames: Mapping[bytes, bytes],
    *,
    tag: str,
    source: str,
) -> tuple[Literal["adopted", "present"], int] | set[bytes]:
    """Commit a generation that came from elsewhere (an import, a pull).

    Inside the caller's write transaction: writes ``frames`` that are
    absent, and if every chunk the manifest references is now present,
    the manifest and the head. The head never moves backwards: the
    generation keeps its number when that is newer than the head, else it
    becomes head + 1; ``tags[tag]`` records ``source``.

    Returns ("adopted" or "present", generation), or the digests still
    missing (nothing of the manifest or head was written then).
    """
    nsid = store._nsid(txn, namespace, create=True)
    assert nsid is not None
    present = identical(store, txn, nsid, manifest)
    if present is not None:
        return "present", present
    chunks = store._db("chunks")
    for chunk_digest, frame in frames.items():
        txn.put(store._chunk_key(nsid, chunk_digest), frame, db=chunks, overwrite=False)
    missing = {
        d for d in manifest.digests() if txn.get(store._chunk_key(nsid, d), db=chunks) is None
    }
    if missing:
        return missing
    _, newest = _tip(store, txn, namespace, nsid)
    newer = newest < manifest.generation
    generation = manifest.generation if newer else _next_generation(store, namespace, newest)
    adopted = msgspec.structs.replace(
        manifest,
        namespace=namespace,
        generation=generation,
        parent=newest or None,
        tags={**manifest.tags, tag: source},
    )
    _publish(store, txn, nsid, adopted)
    # Deltas computed in this process were against the previous head.
    store._baselines.pop(namespace, None)
    return "adopted", generation


def _publish(store: Store, txn: Any, nsid: bytes, manifest: Manifest) -> None:
    """Write the manifest, make it the head, and apply retention.

    A quarantine record left under this number by a lost generation is
    dropped: it set that generation aside, not this one.
    """
    txn.put(
        manifest_key(nsid, manifest.generation),
        encode_manifest(store.codec, manifest),
        db=store._db("manifests"),
    )
    txn.delete(quarantine_key(manifest.namespace, manifest.generation), db=store._db("meta"))
    txn.put(
        check_namespace(manifest.namespace),
        GEN.pack(manifest.generation) + manifest.lineage.encode(),
        db=store._db("heads"),
    )
    retain(store, txn, nsid, manifest)


def _tip(store: Store, txn: Any, namespace: str, nsid: bytes) -> tuple[tuple[int, str] | None, int]:
    """(the head if it is sound, else None; the newest stored generation, 0 if none)."""
    stored = store._generations(txn, nsid)
    newest = stored[0] if stored else 0
    if stored:
        _check_owner(store, txn, namespace, nsid, newest)
    try:
        head = store._head(txn, namespace)
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


def _check_owner(store: Store, txn: Any, namespace: str, nsid: bytes, newest: int) -> None:
    """Refuse to commit under an id whose newest manifest belongs to another namespace.

    Only a damaged namespace-id record makes two namespaces share an id; a
    commit there would number itself after the other's generations and its
    retention would expire them.
    """
    try:
        owner = store._read_manifest(txn, nsid, newest).namespace
    except IntegrityError:
        return  # a damaged manifest names no owner; retention keeps what it cannot read
    if owner != namespace:
        msg = (
            f"Expected the generations under namespace {namespace!r}'s id to be its own, "
            f"found generation {newest} of namespace {owner!r}: the namespace id record is "
            f"damaged; `warmstart drop` {namespace!r} to start it afresh"
        )
        raise IntegrityError(msg)


def _next_generation(store: Store, namespace: str, newest: int) -> int:
    if newest >= MAX_GEN:
        msg = (
            f"Expected a generation number after {newest} for namespace {namespace!r} in "
            f"{str(store.path)!r}, there is none: that manifest key is damaged; "
            f"`warmstart drop` the namespace to start it afresh"
        )
        raise IntegrityError(msg)
    return newest + 1


@functools.cache
def _hostname() -> str:
    import socket  # noqa: PLC0415 - only the first save pays for it

    return socket.gethostname()


@functools.cache
def _library_version() -> str:
    # Resolved once: importlib.metadata parses the package metadata each call.
    from warmstart import __version__  # noqa: PLC0415 - avoid an import cycle

    return __version__
