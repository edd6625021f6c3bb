"""Keyed stores against someone who can write ``data.mdb`` but lacks the secret (issue 17).

Frames (chunks, manifests) carry a MAC; before format 2 the records that decide
*which* generation a load returns (heads, quarantine records, the boot's
markers) did not. Each attack here edits a real store on disk through the
``lmdb`` package, as such a writer would, and checks what ``load``, ``boot``
and ``verify`` say. What a MAC cannot stop, the replay of a whole older state,
is caught by ``max_age`` and watermark validation instead.
"""

from __future__ import annotations

import contextlib
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lmdb
import pytest

import warmstart
from conftest import RECORDS, FakeClock, make_records
from warmstart import codec
from warmstart.codec import Codec
from warmstart.errors import StoreFormatError

SECRET = b"the team's secret"
NS = "svc"
GEN = struct.Struct(">Q")


@contextlib.contextmanager
def tables(path: Path) -> Iterator[tuple[Any, dict[str, Any]]]:
    """The store's environment and tables, opened with lmdb directly (the attacker's view)."""
    env = lmdb.open(str(path), max_dbs=4, map_size=1 << 30)
    try:
        yield env, {n: env.open_db(n.encode()) for n in ("meta", "heads", "manifests", "chunks")}
    finally:
        env.close()


def put(path: Path, table: str, key: bytes, value: bytes) -> None:
    with tables(path) as (env, dbs), env.begin(write=True) as txn:
        txn.put(key, value, db=dbs[table])


def get(path: Path, table: str, key: bytes) -> bytes | None:
    with tables(path) as (env, dbs), env.begin() as txn:
        value = txn.get(key, db=dbs[table])
        return None if value is None else bytes(value)


def delete(path: Path, table: str, key: bytes) -> None:
    with tables(path) as (env, dbs), env.begin(write=True) as txn:
        assert txn.delete(key, db=dbs[table]), (table, key)


def quarantine_key(generation: int, namespace: str = NS) -> bytes:
    return b"quarantine:" + namespace.encode() + b"\x00" + GEN.pack(generation)


def manifest_key(path: Path, generation: int, namespace: str = NS) -> bytes:
    nsid = get(path, "meta", b"ns:" + namespace.encode())
    assert nsid is not None
    return nsid + GEN.pack(generation)


def open_store(path: Path, **kwargs: Any) -> warmstart.Store:
    kwargs.setdefault("sync", False)
    kwargs.setdefault("secret", SECRET)
    return warmstart.Store(path, **kwargs)


def three_generations(path: Path, *, clock: FakeClock | None = None, **kwargs: Any) -> None:
    """Generations 1, 2, 3 of ``svc``; generation n holds make_records(n) with watermark n."""
    with open_store(path, clock=clock or FakeClock(), **kwargs) as store:
        for n in (1, 2, 3):
            store.save(NS, {"records": (RECORDS, make_records(n))}, watermark=n)


def loaded(path: Path, **kwargs: Any) -> tuple[int, tuple[str, ...]]:
    """(generation a load returns, its fallback)."""
    with open_store(path, **kwargs) as store, store.load(NS) as snapshot:
        assert snapshot.section("records", RECORDS) == make_records(snapshot.generation)
        return snapshot.generation, snapshot.fallback


def problems(path: Path, **kwargs: Any) -> list[str]:
    with open_store(path, readonly=True, **kwargs) as store:
        return [p.what for p in store.verify().problems]


@warmstart.warm(rows=RECORDS)
class Rows:
    def __init__(self) -> None:
        self.rows: dict[str, Any] = {}


def booted(path: Path, **options: Any) -> warmstart.BootReport:
    """The report of a boot of ``svc`` (on a store this test opens and closes)."""
    options.setdefault("signals", False)
    clock = options.pop("clock", None) or FakeClock()
    with (
        open_store(path, clock=clock) as store,
        warmstart.boot(store, namespace=NS, checkpoint_on_exit=False, clock=clock, **options) as b,
    ):
        Rows()
        b.close()  # no checkpoint: the store stays as the test left it
    return b.report


