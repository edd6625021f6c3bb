"""Damaged keys and records in a real store: clear errors, and no good data lost.

Each test damages an LMDB environment on disk through the ``lmdb`` package
(the tables and key layouts of ``warmstart.store._tables`` and ``warmstart.store._records``)
and then uses the store only through its public API.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lmdb
import msgspec
import pytest

from conftest import RECORDS, Record, make_records
from warmstart import CheckpointNotFoundError, IntegrityError, Store, TrackedDict
from warmstart.codec import digest
from warmstart.errors import StoreFormatError

GEN = struct.Struct(">Q")
NSID = struct.Struct(">I")
Saved = dict[str, dict[int, dict[str, Record]]]


def open_store(path: Path, **kwargs: Any) -> Store:
    kwargs.setdefault("sync", False)
    return Store(path, **kwargs)


@contextlib.contextmanager
def tables(path: Path) -> Iterator[tuple[Any, dict[str, Any]]]:
    """The store's environment and its four tables, opened with lmdb directly."""
    env = lmdb.open(str(path), max_dbs=4, map_size=1 << 30)
    try:
        yield (
            env,
            {name: env.open_db(name.encode()) for name in ("meta", "heads", "manifests", "chunks")},
        )
    finally:
        env.close()


def get(path: Path, table: str, key: bytes) -> bytes:
    with tables(path) as (env, dbs), env.begin() as txn:
        value = txn.get(key, db=dbs[table])
    assert value is not None, (table, key)
    return bytes(value)


def put(path: Path, table: str, key: bytes, value: bytes) -> None:
    with tables(path) as (env, dbs), env.begin(write=True) as txn:
        txn.put(key, value, db=dbs[table])


def delete(path: Path, table: str, key: bytes) -> None:
    with tables(path) as (env, dbs), env.begin(write=True) as txn:
        assert txn.delete(key, db=dbs[table]), (table, key)


def keys(path: Path, table: str) -> set[bytes]:
    with tables(path) as (env, dbs), env.begin() as txn, txn.cursor(db=dbs[table]) as cur:
        return {bytes(k) for k in cur.iternext(values=False)}


def open_keys(store: Store, table: str) -> set[bytes]:
    """Keys of a table of an open store (LMDB refuses a second open in one process)."""
    with store._env.read() as txn, txn.cursor(db=store._tables._db(table)) as cur:
        return {bytes(k) for k in cur.iternext(values=False)}


def nsid(path: Path, namespace: str) -> bytes:
    return get(path, "meta", b"ns:" + namespace.encode())


def manifest_key(path: Path, namespace: str, generation: int) -> bytes:
    return nsid(path, namespace) + GEN.pack(generation)


def content(namespace: str, generation: int) -> dict[str, Record]:
    return make_records(30, prefix=f"{namespace}-", salt=1000 * generation)


@pytest.fixture
def saved(store_path: Path) -> Saved:
    """Three generations of "svc" and two of "other", all retained (keep=3)."""
    out: Saved = {"svc": {}, "other": {}}
    with open_store(store_path) as store:
        for namespace, count in (("svc", 3), ("other", 2)):
            for g in range(1, count + 1):
                records = content(namespace, g)
                assert store.save(namespace, {"records": (RECORDS, records)}) == g
                out[namespace][g] = records
    return out


def section(store: Store, namespace: str, generation: int | None = None) -> Any:
    with store.load(namespace, generation=generation) as snapshot:
        return snapshot.generation, snapshot.section("records", RECORDS)


def assert_intact(store: Store, saved: Saved, *namespaces: str) -> None:
    """Every saved generation of ``namespaces`` still loads, with what was saved."""
    for namespace in namespaces or tuple(saved):
        for generation, records in saved[namespace].items():
            assert section(store, namespace, generation) == (generation, records)


