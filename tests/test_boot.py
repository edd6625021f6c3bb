"""``boot()`` in one process: its forms, restores into every container, staleness, checkpoints.

The subprocess, signal and crash tests are in ``test_boot_e2e.py``; the ASGI
lifespan in ``test_asgi.py``; reports and counters in ``test_metrics.py``.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import datetime
import inspect
import logging
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cachetools
import msgspec
import pytest

import warmstart
from conftest import RECORDS, FakeClock, Record, make_records
from warmstart import (
    ColdStartWarning,
    ContractError,
    EncodeError,
    IncompatibleVersionError,
    WarmstartError,
)
from warmstart.boot import parse_duration

NS = "svc"
#: Enough entries for a section of several base chunks: the first chunk holds
#: 2048 entries, so a progressive restore has a background part.
BIG = 20_000


def boot(target: Path | warmstart.Store, **options: Any) -> warmstart.Boot:
    """A boot of the test namespace, without signal handlers (pytest owns them)."""
    options.setdefault("signals", False)
    return warmstart.boot(target, namespace=NS, **options)


def record(i: int, *, salt: int = 0) -> Record:
    return Record(i + salt, f"n{i}", i * 0.5, [i], i % 2 == 0, "a")


def eviction_order(cache: cachetools.Cache[str, Any]) -> list[str]:
    """The keys of a cache in the order it would evict them (least recent first for an LRU)."""
    doomed = copy.copy(cache)
    return [doomed.popitem()[0] for _ in range(len(doomed))]


class Timer:
    """A cachetools timer moved by hand."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class WallClock:
    """The real wall clock plus an offset: a boot "later" than the checkpoint."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def __call__(self) -> float:
        return time.time() + self.offset


@warmstart.warm(rows=RECORDS)
class Rows:
    """Rows in a container chosen by the test."""

    factory: Callable[[], Any] = dict

    def __init__(self) -> None:
        self.rows = type(self).factory()
        self.made = self.rows


@warmstart.warm(rows=warmstart.state(RECORDS, lock="lock", section="Rows.rows"))
class LockedRows:
    """Rows guarded by a lock the service holds while it writes."""

    factory: Callable[[], Any] = dict

    def __init__(self, *, hold: bool = False) -> None:
        self.lock = threading.RLock()
        if hold:
            # Held by this thread: the hot phase (same thread) goes on, the
            # background phase waits until the test releases it.
            self.lock.acquire()
        self.rows = type(self).factory()


@pytest.fixture
def rows_in() -> Iterator[Callable[[Callable[[], Any]], type[Rows]]]:
    """Choose the container ``Rows`` builds."""

    def choose(factory: Callable[[], Any]) -> type[Rows]:
        Rows.factory = factory
        return Rows

    yield choose
    Rows.factory = dict


def save_rows(path: Path, rows: dict[str, Record], **options: Any) -> None:
    """Checkpoint ``rows`` from a dict-backed ``Rows``."""
    Rows.factory = dict
    with boot(path, **options):
        Rows().rows.update(rows)


CONTAINERS: dict[str, Callable[[], Any]] = {
    "dict": dict,
    "OrderedDict": collections.OrderedDict,
    "TrackedDict": warmstart.TrackedDict,
    "LRUCache": lambda: cachetools.LRUCache(maxsize=1000),
    "LFUCache": lambda: cachetools.LFUCache(maxsize=1000),
    "FIFOCache": lambda: cachetools.FIFOCache(maxsize=1000),
    "RRCache": lambda: cachetools.RRCache(maxsize=1000),
    "TTLCache": lambda: cachetools.TTLCache(maxsize=1000, ttl=3600),
    "TLRUCache": lambda: cachetools.TLRUCache(maxsize=1000, ttu=lambda k, v, now: now + 3600),
    "tracked LRUCache": lambda: warmstart.track(cachetools.LRUCache(maxsize=1000)),
}


class TestForms:
    """``boot`` as a context manager, an async context manager and a decorator."""

    def test_context_manager_cold_then_warm(self, store_path: Path) -> None:
        """The first boot starts cold and saves at exit; the second restores."""
        with boot(store_path) as first:
            Rows().rows.update(make_records(5))
        assert (first.report.status, first.report.reason) == ("cold", "no checkpoint yet")
        with boot(store_path) as second:
            rows = Rows()
        assert second.report.status == "warm"
        assert second.report.generation == 1
        assert rows.rows == make_records(5)

    def test_async_context_manager(self, store_path: Path) -> None:
        """``async with boot(...)`` restores and checkpoints like ``with``."""

        async def service(n: int) -> dict[str, Record]:
            async with boot(store_path) as b:
                rows = Rows()
                restored = dict(rows.rows)
                rows.rows.update(make_records(n))
                await asyncio.sleep(0)
            assert b.ready.is_set()
            return restored

        assert asyncio.run(service(3)) == {}
        assert asyncio.run(service(4)) == make_records(3)
        assert asyncio.run(service(0)) == make_records(4)

    def test_sync_decorator_runs_each_call_in_a_fresh_boot(self, store_path: Path) -> None:
        """A decorated function gets a new boot per call: the second call sees the first's save."""
        decorated = boot(store_path)

        @decorated
        def serve(n: int) -> dict[str, Record]:
            rows = Rows()
            before = dict(rows.rows)
            rows.rows.update(make_records(n))
            return before

        assert not inspect.iscoroutinefunction(serve)
        assert serve.__name__ == "serve"
        assert serve(2) == {}
        assert serve(3) == make_records(2)
        assert serve(1) == make_records(3)

    def test_async_decorator_dispatches_to_async_with(self, store_path: Path) -> None:
        """A decorated coroutine function stays one, and its boot runs on its event loop."""
        loops: list[asyncio.AbstractEventLoop] = []

        async def prefetch(keys: list[str]) -> dict[str, Record]:
            loops.append(asyncio.get_running_loop())
            return {}

        @warmstart.warm(hot=warmstart.state(RECORDS, keys_only=True, prefetch=prefetch))
        class Hot:
            def __init__(self) -> None:
                self.hot: dict[str, Record] = {}

        @boot(store_path)
        async def serve() -> asyncio.AbstractEventLoop:
            hot = Hot()
            hot.hot.update(make_records(3))
            await asyncio.sleep(0.05)
            return asyncio.get_running_loop()

        assert inspect.iscoroutinefunction(serve)
        asyncio.run(serve())
        loop = asyncio.run(serve())
        assert loops == [loop]

    def test_a_boot_is_entered_once(self, store_path: Path) -> None:
        """Entering the same boot twice is refused."""
        b = boot(store_path)
        with b:
            pass
        with pytest.raises(RuntimeError, match="already entered"), b:
            pass

    def test_open_store_is_used_and_left_open(self, store: warmstart.Store) -> None:
        """A Store passed in is used, and still open after the boot."""
        with boot(store):
            Rows().rows.update(make_records(2))
        assert store.load(NS).section("Rows.rows", RECORDS) == make_records(2)

    def test_attach_objects_made_elsewhere(self, store_path: Path) -> None:
        """``attach`` restores an object built outside the boot and registers it."""
        save_rows(store_path, make_records(3))
        early = Rows()  # before any boot: nothing restored
        assert early.rows == {}
        with boot(store_path) as b:
            assert b.attach(early) is early
            assert early.rows == make_records(3)
            b.attach(early)  # again: nothing happens
            early.rows["new"] = record(9)
        with boot(store_path):
            assert Rows().rows == {**make_records(3), "new": record(9)}

    def test_attach_refuses_undecorated_objects(self, store_path: Path) -> None:
        """Only ``@warm`` instances can be attached."""
        with boot(store_path) as b, pytest.raises(ContractError, match=r"@warmstart\.warm"):
            b.attach(object())

    def test_startup_only_boot_stays_open(self, store_path: Path) -> None:
        """With ``checkpoint_on_exit=False`` the boot outlives the ``with`` until closed."""
        with boot(store_path, checkpoint_on_exit=False) as b:
            rows = Rows()
        rows.rows.update(make_records(2))
        assert b.checkpoint().generation == 1
        b.close()
        closed = b.checkpoint()  # closed: nothing saved any more
        assert (closed.generation, closed.status) == (None, "failed")
        with boot(store_path) as again:
            assert Rows().rows == make_records(2)
        assert again.report.generation == 1

    def test_closed_boot_captures_nothing(self, store_path: Path) -> None:
        """A boot closed by hand inside its ``with`` no longer attaches new objects."""
        with boot(store_path) as b:
            b.close()
            Rows()
        assert b.report.sections == {}

    def test_failed_body_saves_nothing(self, store_path: Path) -> None:
        """An exception in the ``with`` body propagates and skips the exit checkpoint."""
        save_rows(store_path, make_records(2))

        def serve() -> None:
            with boot(store_path):
                Rows().rows.clear()
                raise KeyError

        with pytest.raises(KeyError):
            serve()
        with warmstart.Store(store_path) as store:
            assert [g.generation for g in store.generations(NS)] == [1]