class TestForgedQuarantine:
    def test_forged_quarantine_record_is_not_obeyed(self, store_path: Path) -> None:
        """Before: load skipped the head for an older generation, said nothing, verify was clean."""
        three_generations(store_path)
        put(store_path, "meta", quarantine_key(3), b"forged by someone without the secret")
        assert loaded(store_path) == (3, ())
        (finding,) = problems(store_path)
        assert "quarantine record of generation 3" in finding
        assert "loads ignore it" in finding
        report = booted(store_path)
        assert (report.status, report.generation, report.fallback) == ("warm", 3, [])

    def test_quarantine_record_moved_from_another_generation_fails(self, store_path: Path) -> None:
        """A genuine sealed record copied under the head's key does not pass: the MAC binds it."""
        three_generations(store_path)
        with open_store(store_path) as store:
            store.quarantine(NS, 1, "crashed once")
        genuine = get(store_path, "meta", quarantine_key(1))
        assert genuine is not None
        put(store_path, "meta", quarantine_key(3), genuine)
        assert loaded(store_path) == (3, ())

    def test_genuine_quarantine_is_reported_as_a_skip(self, store_path: Path) -> None:
        """A load that skips a quarantined head says so, in the snapshot and the boot report."""
        three_generations(store_path)
        with open_store(store_path) as store:
            store.quarantine(NS, 3, "a boot died while restoring it")
        generation, fallback = loaded(store_path)
        assert generation == 2
        assert fallback == ("generation 3: quarantined: a boot died while restoring it",)
        assert problems(store_path) == [
            "head generation 3 is quarantined (a boot died while restoring it): loads skip it"
        ]
        report = booted(store_path)
        assert report.generation == 2
        assert report.fallback == list(fallback)
        assert report.reason == "newest generation that verifies (1 skipped)"

    def test_a_namespace_whose_generations_are_all_quarantined(self, store_path: Path) -> None:
        """Not "no checkpoint yet": a cold start that says why, as a failure."""
        three_generations(store_path)
        with open_store(store_path) as store:
            for generation in (1, 2, 3):
                store.quarantine(NS, generation, "crashed")
            with pytest.raises(warmstart.CheckpointNotFoundError) as info:
                store.load(NS)
        assert len(info.value.skipped) == 3
        with pytest.warns(warmstart.ColdStartWarning, match="quarantined: crashed"):
            report = booted(store_path)
        assert report.status == "cold"
        assert "quarantined" in report.reason

    def test_unkeyed_quarantine_is_reported_too(self, store_path: Path) -> None:
        """An unkeyed store has no MACs, but its loads report the skip all the same."""
        three_generations(store_path, secret=None)
        put(store_path, "meta", quarantine_key(3), b"set aside")
        assert loaded(store_path, secret=None) == (2, ("generation 3: quarantined: set aside",))


class TestDeletedGenerations:
    def test_deleted_head_manifest_is_reported(self, store_path: Path) -> None:
        """Deleting the newest manifest falls back, and says the head's generation is missing."""
        three_generations(store_path)
        delete(store_path, "manifests", manifest_key(store_path, 3))
        generation, fallback = loaded(store_path)
        assert generation == 2
        assert fallback == ("generation 3: named by the head, but its manifest is missing",)
        assert "head names generation 3, the newest stored is 2" in problems(store_path)
        report = booted(store_path)
        assert report.fallback == list(fallback)
        assert report.reason != "head generation"

    def test_deleted_head_record_and_manifests_are_reported(self, store_path: Path) -> None:
        """Deleting the head record too leaves generations without a head: reported."""
        three_generations(store_path)
        delete(store_path, "manifests", manifest_key(store_path, 3))
        delete(store_path, "heads", NS.encode())
        generation, (skip,) = loaded(store_path)
        assert generation == 2
        assert skip.startswith("head record: missing beside generations up to 2")
        (finding,) = problems(store_path)
        assert "no head record beside generations up to 2" in finding

    def test_forged_head_record_is_reported(self, store_path: Path) -> None:
        """A head rewritten without the secret (naming an older generation) fails its MAC."""
        three_generations(store_path)
        lineage = get(store_path, "heads", NS.encode())[8:-32]  # type: ignore[index]
        delete(store_path, "manifests", manifest_key(store_path, 3))
        put(store_path, "heads", NS.encode(), GEN.pack(2) + lineage)
        generation, (skip,) = loaded(store_path)
        assert generation == 2
        assert "head record" in skip
        assert "authentic" in skip
        assert any("head: " in p for p in problems(store_path))

    def test_head_moved_from_another_namespace_fails(self, store_path: Path) -> None:
        """A genuine sealed head copied under another namespace's key fails: the MAC binds it."""
        three_generations(store_path)
        with open_store(store_path) as store:
            store.save("other", {"records": (RECORDS, make_records(1))})
        other = get(store_path, "heads", b"other")
        assert other is not None
        put(store_path, "heads", NS.encode(), other)
        generation, (skip,) = loaded(store_path)
        assert generation == 3
        assert "head record" in skip

    def test_next_save_heals_a_forged_head(self, store_path: Path) -> None:
        """The next save writes a sealed head after the newest stored generation."""
        three_generations(store_path)
        put(store_path, "heads", NS.encode(), GEN.pack(1) + b"x")
        with open_store(store_path) as store:
            assert store.save(NS, {"records": (RECORDS, make_records(4))}) == 4
        assert loaded(store_path) == (4, ())
        assert problems(store_path) == []


