"""Snapshots: one verified generation, read section by section from one read transaction."""

from __future__ import annotations

import gc
from pathlib import Path

import msgspec
import pytest

import warmstart
from conftest import RECORDS, FakeClock, Record, make_records
from warmstart import CheckpointNotFoundError, IncompatibleVersionError, Store, TrackedDict
from warmstart.store._snapshot import paused_gc


class RecordV2(msgspec.Struct):
    """Record with a field added in version 2."""

    id: int
    name: str
    score: float
    tags: list[int]
    active: bool
    kind: str
    region: str


RECORDS_V2 = warmstart.Contract(
    "record", RecordV2, key=str, version=2, upgraders={1: lambda old: {**old, "region": "eu"}}
)


class Other(msgspec.Struct):
    """A type no stored section was written with."""

    when: int
    what: bytes


OTHERS = warmstart.Contract("record", Other, key=str, version=1)


@pytest.fixture
def saved(store: Store) -> dict[str, dict[str, Record]]:
    content = {"records": make_records(5000), "flags": make_records(3, prefix="f")}
    store.save("svc", {name: (RECORDS, m) for name, m in content.items()}, watermark=77)
    return content


class TestSnapshotInfo:
    def test_describes_its_generation(
        self, store: Store, saved: dict[str, dict[str, Record]], clock: FakeClock
    ) -> None:
        """A snapshot names its namespace, generation, sections, watermark and age."""
        with store.load("svc") as snapshot:
            assert (snapshot.namespace, snapshot.generation) == ("svc", 1)
            assert snapshot.sections == ("records", "flags")
            assert snapshot.watermark == 77
            assert snapshot.fallback == ()
            assert snapshot.age(clock.now + 90) == 90
            assert snapshot.age() > 0
            assert repr(snapshot) == (
                "Snapshot(namespace='svc', generation=1, sections=['records', 'flags'])"
            )

    def test_section_manifest(self, store: Store, saved: dict[str, dict[str, Record]]) -> None:
        """section_manifest() gives a section's entries and chunks; an unknown one is not found."""
        with store.load("svc") as snapshot:
            assert snapshot.section_manifest("flags").entries == 3
            with pytest.raises(CheckpointNotFoundError, match=r"found \['records', 'flags'\]"):
                snapshot.section_manifest("missing")


class TestSnapshotReading:
    def test_read_returns_entries_and_stats(
        self, store: Store, saved: dict[str, dict[str, Record]]
    ) -> None:
        """read() replays a section and reports entries, chunks, bytes and time."""
        with store.load("svc") as snapshot:
            section = snapshot.read("records", RECORDS)
            manifest = snapshot.section_manifest("records")
        assert list(section.entries.items()) == list(saved["records"].items())
        assert section.expires == {}
        stats = section.stats
        assert (stats.name, stats.restored, stats.dropped_invalid) == ("records", 5000, 0)
        assert stats.chunks == len(manifest.chunks) > 1
        assert stats.bytes == manifest.stored_bytes
        assert stats.seconds >= 0

    def test_chunks_stream_in_replay_order(
        self, store: Store, saved: dict[str, dict[str, Record]]
    ) -> None:
        """chunks() yields each chunk decoded, in manifest order, one at a time."""
        with store.load("svc") as snapshot:
            stream = snapshot.chunks("records", RECORDS)
            first_ref, first = next(stream)
            assert first_ref == snapshot.section_manifest("records").base[0]
            rest = list(stream)
        keys = first.keys + [k for _, decoded in rest for k in decoded.keys]
        assert keys == list(saved["records"])

    def test_chunks_of_chosen_refs(self, store: Store, saved: dict[str, dict[str, Record]]) -> None:
        """chunks(refs=...) decodes only the chunks asked for (the hot tail first, say)."""
        with store.load("svc") as snapshot:
            last = snapshot.section_manifest("records").chunks[-1]
            ((ref, decoded),) = list(snapshot.chunks("records", RECORDS, refs=(last,)))
        assert ref == last
        assert decoded.keys[-1] == "k4999"
        assert len(decoded.keys) == last.entries

    def test_deltas_replay_after_the_base(self, store: Store) -> None:
        """A delta generation replays base then deltas: upserts move to the end, deletes vanish."""
        state: TrackedDict[str, Record] = TrackedDict(make_records(5))
        store.save("svc", {"s": (RECORDS, state)})
        state["k1"] = Record(-1, "moved", 0.0, [], False, "m")
        del state["k3"]
        state["new"] = Record(9, "new", 0.0, [], True, "n")
        store.save("svc", {"s": (RECORDS, state)})
        with store.load("svc") as snapshot:
            section = snapshot.read("s", RECORDS)
        assert list(section.entries) == ["k0", "k2", "k4", "k1", "new"]
        assert section.entries["k1"].name == "moved"
        assert section.stats.chunks == 2

    def test_older_writer_is_upgraded(
        self, store: Store, saved: dict[str, dict[str, Record]]
    ) -> None:
        """A section written by version 1 reads through the upgraders into version 2."""
        with store.load("svc") as snapshot:
            section = snapshot.read("flags", RECORDS_V2)
        assert section.stats.upgraded == 3
        assert {v.region for v in section.entries.values()} == {"eu"}

    def test_incompatible_contract_fails_before_reading(
        self, store: Store, saved: dict[str, dict[str, Record]]
    ) -> None:
        """A contract that cannot read the writer's schema fails at once, naming the field."""
        with store.load("svc") as snapshot:
            with pytest.raises(IncompatibleVersionError):
                next(snapshot.chunks("records", OTHERS))
            assert snapshot.section("flags", RECORDS) == saved["flags"]

    def test_closed_snapshot_refuses_reads(
        self, store: Store, saved: dict[str, dict[str, Record]]
    ) -> None:
        """After close() (or the with block) sections cannot be read; closing twice is fine."""
        with store.load("svc") as snapshot:
            pass
        with pytest.raises(CheckpointNotFoundError, match="closed"):
            snapshot.section("flags", RECORDS)
        snapshot.close()