class TestContainers:
    """Restores go into the object's own container, keeping its type and policy."""

    @pytest.mark.parametrize("kind", CONTAINERS)
    def test_round_trip_into_the_same_object(
        self, store_path: Path, rows_in: Callable[..., type[Rows]], kind: str
    ) -> None:
        """Every supported container comes back, as the very object ``__init__`` made."""
        cls = rows_in(CONTAINERS[kind])
        with boot(store_path):
            cls().rows.update(make_records(50))
        with boot(store_path) as b:
            rows = cls()
        assert rows.rows is rows.made
        assert type(rows.rows) is type(CONTAINERS[kind]())
        assert dict(rows.rows.items()) == make_records(50)
        assert b.report.sections["Rows.rows"].restored == 50

    def test_lru_keeps_maxsize_and_recency(
        self, store_path: Path, rows_in: Callable[..., type[Rows]]
    ) -> None:
        """A smaller LRU cache keeps the most recent entries, still the most recent."""
        cls = rows_in(lambda: cachetools.LRUCache(maxsize=100))
        with boot(store_path):
            cache = cls().rows
            cache.update(make_records(100))
            for key in ("k3", "k1", "k2"):  # most recent last
                _ = cache[key]
        cls = rows_in(lambda: cachetools.LRUCache(maxsize=10))
        with boot(store_path) as b:
            cache = cls().rows
            assert eviction_order(cache)[-3:] == ["k3", "k1", "k2"]
            assert len(cache) == 10
            assert set(cache) == {f"k{i}" for i in range(93, 100)} | {"k1", "k2", "k3"}
            cache["new"] = record(0)  # evicts the least recent restored entry
            assert "k93" not in cache
        section = b.report.sections["Rows.rows"]
        assert (section.restored, section.skipped_capacity) == (10, 90)

    def test_lfu_keeps_maxsize(self, store_path: Path, rows_in: Callable[..., type[Rows]]) -> None:
        """An LFU cache is filled up to its ``maxsize``."""
        with boot(store_path):
            rows_in(lambda: cachetools.LFUCache(maxsize=100))().rows.update(make_records(100))
        with boot(store_path):
            cache = rows_in(lambda: cachetools.LFUCache(maxsize=20))().rows
        assert len(cache) == 20
        assert cache.currsize == 20

    def test_ttl_remaining_lifetime_is_rebased(
        self, store_path: Path, rows_in: Callable[..., type[Rows]]
    ) -> None:
        """A TTL entry keeps what was left of its lifetime, measured on the wall clock."""
        saved_timer = Timer()
        cls = rows_in(lambda: cachetools.TTLCache(maxsize=100, ttl=100, timer=saved_timer))
        with boot(store_path):
            cache = cls().rows
            cache["early"] = record(1)  # expires 100 s after the save
            saved_timer.now = 50
            cache["late"] = record(2)  # expires 150 s after it
        timer = Timer(1000.0)
        cls = rows_in(lambda: cachetools.TTLCache(maxsize=100, ttl=100, timer=timer))
        # The service restarts 120 s (wall clock) later: "early" is gone,
        # "late" has about 30 s left.
        with boot(store_path, clock=WallClock(120 - 50)) as b:
            cache = cls().rows
        assert list(cache) == ["late"]
        section = b.report.sections["Rows.rows"]
        assert (section.restored, section.dropped_expired) == (1, 1)
        timer.now = 1000 + 28
        assert "late" in cache
        timer.now = 1000 + 32
        assert "late" not in cache

    def test_ttl_all_expired(self, store_path: Path, rows_in: Callable[..., type[Rows]]) -> None:
        """When every entry expired, none is restored and all are counted."""
        cls = rows_in(lambda: cachetools.TTLCache(maxsize=100, ttl=60))
        with boot(store_path):
            cls().rows.update(make_records(5))
        with boot(store_path, clock=WallClock(61)) as b:
            assert len(cls().rows) == 0
        section = b.report.sections["Rows.rows"]
        assert (section.restored, section.dropped_expired) == (0, 5)
        assert b.metrics.get("restore_dropped_expired_total") == 5

    def test_tlru_remaining_lifetime(
        self, store_path: Path, rows_in: Callable[..., type[Rows]]
    ) -> None:
        """A TLRU entry keeps its remaining time to use."""
        cls = rows_in(
            lambda: cachetools.TLRUCache(
                maxsize=10, ttu=lambda k, v, now: now + v.id, timer=Timer()
            )
        )
        with boot(store_path):
            cache = cls().rows
            cache["short"] = record(10)
            cache["long"] = record(100)
        timer = Timer(500.0)
        cls = rows_in(
            lambda: cachetools.TLRUCache(maxsize=10, ttu=lambda k, v, now: now + 1000, timer=timer)
        )
        with boot(store_path, clock=WallClock(40)) as b:
            cache = cls().rows
        assert list(cache) == ["long"]
        assert b.report.sections["Rows.rows"].dropped_expired == 1
        timer.now = 500 + 55
        assert "long" in cache
        timer.now = 500 + 65
        assert "long" not in cache

    def test_tracked_dict_checkpoints_a_delta_after_restore(
        self, store_path: Path, rows_in: Callable[..., type[Rows]]
    ) -> None:
        """A restored TrackedDict's next checkpoint writes only what changed."""
        cls = rows_in(warmstart.TrackedDict)
        with boot(store_path):
            cls().rows.update(make_records(100))
        with boot(store_path):
            rows = cls()
            rows.rows["k1"] = record(1, salt=7)
            del rows.rows["k2"]
        with warmstart.Store(store_path) as store:
            manifest = store.manifest(NS)
            section = manifest.section("Rows.rows")
            assert section is not None
            assert manifest.kind == "delta"
            assert sum(c.entries for c in section.deltas) == 1
            expected = make_records(100)
            expected["k1"] = record(1, salt=7)
            del expected["k2"]
            assert store.load(NS).section("Rows.rows", RECORDS) == expected

    def test_single_struct_is_replaced(self, store_path: Path) -> None:
        """An attribute holding one Struct is replaced by the saved one."""

        class Settings(msgspec.Struct):
            limit: int = 10

        @warmstart.warm(settings=warmstart.Contract("settings", Settings))
        class Service:
            def __init__(self) -> None:
                self.settings = Settings()

        with boot(store_path):
            Service().settings = Settings(limit=99)
        with boot(store_path) as b:
            service = Service()
        assert service.settings == Settings(limit=99)
        assert b.report.sections["Service.settings"].restored == 1

    @pytest.mark.parametrize("value", [[], set(), None, "text"])
    def test_unsupported_container_fails_clearly(self, store_path: Path, value: Any) -> None:
        """An unsupported container is refused, naming what is supported, and never saved."""

        @warmstart.warm(rows=RECORDS)
        class Bad:
            def __init__(self) -> None:
                self.rows = value

        with boot(store_path) as b:
            good = Rows()
            good.rows.update(make_records(1))
            with pytest.raises(ContractError, match=r"dict, collections\.OrderedDict.*TTLCache"):
                Bad()
        assert list(b.report.sections) == ["Rows.rows"]
        assert b.metrics.get("checkpoint_failures_total") == 0
        with boot(store_path):
            assert Rows().rows == make_records(1)