class TestReplayOfAWholeOlderState:
    """What no MAC can see: an older copy of the whole store, every record genuine."""

    @pytest.fixture
    def replayed(self, tmp_path: Path, clock: FakeClock) -> Path:
        path = tmp_path / "store"
        with open_store(path, clock=clock) as store:
            store.save(NS, {"records": (RECORDS, make_records(1))}, watermark=1)
        shutil.copytree(path, tmp_path / "copy")
        clock.advance(3600)
        with open_store(path, clock=clock) as store:
            store.save(NS, {"records": (RECORDS, make_records(2))}, watermark=2)
        shutil.rmtree(path)
        shutil.copytree(tmp_path / "copy", path)  # the attacker puts the old copy back
        return path

    def test_a_mac_cannot_see_it(self, replayed: Path) -> None:
        assert loaded(replayed) == (1, ())
        assert problems(replayed) == []

    def test_max_age_catches_it(self, replayed: Path, clock: FakeClock) -> None:
        report = booted(replayed, clock=clock, max_age="30m")
        assert report.status == "cold"
        assert "3600s old" in report.reason

    def test_watermark_validation_catches_it(self, replayed: Path) -> None:
        seen: list[Any] = []

        def validate(watermark: Any) -> bool:
            seen.append(watermark)
            return bool(watermark >= 2)  # the source of truth is at position 2

        report = booted(replayed, validate=validate)
        assert seen == [1]
        assert report.status == "cold"
        assert "rejected by validate()" in report.reason


class TestMarkers:
    def test_forged_marker_does_not_quarantine(self, store_path: Path) -> None:
        """A "restoring" marker planted without the secret does not trip the breaker."""
        three_generations(store_path)
        with open_store(store_path) as store:
            marker = store.marker_file(NS, "restoring-999999-deadbeef")
        marker.parent.mkdir(exist_ok=True)
        marker.write_bytes(struct.pack(">Qd", 3, 0.0))
        report = booted(store_path)
        assert (report.status, report.generation) == ("warm", 3)
        with open_store(store_path) as store:
            assert store.quarantined(NS) == {}

    def test_genuine_marker_still_trips_the_breaker(self, store_path: Path) -> None:
        three_generations(store_path)
        with open_store(store_path) as store:
            store.set_marker(NS, "restoring-999999-deadbeef", struct.pack(">Qd", 3, 0.0))
        with pytest.warns(warmstart.ColdStartWarning, match="crash-loop breaker"):
            report = booted(store_path)
        assert report.status == "cold"
        with open_store(store_path) as store:
            assert list(store.quarantined(NS)) == [3]

    def test_a_marker_rewritten_in_place_stays_authentic(self, store_path: Path) -> None:
        """The breaker rewrites its marker in place (pwrite): each rewrite carries its MAC.

        A bare pwrite of the 17-byte state over a sealed marker left the old
        MAC behind it: the marker read as forged (ignored), so a boot that
        died in its second restore tripped no breaker.
        """
        from warmstart.boot._breaker import CrashLoopBreaker  # the boot wing's own

        three_generations(store_path)
        with open_store(store_path) as store:
            breaker = CrashLoopBreaker(NS)
            breaker.mark(store, 2, 1.0)  # created whole
            breaker.mark(store, 3, 2.0)  # rewritten in place
            assert store.markers(NS)[breaker.name] == struct.pack(">QdB", 3, 2.0, 1)
            breaker.clear(store)
            assert store.markers(NS)[breaker.name] == struct.pack(">QdB", 3, 2.0, 0)
            breaker.close(store)
            assert store.markers(NS) == {}


