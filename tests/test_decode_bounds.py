"""Decoding untrusted payloads within a memory bound (issue 17).

Decompression was capped, decoding was not: an 802-byte unkeyed archive
imported cleanly and cost +276 MiB at load (a chunk of millions of empty
maps). Every payload is now held to the entry count its manifest records and
to ``_budget.MAX_DECODED`` bytes of objects before it is decoded. These tests
plant hostile chunks the way an attacker without a secret would (a forged
unkeyed archive, imported, which never decodes), then load them, and measure
what decoding takes with ``tracemalloc``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

import forge
import warmstart
from conftest import RECORDS, make_records, peak
from warmstart import _budget, cli
from warmstart.codec import Codec, digest
from warmstart.manifest import ChunkRef, Manifest, SectionManifest, decode_manifest
from warmstart.transfer import export, import_archive

MiB = 1 << 20


class Doc(msgspec.Struct):
    """A value that may hold anything: the most amplifying contract there is."""

    body: Any = None


DOCS = warmstart.Contract("doc", Doc, key=int)


class Vector(msgspec.Struct):
    values: list[float]


VECTORS = warmstart.Contract("vector", Vector, key=str)


class Blob(msgspec.Struct):
    data: str


BLOBS = warmstart.Contract("blob", Blob, key=str)


def planted(
    tmp_path: Path, contract: warmstart.Contract[Any], raw: bytes, entries: int
) -> warmstart.Store:
    """A store holding one generation whose only chunk is ``raw``, brought in by an import."""
    with warmstart.Store(tmp_path / "source", sync=False) as source:
        source.save("svc", {"s": (contract, {})})
        export(source, "svc", tmp_path / "empty.wsa")
    header = forge.header_of((tmp_path / "empty.wsa").read_bytes())
    manifest = decode_manifest(Codec(), header["manifest"])
    ref, frame = forge.chunk(raw, entries)
    hostile = forge.with_section(manifest, "s", [ref], entries)
    (tmp_path / "hostile.wsa").write_bytes(forge.archive(hostile, [frame]))
    store = warmstart.Store(tmp_path / "target", sync=False)
    try:
        import_archive(store, tmp_path / "hostile.wsa")  # transfer never decodes payloads
    except BaseException:
        store.close()
        raise
    return store


def read_section(store: warmstart.Store, contract: warmstart.Contract[Any]) -> Any:
    with store.load("svc") as snapshot:
        return snapshot.section("s", contract)


class TestTheIssuesArchive:
    def test_millions_of_empty_maps_are_refused_before_decoding(self, tmp_path: Path) -> None:
        """The issue's chunk: 2.5M empty maps in a 5 MB payload. Refused, for a few MiB.

        Its manifest claims the 2.5M entries: the import refuses it. Claiming
        fewer gets it imported; the load then refuses it from its header.
        """
        count = 2_500_000
        raw = forge.payload(list(range(count)), [{}] * count)
        assert len(raw) < 16 * MiB
        with pytest.raises(warmstart.IntegrityError, match="entries=2500000"):
            planted(tmp_path / "claims", DOCS, raw, count)
        with planted(tmp_path / "lies", DOCS, raw, 1000) as store:
            used, result = peak(lambda: read_section(store, DOCS))
        assert isinstance(result, warmstart.IntegrityError)
        assert "at most 1048576 entries" in str(result)
        assert used < len(raw) + 4 * MiB  # the payload itself, and little else

    def test_a_manifest_that_understates_the_entries_is_refused(self, tmp_path: Path) -> None:
        """The payload must hold exactly the entries its manifest records."""
        raw = forge.payload(list(range(1000)), [{}] * 1000)
        with (
            planted(tmp_path, DOCS, raw, 10) as store,
            pytest.raises(warmstart.IntegrityError, match="Expected 10 entries"),
        ):
            read_section(store, DOCS)


def hostile_bodies() -> Iterator[tuple[str, Any, int]]:
    """(name, one value, entries) whose decoding would blow past the bound, in few bytes."""
    yield "empty lists", Doc([[]] * 15_000_000), 1  # 1 byte each: 64 bytes as a list
    yield "empty maps", Doc([{}] * 12_000_000), 1
    yield "one-item maps", Doc([{0: 0}] * 6_000_000), 1
    yield "spread over entries", Doc([{}] * 12_000), 1000


class TestHostileShapes:
    @pytest.mark.parametrize(("name", "value", "entries"), list(hostile_bodies()))
    def test_refused_within_bounds(
        self, tmp_path: Path, name: str, value: Any, entries: int
    ) -> None:
        """Anything whose decoding would pass the bound is refused, having cost little."""
        raw = forge.payload(list(range(entries)), [value] * entries)
        if len(raw) > 64 * MiB:
            pytest.skip("over the frame cap")
        with planted(tmp_path, DOCS, raw, entries) as store:
            used, result = peak(lambda: read_section(store, DOCS))
        assert isinstance(result, warmstart.IntegrityError), (name, result)
        assert "refused before decoding" in str(result) or "elements to check" in str(result)
        assert used < 2 * len(raw) + 8 * MiB, (name, used >> 20)

    def test_deep_nesting_is_an_integrity_error(self, tmp_path: Path) -> None:
        """Containers nested past the recursion limit: IntegrityError, not RecursionError."""
        deep = b"\x91" * 100_000 + b"\xc0"
        raw = b"\x95\x00\x91\x00\x91\x81\xa4body" + deep + b"\x90\x90"
        with planted(tmp_path, DOCS, raw, 1) as store, pytest.raises(warmstart.IntegrityError):
            read_section(store, DOCS)

    def test_deeply_nested_manifest_in_an_archive(self, tmp_path: Path) -> None:
        """A manifest that nests past the recursion limit is refused at import."""
        with warmstart.Store(tmp_path / "source", sync=False) as source:
            source.save("svc", {"s": (RECORDS, make_records(2))})
            export(source, "svc", tmp_path / "a.wsa")
        data = (tmp_path / "a.wsa").read_bytes()
        payload = b"\x81\xa9namespace" + b"\x91" * 50_000 + b"\xc0"
        frame = Codec().encode(payload)
        stored = digest(frame) + frame
        (tmp_path / "deep.wsa").write_bytes(forge.rebuild(data, manifest=stored))
        with warmstart.Store(tmp_path / "t", sync=False) as target:
            with pytest.raises(warmstart.IntegrityError):
                import_archive(target, tmp_path / "deep.wsa")
            assert target.namespaces() == []

    def test_inspect_entries_is_bounded(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`warmstart inspect --entries` refuses the same chunks, in its one-line error."""
        raw = forge.payload([0], [Doc([{}] * 12_000_000)])
        planted(tmp_path, DOCS, raw, 1).close()
        used, code = peak(
            lambda: cli.main(["inspect", str(tmp_path / "target"), "svc", "--entries", "3"])
        )
        assert code == 2
        assert "refused before decoding" in capsys.readouterr().err
        assert used < 2 * len(raw) + 8 * MiB


