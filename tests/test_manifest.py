"""Manifests: what a generation holds, stored as a verified frame."""

from __future__ import annotations

import random

import msgspec
import pytest

from conftest import Record
from warmstart import IntegrityError
from warmstart.codec import Codec, digest
from warmstart.manifest import (
    MANIFEST_FORMAT,
    ChunkRef,
    Manifest,
    SectionManifest,
    decode_manifest,
    encode_manifest,
)
from warmstart.schema import schema_of


def ref(tag: bytes, *, entries: int = 10, stored: int = 100, sequence: int = 0) -> ChunkRef:
    return ChunkRef(
        digest=digest(tag), entries=entries, raw_bytes=stored * 3, stored_bytes=stored,
        sequence=sequence,
    )  # fmt: skip


SCHEMA = schema_of(Record, version=1, name="record", key=str)


def make_manifest(**overrides: object) -> Manifest:
    quotes = SectionManifest(
        name="quotes",
        schema=SCHEMA,
        base=(ref(b"b1", stored=1000), ref(b"b2", stored=500)),
        deltas=(ref(b"d1", stored=40, sequence=4), ref(b"d2", stored=60, sequence=5)),
        entries=25,
    )
    flags = SectionManifest(name="flags", schema=SCHEMA, base=(ref(b"f1", stored=7),), entries=3)
    fields: dict[str, object] = {
        "namespace": "svc",
        "generation": 5,
        "lineage": "abcd",
        "created_at": 1_700_000_000.5,
        "library_version": "0.1.0",
        "host": "host-1",
        "pid": 4242,
        "parent": 4,
        "kind": "delta",
        "watermark": {"lsn": 987654321},
        "tags": {"release": "2024.1"},
        "sections": (quotes, flags),
    }
    fields.update(overrides)
    return Manifest(**fields)  # type: ignore[arg-type]


class TestManifestContent:
    def test_chunks_are_base_then_deltas(self) -> None:
        """A section's chunks list its base chunks, then its delta chunks, in replay order."""
        section = make_manifest().sections[0]
        assert section.chunks == section.base + section.deltas
        assert [c.sequence for c in section.chunks] == [0, 0, 4, 5]

    def test_sizes_add_up(self) -> None:
        """Stored and base byte counts add the referenced frames' sizes."""
        manifest = make_manifest()
        quotes = manifest.sections[0]
        assert quotes.base_bytes == 1500
        assert quotes.stored_bytes == 1600
        assert manifest.stored_bytes == 1607

    def test_delta_chain_counts_distinct_sequences(self) -> None:
        """The delta chain is the number of delta generations since the base, over all sections."""
        assert make_manifest().delta_chain == 2
        assert make_manifest(sections=()).delta_chain == 0

    def test_digests_cover_every_section(self) -> None:
        """digests() names every chunk the generation references, once."""
        manifest = make_manifest()
        assert manifest.digests() == {digest(t) for t in (b"b1", b"b2", b"d1", b"d2", b"f1")}

    def test_section_lookup(self) -> None:
        """section() finds a section by name and returns None for an unknown one."""
        manifest = make_manifest()
        found = manifest.section("flags")
        assert found is not None
        assert found.entries == 3
        assert manifest.section("missing") is None

    def test_defaults(self) -> None:
        """A bare manifest is a full generation of the current format with no sections."""
        bare = Manifest("svc", 1, "ab", 0.0, "0", "h", 1)
        assert (bare.kind, bare.parent, bare.tags, bare.sections) == ("full", None, {}, ())
        assert bare.format == MANIFEST_FORMAT


