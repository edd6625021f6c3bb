"""The store's keys and records: their layout in LMDB, and reading them back.

Private; used by ``store`` and the modules that write for it. Everything that
knows how a key or a record is laid out lives here:

* ``meta``: ``store-format``; ``ns:<namespace>`` -> 4-byte namespace id, with
  ``ns-next`` the last id given; ``quarantine:<namespace>\\0<generation>`` ->
  the reason (UTF-8);
* ``heads``: namespace (UTF-8) -> generation (u64 big-endian) + lineage (hex);
* ``manifests``: namespace id + generation -> manifest frame;
* ``chunks``: namespace id + xxh3-128 digest -> frame.

In a keyed store of format 2, head and quarantine values are *sealed*: followed
by a 32-byte BLAKE2b MAC over their key and value (``Codec.seal``).

What is read back is untrusted input: a record that cannot be decoded raises
``IntegrityError`` naming it, and a malformed key is handed back apart, so
that a caller can skip it and go on. Never a ``UnicodeDecodeError`` or a
``struct.error``.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from typing import Any

from warmstart.codec import Codec
from warmstart.errors import CheckpointNotFoundError, IntegrityError, StoreError
from warmstart.manifest import Manifest, decode_manifest

__all__ = ()

log = logging.getLogger("warmstart.store")  # one logger for the whole store

GEN = struct.Struct(">Q")
NSID = struct.Struct(">I")
NS_PREFIX = b"ns:"
NS_NEXT = b"ns-next"
MAX_NAMESPACE = 255
MAX_GEN = (1 << 64) - 1
#: Largest number a generation from elsewhere (an import, a pull) keeps: above
#: it, it is renumbered after the newest stored one. 2**48 leaves room for a
#: save a millisecond for 8,900 years, so a foreign number never wedges a namespace.
MAX_FOREIGN_GEN = 1 << 48
MAX_NSID = (1 << 32) - 1


def check_namespace(namespace: str) -> bytes:
    """The namespace as it is keyed; ValueError for one that cannot be a key."""
    if not isinstance(namespace, str) or not namespace:
        msg = f"Expected a non-empty namespace string, got {namespace!r}"
        raise ValueError(msg)
    raw = namespace.encode()
    if len(raw) > MAX_NAMESPACE or "\x00" in namespace:
        msg = (
            f"Expected a namespace of at most {MAX_NAMESPACE} bytes without NUL, got {namespace!r}"
        )
        raise ValueError(msg)
    return raw


def namespace_name(raw: bytes) -> str | None:
    """The namespace a head key names, or None when no namespace has that key (damage)."""
    try:
        name = raw.decode()
        check_namespace(name)
    except ValueError:  # UnicodeDecodeError is a ValueError
        return None
    return name


def shown(raw: bytes) -> str:
    """Bytes read back from the store, printable whatever they hold."""
    return raw.decode(errors="backslashreplace")


def check_generation(generation: object) -> int:
    """A generation number as keyed (an int from 1); no stored one matches anything else."""
    if type(generation) is not int or not 1 <= generation < 1 << 64:
        msg = f"Expected a generation number (an int from 1), got {generation!r}"
        raise CheckpointNotFoundError(msg)
    return generation


def manifest_key(nsid: bytes, generation: int) -> bytes:
    return nsid + GEN.pack(check_generation(generation))


def meta_prefix(kind: bytes, namespace: str) -> bytes:
    """The prefix of a namespace's ``kind`` records in ``meta`` (NUL ends the name)."""
    return kind + b":" + check_namespace(namespace) + b"\x00"


def quarantine_key(namespace: str, generation: int) -> bytes:
    """The ``meta`` key that sets ``generation`` of ``namespace`` aside."""
    return meta_prefix(b"quarantine", namespace) + GEN.pack(check_generation(generation))


def prefixed(
    txn: Any, db: Any, prefix: bytes, *, values: bool = False
) -> Iterator[tuple[bytes, Any]]:
    """(key, value or None) for every key of ``db`` that starts with ``prefix``."""
    with txn.cursor(db=db) as cur:
        if not cur.set_range(prefix):
            return
        for key, value in (
            cur.iternext(values=values)
            if values
            else ((k, None) for k in cur.iternext(values=False))
        ):
            raw = bytes(key)
            if not raw.startswith(prefix):
                return
            yield raw, value


def decode_nsid(raw: bytes, namespace: str, where: str) -> bytes:
    """A namespace id record, checked.

    Raises:
        IntegrityError: it is not 4 bytes. Every key of the namespace's
            manifests and chunks starts with its id: a wrong one would read,
            or collect, another namespace's records.
    """
    if len(raw) != NSID.size:
        msg = (
            f"Expected a {NSID.size}-byte id for namespace {namespace!r} in the meta "
            f"table of {where}, got {raw!r}: the record is damaged; "
            f"`warmstart drop` the namespace to start it afresh"
        )
        raise IntegrityError(msg)
    return raw