class TestColdStarts:
    """Whatever goes wrong, the service starts, cold where it must, and says why."""

    def test_first_boot_is_cold_without_warning(self, store_path: Path) -> None:
        """No checkpoint yet is a normal cold start: no ColdStartWarning."""
        with boot(store_path) as b:
            Rows()
        assert b.report.reason == "no checkpoint yet"
        assert b.report.sections["Rows.rows"].status == "cold"

    def test_unusable_path_starts_cold(self, tmp_path: Path) -> None:
        """A store path that cannot be opened starts cold with a warning."""
        path = tmp_path / "file"
        path.write_text("not a store")
        b = boot(path)
        with pytest.warns(ColdStartWarning, match="store unavailable"):
            b.__enter__()
        try:
            Rows().rows.update(make_records(1))
        finally:
            b.__exit__(None, None, None)
        assert b.report.status == "cold"
        assert b.checkpoint().generation is None

    def test_unusable_path_with_strict_raises(self, tmp_path: Path) -> None:
        """``strict=True`` raises instead of starting cold."""
        path = tmp_path / "file"
        path.write_text("not a store")
        with pytest.raises(WarmstartError), boot(path, strict=True):
            pass

    def test_incompatible_contract_colds_only_its_section(self, store_path: Path) -> None:
        """A section whose data the contract cannot read starts cold; the others restore."""

        class Other(msgspec.Struct):
            id: str  # was an int

        @warmstart.warm(rows=RECORDS, other=warmstart.Contract("record", Other))
        class Two:
            def __init__(self) -> None:
                self.rows: dict[str, Record] = {}
                self.other: dict[str, Any] = {}

        @warmstart.warm(rows=RECORDS, other=RECORDS)
        class Before:
            def __init__(self) -> None:
                self.rows: dict[str, Record] = {}
                self.other: dict[str, Record] = {}

        Before.__name__ = Two.__name__ = "Two"
        with boot(store_path):
            before = Before()
            before.rows.update(make_records(3))
            before.other.update(make_records(3))
        with pytest.raises(IncompatibleVersionError), boot(store_path, strict=True):
            Two()  # strict: raises, and the failed boot saves nothing
        with (
            pytest.warns(ColdStartWarning, match=r"Two\.other.*changed type"),
            boot(store_path) as b,
        ):
            two = Two()
        assert two.rows == make_records(3)
        assert two.other == {}
        assert b.report.status == "partial"
        assert b.report.sections["Two.other"].status == "cold"
        assert "changed type" in b.report.sections["Two.other"].reason

    def test_section_missing_from_the_generation(self, store_path: Path) -> None:
        """A new warm attribute starts cold and says it is not in the generation."""
        save_rows(store_path, make_records(1))

        @warmstart.warm(rows=RECORDS, extra=RECORDS)
        class Grown:
            def __init__(self) -> None:
                self.rows: dict[str, Record] = {}
                self.extra: dict[str, Record] = {}

        Grown.__name__ = "Rows"
        with boot(store_path) as b:
            grown = Grown()
        assert grown.rows == make_records(1)
        assert b.report.sections["Rows.extra"].reason == "not in generation 1"

    def test_invalid_entries_are_dropped_and_counted(self, store_path: Path) -> None:
        """An entry the contract rejects is dropped; the rest restore."""

        class Loose(msgspec.Struct):
            id: int
            name: str

        class Strict(msgspec.Struct):
            id: int
            name: str

            def __post_init__(self) -> None:
                if self.id < 0:
                    raise ValueError("negative id")

        @warmstart.warm(rows=warmstart.Contract("row", Loose))
        class Writer:
            def __init__(self) -> None:
                self.rows: dict[str, Any] = {}

        @warmstart.warm(rows=warmstart.Contract("row", Strict, version=2, upgraders={1: dict}))
        class Reader:
            def __init__(self) -> None:
                self.rows: dict[str, Any] = {}

        Writer.__name__ = Reader.__name__ = "Svc"
        with boot(store_path):
            Writer().rows.update({"a": Loose(1, "a"), "b": Loose(-1, "b"), "c": Loose(3, "c")})
        with boot(store_path) as b:
            reader = Reader()
        assert sorted(reader.rows) == ["a", "c"]
        section = b.report.sections["Svc.rows"]
        assert (section.restored, section.upgraded, section.dropped_invalid) == (2, 2, 1)
        assert "negative id" in section.errors[0]


