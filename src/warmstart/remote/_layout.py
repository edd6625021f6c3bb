"""Private: the remote layout of a namespace, head records, and push/pull plumbing.

Remote layout, per namespace (each ``/``-separated part of the namespace is
percent-escaped, so a namespace is a directory no other namespace can reach
into)::

    <namespace>/@ws/head                      the head record (msgpack RemoteHead)
    <namespace>/@ws/manifests/<gen>-<digest>  a manifest, as stored locally (digest + frame)
    <namespace>/@ws/chunks/<digest>           a chunk frame, exactly as stored locally
"""

from __future__ import annotations

import contextlib
import re
import threading
import urllib.parse
from collections.abc import Iterator

import msgspec

from warmstart.codec import Codec, decode_record
from warmstart.errors import IntegrityError
from warmstart.manifest import ChunkRef, Manifest, decode_manifest
from warmstart.remote._base import MAX_OBJECT
from warmstart.remote._protocol import Remote, open_remote
from warmstart.remote._reports import HEAD_FORMAT, RemoteHead
from warmstart.store import check_namespace

__all__ = ()

RESERVED = "@ws"
#: Largest remote generation number a head may hold: pushes count up from it,
#: and one at 2**64 - 1 could never be followed (issue 17).
MAX_REMOTE_GENERATION = 1 << 48
#: Bytes read from the local store (push) or requested from the remote (pull) per batch.
BATCH_BYTES = 8 * 1024 * 1024

_head_decoder = msgspec.msgpack.Decoder(RemoteHead)


#: Longest escaped part kept as it is: a file name (NAME_MAX) holds 255 bytes. A
#: namespace part of 255 bytes escapes to up to 765 (three per byte), which a
#: ``file://`` remote could not create (ENAMETOOLONG): longer ones are hashed.
MAX_PART = 255


def escape(part: str) -> str:
    """One ``/``-separated part of a namespace as a key segment.

    Percent-escaped (``@``, ``%`` and a leading ``.`` included), so segments
    starting with ``@`` are ours: ``@e`` is the empty part and ``@h<hash>``
    a part too long to spell out (its BLAKE2b-128). Namespaces are at most
    255 bytes, so every segment and every key fits the file, object-storage
    (1,024-byte keys) and Redis tiers alike.
    """
    if not part:
        return "@e"  # "@" is always escaped in names, so "@..." parts are ours
    escaped = urllib.parse.quote(part, safe="-_.~")
    escaped = "%2E" + escaped[1:] if escaped.startswith(".") else escaped
    if len(escaped) <= MAX_PART:
        return escaped
    import hashlib  # noqa: PLC0415 - only long names pay for it

    return "@h" + hashlib.blake2b(part.encode(), digest_size=16).hexdigest()


def namespace_dir(namespace: str) -> str:
    """The remote directory (key prefix) of a namespace.

    Each ``/``-separated part is percent-escaped (``@``, ``%`` and a leading
    ``.`` included), then ``@ws/`` follows: a namespace's keys can never be
    under another namespace's directory.

    >>> namespace_dir("tenant-42/pricing"), namespace_dir("a@b/.x")
    ('tenant-42/pricing/@ws/', 'a%40b/%2Ex/@ws/')
    >>> len(namespace_dir("é" * 127))  # 762 escaped: hashed instead
    39
    """
    check_namespace(namespace)
    return "/".join(escape(p) for p in namespace.split("/")) + f"/{RESERVED}/"