class TestHeadKeys:
    @pytest.mark.parametrize("key", [b"\xff\xfe", b"sv\xe4", b"a\x00b", b"x" * 300])
    def test_namespaces_skip_and_log_a_key_naming_no_namespace(
        self, store_path: Path, saved: Saved, key: bytes, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A head key that is not a namespace name is left out of namespaces() and logged."""
        put(store_path, "heads", key, get(store_path, "heads", b"svc"))
        with open_store(store_path) as store, caplog.at_level(logging.WARNING, "warmstart"):
            assert store.namespaces() == ["other", "svc"]
            assert section(store, "svc") == (3, saved["svc"][3])
        assert any(repr(key) in r.getMessage() for r in caplog.records)

    def test_gc_and_verify_go_on_past_a_key_that_is_not_utf8(
        self, store_path: Path, saved: Saved
    ) -> None:
        """gc frees nothing good; verify names the damaged key and checks the rest."""
        put(store_path, "heads", b"\xff\xfe", get(store_path, "heads", b"svc"))
        chunks = keys(store_path, "chunks")
        with open_store(store_path) as store:
            assert store.gc() == 0
            report = store.verify()
            assert_intact(store, saved)
        assert keys(store_path, "chunks") == chunks
        (problem,) = report.problems
        assert (problem.generation, problem.chunk) == (None, None)
        assert "\\xff\\xfe" in problem.namespace
        assert "head key" in problem.what
        assert (report.namespaces, report.generations) == (2, 5)

    def test_gc_collects_under_an_id_whose_name_is_not_utf8(
        self, store_path: Path, saved: Saved
    ) -> None:
        """A namespace id record with a damaged name is still collected by its id, alone."""
        stray = NSID.pack(99) + b"\x01" * 16
        put(store_path, "meta", b"ns:\xff\xfe", NSID.pack(99))
        put(store_path, "chunks", stray, b"stray frame")
        chunks = keys(store_path, "chunks")
        with open_store(store_path) as store:
            assert store.gc() == 1
            assert_intact(store, saved)
        assert keys(store_path, "chunks") == chunks - {stray}

    def test_a_lost_head_key_never_overwrites_a_generation(
        self, store_path: Path, saved: Saved
    ) -> None:
        """With its head key gone, a namespace loads, and a save numbers after its generations."""
        record = get(store_path, "heads", b"svc")
        delete(store_path, "heads", b"svc")
        put(store_path, "heads", b"sv\xe4", record)
        with open_store(store_path) as store:
            assert store.namespaces() == ["other"]
            assert section(store, "svc") == (3, saved["svc"][3])
            fresh = content("svc", 4)
            assert store.save("svc", {"records": (RECORDS, fresh)}) == 4
            assert section(store, "svc") == (4, fresh)
            del saved["svc"][1]  # retention: keep=3
            assert_intact(store, saved)
            assert store.namespaces() == ["other", "svc"]


class TestHeadRecord:
    @pytest.mark.parametrize("length", range(8))
    def test_short_record_reads_go_on(self, store_path: Path, saved: Saved, length: int) -> None:
        """A head of 0-7 bytes: loads and listings use the manifests; manifest() says what broke."""
        put(store_path, "heads", b"svc", get(store_path, "heads", b"svc")[:length])
        with open_store(store_path) as store:
            assert store.namespaces() == ["other", "svc"]
            assert section(store, "svc") == (3, saved["svc"][3])
            listed = store.generations("svc")
            assert [(g.generation, g.head) for g in listed] == [(3, False), (2, False), (1, False)]
            with pytest.raises(IntegrityError, match=r"head record of namespace 'svc'"):
                store.manifest("svc")
            assert store.manifest("svc", 2).generation == 2
            (problem,) = store.verify().problems
            assert (problem.namespace, problem.generation) == ("svc", None)
            assert problem.what.startswith("head: ")
            assert store.gc() == 0
            assert_intact(store, saved)

    @pytest.mark.parametrize("length", range(8))
    def test_short_record_save_repairs_it(
        self, store_path: Path, saved: Saved, length: int
    ) -> None:
        """The next save follows the newest stored generation and rewrites the head."""
        put(store_path, "heads", b"svc", get(store_path, "heads", b"svc")[:length])
        with open_store(store_path) as store:
            fresh = content("svc", 4)
            assert store.save("svc", {"records": (RECORDS, fresh)}) == 4
            assert section(store, "svc") == (4, fresh)
            assert store.manifest("svc").generation == 4
            assert [g.head for g in store.generations("svc")] == [True, False, False]
            assert store.verify().ok
            del saved["svc"][1]
            assert_intact(store, saved)

    def test_short_record_turns_a_delta_into_a_base(self, store_path: Path) -> None:
        """A tracked mapping saved after its head was damaged writes a full base."""
        state: TrackedDict[str, Record] = TrackedDict(make_records(20))
        with open_store(store_path) as store:
            store.save("svc", {"records": (RECORDS, state)})
            # Damaged while this process holds a baseline (through the open handle:
            # LMDB refuses a second open of the environment in one process).
            store._env.write(
                lambda txn: txn.put(b"svc", b"\x00\x00\x01", db=store._tables._db("heads"))
            )
            state["k1"] = Record(1, "after", 0.0, [], True, "a")
            assert store.save("svc", {"records": (RECORDS, state)}) == 2
            assert store.generations("svc")[0].kind == "full"
            assert section(store, "svc") == (2, dict(state))
            state["k2"] = Record(2, "later", 0.0, [], True, "b")
            assert store.save("svc", {"records": (RECORDS, state)}) == 3
            assert store.generations("svc")[0].kind == "delta"
            assert section(store, "svc") == (3, dict(state))

    @pytest.mark.parametrize("named", [0, 2, 99, (1 << 64) - 1])
    def test_head_naming_another_generation(
        self, store_path: Path, saved: Saved, named: int
    ) -> None:
        """A head naming a missing (or an older) generation: loads use the newest stored one,
        a save numbers after it and overwrites nothing, and verify names the head."""
        record = get(store_path, "heads", b"svc")
        put(store_path, "heads", b"svc", GEN.pack(named) + record[8:])
        with open_store(store_path) as store:
            assert section(store, "svc") == (3, saved["svc"][3])
            (problem,) = store.verify().problems
            assert (problem.namespace, problem.generation) == ("svc", named)
            assert f"head names generation {named}" in problem.what
            if named != 2:
                with pytest.raises(IntegrityError, match=f"it names {named}"):
                    store.manifest("svc")
            assert store.gc() == 0
            assert_intact(store, saved)
            fresh = content("svc", 4)
            assert store.save("svc", {"records": (RECORDS, fresh)}) == 4
            assert section(store, "svc") == (4, fresh)
            assert store.verify().ok
            del saved["svc"][1]
            assert_intact(store, saved)


class TestManifestRecords:
    @pytest.mark.parametrize(
        "garbage", ["empty", "short", "random", "other generation", "other namespace"]
    )
    def test_garbage_manifest(self, store_path: Path, saved: Saved, garbage: str) -> None:
        """A garbage head manifest: load falls back, listings skip it, gc keeps every chunk,
        verify names it, and the next save works; the other namespace is untouched."""
        target = manifest_key(store_path, "svc", 3)
        value = {
            "empty": b"",
            "short": b"\x00" * 7,
            "random": bytes(range(256)) * 2,
            "other generation": get(store_path, "manifests", manifest_key(store_path, "svc", 2)),
            "other namespace": get(store_path, "manifests", manifest_key(store_path, "other", 2)),
        }[garbage]
        put(store_path, "manifests", target, value)
        chunks = keys(store_path, "chunks")
        with open_store(store_path) as store:
            with store.load("svc") as snapshot:
                assert snapshot.generation == 2
                assert snapshot.section("records", RECORDS) == saved["svc"][2]
                (reason,) = snapshot.fallback
                assert reason.startswith("generation 3:")
            with pytest.raises(CheckpointNotFoundError):
                store.load("svc", generation=3)
            assert [g.generation for g in store.generations("svc")] == [2, 1]
            (problem,) = store.verify().problems
            assert (problem.namespace, problem.generation) == ("svc", 3)
            assert problem.what.startswith("manifest: ")
            assert store.gc() == 0
            assert open_keys(store, "chunks") == chunks
            del saved["svc"][3]
            assert_intact(store, saved)
            fresh = content("svc", 4)
            assert store.save("svc", {"records": (RECORDS, fresh)}) == 4
            assert section(store, "svc") == (4, fresh)
            assert_intact(store, saved, "other")
            assert section(store, "svc", 2) == (2, saved["svc"][2])

    def test_verified_manifest_with_a_string_that_is_not_utf8(
        self, store_path: Path, saved: Saved
    ) -> None:
        """A manifest whose digest verifies but whose text is not UTF-8 counts as damaged:
        load falls back, listings skip it, verify names it, gc keeps every chunk."""
        with open_store(store_path) as store:
            codec = store.codec
            manifest = store.manifest("svc", 3)
        host = manifest.host.encode()
        payload = msgspec.msgpack.encode(manifest).replace(host, b"\xff" * len(host))
        frame = codec.encode(payload)
        put(store_path, "manifests", manifest_key(store_path, "svc", 3), digest(frame) + frame)
        chunks = keys(store_path, "chunks")
        with open_store(store_path) as store:
            assert section(store, "svc") == (2, saved["svc"][2])
            assert [g.generation for g in store.generations("svc")] == [2, 1]
            with pytest.raises(IntegrityError, match="malformed"):
                store.manifest("svc", 3)
            (problem,) = store.verify().problems
            assert (problem.namespace, problem.generation) == ("svc", 3)
            assert store.gc() == 0
            assert open_keys(store, "chunks") == chunks
            del saved["svc"][3]
            assert_intact(store, saved)

    def test_malformed_manifest_key(self, store_path: Path, saved: Saved) -> None:
        """A manifest key of the wrong length is skipped and logged, and stops collection of
        its namespace only: another namespace's stray chunk is still freed."""
        svc, other = nsid(store_path, "svc"), nsid(store_path, "other")
        value = get(store_path, "manifests", svc + GEN.pack(3))
        malformed = svc + b"\x00\x03"
        put(store_path, "manifests", malformed, value)
        strays = [svc + b"\x01" * 16, other + b"\x01" * 16]
        for stray in strays:
            put(store_path, "chunks", stray, b"stray frame")
        with open_store(store_path) as store:
            assert section(store, "svc") == (3, saved["svc"][3])
            assert store.gc() == 1
            assert strays[0] in open_keys(store, "chunks")
            assert strays[1] not in open_keys(store, "chunks")
            records = [p for p in store.verify().problems if p.chunk is None]
            assert [(p.namespace, p.what) for p in records] == [
                ("svc", f"manifest key {malformed.hex()} is malformed")
            ]
            assert store.save("svc", {"records": (RECORDS, content("svc", 4))}) == 4
            del saved["svc"][1]
            assert_intact(store, saved)

    def test_manifest_key_at_the_last_generation_number(
        self, store_path: Path, saved: Saved
    ) -> None:
        """A manifest key damaged to the last generation number: loads fall back past it,
        a save says which key is damaged, and nothing is lost."""
        svc = nsid(store_path, "svc")
        value = get(store_path, "manifests", svc + GEN.pack(3))
        delete(store_path, "manifests", svc + GEN.pack(3))
        put(store_path, "manifests", svc + b"\xff" * 8, value)
        with open_store(store_path) as store:
            with store.load("svc") as snapshot:
                assert snapshot.generation == 2
            with pytest.raises(IntegrityError, match=r"after 18446744073709551615 .* damaged"):
                store.save("svc", {"records": (RECORDS, content("svc", 4))})
            assert store.save("other", {"records": (RECORDS, content("other", 3))}) == 3
            del saved["svc"][3]
            assert_intact(store, saved, "svc")


class TestNamespaceIds:
    @pytest.mark.parametrize("value", [b"", b"\x00\x00", b"\x00\x00\x00\x01\x00"])
    def test_damaged_id(self, store_path: Path, saved: Saved, value: bytes) -> None:
        """A damaged id record: load, save and manifest() raise IntegrityError naming it;
        listings and gc go on; another namespace loses nothing; drop clears the way."""
        put(store_path, "meta", b"ns:svc", value)
        chunks = keys(store_path, "chunks")
        with open_store(store_path) as store:
            for call in (
                lambda: store.load("svc"),
                lambda: store.manifest("svc"),
                lambda: store.save("svc", {"records": (RECORDS, content("svc", 4))}),
            ):
                with pytest.raises(IntegrityError, match=r"id for namespace 'svc'.*damaged"):
                    call()
            assert store.namespaces() == ["other", "svc"]
            assert store.generations("svc") == []
            assert store.gc() == 0
            assert open_keys(store, "chunks") == chunks
            (problem,) = store.verify().problems
            assert (problem.namespace, problem.generation) == ("svc", None)
            assert problem.what.startswith("namespace id: ")
            assert store.drop("svc")
            assert open_keys(store, "chunks") == chunks
            assert_intact(store, saved, "other")
            fresh = content("svc", 1)
            assert store.save("svc", {"records": (RECORDS, fresh)}) == 1
            assert section(store, "svc") == (1, fresh)
            assert_intact(store, saved, "other")

    def test_drop_keeps_data_of_an_id_another_namespace_claims(
        self, store_path: Path, saved: Saved
    ) -> None:
        """A namespace whose id was damaged into another's is dropped without that one's data."""
        put(store_path, "meta", b"ns:svc", nsid(store_path, "other"))
        with open_store(store_path) as store:
            assert store.drop("svc")
            assert store.namespaces() == ["other"]
            assert_intact(store, saved, "other")

    def test_save_refuses_an_id_another_namespace_claims(
        self, store_path: Path, saved: Saved
    ) -> None:
        """Saving under an id damaged into another namespace's is refused: numbering after
        that namespace's generations would make retention expire them."""
        put(store_path, "meta", b"ns:svc", nsid(store_path, "other"))
        with open_store(store_path) as store:
            for _ in range(4):  # keep=3: each save would have expired one of other's
                with pytest.raises(IntegrityError, match="namespace id record is damaged"):
                    store.save("svc", {"records": (RECORDS, content("svc", 9))})
            assert_intact(store, saved, "other")
            assert [g.generation for g in store.generations("other")] == [2, 1]

    @pytest.mark.parametrize("counter", [b"", b"\x01", b"\xff\xff\xff\xff"])
    def test_damaged_id_counter(self, store_path: Path, saved: Saved, counter: bytes) -> None:
        """A damaged id counter is recounted: a new namespace gets an id nobody holds."""
        put(store_path, "meta", b"ns-next", counter)
        with open_store(store_path) as store:
            fresh = content("new", 1)
            assert store.save("new", {"records": (RECORDS, fresh)}) == 1
            assert section(store, "new") == (1, fresh)
            assert_intact(store, saved)
        ids = {nsid(store_path, name) for name in ("svc", "other", "new")}
        assert len(ids) == 3
        assert get(store_path, "meta", b"ns-next") == NSID.pack(3)


class TestOtherRecords:
    def test_malformed_quarantine_key(
        self, store_path: Path, saved: Saved, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A quarantine key too short to name a generation is skipped and logged."""
        with open_store(store_path) as store:
            store.quarantine("svc", 3, "crashed")
        put(store_path, "meta", b"quarantine:svc\x00\x01", b"why")
        with open_store(store_path) as store, caplog.at_level(logging.WARNING, "warmstart"):
            assert store.quarantined("svc") == {3: "crashed"}
            assert section(store, "svc") == (2, saved["svc"][2])
        assert any("malformed quarantine key" in r.getMessage() for r in caplog.records)

    def test_format_record_that_is_no_number(self, store_path: Path, saved: Saved) -> None:
        """A format record that is not a number is called damaged, not another release's."""
        put(store_path, "meta", b"store-format", b"\xff\x00")
        with pytest.raises(StoreFormatError, match="the record is damaged"):
            open_store(store_path)

    def test_a_quarantine_record_does_not_outlive_its_generation(
        self, store_path: Path, saved: Saved
    ) -> None:
        """A generation saved under the number of a lost, quarantined one is not set aside;
        a quarantined one stays out of keep's count until it is a week old, and then
        retention expires it with its quarantine record."""
        with open_store(store_path) as store:
            store.quarantine("svc", 3, "a boot died restoring it")
            store.quarantine("svc", 1, "a boot died restoring it")
        delete(store_path, "manifests", manifest_key(store_path, "svc", 3))  # lost
        with open_store(store_path) as store:
            fresh = content("svc", 7)
            assert store.save("svc", {"records": (RECORDS, fresh)}) == 3
            assert section(store, "svc") == (3, fresh)
            assert store.quarantined("svc") == {1: "a boot died restoring it"}
            store.save("svc", {"records": (RECORDS, content("svc", 8))})  # keep=3 good ones
            assert [g.generation for g in store.generations("svc")] == [4, 3, 2, 1]
            assert store.quarantined("svc") == {1: "a boot died restoring it"}
        week_later = time.time() + 8 * 86400
        with open_store(store_path, clock=lambda: week_later) as store:
            store.save("svc", {"records": (RECORDS, content("svc", 9))})  # expires 2 and 1
            assert [g.generation for g in store.generations("svc")] == [5, 4, 3]
            assert store.quarantined("svc") == {}
