"""The background checkpointer: periodic delta saves, one at a time, failures contained."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, KeysView, MutableMapping
from pathlib import Path
from typing import Any

import msgspec
import pytest

import warmstart

NS = "svc"


class Row(msgspec.Struct):
    """A record kept in the checkpointed state."""

    n: int


ROWS = warmstart.Contract("row", Row, key=str)


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def head(store: warmstart.Store) -> dict[str, Row]:
    with store.load(NS) as snapshot:
        return snapshot.section("s", ROWS)


class SlowMapping(MutableMapping[str, Row]):
    """An untracked mapping whose full read (one per save) is slow and watched."""

    def __init__(self, data: dict[str, Row], delay: float) -> None:
        self.data = data
        self.delay = delay
        self.active = 0
        self.max_active = 0
        self.reads = 0
        self.reading = threading.Event()
        self._lock = threading.Lock()

    def keys(self) -> KeysView[str]:
        with self._lock:
            self.active += 1
            self.reads += 1
            self.max_active = max(self.max_active, self.active)
        self.reading.set()
        time.sleep(self.delay)
        with self._lock:
            self.active -= 1
        return KeysView(self)

    def __getitem__(self, key: str) -> Row:
        return self.data[key]

    def __setitem__(self, key: str, value: Row) -> None:
        self.data[key] = value

    def __delitem__(self, key: str) -> None:
        del self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[warmstart.Store]:
    policy = warmstart.CompactionPolicy(max_deltas=1000, max_ratio=1000.0)
    with warmstart.Store(tmp_path / "s", sync=False, keep=1000, compaction=policy) as s:
        yield s


class TestPeriodicSaves:
    """Saves happen every interval, in delta mode, until stopped."""

    def test_saves_happen_and_are_deltas(self, store: warmstart.Store) -> None:
        """A short interval gives several generations; after the first they are deltas."""
        rows = warmstart.TrackedDict({"a": Row(0)})
        with warmstart.Checkpointer(store, NS, {"s": (ROWS, rows)}, interval=0.01) as cp:
            for i in range(1, 5):
                rows[f"k{i}"] = Row(i)
                saves = cp.saves
                assert wait_for(lambda saves=saves: cp.saves > saves)
        assert not cp.running
        generations = store.generations(NS)
        assert len(generations) == cp.saves >= 4
        assert generations[0].generation == cp.last_generation
        assert [g.kind for g in generations[:-1]] == ["delta"] * (len(generations) - 1)
        assert (cp.failures, cp.last_error) == (0, None)
        assert cp.last_seconds is not None
        assert cp.last_seconds >= 0
        assert cp.checkpoint() == cp.last_generation
        assert head(store) == dict(rows)

    def test_no_save_before_the_first_interval(self, store: warmstart.Store) -> None:
        """The first periodic save waits a whole interval."""
        rows = warmstart.TrackedDict({"a": Row(0)})
        with warmstart.Checkpointer(store, NS, {"s": (ROWS, rows)}, interval=60) as cp:
            time.sleep(0.05)
            assert cp.saves == 0
        assert store.generations(NS) == []

    def test_watermark_and_sections_are_read_at_each_save(self, store: warmstart.Store) -> None:
        """A callable for sections and one for the watermark are evaluated per save."""
        rows: dict[str, Row] = {}
        calls: list[int] = []

        def sections() -> dict[str, tuple[warmstart.Contract[Row], dict[str, Row]]]:
            calls.append(len(rows))
            return {"s": (ROWS, rows)}

        cp = warmstart.Checkpointer(store, NS, sections, interval=3600, watermark=lambda: len(rows))
        rows["a"] = Row(1)
        cp.checkpoint()
        rows["b"] = Row(2)
        cp.checkpoint()
        assert calls == [1, 2]
        assert [g.watermark for g in store.generations(NS)] == [2, 1]
        assert head(store) == rows

    @pytest.mark.parametrize("interval", [0, -1.0])
    def test_interval_must_be_positive(self, store: warmstart.Store, interval: float) -> None:
        """A zero or negative interval is refused."""
        with pytest.raises(ValueError, match="positive interval"):
            warmstart.Checkpointer(store, NS, {}, interval=interval)


class TestOneSaveAtATime:
    """The background thread and explicit checkpoints never save concurrently."""

    def test_no_overlap(self, store: warmstart.Store) -> None:
        """With a slow save, explicit calls from three threads and the ticker never overlap."""
        rows = SlowMapping({f"k{i}": Row(i) for i in range(20)}, delay=0.005)
        generations: list[int] = []

        def caller() -> None:
            for _ in range(5):
                generation = cp.checkpoint()
                assert generation is not None
                generations.append(generation)

        with warmstart.Checkpointer(store, NS, {"s": (ROWS, rows)}, interval=0.001) as cp:
            threads = [threading.Thread(target=caller) for _ in range(3)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert rows.max_active == 1
        assert cp.saves == len(store.generations(NS)) >= 15
        assert rows.reads >= cp.saves
        assert len(set(generations)) == 15

    def test_stop_lets_a_save_in_progress_finish(self, store: warmstart.Store) -> None:
        """stop() returns after the save it interrupted has committed."""
        rows = SlowMapping({"a": Row(1)}, delay=0.2)
        cp = warmstart.Checkpointer(store, NS, {"s": (ROWS, rows)}, interval=0.001)
        cp.start()
        assert rows.reading.wait(10)
        cp.stop()
        assert not cp.running
        assert cp.saves == rows.reads == 1
        assert [g.generation for g in store.generations(NS)] == [1]


class TestFailures:
    """A failing save is counted and logged; the thread keeps going and recovers."""

    def test_encode_error(self, store: warmstart.Store, caplog: pytest.LogCaptureFixture) -> None:
        """A bad value fails ticks without killing the thread; its changes survive the fix."""
        rows: warmstart.TrackedDict[str, Any] = warmstart.TrackedDict({"a": Row(1), "b": Row(2)})
        caplog.set_level(logging.WARNING, logger="warmstart.checkpointer")
        with warmstart.Checkpointer(store, NS, {"s": (ROWS, rows)}, interval=0.005) as cp:
            assert wait_for(lambda: cp.saves >= 1)
            with cp._lock:  # between two saves
                rows["a"] = Row(10)
                del rows["b"]
                rows["bad"] = "not a Row"
            assert wait_for(lambda: cp.failures >= 3)
            assert cp.running
            assert isinstance(cp.last_error, warmstart.EncodeError)
            saves = cp.saves
            with cp._lock:
                del rows["bad"]
            assert wait_for(lambda: cp.saves > saves)
            assert cp.last_error is None
        assert not cp.running
        messages = [r.getMessage() for r in caplog.records if r.name == "warmstart.checkpointer"]
        assert len(messages) >= 3
        assert all(m.startswith("checkpoint of 'svc' failed: Expected values") for m in messages)
        assert {r.levelno for r in caplog.records} == {logging.WARNING}
        assert caplog.records[0].failures == 1  # type: ignore[attr-defined]
        assert head(store) == {"a": Row(10)}
        assert store.generations(NS)[0].kind == "delta"

    def test_closed_store(self, store: warmstart.Store) -> None:
        """A store closed under the checkpointer makes every tick fail, and stop() still works."""
        rows = warmstart.TrackedDict({"a": Row(1)})
        cp = warmstart.Checkpointer(store, NS, {"s": (ROWS, rows)}, interval=0.005)
        cp.start()
        assert wait_for(lambda: cp.saves >= 1)
        with cp._lock:  # never close the environment under a save
            store.close()
        assert wait_for(lambda: cp.failures >= 3)
        assert cp.running
        assert isinstance(cp.last_error, warmstart.StoreError)
        cp.stop()
        assert not cp.running

    def test_read_only_store(self, tmp_path: Path) -> None:
        """Ticks on a read-only store fail with ReadOnlyStoreError and are counted."""
        rows = warmstart.TrackedDict({"a": Row(1)})
        with warmstart.Store(tmp_path / "s", sync=False) as writable:
            writable.save(NS, {"s": (ROWS, rows)})
        with (
            warmstart.Store(tmp_path / "s", readonly=True) as store,
            warmstart.Checkpointer(store, NS, {"s": (ROWS, rows)}, interval=0.005) as cp,
        ):
            assert wait_for(lambda: cp.failures >= 2)
            assert cp.running
            assert isinstance(cp.last_error, warmstart.errors.ReadOnlyStoreError)
            assert cp.saves == 0

    def test_explicit_checkpoint_raises_and_counts(self, store: warmstart.Store) -> None:
        """checkpoint() raises by default, and still counts the failure."""
        rows: dict[str, Any] = {"bad": 1}
        cp = warmstart.Checkpointer(store, NS, {"s": (ROWS, rows)}, interval=3600)
        with pytest.raises(warmstart.EncodeError):
            cp.checkpoint()
        assert cp.checkpoint(raise_errors=False) is None
        assert (cp.saves, cp.failures) == (0, 2)
        assert isinstance(cp.last_error, warmstart.EncodeError)


class TestLifecycle:
    """start() and stop() are idempotent; the context manager starts and stops the thread."""

    def test_stop_is_clean_and_final(self, store: warmstart.Store) -> None:
        """After stop() the thread is gone and no further save happens."""
        rows = warmstart.TrackedDict({"a": Row(1)})
        cp = warmstart.Checkpointer(store, NS, {"s": (ROWS, rows)}, interval=0.005)
        cp.start()
        thread = cp._loop.thread
        assert thread is not None
        assert wait_for(lambda: cp.saves >= 2)
        cp.stop()
        assert not thread.is_alive()
        assert not cp.running
        saves = cp.saves
        time.sleep(0.05)
        assert cp.saves == saves
        cp.stop()  # idempotent

    def test_start_is_idempotent_and_restartable(self, store: warmstart.Store) -> None:
        """A second start() keeps the running thread; after stop() it can start again."""
        rows = warmstart.TrackedDict({"a": Row(1)})
        cp = warmstart.Checkpointer(store, NS, {"s": (ROWS, rows)}, interval=0.005)
        cp.start()
        first = cp._loop.thread
        cp.start()
        assert cp._loop.thread is first
        cp.stop()
        saves = cp.saves
        cp.start()
        assert cp._loop.thread is not first
        assert wait_for(lambda: cp.saves > saves)
        cp.stop()

    def test_context_manager(self, store: warmstart.Store) -> None:
        """Entering starts the thread, leaving stops it."""
        rows = warmstart.TrackedDict({"a": Row(1)})
        with warmstart.Checkpointer(store, NS, {"s": (ROWS, rows)}, interval=0.005) as cp:
            assert cp.running
            assert cp._loop.thread is not None
            assert cp._loop.thread.name == "warmstart-checkpointer-svc"
            assert cp._loop.thread.daemon
            assert wait_for(lambda: cp.saves >= 1)
        assert not cp.running
        assert head(store) == dict(rows)