class TestSnapshotIsolation:
    def test_sees_one_generation_despite_later_saves(self, store_path: Path) -> None:
        """An open snapshot reads its generation even after newer saves collected its chunks."""
        with Store(store_path, keep=1, sync=False) as store:
            first = make_records(3000)
            store.save("svc", {"r": (RECORDS, first)})
            snapshot = store.load("svc")
            for i in range(5):
                store.save("svc", {"r": (RECORDS, make_records(3000, salt=i + 1))})
            assert [g.generation for g in store.generations("svc")] == [6]
            with snapshot:
                assert snapshot.generation == 1
                assert snapshot.section("r", RECORDS) == first
            with store.load("svc") as newest:
                assert newest.section("r", RECORDS) == make_records(3000, salt=5)

    def test_two_snapshots_at_once(self, store: Store) -> None:
        """Two snapshots of different generations can be read side by side."""
        store.save("svc", {"r": (RECORDS, make_records(10))})
        store.save("svc", {"r": (RECORDS, make_records(10, salt=1))})
        with store.load("svc", generation=1) as old, store.load("svc") as new:
            assert old.section("r", RECORDS) == make_records(10)
            assert new.section("r", RECORDS) == make_records(10, salt=1)


class TestPausedGc:
    def test_pauses_and_restores(self) -> None:
        """The collector is off inside and back to its previous state after, even on error."""
        seen: list[bool] = []

        def fail() -> None:
            with paused_gc():
                seen.append(gc.isenabled())
                raise RuntimeError

        assert gc.isenabled()
        with pytest.raises(RuntimeError):
            fail()
        assert seen == [False]
        assert gc.isenabled()
        gc.disable()
        try:
            with paused_gc():
                pass
            assert not gc.isenabled()
        finally:
            gc.enable()

    def test_freeze_moves_survivors_to_the_permanent_generation(
        self, store: Store, saved: dict[str, dict[str, Record]]
    ) -> None:
        """read(freeze_gc=True) freezes what it built, so later collections skip it."""
        gc.unfreeze()
        try:
            with store.load("svc") as snapshot:
                snapshot.read("records", RECORDS, freeze_gc=True)
            assert gc.get_freeze_count() > 0
        finally:
            gc.unfreeze()

    def test_an_eager_restore_into_an_lru_cache_leaves_nothing_young(self, tmp_path: Path) -> None:
        """The cache's new recency list is promoted with the entries: no young walk of it later."""
        import cachetools

        @warmstart.warm(cache=warmstart.state(RECORDS))
        class Service:
            def __init__(self) -> None:
                self.cache: cachetools.LRUCache[str, Record] = cachetools.LRUCache(maxsize=50_000)

        with warmstart.boot(tmp_path, namespace="svc", signals=False):
            Service().cache.update(make_records(20_000))
        with warmstart.boot(tmp_path, namespace="svc", signals=False, progressive=False) as boot:
            service = Service()
            assert boot.report.status == "warm"
            order = vars(service.cache)["_LRUCache__order"]
            assert len(order) == 20_000
            young = gc.get_objects(generation=0) + gc.get_objects(generation=1)
            assert not [obj for obj in young if obj is order]
