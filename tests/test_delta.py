"""Change tracking, replay and compaction policy (warmstart.delta), without a store."""

from __future__ import annotations

import datetime
import enum
import itertools
import random
import threading
from typing import Any

import cachetools
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

import warmstart
from warmstart.delta import (
    ChangeLog,
    ChangeSet,
    CompactionPolicy,
    Fingerprints,
    FoldedChain,
    TrackedDict,
    _fingerprints,
    change_log,
    deeply_immutable,
    replay,
)
from warmstart.delta._table import KeyTable


class Frozen(msgspec.Struct, frozen=True):
    """An immutable value: compared by identity."""

    n: int


class Mutable(msgspec.Struct):
    """A mutable value: compared by the hash of its encoding."""

    n: int
    tags: list[int] = msgspec.field(default_factory=list)


ENCODE = msgspec.msgpack.Encoder().encode

keys = st.integers(0, 12)
values = st.integers(0, 1000)
# One op: ("set", key, value) / ("del", key) / ("clear",)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("set"), keys, values),
        st.tuples(st.just("del"), keys),
        st.tuples(st.just("clear")),
    ),
    max_size=40,
)
states = st.dictionaries(keys, values, max_size=12)


@st.composite
def deltas(draw: st.DrawFn) -> tuple[list[tuple[int, int]], list[int]]:
    """A well-formed delta: unique upsert keys, deletions disjoint from them."""
    upsert_keys = draw(st.lists(keys, unique=True, max_size=8))
    upserts = [(k, draw(values)) for k in upsert_keys]
    deletes = draw(st.lists(keys.filter(lambda k: k not in upsert_keys), unique=True, max_size=6))
    return upserts, deletes


def apply(mapping: Any, op: tuple[Any, ...]) -> None:
    if op[0] == "set":
        mapping[op[1]] = op[2]
    elif op[0] == "del":
        mapping.pop(op[1], None)
    else:
        mapping.clear()


def snapshot(log: ChangeLog) -> tuple[list[Any], set[Any], bool]:
    return list(log.dirty), set(log.deletes), log.cleared


class TestTrackedDict:
    """A TrackedDict records dirty keys in last-write order and deleted keys."""

    def test_it_behaves_as_a_dict(self) -> None:
        """Reads, iteration order, membership and repr follow the dict behind it."""
        d: TrackedDict[str, int] = TrackedDict({"b": 1}, a=2)
        d["c"] = 3
        assert list(d) == ["b", "a", "c"]
        assert (d["a"], d.get("z", 9), "c" in d, len(d)) == (2, 9, True, 3)
        assert list(d.items()) == [("b", 1), ("a", 2), ("c", 3)]
        assert list(d.keys()) == ["b", "a", "c"]
        assert list(d.values()) == [1, 2, 3]
        assert repr(d) == "TrackedDict({'b': 1, 'a': 2, 'c': 3})"
        assert warmstart.delta.is_tracked(d)

    def test_no_checkpoint_yet_means_full(self) -> None:
        """Before any checkpoint the history is unknown: the first change set is full."""
        d: TrackedDict[str, int] = TrackedDict(a=1)
        assert d.take_changes().full
        assert not d.take_changes().full

    def test_last_write_order_and_deletions(self) -> None:
        """Rewrites move a key to the end; a deleted key is only a deletion."""
        d: TrackedDict[str, int] = TrackedDict(a=1, b=2, c=3)
        d.mark_clean()
        d["a"] = 10
        d["x"] = 5
        d["a"] = 11
        del d["b"]
        d["c"] = 30
        del d["c"]
        d["b"] = 20
        changes = d.take_changes()
        assert changes == ChangeSet(upserts=["x", "a", "b"], deletes={"c"}, full=False)
        assert d.take_changes() == ChangeSet(upserts=[], deletes=set(), full=False)

    def test_clear_makes_the_next_checkpoint_full(self) -> None:
        """After clear() the next change set is full and holds only later writes."""
        d: TrackedDict[str, int] = TrackedDict(a=1)
        d.mark_clean()
        d["b"] = 2
        d.clear()
        d["c"] = 3
        assert d.take_changes() == ChangeSet(upserts=["c"], deletes=set(), full=True)

    def test_setdefault_records_only_an_insert(self) -> None:
        """setdefault on a present key is a read, on a missing key a write."""
        d: TrackedDict[str, int] = TrackedDict(a=1)
        d.mark_clean()
        assert d.setdefault("a", 5) == 1
        assert d.setdefault("b", 2) == 2
        assert d.take_changes().upserts == ["b"]

    def test_mutable_mapping_methods_are_tracked(self) -> None:
        """update, pop and popitem go through the tracked writes."""
        d: TrackedDict[str, int] = TrackedDict(a=1, b=2)
        d.mark_clean()
        d.update(c=3)
        d.pop("a")
        assert d.popitem() == ("b", 2)
        changes = d.take_changes()
        assert (changes.upserts, changes.deletes) == (["c"], {"a", "b"})
        assert dict(d) == {"c": 3}

    def test_every_concurrent_write_lands_in_exactly_one_change_set(self) -> None:
        """Writes racing checkpoints are each taken once, none lost."""
        d: TrackedDict[int, int] = TrackedDict()
        d.mark_clean()
        total = 20_000
        taken: list[Any] = []

        def writer() -> None:
            for i in range(total):
                d[i] = i

        thread = threading.Thread(target=writer)
        thread.start()
        while thread.is_alive():
            taken.extend(d.take_changes().upserts)
        thread.join()
        taken.extend(d.take_changes().upserts)
        assert sorted(taken) == list(range(total))


class TestChangeLogRestore:
    """A failed checkpoint puts its changes back as if they had never been taken."""

    @given(ops, ops)
    def test_put_back_equals_never_taken(
        self, first: list[tuple[Any, ...]], second: list[tuple[Any, ...]]
    ) -> None:
        """Take after the first ops, restore after the second: same record as no take."""
        taken_then_restored: TrackedDict[int, int] = TrackedDict()
        never_taken: TrackedDict[int, int] = TrackedDict()
        for d in (taken_then_restored, never_taken):
            d.mark_clean()
        for op in first:
            apply(taken_then_restored, op)
            apply(never_taken, op)
        failed = taken_then_restored.take_changes()
        for op in second:
            apply(taken_then_restored, op)
            apply(never_taken, op)
        taken_then_restored._warm_log.restore(failed)
        restored = snapshot(taken_then_restored._warm_log)
        expected = snapshot(never_taken._warm_log)
        assert restored[2] == expected[2]
        if not expected[2]:  # a full change set writes a base: its keys do not matter
            assert restored[:2] == expected[:2]
        assert not set(restored[0]) & restored[1]

    @given(ops, ops)
    def test_merge_back_keeps_upserts_and_deletes_disjoint(
        self, first: list[tuple[Any, ...]], second: list[tuple[Any, ...]]
    ) -> None:
        """A merged change set never both upserts and deletes a key."""
        d: TrackedDict[int, int] = TrackedDict()
        for op in first:
            apply(d, op)
        older = d.take_changes()
        for op in second:
            apply(d, op)
        merged = older.merge_back(d.take_changes())
        assert not set(merged.upserts) & merged.deletes
        assert len(merged.upserts) == len(set(merged.upserts))


class TestTrack:
    """track() makes a cachetools cache record its changes, in place."""

    def test_the_tracking_class_is_a_subclass_and_shared(self) -> None:
        """The swapped class keeps isinstance and is made once per cache class."""
        a = warmstart.track(cachetools.LRUCache(maxsize=4))
        b = warmstart.track(cachetools.LRUCache(maxsize=4))
        assert type(a) is type(b)
        assert isinstance(a, cachetools.LRUCache)
        assert type(a).__name__ == "TrackedLRUCache"

    def test_all_write_paths_are_recorded(self) -> None:
        """setitem, update, setdefault, pop, del and popitem are all recorded."""
        cache = warmstart.track(cachetools.LRUCache(maxsize=10))
        cache.update({"a": 1, "b": 2, "c": 3, "d": 4})
        log = change_log(cache)
        assert log is not None
        log.take()
        cache["e"] = 5
        cache.setdefault("f", 6)
        cache.setdefault("a", 0)
        cache.pop("b")
        del cache["c"]
        popped, _ = cache.popitem()
        changes = log.take()
        assert changes.upserts == ["e", "f"]
        assert changes.deletes == {"b", "c", popped}

    def test_clear_makes_the_next_checkpoint_full(self) -> None:
        """Clearing a tracked cache marks its history unknown."""
        cache = warmstart.track(cachetools.FIFOCache(maxsize=10))
        cache["a"] = 1
        log = change_log(cache)
        assert log is not None
        log.take()
        cache.clear()
        assert log.take().full

    def test_tlru_expiries_are_deletions(self) -> None:
        """A TLRUCache purge through expire() records its keys as deleted."""
        now = [0.0]
        cache = warmstart.track(
            cachetools.TLRUCache(10, ttu=lambda _k, v, t: t + v, timer=lambda: now[0])
        )
        cache["short"] = 1
        cache["long"] = 100
        log = change_log(cache)
        assert log is not None
        log.take()
        now[0] = 5.0
        assert cache.expire() == [("short", 1)]
        assert log.take().deletes == {"short"}

    def test_untracked_mapping_has_no_log(self) -> None:
        """A plain cache is not tracked and has no change log."""
        cache: cachetools.Cache[str, int] = cachetools.Cache(maxsize=2)
        assert not warmstart.delta.is_tracked(cache)
        assert change_log(cache) is None


class TestReplay:
    """replay() is deterministic and idempotent: a delta twice, or a prefix then all, is one."""

    @given(states, deltas())
    def test_matches_the_definition(
        self, state: dict[int, int], delta: tuple[list[tuple[int, int]], list[int]]
    ) -> None:
        """Untouched keys keep their order, then upserts follow in delta order."""
        upserts, deletes = delta
        touched = {k for k, _ in upserts} | set(deletes)
        expected = [(k, v) for k, v in state.items() if k not in touched] + upserts
        replay(state, upserts, deletes)
        assert list(state.items()) == expected

    @given(states, deltas())
    def test_applying_twice_is_applying_once(
        self, state: dict[int, int], delta: tuple[list[tuple[int, int]], list[int]]
    ) -> None:
        """Replaying the same delta again leaves content and order unchanged."""
        upserts, deletes = delta
        replay(state, upserts, deletes)
        once = list(state.items())
        replay(state, upserts, deletes)
        assert list(state.items()) == once

    @given(states, deltas(), st.data())
    def test_a_prefix_then_the_whole_is_the_whole(
        self,
        state: dict[int, int],
        delta: tuple[list[tuple[int, int]], list[int]],
        data: st.DataObject,
    ) -> None:
        """A crash after part of a delta, then the whole delta, ends as the whole delta."""
        upserts, deletes = delta
        cut = data.draw(st.integers(0, len(upserts)))
        whole = dict(state)
        replay(whole, upserts, deletes)
        replay(state, upserts[:cut], deletes)  # deletions ride in the first chunk
        replay(state, upserts, deletes)
        assert list(state.items()) == list(whole.items())

    @given(states, st.lists(deltas(), max_size=5), st.data())
    def test_a_chain_with_its_last_delta_repeated(
        self,
        state: dict[int, int],
        chain: list[tuple[list[tuple[int, int]], list[int]]],
        data: st.DataObject,
    ) -> None:
        """Replaying a chain is deterministic, and repeating the newest delta changes nothing."""
        first = dict(state)
        second = dict(state)
        for upserts, deletes in chain:
            replay(first, upserts, deletes)
            replay(second, upserts, deletes)
        assert list(first.items()) == list(second.items())
        if chain:
            upserts, deletes = chain[-1]
            cut = data.draw(st.integers(0, len(upserts)))
            replay(second, upserts[:cut], deletes)
            replay(second, upserts, deletes)
            assert list(first.items()) == list(second.items())


class TestFoldedChain:
    """A restore folds the deltas first; it must equal replaying the chain in order."""

    @given(states, st.lists(deltas(), max_size=6), st.integers(1, 5))
    def test_folding_equals_replaying_in_order(
        self,
        base: dict[int, int],
        chain: list[tuple[list[tuple[int, int]], list[int]]],
        chunk_size: int,
    ) -> None:
        """Same entries in the same order, whatever the base's chunking."""
        replayed = dict(base)
        folded = FoldedChain()
        for upserts, deletes in chain:
            replay(replayed, upserts, deletes)
            folded.add([k for k, _ in upserts], [v for _, v in upserts], deletes, [])
        items = list(base.items())
        restored: dict[int, int] = {}
        via_mask: list[tuple[int, int]] = []
        for start in range(0, len(items), chunk_size):
            piece = items[start : start + chunk_size]
            chunk = dict(piece)
            folded.drop_superseded(chunk)
            restored.update(chunk)
            keep = folded.keep_mask([k for k, _ in piece])
            via_mask.extend(piece if keep is None else [e for e, ok in zip(piece, keep) if ok])
        restored.update(folded.upserts)
        via_mask.extend(folded.upserts.items())
        assert list(restored.items()) == list(replayed.items())
        assert via_mask == list(replayed.items())

    def test_expiries_follow_the_last_upsert(self) -> None:
        """A key upserted twice keeps the expiry of its later upsert."""
        folded = FoldedChain()
        folded.add(["a", "b"], [1, 2], [], [10.0, 20.0])
        folded.add(["a"], [3], ["b"], [30.0])
        assert folded.upserts == {"a": 3}
        assert folded.expires["a"] == 30.0
        assert folded.touched == {"a", "b"}


