"""Thread-safety between a service's threads and warmstart's saves and restores (found in review).

Each test uses a real store on disk and real threads; each fails on the code
as reviewed because of the interleaving its docstring describes.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

import warmstart

NS = "svc"


class Row(msgspec.Struct, frozen=True):
    """A value that names its own key."""

    key: str
    version: int


ROWS = warmstart.Contract("row", Row, key=str)


class PausingLock:
    """A section lock that, on release, pauses the saving thread until told to go on.

    It stands for a service lock held by a save that is slow to get the CPU:
    it lets a test run another save between this save's read of the
    container and its commit.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.read_done = threading.Event()
        self.go = threading.Event()

    def __enter__(self) -> PausingLock:
        self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
        self.read_done.set()
        assert self.go.wait(5)


# -- 1. two saves of one namespace from two threads --------------------------


def test_concurrent_saves_of_a_tracked_mapping_never_lose_a_change(store_path: Path) -> None:
    """Save B takes the change log (key "a"), save A takes it next (key "x") and
    commits generation 2 as a delta on 1 and moves the store's baseline to 2.
    B's delta was computed on generation 1 (its manifest lists generation 1's
    chunks), but the commit checks the head against the store's *current*
    baseline (2), so B commits generation 3 = generation 1 + "a". "x" was taken
    from the change log by A: no later delta ever writes it again.
    """
    rows = warmstart.TrackedDict({f"k{i}": Row(f"k{i}", i) for i in range(100)})
    with warmstart.Store(store_path, sync=False) as store:
        store.save(NS, {"s": (ROWS, rows)})  # generation 1, the baseline
        rows["a"] = Row("a", 1)
        gate = PausingLock()
        errors: list[BaseException] = []

        def save_b() -> None:
            try:
                store.save(NS, {"s": (ROWS, rows, gate)})
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        def save_a() -> None:
            try:
                store.save(NS, {"s": (ROWS, rows)})  # the periodic checkpoint, say
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        b = threading.Thread(target=save_b)
        b.start()
        assert gate.read_done.wait(5)
        rows["x"] = Row("x", 2)
        a = threading.Thread(target=save_a)
        a.start()
        a.join(0.3)  # unserialised, A commits here, while B waits between read and commit
        gate.go.set()
        b.join(5)
        a.join(5)
        assert not errors
        # The service is quiet now: one more checkpoint must leave the head exact.
        store.save(NS, {"s": (ROWS, rows)})
        with store.load(NS) as snapshot:
            saved = snapshot.section("s", ROWS)
        assert "x" in saved, "a change taken by a concurrent save was lost for good"
        assert saved == dict(rows)


# -- 2. progressive restore vs the service's invalidations -------------------


def _save_rows(store_path: Path, sections: dict[str, int]) -> None:
    """Generation 1: each section with ``n`` rows, written by contract version 1."""
    with warmstart.Store(store_path, sync=False) as store:
        store.save(
            NS,
            {
                name: (ROWS, {f"k{i}": Row(f"k{i}", i) for i in range(n)})
                for name, n in sections.items()
            },
        )


def _pausing_contract(pause_at: str, reached: threading.Event, go: threading.Event) -> Any:
    """Version 2 of ROWS; its upgrader (run per entry while a chunk is decoded)
    pauses the decoding thread at ``pause_at`` until ``go`` is set."""

    def upgrade(data: dict[str, Any]) -> dict[str, Any]:
        if data["key"] == pause_at and not go.is_set():
            reached.set()
            assert go.wait(5)
        return data

    return warmstart.Contract("row", Row, key=str, version=2, upgraders={1: upgrade})


class LockedLRU:
    """A tracked cachetools cache and the lock the service writes it under."""

    def __init__(self) -> None:
        cachetools = pytest.importorskip("cachetools")
        self.lock = threading.RLock()
        self.cache = warmstart.track(cachetools.LRUCache(maxsize=10_000))

    def pop(self, key: str, default: Any = None) -> Any:
        with self.lock:
            return self.cache.pop(key, default)


@pytest.mark.parametrize("how", ["pop", "del", "clear", "locked-cache"])
def test_background_restore_does_not_resurrect_a_key_the_service_removed(
    store_path: Path, how: str
) -> None:
    """A key the service removes (invalidates) while the background phase runs,
    before its cold chunk is inserted, must not come back with the saved
    (stale) value. Tracked mappings record such removals; a plain dict cannot
    (docs/concepts/progressive-restore.md).
    """
    n = 5000  # first base chunk: 2048 entries (cold), the rest: the hot chunk
    _save_rows(store_path, {"rows": n})
    reached, go = threading.Event(), threading.Event()
    contract = _pausing_contract("k0", reached, go)  # k0: the coldest entry

    locked = how == "locked-cache"

    @warmstart.warm(rows=warmstart.state(contract, section="rows"))
    class Service:
        def __init__(self) -> None:
            self.rows: Any = warmstart.TrackedDict()

    @warmstart.warm(rows=warmstart.state(contract, section="rows", lock="lock"))
    class CacheService:
        def __init__(self) -> None:
            self.guarded = LockedLRU()
            self.lock = self.guarded.lock
            self.rows = self.guarded.cache

    try:
        with warmstart.Boot(
            store_path, namespace=NS, signals=False, checkpoint_on_exit=False
        ) as boot:
            service: Any = CacheService() if locked else Service()
            assert f"k{n - 1}" in service.rows  # the hot part is in place
            assert reached.wait(5)  # the background phase is decoding the cold chunk
            assert "k5" not in service.rows
            # The source of truth changed: the service invalidates k5 (or everything).
            if how == "pop":
                assert service.rows.pop("k5", None) is None
            elif how == "del":
                with pytest.raises(KeyError):
                    del service.rows["k5"]
            elif how == "clear":
                service.rows.clear()
            else:
                assert service.guarded.pop("k5") is None
            go.set()
            assert boot.wait_ready(5)
            assert "k5" not in service.rows, "an invalidated key came back with its stale value"
            if how == "clear":
                assert len(service.rows) == 0
            else:
                assert len(service.rows) == n - 1  # everything else came back
            # Removal tracking ends with the restore: later deletions are plain again.
            assert service.rows._warm_log.removed is None
    finally:
        go.set()


# -- 3. a checkpoint while an object is being attached ------------------------


def test_periodic_checkpoint_never_saves_a_section_while_it_is_being_restored(
    store_path: Path,
) -> None:
    """Periodic checkpoints skip ticks until the restore is complete, but only
    ``ready``/``pending`` are checked, and neither covers an ``attach`` that is
    restoring right now (a second @warm object made after startup): the object
    is registered first, then restored without the boot's lock, so a tick in
    between saves its still empty container as the head.
    """
    n = 5000
    _save_rows(store_path, {"first": 10, "second": n})
    reached, go = threading.Event(), threading.Event()
    # Pause the hot phase (last base chunk) of the second object's restore.
    contract = _pausing_contract(f"k{n - 1}", reached, go)

    @warmstart.warm(rows=warmstart.state(ROWS, section="first"))
    class First:
        def __init__(self) -> None:
            self.rows: dict[str, Row] = {}

    @warmstart.warm(rows=warmstart.state(contract, section="second"))
    class Second:
        def __init__(self) -> None:
            self.rows: dict[str, Row] = {}

    try:
        with warmstart.Boot(
            store_path,
            namespace=NS,
            signals=False,
            interval=0.02,
            checkpoint_on_exit=False,
            store_options={"sync": False},
        ) as boot:
            First()
            assert boot.wait_ready(5)
            store = boot.store
            assert store is not None
            before = max(info.generation for info in store.generations(NS))
            # A second object, made by a request after startup (another
            # thread: not captured) and attached by hand.
            made = threading.Thread(target=lambda: boot.attach(Second()), daemon=True)
            made.start()
            assert reached.wait(5)  # its restore is under way
            newer, deadline = before, time.monotonic() + 1.5
            while time.monotonic() < deadline and newer == before:
                time.sleep(0.02)
                newer = max(info.generation for info in store.generations(NS))
            with store.load(NS, generation=newer) as snapshot:
                saved = snapshot.section("second", ROWS)
            go.set()
            made.join(5)
            assert len(saved) == n, (
                f"generation {newer} holds {len(saved)} of {n} entries of a section "
                "whose restore was in progress"
            )
    finally:
        go.set()


def test_tracked_dict_pop_keeps_dict_semantics() -> None:
    rows = warmstart.TrackedDict({"a": 1})
    rows.mark_clean()
    with pytest.raises(KeyError):
        rows.pop("missing")
    assert rows.pop("missing", 7) == 7
    assert rows.pop("a") == 1
    with pytest.raises(KeyError):
        del rows["a"]
    assert rows.take_changes().deletes == {"a"}


def test_a_restore_cancelled_by_shutdown_stops_recording_removals(store_path: Path) -> None:
    """The background phase never ran: the mapping must not record removals forever."""
    _save_rows(store_path, {"rows": 5000})

    @warmstart.warm(rows=warmstart.state(ROWS, section="rows"))
    class Service:
        def __init__(self) -> None:
            self.rows: Any = warmstart.TrackedDict()

    gate = threading.Event()
    boot = warmstart.Boot(store_path, namespace=NS, signals=False, checkpoint_on_exit=False)
    with boot:
        # Keep the worker busy so that the cold phase is still queued at shutdown.
        boot._background.add(lambda: gate.wait(5))
        service = Service()
        assert service.rows._warm_log.removed is not None  # recording while warming
        boot._stop.set()
        gate.set()
        assert boot.wait_ready(5)
    assert service.rows._warm_log.removed is None
    assert len(service.rows) < 5000  # the cold part was skipped, not restored