class TestStaleness:
    """``max_age`` and ``validate``/``refresh`` decide whether a checkpoint is fresh enough."""

    @pytest.mark.parametrize(
        ("max_age", "warm"),
        [
            (90, True),
            (datetime.timedelta(seconds=30), False),
            ("90s", True),
            ("1m", True),  # exactly max_age old is still fresh
            ("1h", True),
            (59.5, False),
        ],
    )
    def test_max_age(self, store_path: Path, clock: FakeClock, max_age: Any, warm: bool) -> None:
        """A checkpoint older than ``max_age`` (seconds, timedelta or text) starts cold."""
        save_rows(store_path, make_records(2), clock=clock)
        clock.advance(60)
        with boot(store_path, clock=clock, max_age=max_age) as b:
            rows = Rows()
        assert b.report.generation_age == 60
        assert (b.report.status == "warm") is warm
        assert rows.rows == (make_records(2) if warm else {})
        if not warm:
            assert "60s old" in b.report.reason

    @pytest.mark.parametrize("bad", ["soon", -1, "5 parsecs", True])
    def test_bad_durations_are_refused(self, bad: Any) -> None:
        """A duration that is not one is refused with the accepted forms."""
        with pytest.raises(ValueError, match="Expected"):
            parse_duration(bad)

    def test_validate_sees_the_watermark(self, store_path: Path) -> None:
        """``validate(watermark)`` gets the watermark saved with the checkpoint; False is cold."""
        save_rows(store_path, make_records(2), watermark=lambda: {"lsn": 41})
        seen: list[Any] = []

        def validate(watermark: Any) -> bool:
            seen.append(watermark)
            return bool(watermark["lsn"] >= 42)

        with boot(store_path, validate=validate) as b:
            rows = Rows()
        assert seen == [{"lsn": 41}]
        assert rows.rows == {}
        assert b.report.status == "cold"
        assert "rejected by validate()" in b.report.reason
        assert b.report.watermark == {"lsn": 41}

    def test_validate_raising_is_stale(self, store_path: Path) -> None:
        """A validate() that raises counts as stale; with strict it raises."""
        save_rows(store_path, make_records(2))

        def validate(watermark: Any) -> bool:
            raise ConnectionError

        with boot(store_path, validate=validate) as b:
            assert Rows().rows == {}
        assert b.report.status == "cold"
        with pytest.raises(ConnectionError), boot(store_path, validate=validate, strict=True):
            pass

    def test_refresh_reloads_the_hot_keys(self, store_path: Path) -> None:
        """With ``refresh``, a stale checkpoint hands its hot keys over, hottest first."""
        save_rows(store_path, make_records(5))
        calls: list[tuple[str, list[str]]] = []

        def refresh(section: str, keys: list[str]) -> dict[str, Record]:
            calls.append((section, keys))
            return {key: record(int(key[1:]), salt=100) for key in keys[:2]}

        with boot(store_path, validate=lambda w: False, refresh=refresh) as b:
            rows = Rows()
            assert b.wait_ready(5)
        assert calls == [("Rows.rows", ["k4", "k3", "k2", "k1", "k0"])]
        assert rows.rows == {"k4": record(4, salt=100), "k3": record(3, salt=100)}
        assert b.report.status == "cold"
        assert "refresh" in b.report.reason
        section = b.report.sections["Rows.rows"]
        assert (section.status, section.saved, section.restored) == ("warm", 5, 5)


