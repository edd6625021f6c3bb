"""Saving a container that another thread writes: every saved entry is a real pair.

A periodic checkpoint reads the service's containers while request threads
write them. Each key and value saved must be a pair the container really held:
a key must never be restored with another key's value. Switches between
threads are forced as often as the interpreter allows, so a read that is not
atomic is caught within a few saves.
"""

from __future__ import annotations

import collections
import sys
import threading
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import msgspec
import pytest

import warmstart

NS = "svc"


class Row(msgspec.Struct, frozen=True):
    """A value that names its own key, so a mispaired entry is visible."""

    key: str
    version: int


ROWS = warmstart.Contract("row", Row, key=str)


@pytest.fixture
def frequent_switches() -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


class Writer(threading.Thread):
    """Inserts, updates and deletes entries until told to stop."""

    def __init__(self, mapping: MutableMapping[str, Row]) -> None:
        super().__init__(daemon=True)
        self.mapping = mapping
        self.stopping = threading.Event()
        self.writes = 0

    def run(self) -> None:
        n = len(self.mapping)
        while not self.stopping.is_set():
            key = f"k{n}"
            self.mapping[key] = Row(key, n)
            oldest = next(iter(self.mapping))
            del self.mapping[oldest]
            middle = f"k{n - 50}"
            if middle in self.mapping:
                self.mapping[middle] = Row(middle, n)
            n += 1
            self.writes += 3


def mispaired(entries: dict[str, Row]) -> list[tuple[str, Row]]:
    return [(k, v) for k, v in entries.items() if v.key != k]


def make(kind: str) -> MutableMapping[str, Row]:
    rows = {f"k{i}": Row(f"k{i}", i) for i in range(2000)}
    if kind == "dict":
        return rows
    if kind == "ordered":
        return collections.OrderedDict(rows)
    return warmstart.TrackedDict(rows)


@pytest.mark.usefixtures("frequent_switches")
@pytest.mark.parametrize("kind", ["dict", "ordered", "tracked"])
@pytest.mark.parametrize("mode", ["full", "delta"])
def test_saves_during_writes_keep_every_key_with_its_value(
    store_path: Path, kind: str, mode: Any
) -> None:
    mapping = make(kind)
    writer = Writer(mapping)
    with warmstart.Store(store_path) as store:
        writer.start()
        try:
            for _ in range(40):
                store.save(NS, {"s": (ROWS, mapping)}, mode=mode)
        finally:
            writer.stopping.set()
            writer.join()
        assert writer.writes > 100  # the writer really ran during the saves
        for info in store.generations(NS):
            with store.load(NS, generation=info.generation) as snapshot:
                entries = snapshot.section("s", ROWS)
            assert mispaired(entries) == []
            if not (mode == "delta" and kind == "tracked"):
                # A full read, and a diff with the values it compared, are one
                # moment; the writer inserts before it deletes.
                assert len(entries) in (2000, 2001)
        # Whatever a save raced with, the next quiet one is exact.
        store.save(NS, {"s": (ROWS, mapping)}, mode=mode)
        with store.load(NS) as snapshot:
            assert snapshot.section("s", ROWS) == dict(mapping)


class CountingLock:
    """A lock that counts how often it was taken, and by which thread last."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.taken = 0

    def __enter__(self) -> CountingLock:
        self._lock.acquire()
        self.taken += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


class LockedWriter(Writer):
    """A writer for a container that is not thread-safe: every write under the lock."""

    def __init__(self, mapping: MutableMapping[str, Row], lock: CountingLock) -> None:
        super().__init__(mapping)
        self.lock = lock

    def run(self) -> None:
        n = 10_000
        while not self.stopping.is_set():
            with self.lock:
                key = f"k{n}"
                self.mapping[key] = Row(key, n)  # an LRU cache at maxsize evicts its oldest
            n += 1
            self.writes += 1


@pytest.mark.usefixtures("frequent_switches")
@pytest.mark.parametrize("mode", ["full", "delta"])
@pytest.mark.parametrize("tracked", [False, True])
def test_a_lock_given_with_a_section_is_held_while_the_cache_is_read(
    store_path: Path, mode: Any, tracked: bool
) -> None:
    """A cachetools cache read without its lock can raise or see half a write."""
    cachetools = pytest.importorskip("cachetools")
    cache = cachetools.LRUCache(maxsize=500)
    if tracked:
        cache = warmstart.track(cache)
    for i in range(500):
        cache[f"k{i}"] = Row(f"k{i}", i)
    lock = CountingLock()
    writer = LockedWriter(cache, lock)
    with warmstart.Store(store_path) as store:
        writer.start()
        try:
            for _ in range(30):
                store.save(NS, {"s": (ROWS, cache, lock)}, mode=mode)
        finally:
            writer.stopping.set()
            writer.join()
        assert lock.taken > writer.writes  # the saves took it too
        for info in store.generations(NS):
            with store.load(NS, generation=info.generation) as snapshot:
                entries = snapshot.section("s", ROWS)
            assert mispaired(entries) == []
            assert 0 < len(entries) <= 500


@pytest.mark.parametrize(
    "spec",
    [(ROWS,), (ROWS, {}, "not a lock"), (ROWS, {}, None, None), ROWS, ("row", {})],
    ids=["short", "not-a-lock", "long", "bare-contract", "no-contract"],
)
def test_a_malformed_section_is_refused_before_anything_is_written(
    store_path: Path, spec: Any
) -> None:
    with warmstart.Store(store_path) as store:
        store.save(NS, {"s": (ROWS, {"a": Row("a", 1)})})
        with pytest.raises(TypeError, match="for section 's'"):
            store.save(NS, {"s": spec})
        assert [info.generation for info in store.generations(NS)] == [1]


def test_boot_checkpoints_hold_the_lock_named_by_state(store_path: Path) -> None:
    """state(lock="lock") guards the periodic and shutdown reads, not only the restore."""
    cachetools = pytest.importorskip("cachetools")

    @warmstart.warm(rows=warmstart.state(ROWS, lock="lock"))
    class Service:
        def __init__(self) -> None:
            self.lock = CountingLock()
            self.rows = cachetools.LRUCache(maxsize=10)

    with warmstart.Boot(store_path, namespace=NS) as boot:
        service = Service()
        service.rows["a"] = Row("a", 1)
        before = service.lock.taken
        assert boot.checkpoint() is not None
        assert service.lock.taken > before
    with warmstart.Boot(store_path, namespace=NS) as boot:
        assert Service().rows["a"] == Row("a", 1)