def namespace_ids(txn: Any, meta: Any) -> Iterator[tuple[bytes, int | None]]:
    """(namespace as stored, its id or None if that record is damaged) for every id record."""
    for key, raw_id in prefixed(txn, meta, NS_PREFIX, values=True):
        raw = bytes(raw_id)
        yield key[len(NS_PREFIX) :], NSID.unpack(raw)[0] if len(raw) == NSID.size else None


def last_nsid(txn: Any, meta: Any, where: str) -> int:
    """The last namespace id given out, recounted from the ids if the counter is damaged."""
    counter = txn.get(NS_NEXT, db=meta)
    if counter is None:
        return 0
    raw = bytes(counter)
    if len(raw) == NSID.size and NSID.unpack(raw)[0] < MAX_NSID:
        return int(NSID.unpack(raw)[0])
    log.warning("the namespace id counter %r is damaged; recounting the ids in use", raw)
    last = max((n for _, n in namespace_ids(txn, meta) if n is not None), default=0)
    if last >= MAX_NSID:
        msg = f"Expected a free namespace id in {where}, found none"
        raise StoreError(msg)
    return last


def decode_head(raw: bytes, namespace: str, where: str) -> tuple[int, str]:
    """A head record: (generation, lineage).

    Raises:
        IntegrityError: it is too short to hold a generation.
    """
    if len(raw) < GEN.size:
        msg = (
            f"Expected the head record of namespace {namespace!r} in {where} "
            f"to start with an {GEN.size}-byte generation, got {raw!r}: the record is damaged"
        )
        raise IntegrityError(msg)
    # A damaged lineage must not fail a load: it just matches no manifest.
    return GEN.unpack(raw[: GEN.size])[0], raw[GEN.size :].decode("ascii", errors="replace")


def head_keys(txn: Any, heads: Any) -> Iterator[tuple[bytes, str | None]]:
    """(key, the namespace it names or None if it names none) for every head."""
    if heads is None:
        return
    with txn.cursor(db=heads) as cur:
        for key in cur.iternext(values=False):
            raw = bytes(key)
            yield raw, namespace_name(raw)


def manifest_keys(txn: Any, manifests: Any, nsid: bytes) -> tuple[list[int], list[bytes]]:
    """(generations stored for a namespace newest first, keys too malformed to name one)."""
    if manifests is None:
        return [], []
    generations: list[int] = []
    malformed: list[bytes] = []
    for key, _ in prefixed(txn, manifests, nsid):
        if len(key) == len(nsid) + GEN.size:
            generations.append(GEN.unpack(key[len(nsid) :])[0])
        else:
            malformed.append(key)
    return sorted(generations, reverse=True), malformed


def read_manifest(
    txn: Any,
    manifests: Any,
    codec: Codec,
    nsid: bytes,
    generation: int,
    namespace: str | None = None,
) -> Manifest:
    """The manifest stored as ``generation`` (of ``namespace``, when given), verified.

    Raises:
        CheckpointNotFoundError: none is stored there.
        IntegrityError: it is damaged, or describes another generation or namespace.
    """
    return stored_manifest(txn, manifests, codec, nsid, generation, namespace)[1]


def stored_manifest(
    txn: Any,
    manifests: Any,
    codec: Codec,
    nsid: bytes,
    generation: int,
    namespace: str | None = None,
) -> tuple[bytes, Manifest]:
    """:func:`read_manifest`, with the record's bytes as stored (an export ships them)."""
    raw = txn.get(manifest_key(nsid, generation), db=manifests)
    if raw is None:
        msg = f"Expected a manifest for generation {generation}, found none"
        raise CheckpointNotFoundError(msg)
    manifest = decode_manifest(codec, raw)
    if manifest.generation != generation or namespace not in (None, manifest.namespace):
        msg = (
            f"Expected the manifest stored as generation {generation}"
            f"{'' if namespace is None else f' of namespace {namespace!r}'} to describe it, "
            f"it describes generation {manifest.generation} of namespace "
            f"{manifest.namespace!r}: the record is damaged"
        )
        raise IntegrityError(msg)
    return bytes(raw), manifest


def quarantine_entries(
    txn: Any, meta: Any, namespace: str
) -> tuple[dict[int, tuple[bytes, bytes]], list[bytes]]:
    """(quarantined generation -> (key, value as stored), keys too malformed to name one)."""
    if meta is None:
        return {}, []
    prefix = meta_prefix(b"quarantine", namespace)
    found: dict[int, tuple[bytes, bytes]] = {}
    malformed: list[bytes] = []
    for key, value in prefixed(txn, meta, prefix, values=True):
        if len(key) == len(prefix) + GEN.size:
            found[GEN.unpack(key[len(prefix) :])[0]] = (key, bytes(value))
        else:
            malformed.append(key)
    return found, malformed


def encode_head(generation: int, lineage: str) -> bytes:
    """A head record's value (before sealing): generation u64 BE + lineage (ASCII hex)."""
    return GEN.pack(generation) + lineage.encode()