class TestCheckpoints:
    """Explicit, exit and periodic checkpoints, and the shutdown deadline."""

    def test_explicit_checkpoints_count_up(self, store_path: Path) -> None:
        """``checkpoint()`` saves now and returns the new generation."""
        with boot(store_path) as b:
            rows = Rows()
            rows.rows.update(make_records(1))
            assert b.checkpoint().generation == 1
            rows.rows.update(make_records(2))
            assert b.checkpoint().generation == 2
        with warmstart.Store(store_path) as store:
            assert store.load(NS).generation == 3
            assert store.load(NS, generation=1).section("Rows.rows", RECORDS) == make_records(1)

    def test_nothing_attached_saves_nothing(self, store_path: Path) -> None:
        """A boot without warm objects never commits an (empty) generation."""
        save_rows(store_path, make_records(1))
        with boot(store_path) as b:
            report = b.checkpoint()
            assert (report.generation, report.status) == (None, "nothing")
        with warmstart.Store(store_path) as store:
            assert store.load(NS).generation == 1

    def test_periodic_checkpoints_are_deltas(self, store_path: Path) -> None:
        """Every ``interval`` a delta checkpoint saves what changed."""
        Rows.factory = warmstart.TrackedDict
        try:
            with boot(store_path, interval=0.05) as b:
                rows = Rows()
                rows.rows.update(make_records(10))
                deadline = time.monotonic() + 10
                while b.metrics.get("checkpoints_total") < 3 and time.monotonic() < deadline:
                    rows.rows[f"x{int(b.metrics.get('checkpoints_total'))}"] = record(1)
                    time.sleep(0.02)
                assert b.metrics.get("checkpoints_total") >= 3
        finally:
            Rows.factory = dict
        with warmstart.Store(store_path) as store:
            kinds = [store.manifest(NS, g.generation).kind for g in store.generations(NS)]
            assert "delta" in kinds
            assert store.load(NS).section("Rows.rows", RECORDS) == dict(rows.rows)

    def test_no_periodic_checkpoint_before_an_object_is_attached(self, store_path: Path) -> None:
        """Periodic ticks before the first attach do not commit empty generations."""
        save_rows(store_path, make_records(3))
        with boot(store_path, interval=0.05) as b:
            time.sleep(0.3)  # several ticks with nothing attached
            assert b.metrics.get("checkpoints_total") == 0
            rows = Rows()
        assert rows.rows == make_records(3)
        with warmstart.Store(store_path) as store:
            for info in store.generations(NS):
                snapshot = store.load(NS, generation=info.generation)
                assert snapshot.section("Rows.rows", RECORDS) == make_records(3)

    def test_deadline_leaves_the_previous_generation(self, store_path: Path) -> None:
        """An exit checkpoint that cannot finish in time is abandoned; the head stays."""
        save_rows(store_path, make_records(1))
        release = threading.Event()

        def watermark() -> int:
            release.wait(10)
            return 1

        b = boot(store_path, deadline=0.2, watermark=watermark)
        with b:
            Rows().rows.update(make_records(2))
            started = time.monotonic()
        assert time.monotonic() - started < 2
        assert b.store is not None
        assert b.store.load(NS).generation == 1  # the store stays open for that thread
        release.set()
        assert b._final is not None
        b._final.join(10)
        # Released late, the abandoned checkpoint did not commit; the store is closed.
        with warmstart.Store(store_path) as store:
            assert [g.generation for g in store.generations(NS)] == [1]
        assert b.metrics.get("checkpoint_failures_total") == 1

    def test_checkpoint_failures_never_reach_the_service(self, store_path: Path) -> None:
        """A failing checkpoint is logged and counted; with strict it raises."""

        with boot(store_path) as b:
            Rows().rows["bad"] = "not a Record"
            report = b.checkpoint()
            assert (report.generation, report.status) == (None, "failed")
            assert "Rows.rows" in report.failed
        assert b.metrics.get("checkpoint_failures_total") == 2  # explicit and exit
        with boot(store_path, watermark=object) as b:
            Rows()  # a watermark that cannot be encoded fails the checkpoint too
        assert b.metrics.get("checkpoint_failures_total") == 1
        with boot(store_path, strict=True) as b:
            Rows().rows["bad"] = "not a Record"
            with pytest.raises(EncodeError, match="Record"):
                b.checkpoint()
            b._attached = type(b._attached)(b._lock)  # no exit checkpoint either


