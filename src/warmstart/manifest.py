"""Manifests: what one committed generation holds, and how to find its bytes.

A manifest lists, per section, the contract and writer schema it was written
with and the digests of its chunks: the base chunks (entries in saved order)
and then the delta chunks (ordered upserts and deletions, with sequence
numbers). It is itself stored as a verified frame, so a damaged manifest is
detected like a damaged chunk.

>>> from warmstart.codec import Codec
>>> m = Manifest(namespace="svc", generation=1, lineage="ab", created_at=0.0,
...              library_version="0", host="h", pid=1)
>>> decode_manifest(Codec(), encode_manifest(Codec(), m)) == m
True
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import msgspec
import xxhash

from warmstart._budget import MAX_CHUNK_ENTRIES, Profile, profile_of
from warmstart._budget import check as check_budget
from warmstart.codec import HEADER, MAC_SIZE, MAX_PAYLOAD, Codec, decode_record, digest
from warmstart.errors import IntegrityError
from warmstart.schema import Schema

__all__ = ("ChunkRef", "Manifest", "SectionManifest", "decode_manifest", "encode_manifest")


def __dir__() -> tuple[str, ...]:
    return __all__


MANIFEST_FORMAT = 1


class ChunkRef(msgspec.Struct, frozen=True, array_like=True):
    """One chunk of a section: its digest, entry count, and byte sizes.

    ``sequence`` is 0 for base chunks and the generation that wrote it for
    delta chunks; replay applies deltas in manifest order.
    """

    digest: bytes
    entries: int
    raw_bytes: int
    stored_bytes: int
    sequence: int = 0


class SectionManifest(msgspec.Struct, frozen=True):
    """One section of a generation."""

    name: str
    schema: Schema
    base: tuple[ChunkRef, ...]
    deltas: tuple[ChunkRef, ...] = ()
    #: Entries once base and deltas are replayed.
    entries: int = 0
    #: True for a key-only section (which keys were hot, not their values).
    keys_only: bool = False

    @property
    def chunks(self) -> tuple[ChunkRef, ...]:
        """Base chunks then delta chunks, in replay order."""
        return self.base + self.deltas

    @property
    def stored_bytes(self) -> int:
        """Bytes of every frame this section references."""
        return sum(c.stored_bytes for c in self.chunks)

    @property
    def base_bytes(self) -> int:
        """Bytes of the base frames alone (compaction compares deltas to it)."""
        return sum(c.stored_bytes for c in self.base)


class Manifest(msgspec.Struct, frozen=True, dict=True):
    """One committed generation of a namespace.

    ``lineage`` names the chain of generations that share a base: a delta is
    only ever written on top of the generation it was computed against.
    """

    namespace: str
    generation: int
    lineage: str
    created_at: float
    library_version: str
    host: str
    pid: int
    parent: int | None = None
    kind: Literal["full", "delta"] = "full"
    watermark: Any = None
    tags: dict[str, str] = msgspec.field(default_factory=dict)
    sections: tuple[SectionManifest, ...] = ()
    format: int = MANIFEST_FORMAT

    def section(self, name: str) -> SectionManifest | None:
        """Return the section called ``name``, or None."""
        return self._by_name.get(name)

    @functools.cached_property
    def _by_name(self) -> dict[str, SectionManifest]:
        # Built once: a generation of 100,000 sections is read section by
        # section (dict=True gives the frozen Struct the __dict__ this needs).
        return {s.name: s for s in self.sections}

    @property
    def stored_bytes(self) -> int:
        """Bytes of every frame this generation references (shared ones included)."""
        return sum(s.stored_bytes for s in self.sections)

    @property
    def delta_chain(self) -> int:
        """Number of delta generations since the last full base."""
        return max((len({c.sequence for c in s.deltas}) for s in self.sections), default=0)

    def digests(self) -> set[bytes]:
        """Every chunk digest this generation references."""
        return {c.digest for s in self.sections for c in s.chunks}

    def signature(self) -> str:
        """Identity of the state this generation holds: lineage and every section's chunks.

        Two generations with the same signature hold the same entries, whatever
        their numbers: an import or pull of one that is already there is a no-op.
        """
        identity = (self.lineage, [(s.name, [c.digest for c in s.chunks]) for s in self.sections])
        return xxhash.xxh3_128_hexdigest(_encoder.encode(identity))


_encoder = msgspec.msgpack.Encoder(order="deterministic")


@functools.cache
def _decoder() -> msgspec.msgpack.Decoder[Manifest]:
    """Built on first use: a typed decoder inspects its Structs (about 1 ms of every import)."""
    return msgspec.msgpack.Decoder(Manifest)


@functools.cache
def _profile() -> Profile:
    return profile_of(Manifest)


def encode_manifest(codec: Codec, manifest: Manifest) -> bytes:
    """Encode a manifest as its digest followed by its frame."""
    frame = codec.encode(_encoder.encode(manifest))
    return digest(frame) + frame


def decode_manifest(codec: Codec, stored: bytes | memoryview) -> Manifest:
    """Verify and decode a stored manifest.

    Raises:
        IntegrityError: the manifest is damaged, tampered with, malformed, or
            would take more memory to decode than ``_budget.MAX_DECODED``.
    """
    view = memoryview(stored)
    payload = codec.decode(view[16:], digest=bytes(view[:16]))
    check_budget(payload, _profile(), "a manifest")  # bounded before it is built (issue 17)
    manifest: Manifest = decode_record(_decoder(), payload, "a manifest")
    if manifest.format > MANIFEST_FORMAT:
        msg = f"Expected manifest format <= {MANIFEST_FORMAT}, got {manifest.format}"
        raise IntegrityError(msg)
    _check_numbers(manifest)
    return manifest


#: Largest frame a chunk reference may name: a payload at the cap, stored raw, MAC'd.
_MAX_FRAME = HEADER.size + MAX_PAYLOAD + MAC_SIZE


def _check_numbers(manifest: Manifest) -> None:
    """Refuse numbers no writer produces: they could only lie to what reads them.

    A generation from 1 below 2**64, and per chunk reference a 16-byte
    digest, at most ``MAX_CHUNK_ENTRIES`` entries and sizes a frame can have
    (issue 17: an unkeyed archive's manifest could claim anything, and an
    import committed a generation that then never loaded).
    """
    if not 1 <= manifest.generation < 1 << 64:
        msg = f"Expected a generation number from 1 in a manifest, got {manifest.generation}"
        raise IntegrityError(msg)
    for section in manifest.sections:
        if section.entries < 0:
            msg = f"Expected a count of entries in section {section.name!r}, got {section.entries}"
            raise IntegrityError(msg)
        for ref in section.chunks:
            if not (
                len(ref.digest) == 16
                and 0 <= ref.entries <= MAX_CHUNK_ENTRIES
                and 0 <= ref.raw_bytes <= MAX_PAYLOAD
                and 0 <= ref.stored_bytes <= _MAX_FRAME
                and 0 <= ref.sequence < 1 << 64
            ):
                msg = (
                    f"Expected chunk references a frame can have in section {section.name!r}, "
                    f"got {ref}: the manifest is damaged or forged"
                )
                raise IntegrityError(msg)