class TestLegitimateLargeChunks:
    """Large chunks that are legitimate decode as before; the estimate covers what they take."""

    def test_blobs(self, tmp_path: Path) -> None:
        data = {f"k{i}": Blob("x" * 30_000) for i in range(2048)}  # a 60 MiB chunk
        with warmstart.Store(tmp_path / "s", sync=False) as store:
            store.save("svc", {"s": (BLOBS, data)})
            used, result = peak(lambda: read_section(store, BLOBS))
        assert result == data
        assert used < 3 * 64 * MiB  # the payload, and the strings it holds

    def test_vectors(self, tmp_path: Path) -> None:
        data = {f"k{i}": Vector([i * 0.5] * 1536) for i in range(2048)}  # 28 MiB of floats
        with warmstart.Store(tmp_path / "s", sync=False) as store:
            store.save("svc", {"s": (VECTORS, data)})
            assert read_section(store, VECTORS) == data

    @pytest.mark.parametrize(
        ("contract", "payload"),
        [
            (BLOBS, forge.payload([f"k{i}" for i in range(512)], [Blob("y" * 9000)] * 512)),
            (VECTORS, forge.payload(["a"] * 64, [Vector([1.5] * 5_000)] * 64)),
            (VECTORS, forge.payload(["a"] * 64, [Vector([1] * 5_000)] * 64)),
            (DOCS, forge.payload(list(range(4)), [Doc([{}] * 60_000)] * 4)),
            (DOCS, forge.payload(list(range(4)), [Doc([[1, 2]] * 40_000)] * 4)),
            (DOCS, forge.payload(list(range(4)), [Doc(["ab"] * 60_000)] * 4)),
            (DOCS, forge.payload(list(range(4)), [Doc([{"a": -7}] * 20_000)] * 4)),
            (
                RECORDS,
                forge.payload(
                    [f"k{i}" for i in range(20_000)], list(make_records(20_000).values())
                ),
            ),
        ],
        ids=["blobs", "floats", "ints-as-floats", "maps", "lists", "strings", "dicts", "records"],
    )
    def test_the_estimate_bounds_what_decoding_takes(
        self, contract: warmstart.Contract[Any], payload: bytes
    ) -> None:
        """For each shape, the walk's estimate is at least what msgspec allocates (measured)."""
        estimate = _budget.estimate(payload, contract._profile)
        # tracemalloc also counts other threads' allocations (a leftover
        # boot's timer, a listener): decoding's own cost is the least peak.
        runs = [
            peak(lambda: contract.decode_entries(payload, contract.write_schema)) for _ in "abc"
        ]
        used = min(used for used, _ in runs)
        decoded = runs[0][1]
        assert not isinstance(decoded, Exception), decoded
        assert estimate >= used, (estimate >> 20, used >> 20)
        assert estimate <= 8 * max(used, 1 * MiB)  # and not absurdly above it


def test_every_chunk_checks_its_entry_count(tmp_path: Path) -> None:
    """A restore checks each chunk's header against its manifest before decoding it."""
    refs: list[ChunkRef] = []
    frames: list[bytes] = []
    for i in range(3):
        ref, frame = forge.chunk(RECORDS.encode_entries([f"k{i}"], [make_records(1)["k0"]]), 1)
        refs.append(ref)
        frames.append(frame)
    with warmstart.Store(tmp_path / "s", sync=False) as store:
        store.save("svc", {"s": (RECORDS, make_records(1))})
        manifest: Manifest = store.manifest("svc")
    section: SectionManifest = forge.section_of(manifest, "s")
    lying = msgspec.structs.replace(refs[2], entries=2)
    forged = forge.with_section(manifest, section.name, [refs[0], refs[1], lying], 3)
    (tmp_path / "a.wsa").write_bytes(forge.archive(forged, frames))
    with warmstart.Store(tmp_path / "t", sync=False) as target:
        import_archive(target, tmp_path / "a.wsa")
        with pytest.raises(warmstart.IntegrityError, match="Expected 2 entries"):
            read_section(target, RECORDS)