def to_legacy(path: Path) -> None:
    """Rewrite a keyed store of format 2 as 0.1 left it: unsealed heads and quarantine records."""
    with tables(path) as (env, dbs), env.begin(write=True) as txn:
        for key, value in list(txn.cursor(db=dbs["heads"])):
            txn.put(key, value[:-32], db=dbs["heads"])
        for key, value in list(txn.cursor(db=dbs["meta"])):
            if key.startswith(b"quarantine:"):
                txn.put(key, value[:-32], db=dbs["meta"])
        txn.put(b"store-format", b"1", db=dbs["meta"])


class TestFormats:
    def test_unkeyed_stores_keep_format_1(self, store_path: Path) -> None:
        """Unkeyed stores are written exactly as 0.1 wrote them: 0.1 can still read them."""
        three_generations(store_path, secret=None)
        assert get(store_path, "meta", b"store-format") == b"1"
        head = get(store_path, "heads", NS.encode())
        assert head is not None
        assert head[:8] == GEN.pack(3)
        assert len(head) == 8 + 16  # generation + lineage, no MAC

    def test_keyed_stores_are_format_2_and_sealed(self, store_path: Path) -> None:
        three_generations(store_path)
        assert get(store_path, "meta", b"store-format") == b"2"
        head = get(store_path, "heads", NS.encode())
        assert head is not None
        assert Codec(secret=SECRET).unseal(codec.SEAL_HEAD, NS.encode(), head)[:8] == GEN.pack(3)

    def test_a_keyed_01_store_is_sealed_at_its_first_writable_open(self, store_path: Path) -> None:
        three_generations(store_path)
        with open_store(store_path) as store:
            store.quarantine(NS, 1, "old crash")
        to_legacy(store_path)
        # Read-only, it reads as 0.1 left it.
        assert loaded(store_path, readonly=True) == (3, ())
        assert get(store_path, "meta", b"store-format") == b"1"
        # Writable: sealed, nothing lost, the quarantine kept (trusted on first use).
        assert loaded(store_path) == (3, ())
        assert get(store_path, "meta", b"store-format") == b"2"
        quarantine = get(store_path, "meta", quarantine_key(1))
        assert quarantine is not None
        assert Codec(secret=SECRET).unseal(
            codec.SEAL_QUARANTINE, quarantine_key(1), quarantine
        ) == (b"old crash")
        assert problems(store_path) == []

    def test_resetting_the_format_record_is_refused(self, store_path: Path) -> None:
        """Setting store-format back to 1 (so unsealed records would pass) is detected."""
        three_generations(store_path)
        put(store_path, "meta", b"store-format", b"1")
        with pytest.raises(StoreFormatError, match="reset"):
            open_store(store_path)

    def test_an_unkeyed_store_opened_with_a_secret_stays_unkeyed(self, store_path: Path) -> None:
        """A secret given by mistake does not convert an unkeyed store (nothing verifies)."""
        three_generations(store_path, secret=None)
        with (
            open_store(store_path) as store,
            pytest.raises(warmstart.CheckpointNotFoundError, match="MAC"),
        ):
            store.load(NS)
        assert get(store_path, "meta", b"store-format") == b"1"
        assert loaded(store_path, secret=None) == (3, ())

    def test_writing_a_keyed_store_without_its_secret_is_refused(self, store_path: Path) -> None:
        three_generations(store_path)
        with pytest.raises(StoreFormatError, match="pass secret="):
            warmstart.Store(store_path)
        with warmstart.Store(store_path, readonly=True) as store:
            assert store.namespaces() == [NS]
