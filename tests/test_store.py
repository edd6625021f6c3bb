"""The LMDB checkpoint store: real environments on disk, real damage, real processes."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import signal
import socket
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cachetools
import lmdb
import msgspec
import pytest

import warmstart
from conftest import RECORDS, FakeClock, Record, make_records
from warmstart import (
    CheckpointNotFoundError,
    CompactionPolicy,
    EncodeError,
    Store,
    StoreError,
    TrackedDict,
)
from warmstart.errors import ReadOnlyStoreError, StoreFormatError, StoreFullError
from warmstart.store import _env as env_module


class Blob(msgspec.Struct):
    """A value that does not compress: sizes on disk are what the test says."""

    data: bytes


BLOBS = warmstart.Contract("blob", Blob, key=int)


def blobs(n: int, size: int = 1024, *, seed: int = 0) -> dict[int, Blob]:
    rng = random.Random(seed)
    return {i: Blob(rng.randbytes(size)) for i in range(n)}


def open_store(path: Path, **kwargs: Any) -> Store:
    kwargs.setdefault("sync", False)
    return Store(path, **kwargs)


@contextlib.contextmanager
def raw_env(path: Path) -> Iterator[tuple[Any, dict[str, Any]]]:
    """The store's LMDB environment and tables, opened directly (no Store open here)."""
    env = lmdb.open(str(path), max_dbs=4, map_size=1 << 30)
    try:
        yield env, {name: env.open_db(name.encode()) for name in ("meta", "manifests", "chunks")}
    finally:
        env.close()


def namespace_id(env: Any, dbs: dict[str, Any], namespace: str) -> bytes:
    with env.begin() as txn:
        nsid = txn.get(b"ns:" + namespace.encode(), db=dbs["meta"])
    assert nsid is not None
    return bytes(nsid)


def rewrite_chunk(
    path: Path, namespace: str, digest: bytes, change: Callable[[bytes], bytes | None]
) -> None:
    """Replace one stored chunk by ``change(frame)``, or delete it when that returns None."""
    with raw_env(path) as (env, dbs):
        key = namespace_id(env, dbs, namespace) + digest
        with env.begin(write=True) as txn:
            frame = txn.get(key, db=dbs["chunks"])
            assert frame is not None
            changed = change(bytes(frame))
            if changed is None:
                txn.delete(key, db=dbs["chunks"])
            else:
                txn.put(key, changed, db=dbs["chunks"])


def flip(offset: int) -> Callable[[bytes], bytes]:
    def change(frame: bytes) -> bytes:
        damaged = bytearray(frame)
        damaged[offset % len(frame)] ^= 0x01
        return bytes(damaged)

    return change