class TestProgressive:
    """The hot part comes back before the service goes on; the rest in the background."""

    def test_hot_first_then_ready(self, store_path: Path) -> None:
        """After ``__init__`` the hottest entries are in place and readiness is partial."""
        save_rows(store_path, {f"k{i}": record(i) for i in range(BIG)})
        with boot(store_path) as b:
            rows = LockedRows(hold=True)
            assert not b.ready.is_set()
            assert 0 < b.readiness < 1
            assert b.report.sections["Rows.rows"].status == "warming"
            assert f"k{BIG - 1}" in rows.rows  # the most recent entries first
            assert "k0" not in rows.rows
            assert b.report.time_to_ready is not None
            rows.lock.release()
            assert b.wait_ready(10)
            assert b.readiness == 1.0
        assert rows.rows == {f"k{i}": record(i) for i in range(BIG)}
        assert b.report.sections["Rows.rows"].status == "warm"
        assert b.report.time_to_warm is not None
        assert b.report.time_to_warm >= b.report.time_to_ready

    def test_not_progressive_restores_everything_first(self, store_path: Path) -> None:
        """``progressive=False`` restores every entry before ``__init__`` returns."""
        save_rows(store_path, {f"k{i}": record(i) for i in range(BIG)})
        with boot(store_path, progressive=False) as b:
            rows = LockedRows(hold=True)
            assert b.ready.is_set()
            assert len(rows.rows) == BIG
            rows.lock.release()

    def test_lru_without_lock_is_restored_eagerly(
        self, store_path: Path, rows_in: Callable[..., type[Rows]]
    ) -> None:
        """A cachetools cache without ``lock=`` is not shared with a thread: restored at once."""
        save_rows(store_path, {f"k{i}": record(i) for i in range(BIG)})
        cls = rows_in(lambda: cachetools.LRUCache(maxsize=BIG))
        with boot(store_path) as b:
            rows = cls()
            assert len(rows.rows) == BIG
        assert "not thread-safe" in b.report.sections["Rows.rows"].reason

    def test_lru_with_lock_keeps_recency(self, store_path: Path) -> None:
        """A locked LRU cache restores in the background and ends in the saved recency order."""
        keys = [f"k{i}" for i in range(BIG)]
        save_rows(store_path, {k: record(i) for i, k in enumerate(keys)})
        LockedRows.factory = lambda: cachetools.LRUCache(maxsize=BIG)
        try:
            with boot(store_path) as b:
                rows = LockedRows(hold=True)
                assert b.report.sections["Rows.rows"].status == "warming"
                rows.lock.release()
                assert b.wait_ready(10)
        finally:
            LockedRows.factory = dict
        assert eviction_order(rows.rows) == keys

    def test_a_live_write_is_never_overwritten(self, store_path: Path) -> None:
        """A value written during the background phase survives it, and the next restart."""
        save_rows(store_path, {f"k{i}": record(i) for i in range(BIG)})
        LockedRows.factory = warmstart.TrackedDict
        try:
            with boot(store_path) as b:
                rows = LockedRows(hold=True)
                rows.rows["k0"] = record(0, salt=-1)  # a cold key, not restored yet
                rows.rows["fresh"] = record(1, salt=-1)
                rows.lock.release()
                assert b.wait_ready(10)
                assert rows.rows["k0"] == record(0, salt=-1)
            assert b.report.sections["Rows.rows"].skipped_live == 1
            with boot(store_path) as again:
                restarted = LockedRows()
                assert again.wait_ready(10)
        finally:
            LockedRows.factory = dict
        assert restarted.rows["k0"] == record(0, salt=-1)
        assert restarted.rows["fresh"] == record(1, salt=-1)
        assert len(restarted.rows) == BIG + 1

    @pytest.mark.parametrize("kind", ["dict", "TrackedDict", "locked LRUCache"])
    def test_concurrent_readers_and_writers(self, store_path: Path, kind: str) -> None:
        """Readers and writers running during the background phase: no error, no lost write."""
        original = {f"k{i}": record(i) for i in range(BIG)}
        save_rows(store_path, original)
        factories: dict[str, Callable[[], Any]] = {
            "dict": dict,
            "TrackedDict": warmstart.TrackedDict,
            "locked LRUCache": lambda: cachetools.LRUCache(maxsize=2 * BIG),
        }
        LockedRows.factory = factories[kind]
        locked = kind.startswith("locked")
        writers, written = 3, [dict[str, Record]() for _ in range(3)]
        errors: list[BaseException] = []
        start = threading.Barrier(writers + 3)

        def write(n: int) -> None:
            rng = random.Random(n)
            start.wait()
            for step in range(3000):
                # Each writer owns the keys i % writers == n: its last write must win.
                key = f"k{rng.randrange(n, BIG, writers)}" if step % 4 else f"new{n}-{step}"
                value = record(step, salt=-(n + 1) * 100_000)
                if locked:
                    with rows.lock:
                        rows.rows[key] = value
                else:
                    rows.rows[key] = value
                written[n][key] = value

        def read() -> None:
            rng = random.Random(99)
            start.wait()
            try:
                for _ in range(6000):
                    key = f"k{rng.randrange(BIG)}"
                    with rows.lock if locked else _nothing():
                        value = rows.rows.get(key)
                    assert value is None or value == original[key] or value.id < 0
            except BaseException as exc:
                errors.append(exc)

        switch = sys.getswitchinterval()
        sys.setswitchinterval(1e-5)
        try:
            with boot(store_path) as b:
                rows = LockedRows()
                threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
                threads += [threading.Thread(target=read) for _ in range(2)]
                for thread in threads:
                    thread.start()
                start.wait()
                for thread in threads:
                    thread.join(60)
                assert b.wait_ready(30)
        finally:
            sys.setswitchinterval(switch)
            LockedRows.factory = dict
        assert errors == []
        expected = dict(original)
        for mine in written:
            expected.update(mine)
        assert dict(rows.rows.items()) == expected


