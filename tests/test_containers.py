"""Reading entries out of service containers and restoring them into the same kind of object."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import cachetools
import msgspec
import pytest

import warmstart
from warmstart._containers import check_container, entries_of, restore_into
from warmstart.delta import change_log


class Item(msgspec.Struct):
    """A small record stored in the containers under test."""

    n: int


ITEMS = warmstart.Contract("item", Item, key=str)


class Timer:
    """A monotonic timer for cachetools' ``timer=`` parameter, moved by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Unsupported(MutableMapping[Any, Any]):
    """A user-defined mapping the restore does not know how to keep a policy for."""

    def __init__(self) -> None:
        self.data: dict[Any, Any] = {}

    def __getitem__(self, key: Any) -> Any:
        return self.data[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self.data[key] = value

    def __delitem__(self, key: Any) -> None:
        del self.data[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def fill(mapping: MutableMapping[str, Item], keys: str) -> None:
    for i, key in enumerate(keys):
        mapping[key] = Item(i)


def untimed_caches() -> list[cachetools.Cache[Any, Any]]:
    return [
        cachetools.Cache(maxsize=100),
        cachetools.LRUCache(maxsize=100),
        cachetools.LFUCache(maxsize=100),
        cachetools.FIFOCache(maxsize=100),
        cachetools.RRCache(maxsize=100),
    ]


def all_containers() -> list[MutableMapping[str, Item]]:
    timer = Timer()
    return [
        {},
        collections.OrderedDict(),
        warmstart.TrackedDict(),
        *untimed_caches(),
        cachetools.TTLCache(maxsize=100, ttl=60, timer=timer),
        cachetools.TLRUCache(maxsize=100, ttu=lambda _k, _v, now: now + 60, timer=timer),
    ]


def ids(containers: list[MutableMapping[str, Item]]) -> list[str]:
    return [type(c).__name__ for c in containers]


class TestEntriesOf:
    """entries_of reads entries coldest first, without touching recency."""

    def test_dict_keeps_insertion_order(self) -> None:
        """A dict's entries come out in insertion order, with no expiries."""
        d: dict[str, Item] = {}
        fill(d, "cab")
        assert entries_of(d) == (["c", "a", "b"], [Item(0), Item(1), Item(2)], [])

    def test_ordered_dict_keeps_its_own_order(self) -> None:
        """An OrderedDict's move_to_end is reflected in the saved order."""
        d: collections.OrderedDict[str, Item] = collections.OrderedDict()
        fill(d, "abc")
        d.move_to_end("a")
        assert entries_of(d)[0] == ["b", "c", "a"]

    def test_tracked_dict(self) -> None:
        """A TrackedDict is read like the dict behind it."""
        d: warmstart.TrackedDict[str, Item] = warmstart.TrackedDict()
        fill(d, "xyz")
        assert entries_of(d) == (["x", "y", "z"], [Item(0), Item(1), Item(2)], [])

    def test_lru_cache_is_read_lru_to_mru(self) -> None:
        """An LRUCache is read from least to most recently used."""
        cache: cachetools.LRUCache[str, Item] = cachetools.LRUCache(maxsize=10)
        fill(cache, "abcd")
        _ = cache["b"]
        _ = cache["a"]
        keys, values, expires = entries_of(cache)
        assert keys == ["c", "d", "b", "a"]
        assert values == [Item(2), Item(3), Item(1), Item(0)]
        assert expires == []

    def test_reading_an_lru_cache_does_not_touch_recency(self) -> None:
        """Reading for a checkpoint leaves the eviction order as it was."""
        cache: cachetools.LRUCache[str, Item] = cachetools.LRUCache(maxsize=4)
        fill(cache, "abcd")
        entries_of(cache)
        entries_of(cache)
        cache["e"] = Item(9)
        assert list(cache) == ["b", "c", "d", "e"]

    def test_fifo_cache_is_read_in_insertion_order(self) -> None:
        """A FIFOCache is read oldest first, whatever was read since."""
        cache: cachetools.FIFOCache[str, Item] = cachetools.FIFOCache(maxsize=10)
        fill(cache, "abc")
        _ = cache["a"]
        assert entries_of(cache)[0] == ["a", "b", "c"]

    @pytest.mark.parametrize(
        "cache",
        [cachetools.Cache(maxsize=10), cachetools.LFUCache(maxsize=10), cachetools.RRCache(10)],
        ids=["Cache", "LFUCache", "RRCache"],
    )
    def test_unordered_caches_give_every_entry(self, cache: cachetools.Cache[str, Item]) -> None:
        """Caches without a recency order give every entry, in insertion order."""
        fill(cache, "abc")
        _ = cache["a"]
        assert entries_of(cache) == (["a", "b", "c"], [Item(0), Item(1), Item(2)], [])

    def test_lfu_reading_does_not_count_as_a_use(self) -> None:
        """Reading an LFUCache for a checkpoint does not change which entry is evicted next."""
        cache: cachetools.LFUCache[str, Item] = cachetools.LFUCache(maxsize=2)
        fill(cache, "ab")
        _ = cache["a"]
        for _ in range(3):
            entries_of(cache)
        cache["c"] = Item(2)
        assert sorted(cache) == ["a", "c"]

    def test_ttl_cache_is_read_soonest_expiry_first_on_the_wall_clock(self) -> None:
        """A TTLCache gives wall-clock expiries, soonest first, even after reads moved recency."""
        timer = Timer(1000.0)
        cache: cachetools.TTLCache[str, Item] = cachetools.TTLCache(10, ttl=100, timer=timer)
        for i, key in enumerate("abc"):
            cache[key] = Item(i)
            timer.now += 10
        _ = cache["a"]  # moves "a" to the recency end, not its expiry
        timer.now = 1050.0
        before = time.time()
        keys, values, expires = entries_of(cache)
        after = time.time()
        assert keys == ["a", "b", "c"]
        assert values == [Item(0), Item(1), Item(2)]
        # a expires at timer 1100, i.e. 50 s from now on the wall clock.
        for expiry, left in zip(expires, [50, 60, 70]):
            assert before + left - 0.01 <= expiry <= after + left + 0.01

    def test_ttl_cache_skips_expired_entries(self) -> None:
        """Entries already expired (but not yet purged) are not saved."""
        timer = Timer(0.0)
        cache: cachetools.TTLCache[str, Item] = cachetools.TTLCache(10, ttl=10, timer=timer)
        cache["old"] = Item(0)
        timer.now = 5.0
        cache["new"] = Item(1)
        timer.now = 12.0
        assert entries_of(cache)[0] == ["new"]

    def test_tlru_cache_is_read_soonest_expiry_first(self) -> None:
        """A TLRUCache with per-entry time-to-use is read soonest expiry first."""
        timer = Timer(0.0)
        ttu = {"a": 30.0, "b": 10.0, "c": 20.0, "gone": 1.0}
        cache: cachetools.TLRUCache[str, Item] = cachetools.TLRUCache(
            10, ttu=lambda k, _v, now: now + ttu[k], timer=timer
        )
        for i, key in enumerate(ttu):
            cache[key] = Item(i)
        timer.now = 2.0
        before = time.time()
        keys, values, expires = entries_of(cache)
        assert keys == ["b", "c", "a"]
        assert values == [Item(1), Item(2), Item(0)]
        assert expires == pytest.approx([before + 8, before + 18, before + 28], abs=0.5)

    def test_tracked_caches_are_read_like_untracked_ones(self) -> None:
        """Change tracking does not change what entries_of sees."""
        plain: cachetools.LRUCache[str, Item] = cachetools.LRUCache(maxsize=10)
        tracked = warmstart.track(cachetools.LRUCache(maxsize=10))
        for cache in (plain, tracked):
            fill(cache, "abc")
            _ = cache["a"]
        assert entries_of(tracked) == entries_of(plain)


class TestRestoreInto:
    """restore_into inserts entries back into the same object, keeping its policy."""

    @pytest.mark.parametrize("container", all_containers(), ids=ids(all_containers()))
    def test_round_trip_into_a_fresh_container(self, container: MutableMapping[str, Item]) -> None:
        """Entries read from a container come back equal, in the same saved order."""
        source = type(container)() if isinstance(container, dict) else container
        fill(source, "qwerty")
        keys, values, expires = entries_of(source)
        target = self._fresh_like(source)
        stats = restore_into(target, keys, values, expires)
        assert stats == warmstart._containers.RestoreStats(inserted=6)
        assert entries_of(target)[:2] == (keys, values)

    @staticmethod
    def _fresh_like(source: MutableMapping[str, Item]) -> MutableMapping[str, Item]:
        if isinstance(source, cachetools.TTLCache):
            return cachetools.TTLCache(100, ttl=60, timer=Timer())
        if isinstance(source, cachetools.TLRUCache):
            return cachetools.TLRUCache(100, ttu=lambda _k, _v, now: now + 60, timer=Timer())
        if isinstance(source, cachetools.Cache):
            return type(source)(maxsize=100)
        return type(source)()

    def test_dict_restore_into_non_empty_moves_restored_keys_to_the_end(self) -> None:
        """With overwrite, a restored key replaces the live one and moves to the end."""
        d = {"a": Item(-1), "z": Item(-2)}
        stats = restore_into(d, ["a", "b"], [Item(0), Item(1)], [])
        assert list(d.items()) == [("z", Item(-2)), ("a", Item(0)), ("b", Item(1))]
        assert stats.inserted == 2

    @pytest.mark.parametrize("container", all_containers(), ids=ids(all_containers()))
    def test_overwrite_false_never_overwrites_a_live_key(
        self, container: MutableMapping[str, Item]
    ) -> None:
        """A background restore keeps values the live service wrote since boot."""
        live = Item(100)
        container["b"] = live
        stats = restore_into(
            container, ["a", "b", "c"], [Item(0), Item(1), Item(2)], [], overwrite=False
        )
        assert container["b"] is live
        assert container["a"] == Item(0)
        assert container["c"] == Item(2)
        assert (stats.inserted, stats.skipped_live) == (2, 1)

    def test_lru_restore_keeps_recency(self) -> None:
        """A restored LRUCache evicts in the order the saved one would have."""
        source: cachetools.LRUCache[str, Item] = cachetools.LRUCache(maxsize=4)
        fill(source, "abcd")
        _ = source["a"]
        _ = source["c"]
        target: cachetools.LRUCache[str, Item] = cachetools.LRUCache(maxsize=4)
        restore_into(target, *entries_of(source))
        for cache in (source, target):
            cache["x"] = Item(9)
            cache["y"] = Item(9)
        assert list(target) == list(source) == ["a", "c", "x", "y"]

    def test_smaller_lru_keeps_the_most_recent_and_they_stay_most_recent(self) -> None:
        """Into a smaller LRUCache only the hottest entries go, and they stay hot."""
        source: cachetools.LRUCache[str, Item] = cachetools.LRUCache(maxsize=10)
        fill(source, "abcdef")
        _ = source["b"]
        keys, values, expires = entries_of(source)
        assert keys == ["a", "c", "d", "e", "f", "b"]
        target: cachetools.LRUCache[str, Item] = cachetools.LRUCache(maxsize=3)
        stats = restore_into(target, keys, values, expires)
        assert (stats.inserted, stats.skipped_capacity) == (3, 3)
        assert entries_of(target)[0] == ["e", "f", "b"]
        target["new"] = Item(9)
        assert entries_of(target)[0] == ["f", "b", "new"]

    @pytest.mark.parametrize(
        "factory",
        [cachetools.Cache, cachetools.FIFOCache, cachetools.LFUCache, cachetools.RRCache],
        ids=["Cache", "FIFOCache", "LFUCache", "RRCache"],
    )
    def test_capacity_is_respected(self, factory: Any) -> None:
        """Only as many entries as fit go in, the last (hottest) ones, nothing evicted."""
        target = factory(maxsize=2)
        stats = restore_into(target, ["a", "b", "c"], [Item(0), Item(1), Item(2)], [])
        assert dict(target) == {"b": Item(1), "c": Item(2)}
        assert (stats.inserted, stats.skipped_capacity) == (2, 1)

    def test_background_restore_fills_only_the_room_left(self) -> None:
        """Without overwrite, live entries are never evicted to make room."""
        target: cachetools.LRUCache[str, Item] = cachetools.LRUCache(maxsize=3)
        target["live1"] = Item(100)
        target["live2"] = Item(101)
        stats = restore_into(
            target, ["a", "b", "c"], [Item(0), Item(1), Item(2)], [], overwrite=False
        )
        assert set(target) == {"live1", "live2", "c"}
        assert (stats.inserted, stats.skipped_capacity) == (1, 2)

    def test_ttl_remaining_lifetime_is_rebased_on_the_wall_clock(self) -> None:
        """A TTL entry keeps the lifetime it had left, whatever the new cache's timer reads."""
        timer = Timer(50_000.0)
        target: cachetools.TTLCache[str, Item] = cachetools.TTLCache(10, ttl=100, timer=timer)
        wall = 1_700_000_000.0
        stats = restore_into(
            target, ["a", "b"], [Item(0), Item(1)], [wall + 10, wall + 40], now=wall
        )
        assert stats.inserted == 2
        timer.now = 50_009.9
        assert sorted(target) == ["a", "b"]
        timer.now = 50_010.1
        assert sorted(target) == ["b"]
        assert len(target) == 1
        timer.now = 50_040.1
        assert len(target) == 0

    def test_ttl_lifetime_is_capped_at_the_cache_ttl(self) -> None:
        """An entry saved with more lifetime than the new cache's ttl gets the ttl."""
        timer = Timer(0.0)
        target: cachetools.TTLCache[str, Item] = cachetools.TTLCache(10, ttl=5, timer=timer)
        restore_into(target, ["a"], [Item(0)], [1000.0], now=0.0)
        timer.now = 5.1
        assert "a" not in target

    def test_ttl_expired_entries_are_skipped_and_counted(self) -> None:
        """Entries whose wall-clock expiry passed are not inserted."""
        target: cachetools.TTLCache[str, Item] = cachetools.TTLCache(10, ttl=100, timer=Timer())
        stats = restore_into(
            target, ["a", "b", "c"], [Item(0), Item(1), Item(2)], [5.0, 10.0, 30.0], now=10.0
        )
        assert list(target) == ["c"]
        assert (stats.inserted, stats.skipped_expired) == (1, 2)

    def test_ttl_round_trip_then_expiry_purges_in_order(self) -> None:
        """After a save of a TTLCache with reads, a restored cache expires every entry on time."""
        timer = Timer(0.0)
        source: cachetools.TTLCache[str, Item] = cachetools.TTLCache(10, ttl=100, timer=timer)
        for i, key in enumerate("abc"):
            timer.now = 10.0 * i
            source[key] = Item(i)
        _ = source["a"]
        _ = source["b"]
        keys, values, expires = entries_of(source)
        wall = time.time()
        target_timer = Timer(0.0)
        target: cachetools.TTLCache[str, Item] = cachetools.TTLCache(
            10, ttl=100, timer=target_timer
        )
        restore_into(target, keys, values, expires, now=wall)
        # Saved at timer 20: a, b, c had 80, 90, 100 s left.
        target_timer.now = 85.0
        assert sorted(target) == ["b", "c"]
        assert len(target) == 2
        target_timer.now = 95.0
        assert len(target) == 1

    def test_ttl_background_restore_leaves_live_lifetimes_alone(self) -> None:
        """A live TTL entry skipped by a background restore keeps its own expiry."""
        timer = Timer(0.0)
        target: cachetools.TTLCache[str, Item] = cachetools.TTLCache(10, ttl=100, timer=timer)
        target["live"] = Item(100)
        stats = restore_into(
            target, ["live", "a"], [Item(0), Item(1)], [1005.0, 1050.0], overwrite=False, now=1000.0
        )
        assert stats.skipped_live == 1
        timer.now = 60.0
        assert sorted(target) == ["live"]
        assert len(target) == 1
        timer.now = 100.1
        assert len(target) == 0

    def test_tlru_remaining_lifetime_then_the_cache_ttu_again(self) -> None:
        """Restored TLRU entries keep their remaining lifetime; later inserts use the ttu."""
        timer = Timer(500.0)
        target: cachetools.TLRUCache[str, Item] = cachetools.TLRUCache(
            10, ttu=lambda _k, _v, now: now + 1000, timer=timer
        )
        stats = restore_into(
            target, ["x", "a", "b"], [Item(9), Item(0), Item(1)], [1.0, 20.0, 30.0], now=10.0
        )
        assert (stats.inserted, stats.skipped_expired) == (2, 1)
        target["later"] = Item(2)
        timer.now = 510.1
        assert sorted(target) == ["b", "later"]
        timer.now = 520.1
        assert list(target) == ["later"]
        timer.now = 1499.9
        assert list(target) == ["later"]

    def test_tracked_dict_restore_is_recorded(self) -> None:
        """Restoring into a TrackedDict records the writes until a baseline is marked."""
        target: warmstart.TrackedDict[str, Item] = warmstart.TrackedDict()
        restore_into(target, ["a", "b"], [Item(0), Item(1)], [])
        assert target.take_changes().upserts == ["a", "b"]


class TestCheckContainer:
    """check_container accepts known containers and names them when it refuses one."""

    @pytest.mark.parametrize("container", all_containers(), ids=ids(all_containers()))
    def test_supported(self, container: MutableMapping[str, Item]) -> None:
        """Every documented container type is accepted."""
        check_container(container, "Svc.cache")

    def test_tracked_caches_are_supported(self) -> None:
        """A cachetools cache stays supported once tracked."""
        check_container(warmstart.track(cachetools.LRUCache(maxsize=2)), "Svc.cache")

    @pytest.mark.parametrize(
        "container",
        [Unsupported(), MappingProxyType({}), [], "text"],
        ids=["custom", "mappingproxy", "list", "str"],
    )
    def test_unsupported_types_are_rejected_with_the_supported_list(self, container: Any) -> None:
        """The error names the type found, where, and every supported container."""
        with pytest.raises(warmstart.ContractError) as info:
            check_container(container, "Svc.cache")
        message = str(info.value)
        assert type(container).__name__ in message
        assert "Svc.cache" in message
        for name in ("dict", "OrderedDict", "TrackedDict", "LRUCache", "TTLCache", "TLRUCache"):
            assert name in message


class TestTrack:
    """track() adds change tracking in place, and refuses what it cannot track faithfully."""

    @pytest.mark.parametrize(
        "mapping",
        [{}, collections.OrderedDict(), collections.defaultdict(int), type("Sub", (dict,), {})()],
        ids=["dict", "OrderedDict", "defaultdict", "dict-subclass"],
    )
    def test_dicts_are_refused(self, mapping: dict[str, Any]) -> None:
        """A dict (or subclass, whose C methods bypass tracking) raises ContractError."""
        with pytest.raises(warmstart.ContractError, match="TrackedDict"):
            warmstart.track(mapping)

    def test_track_keeps_the_object_and_its_content(self) -> None:
        """The same cache object comes back, with its entries and maxsize."""
        cache: cachetools.LRUCache[str, Item] = cachetools.LRUCache(maxsize=3)
        fill(cache, "ab")
        tracked = warmstart.track(cache)
        assert tracked is cache
        assert isinstance(cache, cachetools.LRUCache)
        assert warmstart.delta.is_tracked(cache)
        assert (dict(cache), cache.maxsize) == ({"a": Item(0), "b": Item(1)}, 3)
        assert warmstart.track(cache) is cache

    def test_evictions_are_deletions(self) -> None:
        """An LRU eviction is recorded as a deletion of the evicted key."""
        cache = warmstart.track(cachetools.LRUCache(maxsize=2))
        log = change_log(cache)
        assert log is not None
        log.take()
        fill(cache, "abc")
        changes = log.take()
        assert (changes.upserts, changes.deletes) == (["b", "c"], {"a"})

    def test_expiries_are_deletions(self) -> None:
        """A TTL expiry is recorded as a deletion of the expired key."""
        timer = Timer(0.0)
        cache = warmstart.track(cachetools.TTLCache(10, ttl=10, timer=timer))
        log = change_log(cache)
        assert log is not None
        cache["a"] = Item(0)
        log.take()
        timer.now = 11.0
        cache["b"] = Item(1)  # the insert purges "a"
        changes = log.take()
        assert (changes.upserts, changes.deletes) == (["b"], {"a"})


class TestDeltasOfCaches:
    """Evictions and expiries show up as deletions in the next delta checkpoint."""

    @staticmethod
    def _delta_of(store: warmstart.Store, namespace: str) -> tuple[list[Any], list[Any]]:
        with store.load(namespace) as snapshot:
            section = snapshot.section_manifest("c")
            assert snapshot.manifest.kind == "delta"
            refs = tuple(r for r in section.deltas if r.sequence == snapshot.generation)
            upserts: list[Any] = []
            deleted: list[Any] = []
            for _, decoded in snapshot.chunks("c", ITEMS, refs=refs):
                upserts += decoded.keys
                deleted += decoded.deleted
        return upserts, deleted

    def test_lru_evictions(self, tmp_path: Path) -> None:
        """Keys an LRUCache evicted are deleted by the next delta, and the load matches."""
        cache = warmstart.track(cachetools.LRUCache(maxsize=3))
        fill(cache, "abc")
        with warmstart.Store(tmp_path / "s", sync=False) as store:
            store.save("ns", {"c": (ITEMS, cache)})
            _ = cache["a"]  # an Item can change in place: a read counts as a write
            cache["d"] = Item(3)
            cache["e"] = Item(4)
            store.save("ns", {"c": (ITEMS, cache)})
            upserts, deleted = self._delta_of(store, "ns")
            assert (upserts, sorted(deleted)) == (["a", "d", "e"], ["b", "c"])
            with store.load("ns") as snapshot:
                assert list(snapshot.section("c", ITEMS).items()) == list(cache.items())

    def test_ttl_expiries(self, tmp_path: Path) -> None:
        """Keys a TTLCache expired are deleted by the next delta."""
        timer = Timer(0.0)
        cache = warmstart.track(cachetools.TTLCache(10, ttl=10, timer=timer))
        cache["a"] = Item(0)
        timer.now = 5.0
        cache["b"] = Item(1)
        with warmstart.Store(tmp_path / "s", sync=False) as store:
            store.save("ns", {"c": (ITEMS, cache)})
            timer.now = 12.0
            cache.expire()
            cache["c"] = Item(2)
            store.save("ns", {"c": (ITEMS, cache)})
            upserts, deleted = self._delta_of(store, "ns")
            assert (upserts, deleted) == (["c"], ["a"])
            with store.load("ns") as snapshot:
                section = snapshot.read("c", ITEMS)
            assert section.entries == {"b": Item(1), "c": Item(2)}
            assert set(section.expires) == {"b", "c"}