def damage_manifest(path: Path, namespace: str, generation: int) -> None:
    with raw_env(path) as (env, dbs):
        key = namespace_id(env, dbs, namespace) + generation.to_bytes(8, "big")
        with env.begin(write=True) as txn:
            stored = bytearray(txn.get(key, db=dbs["manifests"]))
            stored[len(stored) // 2] ^= 0x10
            txn.put(key, bytes(stored), db=dbs["manifests"])


def unique_digests(store: Store, namespace: str, generation: int) -> set[bytes]:
    """Chunks only ``generation`` references, among the retained generations."""
    mine = store.manifest(namespace, generation).digests()
    for info in store.generations(namespace):
        if info.generation != generation:
            mine -= store.manifest(namespace, info.generation).digests()
    return mine


def save_n(store: Store, n: int, namespace: str = "svc") -> dict[int, dict[str, Record]]:
    """Save ``n`` generations of distinct content; return each generation's content."""
    saved = {}
    for i in range(n):
        content = make_records(50, salt=1000 * i)
        generation = store.save(namespace, {"records": (RECORDS, content)}, watermark=i)
        saved[generation] = content
    return saved


def reader_pids(store: Store) -> list[int]:
    """Processes holding a reader slot of the store's lock table."""
    lines = store._env.env.readers().splitlines()[1:]
    return [int(line.split()[0]) for line in lines if line.strip()]


def run_child(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class TestOpen:
    def test_creates_private_directory_and_files(self, tmp_path: Path) -> None:
        """A new store's directory (parents included) is 0700 and its files 0600."""
        path = tmp_path / "a" / "b" / "store"
        with open_store(path):
            pass
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
        for name in ("data.mdb", "lock.mdb"):
            assert stat.S_IMODE((path / name).stat().st_mode) == 0o600

    def test_records_store_format(self, store_path: Path) -> None:
        """Opening a new store records the store-format version in the meta table."""
        with open_store(store_path):
            pass
        with raw_env(store_path) as (env, dbs), env.begin() as txn:
            assert txn.get(b"store-format", db=dbs["meta"]) == b"1"

    @pytest.mark.parametrize("readonly", [False, True])
    def test_refuses_newer_format(self, store_path: Path, readonly: bool) -> None:
        """A store written by a newer on-disk format is refused with a clear error."""
        with open_store(store_path) as store:
            store.save("svc", {"records": (RECORDS, make_records(3))})
        with raw_env(store_path) as (env, dbs), env.begin(write=True) as txn:
            txn.put(b"store-format", b"2", db=dbs["meta"])
        with pytest.raises(StoreFormatError, match=r"Expected store format 1, got b'2'"):
            open_store(store_path, readonly=readonly)

    def test_refuses_garbage_format(self, store_path: Path) -> None:
        """A format marker that is not a number is refused, not crashed on."""
        with open_store(store_path):
            pass
        with raw_env(store_path) as (env, dbs), env.begin(write=True) as txn:
            txn.put(b"store-format", b"\xff\x00", db=dbs["meta"])
        with pytest.raises(StoreFormatError):
            open_store(store_path)

    def test_context_manager_closes(self, store_path: Path) -> None:
        """Leaving the with block closes the store: using it fails cleanly, reopening works."""
        with open_store(store_path) as store:
            store.save("svc", {"records": (RECORDS, make_records(3))})
        with pytest.raises(StoreError):
            store.namespaces()
        with open_store(store_path) as again:
            assert again.namespaces() == ["svc"]

    def test_keep_must_be_positive(self, store_path: Path) -> None:
        """keep=0 would delete every generation, so it is refused."""
        with pytest.raises(ValueError, match="keep >= 1"):
            open_store(store_path, keep=0)

    def test_repr_names_path_and_keep(self, store: Store, store_path: Path) -> None:
        """The repr shows the path and the retention."""
        assert repr(store) == f"Store({str(store_path)!r}, keep=3)"

    def test_reopen_keeps_generations(self, store_path: Path) -> None:
        """Generations survive closing and reopening, and numbering continues."""
        with open_store(store_path) as store:
            save_n(store, 2)
        with open_store(store_path) as store:
            assert store.save("svc", {"records": (RECORDS, make_records(1))}) == 3


class TestSaveLoad:
    def test_round_trip_in_saved_order(self, store: Store) -> None:
        """Sections come back with their entries, in saved order, sections in saved order."""
        records = dict(reversed(list(make_records(100).items())))
        flags = make_records(3, prefix="f")
        generation = store.save("svc", {"records": (RECORDS, records), "flags": (RECORDS, flags)})
        assert generation == 1
        with store.load("svc") as snapshot:
            assert snapshot.sections == ("records", "flags")
            got = snapshot.section("records", RECORDS)
            assert list(got.items()) == list(records.items())
            assert snapshot.section("flags", RECORDS) == flags

    def test_lru_order_is_kept(self, store: Store) -> None:
        """An LRU cache is saved least- to most-recently used, without touching its recency."""
        cache: cachetools.LRUCache[str, Record] = cachetools.LRUCache(maxsize=10)
        cache.update(make_records(5))
        cache["k0"]
        order = list(cache._LRUCache__order)  # type: ignore[attr-defined]
        store.save("svc", {"cache": (RECORDS, cache)})
        assert list(cache._LRUCache__order) == order  # type: ignore[attr-defined]
        with store.load("svc") as snapshot:
            assert list(snapshot.section("cache", RECORDS)) == ["k1", "k2", "k3", "k4", "k0"]

    def test_generations_are_monotonic(self, store: Store) -> None:
        """Each save returns the next generation of its namespace."""
        assert [store.save("svc", {"r": (RECORDS, make_records(i))}) for i in range(4)] == [
            1, 2, 3, 4,
        ]  # fmt: skip

    def test_metadata_is_recorded(self, store: Store, clock: FakeClock) -> None:
        """A manifest records created_at, library version, host, pid, parent, watermark, tags."""
        store.save("svc", {"r": (RECORDS, make_records(2))})
        clock.advance(60)
        mark = {"lsn": 123456789, "topic": ["orders", 7]}
        store.save("svc", {"r": (RECORDS, make_records(2))}, watermark=mark, tags={"env": "prod"})
        with store.load("svc") as snapshot:
            meta = snapshot.manifest
            assert meta.created_at == clock.now
            assert meta.library_version == warmstart.__version__
            assert (meta.host, meta.pid) == (socket.gethostname(), os.getpid())
            assert (meta.parent, meta.generation) == (1, 2)
            assert snapshot.watermark == mark
            assert meta.tags == {"env": "prod"}
            assert snapshot.age(clock.now + 5) == 5

    def test_empty_section(self, store: Store) -> None:
        """An empty mapping is saved as a section with no entries."""
        store.save("svc", {"empty": (RECORDS, {})})
        with store.load("svc") as snapshot:
            assert snapshot.section("empty", RECORDS) == {}
            assert snapshot.section_manifest("empty").entries == 0

    def test_large_section_streams_chunk_by_chunk(self, store: Store) -> None:
        """A large section is cut into several chunks, streamed in order by Snapshot.chunks."""
        records = make_records(20_000)
        store.save("svc", {"records": (RECORDS, records)})
        with store.load("svc") as snapshot:
            streamed = list(snapshot.chunks("records", RECORDS))
            assert len(streamed) > 1
            assert [ref for ref, _ in streamed] == list(snapshot.section_manifest("records").base)
            keys = [k for _, decoded in streamed for k in decoded.keys]
            assert keys == list(records)
            assert [decoded.values[0] for _, decoded in streamed[:1]] == [records["k0"]]

    def test_identical_content_writes_no_chunk(self, store: Store) -> None:
        """Saving the same content again adds a generation but not a single chunk."""
        records = make_records(5000)
        store.save("svc", {"records": (RECORDS, records)})
        before = store.verify().chunks
        store.save("svc", {"records": (RECORDS, dict(records))})
        assert store.verify().chunks == before
        first, second = (store.manifest("svc", g) for g in (1, 2))
        assert first.digests() == second.digests()

    def test_one_change_writes_one_chunk(self, store_path: Path) -> None:
        """Changing one entry of a many-chunk section writes one new chunk, shares the rest."""
        with open_store(store_path, keep=5) as store:
            records = make_records(20_000)
            store.save("svc", {"records": (RECORDS, records)})
            before = store.verify().chunks
            records["k19999"] = Record(-1, "changed", 0.0, [], False, "z")
            store.save("svc", {"records": (RECORDS, records)})
            assert store.verify().chunks == before + 1

    def test_wrong_type_writes_nothing(self, store: Store) -> None:
        """A value not of the contract's type fails the save before anything is written."""
        store.save("svc", {"records": (RECORDS, make_records(2))})
        with pytest.raises(EncodeError, match="Expected values of type Record"):
            store.save("svc", {"records": (RECORDS, {"x": "not a record"})})
        assert [g.generation for g in store.generations("svc")] == [1]

    def test_section_needs_a_contract(self, store: Store) -> None:
        """A section given without its contract is refused with the section's name."""
        with pytest.raises(TypeError, match="section 'records'"):
            store.save("svc", {"records": ({}, {})})

    @pytest.mark.parametrize("bad", ["", "a\x00b", "x" * 256, 42])
    def test_invalid_namespace(self, store: Store, bad: Any) -> None:
        """Empty, NUL-bearing, over-long and non-string namespaces are refused."""
        with pytest.raises(ValueError, match="namespace"):
            store.save(bad, {"r": (RECORDS, {})})
        with pytest.raises(ValueError, match="namespace"):
            store.load(bad)

    def test_unicode_namespace(self, store: Store) -> None:
        """A namespace may be any non-empty UTF-8 string up to 255 bytes, slashes included."""
        name = "tenant-42/prix-€"
        store.save(name, {"r": (RECORDS, make_records(1))})
        assert store.namespaces() == [name]

    def test_load_missing_namespace(self, store: Store) -> None:
        """Loading an unknown namespace raises CheckpointNotFoundError, also a KeyError."""
        with pytest.raises(CheckpointNotFoundError, match="namespace 'nope'") as info:
            store.load("nope")
        assert isinstance(info.value, KeyError)

    def test_load_specific_generation(self, store: Store) -> None:
        """load(generation=N) reads that generation; an absent one is not found."""
        saved = save_n(store, 3)
        with store.load("svc", generation=2) as snapshot:
            assert snapshot.generation == 2
            assert snapshot.section("records", RECORDS) == saved[2]
        with pytest.raises(CheckpointNotFoundError, match="generation 7"):
            store.load("svc", generation=7)

    def test_tracked_deltas_round_trip(self, store_path: Path) -> None:
        """Tracked mappings save deltas, and every generation replays to its exact state."""
        # Five tiny deltas on a 500-entry base pass the default byte ratio
        # (frames have a fixed overhead): this test is about replay, not compaction.
        chain_freely = CompactionPolicy(max_deltas=16, max_ratio=1.0)
        with open_store(store_path, keep=10, compaction=chain_freely) as store:
            state: TrackedDict[str, Record] = TrackedDict(make_records(500))
            expected = {}
            for i in range(6):
                if i:
                    state[f"k{i}"] = Record(-i, "new", 1.0, [i], True, "x")
                    del state[f"k{100 + i}"]
                    state[f"extra{i}"] = Record(i, "extra", 2.0, [], False, "y")
                # Copied from behind the mapping: Records can change in place,
                # so reading them through it would count as writing them.
                expected[store.save("svc", {"state": (RECORDS, state)})] = dict(state._data)
            kinds = [g.kind for g in reversed(store.generations("svc"))]
            assert kinds == ["full"] + ["delta"] * 5
            for generation, content in expected.items():
                with store.load("svc", generation=generation) as snapshot:
                    assert snapshot.section("state", RECORDS) == content

    def test_full_mode_writes_a_base(self, store: Store) -> None:
        """mode='full' writes a fresh base even for a tracked mapping."""
        state: TrackedDict[str, Record] = TrackedDict(make_records(50))
        store.save("svc", {"state": (RECORDS, state)})
        state["k1"] = Record(0, "", 0.0, [], False, "")
        store.save("svc", {"state": (RECORDS, state)}, mode="full")
        assert store.generations("svc")[0].kind == "full"
        with store.load("svc") as snapshot:
            assert snapshot.section("state", RECORDS) == dict(state)

    def test_failed_save_keeps_changes_for_the_next(self, store_path: Path) -> None:
        """A tracked mapping whose save failed still holds its changes for the next save."""
        with open_store(store_path, max_map_size=2 << 20) as store:
            state: TrackedDict[int, Blob] = TrackedDict(blobs(10))
            store.save("svc", {"state": (BLOBS, state)})
            state[1] = Blob(b"changed")
            with pytest.raises(StoreFullError):
                store.save("svc", {"state": (BLOBS, state), "big": (BLOBS, blobs(4000))})
            store.save("svc", {"state": (BLOBS, state)})
            with store.load("svc") as snapshot:
                assert snapshot.section("state", BLOBS)[1] == Blob(b"changed")


class TestListing:
    def test_namespaces_sorted(self, store: Store) -> None:
        """namespaces() lists every namespace with a head, sorted."""
        assert store.namespaces() == []
        for name in ("b", "a/x", "c"):
            store.save(name, {"r": (RECORDS, make_records(1))})
        assert store.namespaces() == ["a/x", "b", "c"]

    def test_generations_describe_each_generation(self, store: Store, clock: FakeClock) -> None:
        """generations() gives newest first: sizes, times, sections, kind, watermark, head."""
        store.save("svc", {"a": (RECORDS, make_records(10)), "b": (RECORDS, make_records(2))})
        clock.advance(30)
        store.save("svc", {"a": (RECORDS, make_records(20))}, watermark="etag-2")
        newest, oldest = store.generations("svc")
        assert (newest.generation, oldest.generation) == (2, 1)
        assert (newest.head, oldest.head) == (True, False)
        assert newest.sections == {"a": 20}
        assert oldest.sections == {"a": 10, "b": 2}
        assert newest.created_at - oldest.created_at == 30
        assert newest.watermark == "etag-2"
        assert newest.kind == "full"
        assert newest.delta_chain == 0
        assert newest.stored_bytes == store.manifest("svc").stored_bytes > 0

    def test_manifest_names_contracts_and_writer_schemas(self, store: Store) -> None:
        """The manifest lists each section's contract, version and writer schema fields."""
        store.save("svc", {"records": (RECORDS, make_records(3))})
        section = store.manifest("svc").sections[0]
        assert (section.schema.contract, section.schema.version) == ("record", 1)
        assert [f.name for f in section.schema.fields] == [
            "id", "name", "score", "tags", "active", "kind",
        ]  # fmt: skip

    def test_unknown_namespace_lists_nothing(self, store: Store) -> None:
        """An unknown namespace has no generations and no manifest."""
        assert store.generations("nope") == []
        with pytest.raises(CheckpointNotFoundError):
            store.manifest("nope")


class TestRetention:
    def test_keeps_the_last_generations(self, store_path: Path) -> None:
        """Only the last `keep` generations remain; older ones are not found."""
        with open_store(store_path, keep=3) as store:
            saved = save_n(store, 6)
            assert [g.generation for g in store.generations("svc")] == [6, 5, 4]
            with pytest.raises(CheckpointNotFoundError):
                store.load("svc", generation=3)
            for generation in (4, 5, 6):
                with store.load("svc", generation=generation) as snapshot:
                    assert snapshot.section("records", RECORDS) == saved[generation]

    def test_unreferenced_chunks_are_collected(self, store_path: Path) -> None:
        """Chunks only expired generations referenced are deleted in the same commit."""
        with open_store(store_path, keep=2) as store:
            save_n(store, 5)
            report = store.verify()
            referenced = set().union(
                *(store.manifest("svc", g.generation).digests() for g in store.generations("svc"))
            )
            assert report.ok
            assert report.orphans == 0
            assert report.chunks == len(referenced)

    def test_shared_chunks_survive(self, store_path: Path) -> None:
        """A chunk shared with a retained generation is never collected with an expired one."""
        with open_store(store_path, keep=1) as store:
            static = make_records(300, prefix="s")
            for i in range(5):
                store.save(
                    "svc",
                    {"static": (RECORDS, static), "moving": (RECORDS, make_records(5, salt=i))},
                )
            with store.load("svc") as snapshot:
                assert snapshot.section("static", RECORDS) == static
            assert store.verify().ok

    def test_delta_chain_keeps_its_base(self, store_path: Path) -> None:
        """A base chunk written by an expired generation stays while retained deltas need it."""
        policy = CompactionPolicy(max_deltas=100, max_ratio=100.0)
        with open_store(store_path, keep=2, compaction=policy) as store:
            state: TrackedDict[str, Record] = TrackedDict(make_records(2000))
            for i in range(8):
                state[f"k{i}"] = Record(i, "v", 0.0, [], True, "a")
                store.save("svc", {"state": (RECORDS, state)})
            assert store.generations("svc")[0].delta_chain == 7
            assert store.verify().ok
            with store.load("svc", generation=7) as snapshot:
                assert snapshot.section("state", RECORDS)["k6"].id == 6
            with store.load("svc") as snapshot:
                assert snapshot.section("state", RECORDS) == dict(state)

    @pytest.mark.parametrize("seed", range(4))
    def test_random_histories_never_lose_a_needed_chunk(self, store_path: Path, seed: int) -> None:
        """Random histories (full, delta, unchanged, shared) keep each retained generation whole."""
        rng = random.Random(seed)
        keep = rng.randint(1, 4)
        policy = CompactionPolicy(max_deltas=rng.randint(1, 6), max_ratio=rng.choice([0.2, 5.0]))
        with open_store(store_path, keep=keep, compaction=policy) as store:
            tracked: TrackedDict[str, Record] = TrackedDict(make_records(300))
            plain = make_records(100, prefix="p")
            expected: dict[int, tuple[dict[str, Record], dict[str, Record]]] = {}
            for step in range(25):
                for _ in range(rng.randint(0, 20)):
                    key = f"k{rng.randrange(400)}"
                    if rng.random() < 0.3:
                        tracked.pop(key, None)
                    else:
                        tracked[key] = Record(step, key, rng.random(), [step], True, "m")
                if rng.random() < 0.5:
                    plain[f"p{rng.randrange(100)}"] = Record(step, "", 0.0, [], False, "p")
                mode = rng.choice(["auto", "auto", "delta", "full"])
                sections = {"tracked": (RECORDS, tracked), "plain": (RECORDS, plain)}
                generation = store.save("svc", sections, mode=mode)
                expected[generation] = (dict(tracked), dict(plain))
                report = store.verify()
                assert report.ok, report.problems
                assert report.orphans == 0
                retained = [g.generation for g in store.generations("svc")]
                assert retained == list(range(generation, max(generation - keep, 0), -1))
                for g in retained:
                    with store.load("svc", generation=g) as snapshot:
                        got = (
                            snapshot.section("tracked", RECORDS),
                            snapshot.section("plain", RECORDS),
                        )
                        assert got == expected[g]

    def test_drop_removes_a_namespace(self, store: Store) -> None:
        """drop() removes head, manifests and chunks of one namespace and leaves others intact."""
        save_n(store, 3, "gone")
        kept = save_n(store, 2, "kept")
        chunks_kept = len(set().union(*(store.manifest("kept", g).digests() for g in kept)))
        assert store.drop("gone") is True
        assert store.drop("gone") is False
        assert store.namespaces() == ["kept"]
        with pytest.raises(CheckpointNotFoundError):
            store.load("gone")
        report = store.verify()
        assert (report.ok, report.chunks, report.orphans) == (True, chunks_kept, 0)
        with store.load("kept") as snapshot:
            assert snapshot.section("records", RECORDS) == kept[2]
        assert store.save("gone", {"records": (RECORDS, make_records(1))}) == 1

    def test_namespaces_are_isolated(self, store_path: Path) -> None:
        """Identical content is stored once per namespace; damage to one spares the other."""
        records = make_records(200)
        with open_store(store_path) as store:
            assert store.save("a", {"r": (RECORDS, records)}) == 1
            store.save("a", {"r": (RECORDS, records)})
            assert store.save("b", {"r": (RECORDS, records)}) == 1
            (digest,) = store.manifest("a").digests()
            assert store.manifest("b").digests() == {digest}
            assert store.verify().chunks == 2
        rewrite_chunk(store_path, "a", digest, flip(30))
        with open_store(store_path) as store:
            with pytest.raises(CheckpointNotFoundError):
                store.load("a")
            with store.load("b") as snapshot:
                assert snapshot.section("r", RECORDS) == records
            store.drop("a")
            assert store.verify().ok

    def test_gc_frees_orphans(self, store_path: Path) -> None:
        """gc() frees a chunk no generation references and nothing else."""
        with open_store(store_path) as store:
            saved = save_n(store, 2)
            assert store.gc() == 0
        with raw_env(store_path) as (env, dbs):
            key = namespace_id(env, dbs, "svc") + b"\x01" * 16
            with env.begin(write=True) as txn:
                txn.put(key, b"stray frame", db=dbs["chunks"])
        with open_store(store_path) as store:
            assert store.verify().orphans == 1
            assert store.gc() == 1
            assert store.verify().orphans == 0
            with store.load("svc") as snapshot:
                assert snapshot.section("records", RECORDS) == saved[2]


class TestVerify:
    def test_clean_store(self, store: Store) -> None:
        """A healthy store verifies with counts of what was checked."""
        save_n(store, 4)
        save_n(store, 1, "other")
        report = store.verify()
        assert report.ok
        assert (report.namespaces, report.generations, report.orphans) == (2, 4, 0)
        assert report.chunks == 4

    def test_flipped_chunk_names_namespace_generation_and_chunk(self, store_path: Path) -> None:
        """A damaged chunk is reported with its namespace, the generation using it, its digest."""
        with open_store(store_path) as store:
            save_n(store, 3)
            (digest,) = unique_digests(store, "svc", 2)
        rewrite_chunk(store_path, "svc", digest, flip(25))
        with open_store(store_path) as store:
            report = store.verify()
        assert not report.ok
        (problem,) = report.problems
        assert (problem.namespace, problem.generation, problem.chunk) == ("svc", 2, digest.hex())
        assert "damaged" in problem.what

    def test_truncated_chunk(self, store_path: Path) -> None:
        """A truncated chunk is reported."""
        with open_store(store_path) as store:
            save_n(store, 1)
            (digest,) = store.manifest("svc").digests()
        rewrite_chunk(store_path, "svc", digest, lambda frame: frame[: len(frame) // 2])
        with open_store(store_path) as store:
            report = store.verify()
        assert [(p.generation, p.chunk) for p in report.problems] == [(1, digest.hex())]

    def test_missing_chunk(self, store_path: Path) -> None:
        """A manifest referencing a chunk that is gone is reported with its generation."""
        with open_store(store_path) as store:
            save_n(store, 2)
            (digest,) = unique_digests(store, "svc", 2)
        rewrite_chunk(store_path, "svc", digest, lambda frame: None)
        with open_store(store_path) as store:
            (problem,) = store.verify().problems
        assert (problem.generation, problem.chunk) == (2, digest.hex())
        assert "missing" in problem.what

    def test_damaged_manifest(self, store_path: Path) -> None:
        """A damaged manifest is reported with its generation."""
        with open_store(store_path) as store:
            save_n(store, 3)
        damage_manifest(store_path, "svc", 2)
        with open_store(store_path) as store:
            report = store.verify()
        assert [(p.namespace, p.generation) for p in report.problems] == [("svc", 2)]
        assert "manifest" in report.problems[0].what

    def test_keyed_store_rejects_other_keys(self, store_path: Path) -> None:
        """Frames MAC'd with one secret fail verification and loading under another, or none."""
        with open_store(store_path, secret=b"right secret") as store:
            save_n(store, 2)
            assert store.verify().ok
        for secret in (b"wrong secret", None):
            with open_store(store_path, secret=secret) as store:
                report = store.verify()
                assert not report.ok
                with pytest.raises(CheckpointNotFoundError, match="none did"):
                    store.load("svc")

    def test_keyed_store_rejects_unkeyed_checkpoints(self, store_path: Path) -> None:
        """A store opened with a secret refuses checkpoints written without one."""
        with open_store(store_path) as store:
            save_n(store, 1)
        with open_store(store_path, secret=b"k") as store:
            assert any("MAC" in p.what for p in store.verify().problems)
            with pytest.raises(CheckpointNotFoundError, match="MAC"):
                store.load("svc")


class TestFallback:
    def test_damaged_head_falls_back_and_says_why(
        self, store_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """When the head's chunk is damaged, load uses the previous generation and says so."""
        with open_store(store_path) as store:
            saved = save_n(store, 3)
            (digest,) = unique_digests(store, "svc", 3)
        rewrite_chunk(store_path, "svc", digest, flip(40))
        with open_store(store_path) as store:
            with caplog.at_level(logging.WARNING, logger="warmstart.store"):
                snapshot = store.load("svc")
            with snapshot:
                assert snapshot.generation == 2
                assert snapshot.section("records", RECORDS) == saved[2]
                (reason,) = snapshot.fallback
                assert reason.startswith("generation 3:")
                assert digest.hex() in reason
        messages = [r.getMessage() for r in caplog.records]
        assert any("fell back to generation 2" in m for m in messages)
        assert any("skipping generation 3" in m for m in messages)

    def test_falls_back_past_several(self, store_path: Path) -> None:
        """Two damaged generations are both skipped, newest first."""
        with open_store(store_path, keep=4) as store:
            saved = save_n(store, 4)
            damaged = [unique_digests(store, "svc", g).pop() for g in (4, 3)]
        for digest in damaged:
            rewrite_chunk(store_path, "svc", digest, flip(7))
        with open_store(store_path) as store, store.load("svc") as snapshot:
            assert snapshot.generation == 2
            assert snapshot.section("records", RECORDS) == saved[2]
            assert [r.split(":")[0] for r in snapshot.fallback] == ["generation 4", "generation 3"]

    def test_damaged_head_manifest_falls_back(self, store_path: Path) -> None:
        """A damaged head manifest is skipped like a damaged chunk."""
        with open_store(store_path) as store:
            saved = save_n(store, 2)
        damage_manifest(store_path, "svc", 2)
        with open_store(store_path) as store, store.load("svc") as snapshot:
            assert snapshot.generation == 1
            assert snapshot.section("records", RECORDS) == saved[1]

    def test_none_verifies(self, store_path: Path) -> None:
        """When every generation is damaged, load raises a clear error naming each one."""
        static = make_records(100)
        with open_store(store_path) as store:
            for i in range(3):
                store.save("svc", {"static": (RECORDS, static)}, watermark=i)
            (digest,) = store.manifest("svc").digests()
        rewrite_chunk(store_path, "svc", digest, flip(3))
        with open_store(store_path) as store, pytest.raises(CheckpointNotFoundError) as info:
            store.load("svc")
        message = str(info.value)
        assert "that verifies, none did" in message
        for generation in (1, 2, 3):
            assert f"generation {generation}:" in message

    def test_specific_generation_does_not_fall_back(self, store_path: Path) -> None:
        """Asking for a damaged generation by number fails instead of silently substituting."""
        with open_store(store_path) as store:
            save_n(store, 2)
            (digest,) = unique_digests(store, "svc", 2)
        rewrite_chunk(store_path, "svc", digest, flip(0))
        with open_store(store_path) as store, pytest.raises(CheckpointNotFoundError, match="gen"):
            store.load("svc", generation=2)

    def test_saves_continue_after_a_fallback(self, store_path: Path) -> None:
        """After falling back, the next save commits a new, healthy head."""
        with open_store(store_path) as store:
            save_n(store, 2)
            (digest,) = unique_digests(store, "svc", 2)
        rewrite_chunk(store_path, "svc", digest, flip(11))
        with open_store(store_path) as store:
            with store.load("svc") as snapshot:
                assert snapshot.fallback
            records = make_records(7, salt=5)
            assert store.save("svc", {"records": (RECORDS, records)}) == 3
            with store.load("svc") as snapshot:
                assert (snapshot.generation, snapshot.fallback) == (3, ())
                assert snapshot.section("records", RECORDS) == records

    def test_damaged_head_record(self, store_path: Path) -> None:
        """A head record whose lineage bytes are garbage neither fails a load nor the next save."""
        with open_store(store_path) as store:
            state: TrackedDict[str, Record] = TrackedDict(make_records(20))
            store.save("svc", {"state": (RECORDS, state)})
        with raw_env(store_path) as (env, _), env.begin(write=True) as txn:
            heads = env.open_db(b"heads", txn=txn)
            record = bytes(txn.get(b"svc", db=heads))
            txn.put(b"svc", record[:8] + b"\xe4\xff" + record[10:], db=heads)
        with open_store(store_path) as store:
            with store.load("svc") as snapshot:
                assert snapshot.section("state", RECORDS) == dict(state)
            state["k1"] = Record(1, "after", 0.0, [], True, "a")
            assert store.save("svc", {"state": (RECORDS, state)}) == 2
            assert store.generations("svc")[0].kind == "full"
            with store.load("svc") as snapshot:
                assert snapshot.section("state", RECORDS) == dict(state)


class TestGrowth:
    def test_the_whole_map_is_reserved_at_open(self, store_path: Path) -> None:
        """Address space, not disk: the map never grows, so open snapshots keep reading."""
        with open_store(store_path, max_map_size=1 << 36) as store:
            assert store._env.env.info()["map_size"] == 1 << 36
            store.save("small", {"b": (BLOBS, blobs(10))})
            snapshot = store.load("small")
            store.save("big", {"b": (BLOBS, blobs(3000, seed=1))})
            assert snapshot.section("b", BLOBS) == blobs(10)
            snapshot.close()
        assert (store_path / "data.mdb").stat().st_size < 16 << 20

    def test_a_refused_reservation_falls_back_to_growing(self, store_path: Path) -> None:
        """Under a ``ulimit -v`` the map starts small and grows; the store works."""
        child = run_child(
            """
            import os, resource, sys, msgspec, warmstart
            resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
            class Blob(msgspec.Struct):
                data: bytes
            blobs = warmstart.Contract("blob", Blob, key=int)
            with warmstart.Store(sys.argv[1], sync=False) as store:
                print(store._env.env.info()["map_size"])
                big = {i: Blob(os.urandom(1024)) for i in range(3000)}
                store.save("there", {"b": (blobs, big)})
                with store.load("there") as snapshot:
                    assert snapshot.section("b", blobs) == big
            """,
            str(store_path),
        )
        assert child.returncode == 0, child.stderr
        assert int(child.stdout.split()[0]) < 1 << 30
        assert "could not reserve" in child.stderr

    def test_map_grows_when_full(self, store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A save larger than the current map grows it and commits."""
        monkeypatch.setattr(env_module, "RESERVE_WHOLE_MAP", False)
        monkeypatch.setattr(env_module, "INITIAL_MAP", 1 << 20)
        with open_store(store_path) as store:
            store.save("svc", {"b": (BLOBS, blobs(10))})
            content = blobs(5000, seed=1)
            store.save("svc", {"b": (BLOBS, content)})
            assert store._env.env.info()["map_size"] >= 8 << 20
            with store.load("svc") as snapshot:
                assert snapshot.section("b", BLOBS) == content

    def test_capped_map_fails_cleanly(self, store_path: Path) -> None:
        """A save beyond max_map_size fails with StoreFullError; the previous generation stays."""
        with open_store(store_path, max_map_size=2 << 20) as store:
            small = blobs(10)
            store.save("svc", {"b": (BLOBS, small)})
            with pytest.raises(StoreFullError, match="max_map_size") as info:
                store.save("svc", {"b": (BLOBS, blobs(4000, seed=1))})
            assert isinstance(info.value, OSError)
            assert [g.generation for g in store.generations("svc")] == [1]
            with store.load("svc") as snapshot:
                assert snapshot.section("b", BLOBS) == small
            assert store.verify().ok
            assert store.save("svc", {"b": (BLOBS, blobs(20))}) == 2

    def test_open_snapshot_when_map_grows(
        self, store_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without the reservation, a snapshot open while a save grows the map fails cleanly."""
        monkeypatch.setattr(env_module, "RESERVE_WHOLE_MAP", False)
        monkeypatch.setattr(env_module, "INITIAL_MAP", 1 << 20)
        with open_store(store_path) as store:
            store.save("small", {"b": (BLOBS, blobs(10))})
            snapshot = store.load("small")
            store.save("big", {"b": (BLOBS, blobs(3000, seed=1))})
            with pytest.raises(StoreError, match="reload"):
                snapshot.section("b", BLOBS)
            snapshot.close()
            with store.load("small") as again:
                assert again.section("b", BLOBS) == blobs(10)

    def test_reader_follows_growth_by_another_process(
        self, store_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A store open here reads what another process wrote after growing the map."""
        monkeypatch.setattr(env_module, "RESERVE_WHOLE_MAP", False)
        monkeypatch.setattr(env_module, "INITIAL_MAP", 1 << 20)
        with open_store(store_path) as store:
            store.save("here", {"b": (BLOBS, blobs(10))})
            child = run_child(
                """
                import os, sys, msgspec, warmstart, warmstart.store._env as env_module
                env_module.INITIAL_MAP = 1 << 20
                env_module.RESERVE_WHOLE_MAP = False
                class Blob(msgspec.Struct):
                    data: bytes
                blobs = warmstart.Contract("blob", Blob, key=int)
                with warmstart.Store(sys.argv[1], sync=False) as store:
                    big = {i: Blob(os.urandom(1024)) for i in range(3000)}
                    store.save("there", {"b": (blobs, big)})
                """,
                str(store_path),
            )
            assert child.returncode == 0, child.stderr
            assert store.namespaces() == ["here", "there"]
            with store.load("there") as snapshot:
                assert len(snapshot.section("b", BLOBS)) == 3000
            with store.load("here") as snapshot:
                assert snapshot.section("b", BLOBS) == blobs(10)


def _mount_tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


class TestReadOnly:
    def test_read_only_open_reads_but_never_writes(self, store_path: Path) -> None:
        """A read-only store loads, lists and verifies, and refuses save, drop and gc."""
        with open_store(store_path) as store:
            saved = save_n(store, 2)
        with open_store(store_path, readonly=True) as store:
            assert store.readonly
            assert store.namespaces() == ["svc"]
            assert store.verify().ok
            with store.load("svc") as snapshot:
                assert snapshot.section("records", RECORDS) == saved[2]
            for attempt in (
                lambda: store.save("svc", {"records": (RECORDS, {})}),
                lambda: store.drop("svc"),
                store.gc,
            ):
                with pytest.raises(ReadOnlyStoreError, match="read-only"):
                    attempt()

    def test_read_only_open_of_missing_store(self, tmp_path: Path) -> None:
        """A read-only open of a path with no store fails and creates nothing."""
        path = tmp_path / "absent"
        with pytest.raises(StoreError, match=r"no data\.mdb"):
            open_store(path, readonly=True)
        assert not path.exists()

    def test_read_only_volume(self, tmp_path: Path) -> None:
        """On a read-only volume a read-only open works and a writable open says read-only."""
        mount = tmp_path / "volume"
        if not _mount_tmpfs(mount, "8m"):
            pytest.skip("needs root to mount a tmpfs")
        try:
            with open_store(mount / "store") as store:
                saved = save_n(store, 1)
            subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
            with (
                open_store(mount / "store", readonly=True) as store,
                store.load("svc") as snapshot,
            ):
                assert snapshot.section("records", RECORDS) == saved[1]
            with pytest.raises(ReadOnlyStoreError):
                open_store(mount / "store")
            with pytest.raises(ReadOnlyStoreError):
                open_store(mount / "new")
        finally:
            subprocess.run(["umount", str(mount)], check=False)


SAVER = """
import json, sys, msgspec, warmstart
class Item(msgspec.Struct):
    writer: int
    n: int
items = warmstart.Contract("item", Item, key=int)
path, writer, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
generations = []
with warmstart.Store(path, sync=False) as store:
    for n in range(count):
        section = {i: Item(writer, n) for i in range(200)}
        generations.append(store.save("shared", {"s": (items, section)}, watermark=[writer, n]))
        with store.load("shared") as snapshot:
            seen = {(v.writer, v.n) for v in snapshot.section("s", items).values()}
            assert seen == {tuple(snapshot.watermark)}, seen
print(json.dumps(generations))
"""


class TestMultiProcess:
    def test_writers_serialize(self, store_path: Path) -> None:
        """Several processes saving one namespace get distinct, gap-free generations."""
        with open_store(store_path):
            pass
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", SAVER, str(store_path), str(w), "15"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for w in range(3)
        ]
        generations = []
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            generations += json.loads(out)
        assert sorted(generations) == list(range(1, 46))
        with open_store(store_path) as store:
            assert store.generations("shared")[0].generation == 45

    def test_stale_reader_slot_is_cleared(self, store_path: Path) -> None:
        """A reader killed holding a snapshot loses its slot when a process next opens the store."""
        with open_store(store_path) as store:
            save_n(store, 1)
            code = (
                "import sys, time, warmstart\n"
                "store = warmstart.Store(sys.argv[1])\n"
                "snapshot = store.load('svc')\n"
                "print('ready', flush=True)\n"
                "time.sleep(60)\n"
            )
            with subprocess.Popen(
                [sys.executable, "-c", code, str(store_path)], stdout=subprocess.PIPE, text=True
            ) as reader:
                assert reader.stdout is not None
                assert reader.stdout.readline() == "ready\n"
                os.kill(reader.pid, signal.SIGKILL)
            assert reader.returncode == -signal.SIGKILL
            assert reader.pid in reader_pids(store)
            opener = run_child("import sys, warmstart; warmstart.Store(sys.argv[1]).close()",
                               str(store_path))  # fmt: skip
            assert opener.returncode == 0, opener.stderr
            assert reader.pid not in reader_pids(store)

    def test_store_opened_before_fork_works_in_child(self, store_path: Path) -> None:
        """A store opened before fork() is reopened in the child, and both sides keep working."""
        with open_store(store_path) as store:
            save_n(store, 1)
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child reports through its exit code
                code = 1
                try:
                    generation = store.save("svc", {"records": (RECORDS, make_records(4))})
                    with store.load("svc") as snapshot:
                        ok = snapshot.section("records", RECORDS) == make_records(4)
                    code = 0 if ok and generation == 2 else 2
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            with store.load("svc") as snapshot:
                assert snapshot.generation == 2
                assert snapshot.manifest.pid == pid
            assert store.save("svc", {"records": (RECORDS, make_records(1))}) == 3

    def test_fork_with_open_snapshot(self, store_path: Path) -> None:
        """A snapshot open at fork() keeps its reader slot whatever the child does."""
        with open_store(store_path) as store:
            saved = save_n(store, 1)
            snapshot = store.load("svc")
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child reports through its exit code
                code = 1
                try:
                    store.save("svc", {"records": (RECORDS, make_records(4))})
                    code = 0
                except StoreError as exc:
                    # Allowed when the binding refuses a second open: a clear refusal.
                    code = 0 if "fork" in str(exc) else 3
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            assert os.getpid() in reader_pids(store)
            with snapshot:
                assert snapshot.generation == 1
                assert snapshot.section("records", RECORDS) == saved[1]
