"""Checkpoints work in bounded slices, and a slice-at-a-time read is still consistent (issue 15).

The figures (how long a slice holds the GIL) are measured by the benchmarks
(``benchmarks.stall``); these tests check the mechanisms: that reads, diffs
and encodes are sliced and paced, that a tracked container read a slice at a
time while a thread writes it is the container of one moment, that an
untracked one never pairs a key with another key's value, and that the index
a change log keeps equals the container's keys.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import itertools
import logging
import random
import sys
import threading
import time
import traceback
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import cachetools
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

import warmstart
from warmstart import _containers, _pacing, _sliced
from warmstart._pacing import Pacer, drop, long_lived, pace
from warmstart.delta import LoggedDict, _fingerprints, _tracking, change_log, fold_keys
from warmstart.store import _ahead, _chunks, _prepare

NS = "svc"
#: Entries per slice in these tests: containers of a few hundred entries are
#: read in many slices.
SMALL = 16


class Row(msgspec.Struct, frozen=True):
    """A value that names its own key, so a mispaired entry is visible."""

    key: str
    version: int


ROWS = warmstart.Contract("row", Row, key=str)


@pytest.fixture
def small_slices(monkeypatch: pytest.MonkeyPatch) -> int:
    """Every module that slices reads ``SMALL`` entries a step."""
    for module in (_pacing, _sliced, _tracking, _fingerprints):
        monkeypatch.setattr(module, "SLICE", SMALL)
    # The hot keys a read in table order moves last: one step of their own.
    monkeypatch.setattr(_sliced, "HOT", SMALL)
    return SMALL


@pytest.fixture
def frequent_switches() -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


class Recorder(Pacer):
    """A pacer that ends a stretch at every pace() (and counts them)."""

    def __init__(self) -> None:
        super().__init__(budget=0.0, pause=0.0)


def rows(n: int, start: int = 0) -> dict[str, Row]:
    return {f"k{i}": Row(f"k{i}", i) for i in range(start, start + n)}


def loaded(store: warmstart.Store, generation: int | None = None) -> dict[str, Row]:
    with store.load(NS, generation=generation) as snapshot:
        return snapshot.section("s", ROWS)


# -- pacing ----------------------------------------------------------------------


class TestPacing:
    def test_pace_outside_a_pacer_does_nothing(self) -> None:
        pace()  # no error, no state

    def test_a_pacer_measures_its_stretches(self) -> None:
        with Pacer(budget=0.0) as pacer:
            sum(range(200_000))
            pace()
            pace()
        assert pacer.steps == 2
        assert pacer.yields == 2
        assert 0 < pacer.longest <= pacer.cpu
        assert pacer.wall >= pacer.cpu * 0.5

    def test_a_long_step_starts_a_stretch_of_its_own(self) -> None:
        """Within budget, pace() goes on; before a long step it yields anyway."""
        with Pacer(budget=60.0) as pacer:
            pace()
            pace(before_long_step=True)
        assert (pacer.steps, pacer.yields) == (2, 1)

    def test_cpu_inside_a_released_call_counts_but_is_no_stretch(self) -> None:
        """A call that lets go of the GIL (an LMDB commit) keeps nobody waiting."""

        def burn(seconds: float) -> None:
            until = time.thread_time() + seconds
            while time.thread_time() < until:
                pass

        with Pacer(budget=60.0) as pacer:  # no yield by budget: one stretch around the call
            burn(0.002)
            with _pacing.released():
                burn(0.03)
            burn(0.002)
        assert pacer.cpu >= 0.034
        assert pacer.longest < 0.02  # without released(): one stretch of 34 ms or more
        assert pacer.yields == 0  # no pause: the call itself let the others run
        with _pacing.released():  # outside a pacer: nothing to do
            burn(0.001)

    def test_a_commit_is_no_stretch_of_the_save(self, tmp_path: Path) -> None:
        """Everything a save does inside its write transactions is a stretch, but the commits."""
        commits: list[bool] = []

        class Watched(Pacer):
            """Notes, at each end of a stretch, whether an LMDB commit comes next."""

            def end_stretch(self) -> None:
                # released(), contextlib's __enter__, then the caller.
                callers = {frame.name for frame in traceback.extract_stack(limit=5)}
                commits.append("_commit" in callers)
                super().end_stretch()

        rows = {f"k{i}": Row(f"k{i}", i) for i in range(20_000)}
        with warmstart.Store(tmp_path / "s") as store, Watched():
            store.save("ns", {"rows": (ROWS, rows)})
        # The generation's commit (its chunks fit in it: none written ahead).
        assert commits.count(True) == 1

    def test_a_pacer_times_the_collections_of_its_own_thread_only(self) -> None:
        """A service's young collection that lands in a checkpoint's stretch is named."""

        def young_lists() -> list[list[int]]:
            gc.disable()  # all of them young, for the next collection to walk
            try:
                return [[] for _ in range(300_000)]
            finally:
                gc.enable()

        took: list[float] = []

        def collect_elsewhere() -> None:
            started = time.thread_time()
            gc.collect(1)
            took.append(time.thread_time() - started)

        junk = young_lists()
        with Pacer(budget=60.0) as pacer:
            other = threading.Thread(target=collect_elsewhere)
            other.start()
            other.join()
            # Only this thread's own automatic collections, if any (tiny).
            before = pacer.longest_collection
            more = young_lists()
            gc.collect(1)
        assert took[0] > 0.001  # the other thread's collection walked 300,000 lists
        assert before < took[0] / 2
        assert pacer.longest_collection > before
        assert pacer.longest_collection <= pacer.longest
        assert pacer.costs()["longest_collection_seconds"] == pacer.longest_collection
        assert pacer._collecting not in gc.callbacks  # removed at exit
        del junk, more

    def test_nested_pacing_reuses_the_outer_pacer(self) -> None:
        with Pacer(budget=0.0) as outer, _pacing.pacing() as inner:
            pace()
        assert inner is outer
        assert outer.steps == 1

    def test_a_pacer_sleeps_only_when_another_thread_could_run(self) -> None:
        stop = threading.Event()
        other = threading.Thread(target=stop.wait)
        other.start()
        try:
            with Pacer(budget=0.0, pause=0.001) as pacer:
                pace()
        finally:
            stop.set()
            other.join()
        assert pacer.paused >= 0.0009

    def test_drop_empties_a_private_container_and_leaves_a_shared_one(
        self, small_slices: int
    ) -> None:
        private = list(range(200))
        drop(private)
        assert private == []
        shared = list(range(200))
        alias = shared
        drop(shared)
        assert len(alias) == 200
        a_set, a_dict = set(range(200)), dict.fromkeys(range(200))
        drop(a_set)
        drop(a_dict)
        assert not a_set
        assert not a_dict

    def test_an_empty_reserve_is_filled_whole_by_one_collection(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The first shortage promotes a whole reserve: longer sequences need no collection."""
        monkeypatch.setattr(_pacing, "_reserve", [])  # a process that made no pieces yet
        promotions: list[int] = []
        collect = gc.collect

        def counted(generation: int = 2) -> int:
            promotions.append(generation)
            return collect(generation)

        collections: list[int] = []

        def seen(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                collections.append(info["generation"])

        collect()  # counts from zero: no automatic collection is due
        monkeypatch.setattr(gc, "collect", counted)
        gc.callbacks.append(seen)
        try:
            first = long_lived(10**5)  # 25 pieces expected
            first.extend(range(8 * _pacing.SLICE))
            second = long_lived(10**6)
            second.extend(range(64 * _pacing.SLICE))
        finally:
            gc.callbacks.remove(seen)
        assert promotions == [1]  # one, for the whole reserve
        # Making 4,096 lists triggered no young collections of their own
        # (with the collector on, about six). One may come from the suite's
        # other threads, which allocate meanwhile.
        assert collections.count(1) == 1
        assert collections.count(0) <= 1
        assert len(_pacing._reserve) >= _pacing.RESERVE - 80
        drop(first)
        drop(second)

    def test_old_pieces_come_back_to_the_reserve_without_a_collection(self) -> None:
        first = long_lived(10**6)
        first.extend(range(3 * _pacing.SLICE))
        drop(first)
        assert first == []
        collections: list[int] = []

        def count(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                collections.append(info["generation"])

        # Counts start at zero: an automatic collection (the allocations of
        # earlier tests) cannot fall into the block and be taken for ours.
        gc.collect()
        gc.callbacks.append(count)
        try:
            again = long_lived(10**6)
            again.extend(range(3 * _pacing.SLICE))
        finally:
            gc.callbacks.remove(count)
        assert collections == []  # from the reserve: nothing to promote
        assert list(again) == list(range(3 * _pacing.SLICE))
        pieces = list(again.parts())
        young = gc.get_objects(generation=0) + gc.get_objects(generation=1)
        assert not [obj for obj in young if any(obj is piece for piece in pieces)]
        drop(again)

    def test_a_long_sequence_grows_in_old_pieces_of_at_most_a_slice(self) -> None:
        items = long_lived(10**6)
        for start in range(0, 100_000, 3000):  # steps that do not line up with the pieces
            items.extend(range(start, min(start + 3000, 100_000)))
        pieces = list(items.parts())
        assert [len(piece) for piece in pieces[:-1]] == [_pacing.SLICE] * (len(pieces) - 1)
        assert 0 < len(pieces[-1]) <= _pacing.SLICE
        assert items == list(range(100_000))
        young = gc.get_objects(generation=0) + gc.get_objects(generation=1)
        assert not [obj for obj in young if any(obj is piece for piece in pieces)]
        # A short one is not worth a collection: plain young lists, until it grows long.
        small = long_lived(10)
        small.extend(range(10))
        young = gc.get_objects(generation=0)
        assert any(obj is next(small.parts()) for obj in young)
        drop(items)


@given(st.lists(st.one_of(st.integers(-50, 50), st.text(max_size=3)), max_size=60), st.booleans())
def test_sorting_in_steps_sorts_as_sorted(items: list[Any], by_repr: bool) -> None:
    """Runs sorted a step each, then merged: sorted()'s result, and its TypeError."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_pacing, "SORT_SLICE", 7)  # many runs
        with Pacer(budget=0.0) as pacer:
            try:
                expected = sorted(items, key=repr if by_repr else None)
            except TypeError:
                with pytest.raises(TypeError):
                    _pacing.sorted_in_steps(items)
                return
            got = _pacing.sorted_in_steps(iter(items), key=repr if by_repr else None)
    assert got == expected
    assert pacer.yields >= len(items) // 7


class TestPieces:
    """The sequence long reads build: a list's reads, in pieces that never grow past a slice."""

    @given(
        st.lists(st.integers(0, 40), max_size=12),
        st.integers(-120, 120),
        st.integers(-120, 120),
    )
    def test_reads_as_the_list_of_its_entries(
        self, batches: list[int], start: int, stop: int
    ) -> None:
        expected: list[int] = []
        items = _pacing.Pieces()
        items._size = 8  # many pieces
        for size in batches:
            batch = list(range(len(expected), len(expected) + size))
            if size == 1:
                items.append(batch[0])
            else:
                items.extend(iter(batch))  # any iterable
            expected.extend(batch)
        assert len(items) == len(expected)
        assert list(items) == expected
        assert items == expected
        assert items[start:stop] == expected[start:stop]
        assert items[::2] == expected[::2]
        assert list(items.iter_from(max(start, 0))) == expected[max(start, 0) :]
        if expected:
            assert items[start % len(expected)] == expected[start % len(expected)]
            assert items[-1] == expected[-1]
            positions = [i % len(expected) for i in range(start, start + 30, 7)]
            assert items.gather(positions) == [expected[i] for i in positions]
            value = expected[stop % len(expected)]
            assert items.index(value, 0, len(expected)) == expected.index(value)
        with pytest.raises(IndexError):
            items[len(expected)]
        assert all(len(piece) <= 8 for piece in items.parts())

    def test_parts_line_up_a_list_and_pieces(self) -> None:
        items = _pacing.Pieces(items=range(100))
        items_parts = list(_pacing.parts(items, 4))
        assert items_parts == list(_pacing.parts(list(range(100)), 4))
        assert all(len(part) <= 4 for part in items_parts)

    def test_equality(self) -> None:
        items = _pacing.Pieces(items=[1, 2, 3])
        assert items == [1, 2, 3]
        assert items == (1, 2, 3)
        assert items == _pacing.Pieces(items=[1, 2, 3])
        assert items != [1, 2]
        assert items != [1, 2, 4]
        assert items != "abc"


# -- sliced reads, diffs and encodes ------------------------------------------------


class _SpyItertools:
    """``itertools`` for ``_sliced``, recording how many entries each islice takes."""

    def __init__(self) -> None:
        self.counts: list[int] = []

    def islice(self, it: Any, *args: Any) -> Any:
        if len(args) == 1:
            self.counts.append(args[0])
        return itertools.islice(it, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(itertools, name)


@pytest.mark.parametrize(
    ("kind", "mode"),
    [("dict", "full"), ("dict", "delta"), ("tracked", "full"), ("lru", "full"), ("lru", "delta")],
)
def test_every_large_step_is_sliced(
    store_path: Path, small_slices: int, kind: str, mode: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save of a container of many slices takes many paced steps, none reading more than one."""
    n = 40 * small_slices
    mapping: Any = rows(n)
    lock = None
    if kind == "tracked":
        mapping = warmstart.TrackedDict(mapping)
    elif kind == "lru":
        cache: Any = cachetools.LRUCache(maxsize=2 * n)
        cache.update(mapping)
        mapping, lock = cache, threading.Lock()
    spy = _SpyItertools()
    monkeypatch.setattr(_sliced, "itertools", spy)
    with warmstart.Store(store_path, sync=False) as store:
        sections = {"s": (ROWS, mapping) if lock is None else (ROWS, mapping, lock)}
        store.save(NS, sections, mode=mode)
        mapping["k3"] = Row("k3", -3)
        with Recorder() as pacer:
            store.save(NS, sections, mode=mode)
        assert loaded(store) == dict(mapping.items())
    # Dozens of steps, each ending with pace(); no islice of a read beyond a slice.
    assert pacer.steps >= n // small_slices
    assert max(spy.counts, default=0) <= small_slices


def test_a_full_save_of_a_large_container_is_read_and_encoded_in_steps(
    store_path: Path, small_slices: int
) -> None:
    mapping = rows(50 * small_slices)
    with warmstart.Store(store_path, sync=False) as store, Recorder() as pacer:
        store.save(NS, {"s": (ROWS, mapping)}, mode="full")
    assert pacer.steps >= 50


def test_a_large_save_writes_its_chunks_ahead_in_small_transactions(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks go in before the commit; a chunk swept meanwhile is written again by it."""
    monkeypatch.setattr(_ahead, "BATCH", 1024)
    mapping = rows(3000)
    with warmstart.Store(store_path, sync=False) as store:
        tables = store._tables
        transactions: list[int] = []
        real = _ahead.write_ahead

        def write_ahead(into: Any, namespace: str, frames: Any, batch: int | None = None) -> int:
            done = real(into, namespace, frames, batch)
            if into is tables and frames:  # this store only (other tests' threads may save)
                transactions.append(done)
                # Another process's save sweeps one of them away before the commit.
                nsid = tables.write(lambda txn: tables.nsid(txn, namespace, create=False))
                ref = frames[0][0]
                tables.write(lambda txn: txn.delete(nsid + ref.digest, db=tables._db("chunks")))
            return done

        monkeypatch.setattr(warmstart.store._store, "write_ahead", write_ahead)
        store.save(NS, {"s": (ROWS, mapping)}, mode="full")
        assert transactions[0] > 1
        assert store.verify().ok
        assert loaded(store) == mapping


def test_a_failed_save_leaves_no_chunk_written_ahead(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_ahead, "BATCH", 1024)
    with warmstart.Store(store_path, sync=False) as store:
        store.save(NS, {"s": (ROWS, rows(10))})
        real = store._tables.write
        calls = {"n": 0}

        def write(body: Any) -> Any:
            calls["n"] += 1
            if getattr(body, "__name__", "") == "commit":
                msg = "the disk is full"
                raise warmstart.errors.StoreFullError(msg)
            return real(body)

        monkeypatch.setattr(store._tables, "write", write)
        with pytest.raises(warmstart.errors.StoreFullError):
            store.save(NS, {"s": (ROWS, rows(3000, start=100))}, mode="full")
        assert calls["n"] > 3  # chunks were written ahead, then the commit failed
        monkeypatch.undo()
        report = store.verify()
        assert report.ok
        assert report.orphans == 0
        assert loaded(store) == rows(10)


# -- long reads come in pieces ---------------------------------------------------------


def _timed_cache(n: int) -> cachetools.TLRUCache[str, Row]:
    """A cache whose entries expire out of insertion order (a read sorts them by expiry)."""
    clock = [0.0]
    cache: cachetools.TLRUCache[str, Row] = cachetools.TLRUCache(
        maxsize=2 * n,
        ttu=lambda key, value, now: now + (value.version * 7919) % n + 1,
        timer=lambda: clock[0],
    )
    cache.update(rows(n))
    return cache


def _container(kind: str, n: int) -> Any:
    """A container of ``n`` rows, each with a few reads and writes behind it."""
    if kind == "timed":
        return _timed_cache(n)
    mapping: Any = {
        "dict": dict,
        "lru": lambda: cachetools.LRUCache(maxsize=2 * n),
        "ttl": lambda: cachetools.TTLCache(maxsize=2 * n, ttl=3600),
        "tracked lru": lambda: warmstart.track(cachetools.LRUCache(maxsize=2 * n)),
        "TrackedDict": warmstart.TrackedDict,
        "LoggedDict": LoggedDict,
    }[kind]()
    mapping.update(rows(n))
    log = change_log(mapping)
    if log is not None:
        log.take()
        log.rebase(list(mapping))  # what a base leaves: the index
    for i in range(0, n, 7):  # writes that move keys (a cache) and delete some
        mapping[f"k{i}"] = Row(f"k{i}", n + i)
    for i in range(3, n, 11):
        del mapping[f"k{i}"]
    return mapping


READ_KINDS = ["dict", "lru", "ttl", "timed", "tracked lru", "TrackedDict", "LoggedDict"]


@pytest.mark.parametrize("kind", READ_KINDS)
def test_a_long_read_comes_in_pieces_with_the_entries_of_a_one_step_read(
    small_slices: int, kind: str
) -> None:
    """Read in slices, a container's entries are those (and in the order) of one atomic read.

    And they come as Pieces none of which outgrew a slice: a flat list growing
    to a million entries copied itself at each reallocation, one step of
    4-7 ms (issue 15).
    """
    mapping = _container(kind, 40 * small_slices)
    expected = _containers.entries_of(mapping)
    with Recorder() as pacer:
        _, (keys, values, expires) = _sliced.read_all(mapping, None)
    assert pacer.steps >= len(mapping) // small_slices
    assert type(keys) is _pacing.Pieces
    assert type(values) is _pacing.Pieces
    for read in (keys, values, expires):
        assert all(len(piece) <= small_slices for piece in _pieces_of(read))
    assert all(v.key == k for k, v in zip(keys, values))
    if kind in ("ttl", "timed"):
        # Soonest expiry first, as a restore inserts (equal expiries in either order).
        assert list(expires) == sorted(expires)
        assert dict(zip(keys, values)) == dict(zip(expected[0], expected[1]))
        when = dict(zip(expected[0], expected[2]))
        assert list(expires) == pytest.approx([when[k] for k in keys], abs=1.0)  # wall clock
    else:
        assert list(keys) == expected[0]
        assert list(values) == expected[1]
        assert list(expires) == expected[2] == []


def _pieces_of(items: Any) -> list[list[Any]]:
    return list(items.parts()) if type(items) is _pacing.Pieces else [list(items)]


@pytest.mark.parametrize("kind", ["dict", "lru", "tracked lru", "LoggedDict"])
def test_a_save_read_in_pieces_writes_the_chunks_of_a_flat_read(
    store_path: Path, small_slices: int, kind: str
) -> None:
    """The chunks, byte for byte, are those of the same entries as flat lists; they load back."""
    mapping = _container(kind, 60 * small_slices)
    _, (keys, values, _) = _sliced.read_all(mapping, None)
    codec = warmstart.codec.Codec()
    pieces = _chunks.encode_chunks(ROWS, codec, keys, values)
    flat = _chunks.encode_chunks(ROWS, codec, list(keys), list(values))
    assert [frame for _, frame in pieces] == [frame for _, frame in flat]
    with warmstart.Store(store_path, sync=False) as store:
        store.save(NS, {"s": (ROWS, mapping)}, mode="full")
        assert list(loaded(store).items()) == list(zip(keys, values))


def test_a_diff_of_pieces_finds_the_changes_a_diff_of_lists_finds(small_slices: int) -> None:
    """Fingerprints line pieces up as they line lists up: the same change sets, seed after seed."""
    for seed in range(12):
        rng = random.Random(seed)
        before = rows(30 * small_slices)
        after = dict(before)
        for key in rng.sample(sorted(after), 40):
            del after[key]
        for key in rng.sample(sorted(after), 40):
            after[key] = Row(key, -1)
        for i in rng.sample(range(10**6), 40):
            after[f"n{i}"] = Row(f"n{i}", i)
        if seed % 3 == 0:  # reordered: the sequences part, keys looked up by hash
            keys = sorted(after, key=lambda k: rng.random())
            after = {k: after[k] for k in keys}
        changes = []
        for seq in (list, lambda items: _pacing.Pieces(items=items)):
            prints = _fingerprints.Fingerprints.of(
                seq(list(before)),
                seq(list(before.values())),
                ROWS.encode_value,
                by_identity=seed % 2 == 0,
            )
            diff = prints.diff(seq(list(after)), seq(list(after.values())), ROWS.encode_value)
            changes.append((list(diff.upserts), diff.deletes))
            upserted = [after[k] for k in diff.upserts]
            assert list(_prepare._picked(list(after.values()), prints.positions(diff))) == upserted
        assert changes[0] == changes[1]
        assert set(changes[0][0]) == {k for k, v in after.items() if before.get(k) != v}
        assert changes[0][1] == set(before) - set(after)


# -- consistency while a thread writes ------------------------------------------------


class Writer(threading.Thread):
    """Writes the mapping until told to stop, each write under ``lock`` if given.

    ``churn``: inserts a new key, then deletes a random present one: the
    mapping holds N or N+1 keys at every moment, but a read spread over time
    misses keys deleted before it reached them. ``rounds``: rewrites the keys
    in turn with increasing versions: at every moment the versions are N
    consecutive numbers, one per key, which a read spread over time mixes.
    """

    def __init__(self, mapping: MutableMapping[str, Row], how: str, lock: Any = None) -> None:
        super().__init__(daemon=True)
        self.mapping = mapping
        self.how = how
        self.lock = lock if lock is not None else contextlib.nullcontext()
        self.stopping = threading.Event()
        self.writes = 0

        self.present = list(mapping)
        self.n = len(self.present)
        self.version = self.n
        self.rng = random.Random(7)

    def run(self) -> None:
        while not self.stopping.is_set():
            self.step()

    def step(self) -> None:
        version, present = self.version, self.present
        if self.how == "churn":
            key = f"k{version}"
            with self.lock:
                self.mapping[key] = Row(key, version)
            present.append(key)
            at = self.rng.randrange(len(present))
            present[at], present[-1] = present[-1], present[at]
            with self.lock:
                del self.mapping[present.pop()]
        else:
            key = f"k{version % self.n}"
            with self.lock:
                self.mapping[key] = Row(key, version)
        self.version += 1
        self.writes += 1


class Interleaved(Pacer):
    """Runs ``writer`` steps at every slice boundary: where other threads would run."""

    def __init__(self, writer: Writer, steps: int = 3) -> None:
        super().__init__(budget=1.0)
        self.writer = writer
        self.steps_each = steps

    def pace(self, *, before_long_step: bool = False) -> None:
        super().pace(before_long_step=before_long_step)
        for _ in range(self.steps_each):
            self.writer.step()


def _one_moment(entries: dict[str, Row], n: int, how: str) -> bool:
    if any(v.key != k for k, v in entries.items()):
        return False
    if how == "churn":
        return len(entries) in (n, n + 1)
    versions = sorted(v.version for v in entries.values())
    return versions == list(range(versions[0], versions[0] + n))


def _tracked(kind: str, n: int) -> tuple[Any, Any]:
    if kind == "tracked":
        return warmstart.TrackedDict(rows(n)), None
    if kind == "logged":
        return LoggedDict(rows(n)), None
    cache = cachetools.LRUCache(maxsize=10 * n)
    warmstart.track(cache)
    cache.update(rows(n))
    return cache, threading.Lock()


@pytest.mark.parametrize("how", ["churn", "rounds"])
@pytest.mark.parametrize("kind", ["tracked", "logged", "lru"])
def test_a_tracked_container_written_between_slices_is_read_as_of_one_moment(
    store_path: Path, small_slices: int, kind: str, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Writes land between every two slices of a base's read: it still saves one moment."""
    n = 30 * small_slices
    mapping, lock = _tracked(kind, n)
    writer = Writer(mapping, how, lock)
    spec = (ROWS, mapping) if lock is None else (ROWS, mapping, lock)
    with warmstart.Store(store_path, sync=False, keep=100) as store:
        for _ in range(4):
            with Interleaved(writer), caplog.at_level(logging.WARNING):
                store.save(NS, {"s": spec}, mode="full")
        assert "bypassed" not in caplog.text  # read from the log's index, not listed
        assert writer.writes > 100
        for info in store.generations(NS):
            assert _one_moment(loaded(store, info.generation), n, how)
        store.save(NS, {"s": spec})
        assert loaded(store) == dict(mapping.items())


@pytest.mark.parametrize("how", ["churn", "rounds"])
@pytest.mark.parametrize("kind", ["dict", "ordered", "lru"])
def test_an_untracked_container_written_between_slices_keeps_keys_with_their_values(
    store_path: Path, small_slices: int, kind: str, how: str
) -> None:
    """Untracked, large: read over time (not one moment), but never a key with another's value."""
    n = 30 * small_slices
    lock = None
    if kind == "lru":
        mapping: Any = cachetools.LRUCache(maxsize=10 * n)
        mapping.update(rows(n))
        lock = threading.Lock()
    else:
        mapping = rows(n) if kind == "dict" else collections.OrderedDict(rows(n))
    writer = Writer(mapping, how, lock)
    spec = (ROWS, mapping) if lock is None else (ROWS, mapping, lock)
    with warmstart.Store(store_path, sync=False, keep=100) as store:
        for mode in ("delta", "delta", "full", "delta"):
            with Interleaved(writer, steps=1):
                store.save(NS, {"s": spec}, mode=mode)
        for info in store.generations(NS):
            assert all(v.key == k for k, v in loaded(store, info.generation).items())
        store.save(NS, {"s": spec}, mode="full")
        assert loaded(store) == dict(mapping.items())


@pytest.mark.usefixtures("frequent_switches")
@pytest.mark.parametrize("how", ["churn", "rounds"])
@pytest.mark.parametrize("kind", ["tracked", "logged", "lru"])
def test_a_tracked_container_read_in_slices_is_one_moment(
    store_path: Path, small_slices: int, kind: str, how: str
) -> None:
    """Bases read a slice at a time while a thread writes are each the container of one moment."""
    n = 30 * small_slices
    mapping, lock = _tracked(kind, n)
    writer = Writer(mapping, how, lock)
    spec = (ROWS, mapping) if lock is None else (ROWS, mapping, lock)
    with warmstart.Store(store_path, sync=False, keep=100) as store:
        writer.start()
        try:
            # At least 8 saves, more on a loaded machine until the writer has run.
            for saves in itertools.count(1):
                store.save(NS, {"s": spec}, mode="full")
                if saves >= 8 and (writer.writes > 100 or saves >= 60):
                    break
        finally:
            writer.stopping.set()
            writer.join()
        assert writer.writes > 100
        for info in store.generations(NS):
            entries = loaded(store, info.generation)
            assert _one_moment(entries, n, how), len(entries)
        store.save(NS, {"s": spec})
        assert loaded(store) == dict(mapping.items())


@pytest.mark.usefixtures("frequent_switches")
@pytest.mark.parametrize("how", ["churn", "rounds"])
@pytest.mark.parametrize("kind", ["dict", "ordered"])
@pytest.mark.parametrize("mode", ["full", "delta"])
def test_an_untracked_container_read_in_slices_pairs_every_key_with_its_value(
    store_path: Path, small_slices: int, kind: str, mode: Any, how: str
) -> None:
    """Large untracked reads are per-key consistent; a quiet save afterwards is exact."""
    n = 30 * small_slices
    mapping: Any = rows(n) if kind == "dict" else collections.OrderedDict(rows(n))
    writer = Writer(mapping, how)
    with warmstart.Store(store_path, sync=False, keep=100) as store:
        writer.start()
        try:
            # At least 8 saves, more on a loaded machine until the writer has run.
            for saves in itertools.count(1):
                store.save(NS, {"s": (ROWS, mapping)}, mode=mode)
                if saves >= 8 and (writer.writes > 100 or saves >= 60):
                    break
        finally:
            writer.stopping.set()
            writer.join()
        assert writer.writes > 100
        for info in store.generations(NS):
            entries = loaded(store, info.generation)
            assert all(v.key == k for k, v in entries.items())
        store.save(NS, {"s": (ROWS, mapping)}, mode=mode)
        assert loaded(store) == dict(mapping)


def test_a_clear_during_a_sliced_read_starts_it_over(
    store_path: Path, small_slices: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    mapping = warmstart.TrackedDict(rows(10 * small_slices))
    real = _sliced._as_of
    cleared: list[bool] = []

    def as_of(*args: Any) -> Any:
        if not cleared:
            cleared.append(True)
            mapping.clear()
            mapping.update(rows(3, start=1000))
        return real(*args)

    monkeypatch.setattr(_sliced, "_as_of", as_of)
    with warmstart.Store(store_path, sync=False) as store:
        store.save(NS, {"s": (ROWS, mapping)})
        assert loaded(store) == rows(3, start=1000)


def test_a_write_that_bypasses_the_log_is_found_at_the_next_base(
    store_path: Path, small_slices: int, caplog: pytest.LogCaptureFixture
) -> None:
    """dict.__setitem__ on a LoggedDict skips the log: the base lists the dict instead."""
    mapping = LoggedDict(rows(5 * small_slices))
    with warmstart.Store(store_path, sync=False) as store:
        store.save(NS, {"s": (ROWS, mapping)})
        dict.__setitem__(mapping, "sneaky", Row("sneaky", 0))
        with caplog.at_level(logging.WARNING, logger="warmstart.store"):
            store.save(NS, {"s": (ROWS, mapping)}, mode="full")
        assert "bypassed the log" in caplog.text
        assert loaded(store) == dict(mapping)
        log = change_log(mapping)
        assert log is not None
        assert log.index is not None
        assert "sneaky" in log.index


# -- the index a change log keeps ------------------------------------------------------

keys = st.integers(0, 30)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("set"), keys),
        st.tuples(st.just("del"), keys),
        st.tuples(st.just("take")),
        st.tuples(st.just("clear")),
        st.tuples(st.just("setdefault"), keys),
        st.tuples(st.just("popitem")),
    ),
    max_size=60,
)


def _apply(mapping: Any, op: tuple[Any, ...], version: int) -> None:
    name = op[0]
    if name == "set":
        mapping[op[1]] = version
    elif name == "del":
        mapping.pop(op[1], None)
    elif name == "take":
        change_log(mapping).take()  # type: ignore[union-attr]
    elif name == "clear":
        mapping.clear()
    elif name == "setdefault":
        mapping.setdefault(op[1], version)
    elif mapping:
        mapping.popitem()


def _folded(mapping: Any) -> list[Any]:
    log = change_log(mapping)
    assert log is not None
    assert log.index is not None
    moved = log.dirty if log.moves else log.inserted
    return fold_keys(log.index, [*log.since, (moved, log.deletes)])


@given(st.sampled_from(["tracked", "logged"]), st.lists(keys, max_size=10), ops)
def test_the_index_folds_to_the_dict_order(kind: str, start: list[int], steps: Any) -> None:
    """A TrackedDict's or LoggedDict's log knows its keys, in insertion order."""
    initial = dict.fromkeys(start, 0)
    mapping: Any = warmstart.TrackedDict(initial) if kind == "tracked" else LoggedDict(initial)
    for version, op in enumerate(steps):
        _apply(mapping, op, version)
        assert _folded(mapping) == list(mapping)


@given(ops.filter(lambda s: all(op[0] not in ("popitem", "setdefault") for op in s)))
def test_the_index_of_an_lru_cache_folds_to_its_write_order(steps: Any) -> None:
    """Without reads, an LRU cache's order is its write order: the fold gives it."""
    cache: Any = warmstart.track(cachetools.LRUCache(maxsize=20))
    for version, op in enumerate(steps):
        _apply(cache, op, version)
        order = list(cache._LRUCache__order)
        assert _folded(cache) == order


def test_fold_keys_applies_takes_in_order() -> None:
    assert fold_keys([1, 2, 3], []) == [1, 2, 3]
    assert fold_keys([1, 2, 3], [([4, 2], {1}), ([1], set())]) == [3, 4, 2, 1]


# -- cost-based choice between a diff and a full save ------------------------------------


def test_a_section_whose_diff_costs_more_than_a_full_save_is_saved_in_full() -> None:
    baselines = _prepare.Baselines("token")
    assert baselines.diffable("ns", "s")  # nothing measured yet
    cost = _prepare.SectionCost
    baselines._costs[("ns", "s")] = cost(full=0.2, diff=0.1, prints=0.05, diffs=3)
    assert baselines.diffable("ns", "s")
    baselines._costs[("ns", "s")] = cost(full=0.2, diff=0.3, diffs=1)
    assert baselines.diffable("ns", "s")  # one diff measured: maybe noise
    baselines._costs[("ns", "s")] = cost(full=0.2, diff=0.3, diffs=2)
    assert not baselines.diffable("ns", "s")
    baselines._costs[("ns", "s")] = cost(full=0.2, diff=0.21, diffs=5)
    assert baselines.diffable("ns", "s")  # within the margin
    baselines._costs[("ns", "s")] = cost(full=0.2, prints=0.25)
    assert not baselines.diffable("ns", "s")
    # Below CHEAP either way, the diff stays (its delta writes fewer bytes).
    baselines._costs[("ns", "s")] = cost(full=0.001, diff=0.003, diffs=4)
    assert baselines.diffable("ns", "s")


class Mutable(msgspec.Struct):
    key: str
    tags: list[int]


MUTABLE = warmstart.Contract("mutable", Mutable, key=str)


def test_a_hash_diff_dearer_than_a_full_save_stops_fingerprinting(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once fingerprinting measured dearer than the full save: full saves, no prints kept."""
    monkeypatch.setattr(_prepare, "CHEAP", 0.0)
    real = _prepare.Fingerprints.of

    def dear(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        while time.thread_time() - started < 0.05:  # fingerprinting costs 50 ms of CPU
            pass
        return real(*args, **kwargs)

    monkeypatch.setattr(_prepare.Fingerprints, "of", dear)
    mapping = {f"k{i}": Mutable(f"k{i}", [i]) for i in range(200)}
    with warmstart.Store(store_path, sync=False) as store:
        store.save(NS, {"s": (MUTABLE, mapping)}, mode="delta")
        assert not store._baselines.diffable(NS, "s")
        baseline = store._baselines.get(NS)
        assert baseline is not None
        assert "s" not in baseline.prints
        mapping["k1"] = Mutable("k1", [-1])
        store.save(NS, {"s": (MUTABLE, mapping)}, mode="delta")
        assert store.manifest(NS).kind == "full"
        with store.load(NS) as snapshot:
            assert snapshot.section("s", MUTABLE) == mapping


def test_a_full_cache_that_inserts_and_evicts_during_the_read_is_not_read_in_one_step(
    store_path: Path, small_slices: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new key lands after every key the dict held: the read stops before it, not fails."""
    n = 30 * small_slices
    cache: Any = cachetools.LRUCache(maxsize=n)
    cache.update(rows(n))
    lock = threading.Lock()
    inserted = itertools.count(n)

    class Inserting(Pacer):
        def pace(self, *, before_long_step: bool = False) -> None:
            super().pace(before_long_step=before_long_step)
            with lock:
                key = f"k{next(inserted)}"
                cache[key] = Row(key, 0)  # evicts the least recently used

    one_step: list[int] = []
    real = _sliced.entries_of
    monkeypatch.setattr(_sliced, "entries_of", lambda m: one_step.append(1) or real(m))
    with warmstart.Store(store_path, sync=False) as store:
        with Inserting(budget=0.0):
            store.save(NS, {"s": (ROWS, cache, lock)}, mode="full")
        saved = loaded(store)
    assert one_step == []
    assert all(v.key == k for k, v in saved.items())
    survivors = [f"k{i}" for i in range(n) if f"k{i}" in cache]
    assert set(survivors) <= set(saved)  # every key held throughout the read is saved


def test_reads_that_are_diffed_keep_the_table_order() -> None:
    """An untracked LRU cache read for fingerprints comes in its table's order, hot keys last.

    Recency order changes with every read of the cache: a base read in it
    and the next read in table order (because a get moved a key meanwhile)
    would part at every key.
    """
    cache: cachetools.LRUCache[int, int] = cachetools.LRUCache(maxsize=20_000)
    cache.update((i, i) for i in range(10_000))
    for i in range(0, 10_000, 3):  # reads: each moves a key to the recent end
        cache[i]
    _, (recency, _, _) = _sliced.read_all(cache, None)
    _, (table, values, _) = _sliced.read_all(cache, None, stable_order=True)
    assert list(recency) == list(vars(cache)["_LRUCache__order"])
    hot = list(recency)[-_sliced.HOT :]
    assert list(table) == [i for i in range(10_000) if i not in set(hot)] + hot
    assert list(values) == list(table)