class Layout:
    """Keys of one namespace on a remote."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.dir = namespace_dir(namespace)
        self.head = self.dir + "head"

    def chunk(self, digest: bytes) -> str:
        return f"{self.dir}chunks/{digest.hex()}"

    def manifest(self, name: str) -> str:
        return f"{self.dir}manifests/{name}"

    def parse(self, key: str) -> tuple[str, str] | None:
        """("chunks" or "manifests", name) for a key of this namespace, else None."""
        if not key.startswith(self.dir):
            return None
        kind, _, name = key[len(self.dir) :].partition("/")
        return (kind, name) if kind in ("chunks", "manifests") and name else None


_MANIFEST_NAME = re.compile(r"[0-9]{20}-[0-9a-f]{32}")


def manifest_name(generation: int, digest: bytes) -> str:
    return f"{generation:020d}-{digest.hex()}"


def unique_refs(manifest: Manifest) -> list[ChunkRef]:
    return list({ref.digest: ref for s in manifest.sections for ref in s.chunks}.values())


def decode_head(raw: bytes, where: str) -> RemoteHead:
    head: RemoteHead = decode_record(_head_decoder, raw, f"a remote head record at {where}")
    if head.format > HEAD_FORMAT:
        msg = (
            f"Expected remote head format <= {HEAD_FORMAT}, got {head.format} at {where}; "
            f"it was written by a newer warmstart"
        )
        raise IntegrityError(msg)
    return head


def check_head(head: RemoteHead, layout: Layout, where: str) -> None:
    """Refuse a head record of another namespace, or one whose numbers cannot go on.

    A head is found by its namespace's key, but its record says which
    namespace it describes; the two disagree only for a record copied or
    forged under another key. A generation at the top of the range would
    make every later push overflow it: it can only be damage or hostility.
    """
    if head.namespace != layout.namespace:
        msg = (
            f"Expected the remote head of namespace {layout.namespace!r} at {where}, "
            f"got one of {head.namespace!r}: the head record is damaged or forged"
        )
        raise IntegrityError(msg)
    if not 1 <= head.generation <= MAX_REMOTE_GENERATION:
        msg = (
            f"Expected a remote generation from 1 to {MAX_REMOTE_GENERATION} at {where}, got "
            f"{head.generation} in the head of {layout.namespace!r}: the head record is "
            f"damaged or forged"
        )
        raise IntegrityError(msg)
    # Names become keys: one that is not ours could reach outside the namespace.
    for name in (head.manifest, *(n for _, n in head.history)):
        if not isinstance(name, str) or not _MANIFEST_NAME.fullmatch(name):
            msg = (
                f"Expected manifest names like '<20 digits>-<32 hex digits>' in the remote "
                f"head of {layout.namespace!r} at {where}, got {name!r}: the head record is "
                f"damaged or forged"
            )
            raise IntegrityError(msg)


def check_keyed(head: RemoteHead, codec: Codec, where: str) -> None:
    if head.keyed != codec.keyed:
        has = "keyed (MAC'd)" if head.keyed else "unkeyed"
        fix = "open the store with the writers' secret" if head.keyed else "push without a secret"
        msg = (
            f"Expected {'keyed' if codec.keyed else 'unkeyed'} data like this store's at "
            f"{where}, got {has} data; {fix}"
        )
        raise IntegrityError(msg)


def remote_manifest(remote: Remote, layout: Layout, codec: Codec, name: str) -> Manifest:
    """Fetch and verify a manifest (digest, and MAC when keyed)."""
    key = layout.manifest(name)
    raw = remote.get([key], limit=MAX_OBJECT).get(key)
    where = f"{key!r} on {remote.url}"
    if raw is None:
        msg = f"Expected manifest {where}, it is missing"
        raise IntegrityError(msg)
    if raw[:16].hex() != name.rpartition("-")[2]:
        msg = f"Expected manifest {where} to have the digest its name says, got {raw[:16].hex()}"
        raise IntegrityError(msg)
    try:
        manifest = decode_manifest(codec, raw)
    except IntegrityError as exc:
        msg = f"Expected a valid manifest {where}: {exc}"
        raise IntegrityError(msg) from exc
    if manifest.namespace != layout.namespace:
        msg = (
            f"Expected manifest {where} of namespace {layout.namespace!r}, "
            f"got {manifest.namespace!r}"
        )
        raise IntegrityError(msg)
    return manifest


class DeadlinePassedError(Exception):
    """The caller's deadline passed: stop before committing anything more."""


def check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise DeadlinePassedError


@contextlib.contextmanager
def opened(remote: Remote | str, timeout: float | None = None) -> Iterator[Remote]:
    """The remote itself, or the one a URL names (closed afterwards)."""
    if not isinstance(remote, str):
        yield remote
        return

    opened = open_remote(remote, timeout=timeout)
    try:
        yield opened
    finally:
        opened.close()


def batches(refs: list[ChunkRef]) -> Iterator[list[ChunkRef]]:
    batch: list[ChunkRef] = []
    size = 0
    for ref in refs:
        batch.append(ref)
        size += ref.stored_bytes
        if size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch
