"""A progressive restore leaves a container in saved order, hot entries last."""

from __future__ import annotations

import collections
import threading
import time
from pathlib import Path
from typing import Any

import cachetools
import msgspec
import pytest

import warmstart


class Row(msgspec.Struct):
    value: int


ROWS = warmstart.Contract("row", Row, key=int)
SIZE = 60_000  # several chunks: a hot part and a background part


def make(kind: str) -> Any:
    factories = {
        "dict": dict,
        "ordered": collections.OrderedDict,
        "tracked": warmstart.TrackedDict,
    }
    return factories[kind]()


@warmstart.warm(rows=ROWS)
class Service:
    def __init__(self, kind: str) -> None:
        self.rows = make(kind)


@pytest.mark.parametrize("kind", ["dict", "ordered", "tracked"])
class TestProgressiveOrder:
    def test_saved_order_survives_background_restore(self, tmp_path: Path, kind: str) -> None:
        """After the background phase the order equals the saved order, not hot-first."""
        with warmstart.boot(tmp_path, namespace="n", signals=False):
            Service("dict").rows.update({i: Row(i) for i in range(SIZE)})
        with warmstart.boot(
            tmp_path, namespace="n", signals=False, checkpoint_on_exit=False
        ) as boot:
            service = Service(kind)
            hottest_present = SIZE - 1 in service.rows
        assert boot.wait_ready(30)
        boot.close()
        assert boot.report.sections["Service.rows"].restored == SIZE
        assert hottest_present  # the hot part was in place before the body ran
        assert list(service.rows) == list(range(SIZE))

    def test_next_checkpoint_keeps_the_order(self, tmp_path: Path, kind: str) -> None:
        """A checkpoint after a progressive restore saves the same order again."""
        with warmstart.boot(tmp_path, namespace="n", signals=False):
            Service("dict").rows.update({i: Row(i) for i in range(SIZE)})
        with warmstart.boot(tmp_path, namespace="n", signals=False) as boot:
            Service(kind)
            assert boot.wait_ready(30)
        with warmstart.Store(tmp_path) as store, store.load("n") as snapshot:
            assert list(snapshot.section("Service.rows", ROWS)) == list(range(SIZE))


def _delta_chain(tmp_path: Path) -> dict[int, Row]:
    """A base of SIZE rows and three tracked deltas; returns the replayed model."""
    data = warmstart.TrackedDict({i: Row(i) for i in range(SIZE)})
    model = dict(data)
    relaxed = warmstart.CompactionPolicy(max_deltas=100, max_ratio=100.0)
    with warmstart.Store(tmp_path, compaction=relaxed) as store:
        store.save("n", {"Service.rows": (ROWS, data)})
        for step in range(3):
            for key in range(step, SIZE, 97):  # deletes spread over every chunk
                del data[key]
                del model[key]
            for key in range(50 + step, SIZE, 89):  # updates move to the end
                if key in data:
                    data[key] = model[key] = Row(-key)
                    model[key] = model.pop(key)
            for key in range(SIZE + step * 100, SIZE + step * 100 + 100):  # inserts
                data[key] = model[key] = Row(key)
            store.save("n", {"Service.rows": (ROWS, data)})
        assert store.manifest("n").delta_chain == 3
    return model


@pytest.mark.parametrize("kind", ["dict", "tracked"])
@pytest.mark.parametrize("progressive", [True, False])
def test_a_delta_chain_restores_as_replayed(tmp_path: Path, kind: str, progressive: bool) -> None:
    """Eager and progressive restores of base + deltas equal in-order replay, order included."""
    model = _delta_chain(tmp_path)
    with warmstart.boot(
        tmp_path,
        namespace="n",
        signals=False,
        checkpoint_on_exit=False,
        progressive=progressive,
    ) as boot:
        service = Service(kind)
    assert boot.wait_ready(30)
    boot.close()
    assert list(service.rows.items()) == list(model.items())
    with warmstart.Store(tmp_path) as store, store.load("n") as snapshot:
        assert list(snapshot.section("Service.rows", ROWS).items()) == list(model.items())


@warmstart.warm(rows=warmstart.state(ROWS, lock="lock"))
class TimedService:
    """A timed cache behind a lock: restored progressively."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # Each entry lives 1000 + |value| seconds: an upsert's new expiry shows.
        self.rows: Any = cachetools.TLRUCache(
            maxsize=2 * SIZE, ttu=lambda _k, v, now: now + 1000 + abs(v.value)
        )


@pytest.mark.parametrize("progressive", [True, False])
def test_a_timed_delta_chain_keeps_each_latest_expiry(tmp_path: Path, progressive: bool) -> None:
    """Progressive or eager, a key upserted by a delta gets the delta's expiry, not the base's."""
    started = time.monotonic()
    with warmstart.boot(tmp_path, namespace="n", signals=False) as boot:
        rows = warmstart.track(TimedService().rows)
        rows.update({i: Row(i) for i in range(SIZE)})
    relaxed = warmstart.CompactionPolicy(max_deltas=100, max_ratio=100.0)
    with warmstart.Store(tmp_path, compaction=relaxed) as store:
        sections = {"TimedService.rows": (ROWS, rows)}
        store.save("n", sections)
        rows[SIZE - 1] = Row(-500)  # in the hot base chunk: 1500 s instead of 1000 + SIZE - 1
        rows[5] = Row(-700)  # in a cold base chunk: 1700 s instead of 1005
        del rows[6]
        rows[SIZE] = Row(SIZE)  # a new key
        store.save("n", sections)
        assert store.manifest("n").kind == "delta"
    with warmstart.boot(
        tmp_path,
        namespace="n",
        signals=False,
        checkpoint_on_exit=False,
        progressive=progressive,
    ) as boot:
        service = TimedService()
    assert boot.wait_ready(30)
    boot.close()
    restored = service.rows
    assert len(restored) == SIZE
    assert 6 not in restored
    assert (restored[5], restored[SIZE - 1], restored[SIZE]) == (Row(-700), Row(-500), Row(SIZE))
    # Remaining lifetimes, read back from the cache's own expiry index.
    now = restored.timer()
    expiry = restored._TLRUCache__items  # name-mangled: cachetools keeps no public view
    left = {k: expiry[k].expires - now for k in (0, 5, SIZE - 1, SIZE)}
    # Lifetimes run while the test does: on a loaded machine that is seconds.
    elapsed = time.monotonic() - started
    for key, lifetime in ((0, 1000), (5, 1700), (SIZE - 1, 1500), (SIZE, 1000 + SIZE)):
        assert lifetime - elapsed - 1 <= left[key] <= lifetime + 1, (key, left[key], elapsed)