class TestKeysOnly:
    """Key-only sections save which keys were hot and prefetch them at boot."""

    def test_sync_prefetch_with_bounded_concurrency(self, store_path: Path) -> None:
        """``prefetch`` runs in threads, at most ``prefetch_concurrency`` at once, hottest first."""
        running, peak, calls = 0, 0, []
        lock = threading.Lock()

        def prefetch(keys: list[int]) -> dict[int, Record]:
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
                calls.append(keys)
            time.sleep(0.02)
            with lock:
                running -= 1
            return {k: record(k) for k in keys}

        contract = warmstart.Contract("record", Record, key=int)

        @warmstart.warm(
            hot=warmstart.state(contract, keys_only=True, prefetch=prefetch, max_keys=100)
        )
        class Hot:
            def __init__(self) -> None:
                self.hot: cachetools.LRUCache[int, Record] = cachetools.LRUCache(maxsize=500)

        with boot(store_path):
            Hot().hot.update({i: record(i) for i in range(300)})
        with warmstart.Store(store_path) as store:
            section = store.manifest(NS).section("Hot.hot")
            assert section is not None
            assert (section.schema.contract, section.entries) == ("warmstart.hot-keys", 100)
        with boot(store_path, prefetch_concurrency=3, prefetch_batch=10) as b:
            hot = Hot()
            assert b.wait_ready(10)
        assert 1 < peak <= 3
        assert sorted(k for batch in calls for k in batch) == list(range(200, 300))
        assert calls[0][0] == 299 or 299 in calls[0]  # the hottest keys go first
        assert set(hot.hot) == set(range(200, 300))
        section_report = b.report.sections["Hot.hot"]
        assert (section_report.saved, section_report.prefetched) == (100, 100)

    def test_async_prefetch_runs_on_the_loop(self, store_path: Path) -> None:
        """A coroutine ``prefetch`` is awaited on the boot's loop, with bounded concurrency."""
        running, peak = 0, 0
        loops: set[asyncio.AbstractEventLoop] = set()

        async def prefetch(keys: list[str]) -> dict[str, Record]:
            nonlocal running, peak
            loops.add(asyncio.get_running_loop())
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.01)
            running -= 1
            return {k: record(int(k[1:])) for k in keys}

        @warmstart.warm(hot=warmstart.state(RECORDS, keys_only=True, prefetch=prefetch))
        class Hot:
            def __init__(self) -> None:
                self.hot: dict[str, Record] = {}

        async def service() -> tuple[asyncio.AbstractEventLoop, dict[str, Record]]:
            async with boot(store_path, prefetch_concurrency=2, prefetch_batch=5) as b:
                hot = Hot()
                hot.hot.update({f"k{i}": record(i) for i in range(40)})
                assert await asyncio.to_thread(b.wait_ready, 10)
            return asyncio.get_running_loop(), hot.hot

        asyncio.run(service())
        loop, restored = asyncio.run(service())
        assert loops == {loop}
        assert peak == 2
        assert restored == {f"k{i}": record(i) for i in range(40)}

    def test_failed_batches_are_skipped(
        self, store_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A prefetch batch that raises is logged; the other batches are inserted."""

        def prefetch(keys: list[str]) -> dict[str, Record]:
            if "k0" in keys:
                raise TimeoutError
            return {k: record(int(k[1:])) for k in keys}

        @warmstart.warm(hot=warmstart.state(RECORDS, keys_only=True, prefetch=prefetch))
        class Hot:
            def __init__(self) -> None:
                self.hot: dict[str, Record] = {}

        with boot(store_path):
            Hot().hot.update({f"k{i}": record(i) for i in range(10)})
        with caplog.at_level(logging.WARNING), boot(store_path, prefetch_batch=5) as b:
            hot = Hot()
            assert b.wait_ready(10)
        assert sorted(hot.hot) == [f"k{i}" for i in range(5, 10)]
        assert "prefetch of 5 keys failed" in caplog.text
        assert b.report.sections["Hot.hot"].prefetched == 5


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