class TestManifestEncoding:
    def test_round_trip(self) -> None:
        """A manifest decodes to exactly what was encoded, watermark and tags included."""
        manifest = make_manifest()
        assert decode_manifest(Codec(), encode_manifest(Codec(), manifest)) == manifest

    def test_round_trip_keyed(self) -> None:
        """With a secret the manifest is MAC'd and reads back with the same secret."""
        codec = Codec(secret=b"k" * 32)
        manifest = make_manifest()
        assert decode_manifest(codec, encode_manifest(codec, manifest)) == manifest

    def test_encoding_is_deterministic(self) -> None:
        """The same manifest encodes to the same bytes, whatever the order of its tags."""
        one = make_manifest(tags={"a": "1", "b": "2"})
        two = make_manifest(tags={"b": "2", "a": "1"})
        assert encode_manifest(Codec(), one) == encode_manifest(Codec(), two)

    def test_decodes_from_a_memoryview(self) -> None:
        """Stored manifests come from LMDB as memoryviews and decode without a copy first."""
        stored = encode_manifest(Codec(), make_manifest())
        assert decode_manifest(Codec(), memoryview(stored)) == make_manifest()

    def test_every_byte_flip_is_detected(self) -> None:
        """Flipping any single byte of a stored manifest raises IntegrityError."""
        stored = encode_manifest(Codec(), make_manifest())
        for offset in range(len(stored)):
            damaged = bytearray(stored)
            damaged[offset] ^= 0x40
            with pytest.raises(IntegrityError):
                decode_manifest(Codec(), bytes(damaged))

    def test_truncation_is_detected(self) -> None:
        """Every truncation of a stored manifest, down to nothing, raises IntegrityError."""
        stored = encode_manifest(Codec(), make_manifest())
        for length in range(len(stored)):
            with pytest.raises(IntegrityError):
                decode_manifest(Codec(), stored[:length])

    def test_random_garbage_is_rejected(self) -> None:
        """Random bytes never decode to a manifest and never raise anything but IntegrityError."""
        rng = random.Random(7)
        for size in (0, 5, 16, 17, 36, 200):
            with pytest.raises(IntegrityError):
                decode_manifest(Codec(), rng.randbytes(size))

    def test_wrong_secret_is_rejected(self) -> None:
        """A manifest MAC'd with one secret is refused under another, or without one."""
        stored = encode_manifest(Codec(secret=b"right"), make_manifest())
        with pytest.raises(IntegrityError, match="MAC"):
            decode_manifest(Codec(secret=b"wrong"), stored)
        with pytest.raises(IntegrityError):
            decode_manifest(Codec(), stored)

    def test_unkeyed_manifest_refused_by_keyed_store(self) -> None:
        """A keyed store refuses a manifest written without a MAC (a forged, unkeyed one)."""
        stored = encode_manifest(Codec(), make_manifest())
        with pytest.raises(IntegrityError, match="MAC"):
            decode_manifest(Codec(secret=b"k"), stored)

    def test_valid_frame_with_malformed_payload(self) -> None:
        """A well-framed payload that is not a manifest raises IntegrityError, not msgspec's."""
        codec = Codec()
        frame = codec.encode(msgspec.msgpack.encode({"namespace": 3}))
        with pytest.raises(IntegrityError, match="malformed"):
            decode_manifest(codec, digest(frame) + frame)

    def test_newer_format_is_refused(self) -> None:
        """A manifest of a newer format is refused with a message naming both formats."""
        codec = Codec()
        stored = encode_manifest(codec, make_manifest(format=MANIFEST_FORMAT + 1))
        with pytest.raises(
            IntegrityError, match=f"<= {MANIFEST_FORMAT}, got {MANIFEST_FORMAT + 1}"
        ):
            decode_manifest(codec, stored)

    def test_unknown_fields_are_ignored(self) -> None:
        """A manifest with fields a newer release added still decodes (tolerant reader)."""
        codec = Codec()
        plain = msgspec.to_builtins(make_manifest(), builtin_types=(bytes,))
        plain["future_field"] = [1, 2, 3]
        plain["sections"][0]["future_section_field"] = "x"
        frame = codec.encode(msgspec.msgpack.encode(plain))
        assert decode_manifest(codec, digest(frame) + frame) == make_manifest()