class TestFingerprints:
    """Untracked mappings are diffed by identity (frozen values) or by encoded hash."""

    def test_identity_finds_replaced_values_only(self) -> None:
        """A replaced frozen value is an upsert even when equal; the same object is not."""
        a, b, c = Frozen(1), Frozen(2), Frozen(3)
        prints = Fingerprints.of(["a", "b", "c"], [a, b, c], ENCODE, by_identity=True)
        changes = prints.diff(["a", "b", "d"], [a, Frozen(2), Frozen(4)], ENCODE)
        assert (changes.upserts, changes.deletes) == (["b", "d"], {"c"})

    def test_hash_finds_in_place_mutation(self) -> None:
        """A mutable value changed in place is an upsert; an equal copy is not."""
        a, b = Mutable(1), Mutable(2)
        prints = Fingerprints.of(["a", "b"], [a, b], ENCODE, by_identity=False)
        a.tags.append(7)
        changes = prints.diff(["a", "b"], [a, Mutable(2)], ENCODE)
        assert (changes.upserts, changes.deletes) == (["a"], set())

    def test_upserts_follow_the_given_order(self) -> None:
        """Changed keys come out in the order the container is read."""
        prints = Fingerprints.of(["x", "y"], [Mutable(1), Mutable(2)], ENCODE, by_identity=False)
        changes = prints.diff(["n", "y", "x"], [Mutable(0), Mutable(5), Mutable(6)], ENCODE)
        assert changes.upserts == ["n", "y", "x"]

    @given(
        st.dictionaries(keys, values, max_size=10),
        st.dictionaries(keys, values, max_size=10),
        st.booleans(),
    )
    def test_diff_then_update_equals_fresh_prints(
        self, before: dict[int, int], after: dict[int, int], by_identity: bool
    ) -> None:
        """Advancing prints past a diff gives the prints of the new content."""
        old = {k: Mutable(v) for k, v in before.items()}
        new = {k: old[k] if k in old and old[k].n == v else Mutable(v) for k, v in after.items()}
        prints = Fingerprints.of(list(old), list(old.values()), ENCODE, by_identity=by_identity)
        changes = prints.diff(list(new), list(new.values()), ENCODE)
        assert not set(changes.upserts) & changes.deletes
        assert changes.deletes == set(old) - set(new)
        assert set(changes.upserts) == {k for k in new if k not in old or new[k] is not old[k]}
        upserted = [k for k in changes.upserts if k in new]
        prints.update(upserted, [new[k] for k in upserted], changes, ENCODE)
        fresh = Fingerprints.of(list(new), list(new.values()), ENCODE, by_identity=by_identity)
        assert prints.seen == fresh.seen
        assert prints.diff(list(new), list(new.values()), ENCODE) == ChangeSet(
            upserts=[], deletes=set()
        )

    @given(
        st.integers(0, 400),
        st.lists(st.tuples(st.integers(0, 400), st.integers(1, 300)), max_size=4),
        st.integers(0, 300),
        st.booleans(),
    )
    def test_long_gaps_give_the_true_change_set(
        self, size: int, cuts: list[tuple[int, int]], inserts: int, moved_tail: bool
    ) -> None:
        """Runs of deletions longer than the resync window (evictions off an LRU's front)."""
        old = {f"k{i}": Frozen(i) for i in range(size)}
        new = dict(old)
        for start, length in cuts:
            for i in range(start, start + length):
                new.pop(f"k{i}", None)
        if moved_tail:  # read again: these keys now come last, unchanged
            for k in list(new)[: len(new) // 3]:
                new[k] = new.pop(k)
        new.update({f"n{i}": Frozen(-i) for i in range(inserts)})
        prints = Fingerprints.of(list(old), list(old.values()), ENCODE, by_identity=True)
        changes = prints.diff(list(new), list(new.values()), ENCODE)
        assert changes.deletes == set(old) - set(new)
        assert changes.upserts == [k for k in new if k not in old]

    def test_evictions_off_the_front_line_up_without_hashing(self) -> None:
        """An LRU cache's read after inserts that evicted its oldest keys: one run, two gaps."""
        old = [f"k{i}" for i in range(50_000)]
        new = old[5_000:] + [f"n{i}" for i in range(5_000)]
        runs, apart_new, apart_old = _fingerprints._align(new, old)
        # The near searches miss a few positions first (keys that changed
        # places look the same), then one long search finds the gap's end.
        missed = _fingerprints._MISSED_BEFORE_LONG
        (at_new,), (at_old,), (length,) = runs
        assert (at_new, at_old, length) == (missed, 5_000 + missed, 45_000 - missed)
        assert list(apart_old) == list(range(5_000 + missed))
        assert list(apart_new) == [*range(missed), *range(45_000, 50_000)]

    def test_a_hot_key_read_last_is_not_taken_for_where_the_reads_meet(self) -> None:
        """Reads with the hot keys moved last (an LRU cache read in its table's order).

        A key that was hot and no longer is sits in the new read's body and in
        the old read's tail: found alone that far ahead, it must not make the
        whole body in between "apart" (every key then goes to the hash path).
        """
        rng = random.Random(7)
        body = [f"k{i}" for i in range(100_000)]
        # Neighbours (adjacent ids of a Zipf head) trade places: where the old
        # read has one key, now hot, the new has two, no longer hot.
        starts = rng.sample(range(0, 99_996, 4), 150)
        hot_old = [body[i] for s in starts for i in (s + 1, s + 2)]
        hot_new = [body[s] for s in starts]
        # Evicted since: runs of 40-200 neighbours in the table (longer than the
        # window), most in pairs with three survivors between them.
        evicted = {
            body[i]
            for s in rng.sample(range(99_000), 30)
            for i in itertools.chain(range(s, s + 40 + s % 160), range(s + 43 + s % 160, s + 250))
            if i < len(body)
        }
        # And a block of 200 keys that were all hot (read last in the old
        # read), followed in the old read by 100 keys evicted since.
        hot_old += body[50_000:50_200]
        evicted |= set(body[50_200:50_300])
        out_of_old, out_of_new = set(hot_old), set(hot_new) | evicted
        old = [k for k in body if k not in out_of_old] + hot_old
        new = [k for k in body if k not in out_of_new] + hot_new
        _, apart_new, apart_old = _fingerprints._align(new, old)
        assert len(apart_old) < 3 * (len(evicted) + 500)  # what changed, not what lies between
        assert len(apart_new) < 3 * 500
        prints = Fingerprints.of(old, old, ENCODE, by_identity=True)
        changes = prints.diff(new, new, ENCODE)
        assert changes.deletes == set(old) - set(new)
        assert list(changes.upserts) == []

    def test_new_keys_everywhere_stay_linear(self) -> None:
        """Keys found nowhere cannot make the long searches scan without bound."""
        old = [f"k{i}" for i in range(20_000)]
        new = [f"n{i}" if i % 2 else k for i, k in enumerate(old)]
        scanned = []
        real = _fingerprints._gallop

        def counting(
            items: Any, item: Any, start: int, allowed: int, ahead: Any
        ) -> tuple[int | None, int]:
            found, count = real(items, item, start, allowed, ahead)
            scanned.append(count)
            return found, count

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(_fingerprints, "_gallop", counting)
            prints = Fingerprints.of(old, old, ENCODE, by_identity=True)
            changes = prints.diff(new, new, ENCODE)
        assert set(changes.upserts) == set(new[1::2])
        assert changes.deletes == set(old[1::2])
        assert sum(scanned) <= len(old) + len(new) + _fingerprints._GALLOP_MAX

    def test_bytes_per_entry(self) -> None:
        """The memory estimate is zero when empty and positive otherwise."""
        assert Fingerprints(by_identity=False).bytes_per_entry() == 0.0
        prints = Fingerprints.of(["a"], [Mutable(1)], ENCODE, by_identity=False)
        assert prints.bytes_per_entry() > 0


class Color(enum.Enum):
    """An enum field: members are singletons."""

    RED = 1


class DeepFrozen(msgspec.Struct, frozen=True):
    """Immutable all the way down, recursive through an optional child."""

    n: int
    name: str
    at: datetime.datetime | None
    pair: tuple[int, str]
    items: tuple[Frozen, ...]
    labels: frozenset[str]
    color: Color = Color.RED
    child: DeepFrozen | None = None


class ShallowFrozen(msgspec.Struct, frozen=True):
    """Frozen, but its list can change in place."""

    tags: list[int]


class HoldsMutable(msgspec.Struct, frozen=True):
    """Frozen, but holds a mutable Struct."""

    inner: Mutable


class TestDeeplyImmutable:
    """Identity diff is used only for values that can never change in place."""

    @pytest.mark.parametrize(
        ("tp", "expected"),
        [
            (Frozen, True),
            (DeepFrozen, True),
            (Mutable, False),
            (ShallowFrozen, False),
            (HoldsMutable, False),
        ],
    )
    def test_types(self, tp: type, expected: bool) -> None:
        """Frozen Structs of scalars, tuples, frozensets and frozen Structs qualify; others not."""
        assert deeply_immutable(tp) is expected


class TestCompactionPolicy:
    """The policy asks for a fresh base at the chain length or byte ratio threshold."""

    @pytest.mark.parametrize(
        ("chain", "delta_bytes", "base_bytes", "expected"),
        [
            (0, 0, 1000, False),
            (2, 0, 1000, False),
            (3, 0, 1000, True),
            (1, 499, 1000, False),
            (1, 500, 1000, True),
            (0, 0, 0, False),
            (1, 1, 0, True),
        ],
    )
    def test_thresholds(
        self, chain: int, delta_bytes: int, base_bytes: int, expected: bool
    ) -> None:
        """At max_deltas deltas, or deltas of max_ratio of the base, compact."""
        policy = CompactionPolicy(max_deltas=3, max_ratio=0.5)
        assert policy.wants_base(chain, delta_bytes, base_bytes) is expected

    def test_defaults(self) -> None:
        """The defaults are documented: 16 deltas, or delta bytes at 6% of the base's."""
        assert CompactionPolicy() == CompactionPolicy(max_deltas=16, max_ratio=0.10)


class TestKeyTable:
    """The hash table a diff looks keys up in: one dict, or shards grown a step at a time."""

    @given(
        st.lists(st.one_of(st.integers(), st.text(max_size=4)), max_size=200),
        st.lists(st.one_of(st.integers(), st.text(max_size=4)), max_size=50),
        st.booleans(),
    )
    def test_behaves_as_a_dict(self, stored: list[Any], asked: list[Any], sharded: bool) -> None:
        """Whether one dict or many shards, lookups answer as one dict would."""
        table = KeyTable(expected=1_000_000 if sharded else len(stored))
        truth: dict[Any, Any] = {}
        for start in range(0, len(stored), 7):  # filled in batches, as a diff does
            batch = stored[start : start + 7]
            table.update(batch, map(repr, batch))
            truth.update(zip(batch, map(repr, batch)))
        assert len(table) == len(truth)
        assert table.get_all(asked) == [truth.get(k) for k in asked]
        assert table.missing(asked) == [k for k in asked if k not in truth]
        assert all((k in table) == (k in truth) for k in asked)
        assert sorted(map(repr, (k for b in table.batches() for k in b))) == sorted(
            map(repr, truth)
        )
        table.release()
        assert len(table) == 0
