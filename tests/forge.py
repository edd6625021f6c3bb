"""Forging archives, frames and payloads as an attacker would: every digest recomputed.

Shared by the hostile-input tests and the fuzz campaign (issue 17). Unkeyed
archives and stores carry only xxh3 digests, which anyone can recompute: these
helpers build records that pass every digest check, so that what the library
does with their *contents* is what gets tested.
"""

from __future__ import annotations

from typing import Any

import msgspec
import xxhash

from warmstart.codec import Codec, digest
from warmstart.manifest import ChunkRef, Manifest, SectionManifest, encode_manifest

MAGIC = b"WSTA\x01\x00\x00\x00"


def records(data: bytes) -> list[tuple[bytes, bytes]]:
    """(tag, body) of every record of an archive, the trailer included."""
    out, offset = [], 8
    while offset < len(data):
        tag = data[offset : offset + 1]
        length = int.from_bytes(data[offset + 1 : offset + 5], "big")
        out.append((tag, data[offset + 21 : offset + 21 + length]))
        offset += 21 + length
    return out


def build(parts: list[tuple[bytes, bytes]], *, count: int | None = None) -> bytes:
    """An archive of these (tag, body) records with every digest and the trailer recomputed."""
    out = bytearray(MAGIC)
    for tag, body in parts:
        out += tag + len(body).to_bytes(4, "big") + xxhash.xxh3_128_digest(body) + body
    chunks = sum(tag == b"C" for tag, _ in parts) if count is None else count % 2**64
    end = chunks.to_bytes(8, "big") + len(out).to_bytes(8, "big")
    end += xxhash.xxh3_128_digest(bytes(out))
    out += b"E" + len(end).to_bytes(4, "big") + xxhash.xxh3_128_digest(end) + end
    return bytes(out)


def header_of(data: bytes) -> dict[str, Any]:
    """An archive's header as a plain dict (any field may then be changed)."""
    tag, body = records(data)[0]
    assert tag == b"H"
    header: dict[str, Any] = msgspec.msgpack.decode(body)
    return header


def chunks_of(data: bytes) -> list[bytes]:
    return [body for tag, body in records(data) if tag == b"C"]


def rebuild(data: bytes, **changes: Any) -> bytes:
    """The archive with header fields changed (``chunks_`` replaces the chunk frames)."""
    frames = changes.pop("chunks_", None)
    header = {**header_of(data), **changes}
    chunks = chunks_of(data) if frames is None else frames
    return build([(b"H", msgspec.msgpack.encode(header)), *((b"C", c) for c in chunks)])


def archive(manifest: Manifest, frames: list[bytes], codec: Codec | None = None) -> bytes:
    """A complete archive of ``manifest`` shipping ``frames``, as export would write it."""
    codec = codec or Codec()
    header = {
        "namespace": manifest.namespace,
        "generation": manifest.generation,
        "lineage": manifest.lineage,
        "since": None,
        "keyed": codec.keyed,
        "manifest": encode_manifest(codec, manifest),
        "chunks": len(frames),
        "chunk_bytes": sum(map(len, frames)),
        "exported_at": 0.0,
        "library_version": "forged",
    }
    return build([(b"H", msgspec.msgpack.encode(header)), *((b"C", f) for f in frames)])


def payload(
    keys: Any, values: Any, *, sequence: int = 0, deleted: Any = (), expires: Any = ()
) -> bytes:
    """A chunk payload ``[sequence, keys, values, deleted, expires]`` of any shape."""
    return msgspec.msgpack.encode([sequence, keys, values, deleted, expires])


def chunk(raw: bytes, entries: int, codec: Codec | None = None) -> tuple[ChunkRef, bytes]:
    """A frame of ``raw`` (whatever it holds) and the reference a manifest would make."""
    frame = (codec or Codec()).encode(raw)
    ref = ChunkRef(
        digest=digest(frame), entries=entries, raw_bytes=len(raw), stored_bytes=len(frame)
    )
    return ref, frame


def with_section(manifest: Manifest, name: str, refs: list[ChunkRef], entries: int) -> Manifest:
    """``manifest`` with section ``name``'s base replaced by ``refs``."""
    sections = []
    for section in manifest.sections:
        replaced = (
            msgspec.structs.replace(section, base=tuple(refs), deltas=(), entries=entries)
            if section.name == name
            else section
        )
        sections.append(replaced)
    return msgspec.structs.replace(manifest, sections=tuple(sections))


def digest_of(frame: bytes) -> bytes:
    """A frame's content address (xxh3-128), as anyone can compute it."""
    return digest(frame)


def section_of(manifest: Manifest, name: str) -> SectionManifest:
    found = manifest.section(name)
    assert found is not None
    return found
