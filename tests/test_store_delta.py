"""Delta checkpoints through a real store: histories, hash diffs, other writers, compaction."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any, ClassVar

import cachetools
import msgspec
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import warmstart
from warmstart._containers import entries_of, restore_into
from warmstart.delta import replay

NS = "svc"
WORKER = Path(__file__).parent / "reliability" / "_delta_worker.py"


class Val(msgspec.Struct):
    """A mutable record (diffed by hash when untracked)."""

    n: int
    tags: list[int] = msgspec.field(default_factory=list)


class Frozen(msgspec.Struct, frozen=True):
    """An immutable record (diffed by identity when untracked)."""

    n: int


class ShallowFrozen(msgspec.Struct, frozen=True):
    """Frozen, but with a list field that can still change in place."""

    n: int
    tags: list[int]


VALS = warmstart.Contract("val", Val, key=str)
FROZEN = warmstart.Contract("frozen", Frozen, key=str)
KEYS = st.sampled_from([f"k{i}" for i in range(10)])
RELAXED = warmstart.CompactionPolicy(max_deltas=1000, max_ratio=1000.0)
# Stateful runs scale with the Hypothesis profile (HYPOTHESIS_PROFILE=slow for long ones).
STATEFUL = settings(
    max_examples=max(10, settings.default.max_examples // 2), stateful_step_count=40
)


def encode(value: Any) -> bytes:
    return msgspec.msgpack.encode(value)


def loaded(store: warmstart.Store, section: str = "s", contract: Any = VALS) -> list[Any]:
    """The head's section as an ordered list of items."""
    with store.load(NS) as snapshot:
        return list(snapshot.section(section, contract).items())


def kinds(store: warmstart.Store) -> list[str]:
    """Kinds of the retained generations, oldest first."""
    return [g.kind for g in reversed(store.generations(NS))]


def expect_base(store: warmstart.Store, section: str) -> bool:
    """Whether the store's compaction policy asks for a base on top of the head."""
    try:
        head = store.manifest(NS).section(section)
    except warmstart.CheckpointNotFoundError:
        return True
    if head is None:
        return True
    chain = len({c.sequence for c in head.deltas})
    delta_bytes = sum(c.stored_bytes for c in head.deltas)
    return store.compaction.wants_base(chain, delta_bytes, head.base_bytes)


def tracked_containers() -> dict[str, Callable[[], MutableMapping[str, Any]]]:
    return {
        "TrackedDict": warmstart.TrackedDict,
        "Cache": lambda: warmstart.track(cachetools.Cache(maxsize=10_000)),
        "LRUCache": lambda: warmstart.track(cachetools.LRUCache(maxsize=10_000)),
    }


# -- the model-based history test ----------------------------------------------


class TrackedHistory(RuleBasedStateMachine):
    """A tracked mapping against a model through saves, reopens and compactions."""

    container: ClassVar[str] = "TrackedDict"

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="warmstart-delta-"))
        self.policy = warmstart.CompactionPolicy(max_deltas=4, max_ratio=1000.0)
        self.store = self._open()
        self.mapping = self._fresh()
        self.live: dict[str, Val] = {}  # the mapping, in its own (entries_of) order
        self.writes: dict[str, None] = {}  # written since the last commit, last-write order
        self.deletes: set[str] = set()
        self.committed: dict[str, Val] | None = None  # what a load must give, in order
        self.generation = 0
        self.continues_head = False  # the mapping's change log is a delta of the head
        self.counter = 0
        # Val holds a list, so once a save has seen the contract, a read through
        # the mapping counts as a write (issue 14).
        self.reads_write = False

    def _open(self) -> warmstart.Store:
        return warmstart.Store(self.dir / "store", sync=False, keep=2, compaction=self.policy)

    def _fresh(self) -> MutableMapping[str, Val]:
        return tracked_containers()[self.container]()

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _wrote(self, key: str) -> None:
        self.writes.pop(key, None)
        self.writes[key] = None
        self.deletes.discard(key)

    @rule(key=KEYS, n=st.integers(0, 5))
    def set(self, key: str, n: int) -> None:
        value = Val(n, [self.counter])
        self.counter += 1
        self.mapping[key] = value
        if self.container == "LRUCache":
            self.live.pop(key, None)  # a write makes the key most recent
        self.live[key] = value
        self._wrote(key)

    @rule(key=KEYS)
    def delete(self, key: str) -> None:
        self.mapping.pop(key, None)
        if key in self.live:
            del self.live[key]
            self.writes.pop(key, None)
            self.deletes.add(key)

    @rule(key=KEYS)
    def read(self, key: str) -> None:
        if key in self.mapping:
            assert self.mapping[key] == self.live[key]
            if self.container == "LRUCache":
                self.live[key] = self.live.pop(key)  # a read changes recency, not content
            if self.reads_write:
                self._wrote(key)

    @rule()
    def clear(self) -> None:
        self.mapping.clear()
        self.live.clear()
        self.writes.clear()
        self.deletes.clear()
        self.continues_head = False

    @rule(max_deltas=st.integers(1, 6), max_ratio=st.sampled_from([0.2, 1.0, 1000.0]))
    def set_policy(self, max_deltas: int, max_ratio: float) -> None:
        self.policy = warmstart.CompactionPolicy(max_deltas=max_deltas, max_ratio=max_ratio)
        self.store.compaction = self.policy

    @rule(mode=st.sampled_from(["auto", "delta", "delta", "full"]))
    def checkpoint(self, mode: str) -> None:
        delta = mode != "full" and self.continues_head and not expect_base(self.store, "s")
        generation = self.store.save(NS, {"s": (VALS, self.mapping)}, mode=mode)
        assert generation == self.generation + 1
        head = self.store.generations(NS)[0]
        assert (head.generation, head.head) == (generation, True)
        assert head.kind == ("delta" if delta else "full")
        assert head.delta_chain <= self.policy.max_deltas
        if delta:
            assert self.committed is not None
            parent = self.store.manifest(NS, generation - 1)
            manifest = self.store.manifest(NS, generation)
            assert (manifest.parent, manifest.lineage) == (generation - 1, parent.lineage)
            upserts = [(k, self.live[k]) for k in self.writes]
            replay(self.committed, upserts, self.deletes)
        else:
            self.committed = dict(self.live)
        self.generation = generation
        self.writes.clear()
        self.deletes.clear()
        self.continues_head = True
        self.reads_write = True
        assert loaded(self.store) == list(self.committed.items())

    @rule(mark=st.booleans())
    def reopen(self, mark: bool) -> None:
        """A restart: uncommitted writes are lost; the head is restored into a fresh mapping."""
        self.store.close()
        self.store = self._open()
        self.mapping = self._fresh()
        self.writes.clear()
        self.deletes.clear()
        self.live = {}
        self.continues_head = False
        self.reads_write = False
        if self.committed is None:
            return
        with self.store.load(NS) as snapshot:
            assert snapshot.generation == self.generation
            section = snapshot.read("s", VALS)
        assert list(section.entries.items()) == list(self.committed.items())
        stats = restore_into(
            self.mapping, list(section.entries), list(section.entries.values()), []
        )
        assert stats.inserted == len(self.committed)
        self.live = dict(section.entries)
        if mark:
            self.store.mark_baseline(NS, "s", self.mapping, self.generation)
            self.continues_head = True

    @precondition(lambda self: self.committed is not None)
    @rule()
    def reopen_without_loading(self) -> None:
        """A new store object that never loaded cannot extend the head: the next save is full."""
        self.store.close()
        self.store = self._open()
        self.continues_head = False

    @invariant()
    def mapping_matches_model(self) -> None:
        keys, values, _ = entries_of(self.mapping)
        assert list(zip(keys, values)) == list(self.live.items())


@STATEFUL
class TrackedDictHistory(TrackedHistory):
    """Histories of a TrackedDict."""

    container = "TrackedDict"


@STATEFUL
class TrackedCacheHistory(TrackedHistory):
    """Histories of a tracked cachetools Cache."""

    container = "Cache"


@STATEFUL
class TrackedLRUHistory(TrackedHistory):
    """Histories of a tracked cachetools LRUCache (recency is part of the order)."""

    container = "LRUCache"


class TestTrackedDictHistories(TrackedDictHistory.TestCase):
    """After every load a TrackedDict's checkpoint equals the model, order included."""


class TestTrackedCacheHistories(TrackedCacheHistory.TestCase):
    """After every load a tracked Cache's checkpoint equals the model, order included."""


class TestTrackedLRUHistories(TrackedLRUHistory.TestCase):
    """After every load a tracked LRUCache's checkpoint equals the model, order included."""


# -- hash diff and tracking agree ----------------------------------------------------


class _Side:
    """One way of checkpointing the same history: its store, mappings and expected loads."""

    def __init__(self, path: Path, *, tracked: bool) -> None:
        self.path = path
        self.tracked = tracked
        self.store = self.open()
        self.frozen: MutableMapping[str, Frozen] = self.fresh()
        self.mutable: MutableMapping[str, Val] = self.fresh()
        self.expected: dict[str, dict[str, Any]] = {"f": {}, "m": {}}
        # tracked: keys written since the last commit (last-write order);
        # untracked: what each section looked like at the last commit.
        self.writes: dict[str, dict[str, None]] = {"f": {}, "m": {}}
        self.seen: dict[str, dict[str, Any]] = {"f": {}, "m": {}}
        self.generation = 0
        self.continues = False

    def open(self) -> warmstart.Store:
        return warmstart.Store(self.path, sync=False, compaction=RELAXED)

    def fresh(self) -> MutableMapping[str, Any]:
        return warmstart.TrackedDict() if self.tracked else {}

    def sections(self) -> dict[str, tuple[Any, MutableMapping[str, Any]]]:
        return {"f": (FROZEN, self.frozen), "m": (VALS, self.mutable)}

    def wrote(self, section: str, key: str) -> None:
        self.writes[section].pop(key, None)
        self.writes[section][key] = None

    def checkpoint(self) -> None:
        mode = "auto" if self.tracked else "delta"
        self.generation = self.store.save(NS, self.sections(), mode=mode)
        kind = self.store.manifest(NS).kind
        assert kind == ("delta" if self.continues else "full")
        for name, (_, tracked_or_not) in self.sections().items():
            # The harness reads from behind a tracked mapping: its reads of
            # mutable values would count as writes (issue 14).
            mapping = _raw(tracked_or_not)
            expected = self.expected[name]
            # Copies: values mutated in place later must not change what was committed.
            if kind == "full":
                self.expected[name] = copy.deepcopy(dict(mapping))
            elif self.tracked:
                present = [k for k in self.writes[name] if k in mapping]
                gone = set(expected) - set(mapping)
                replay(expected, [(k, copy.deepcopy(mapping[k])) for k in present], gone)
            else:
                seen = self.seen[name]
                by_identity = name == "f"
                changed = [
                    k
                    for k, v in mapping.items()
                    if k not in seen or (seen[k] is not v if by_identity else seen[k] != encode(v))
                ]
                upserts = [(k, copy.deepcopy(mapping[k])) for k in changed]
                replay(expected, upserts, set(seen) - set(mapping))
            self.writes[name] = {}
            self.seen[name] = {k: v if name == "f" else encode(v) for k, v in mapping.items()}
        self.continues = True
        for name, contract in (("f", FROZEN), ("m", VALS)):
            assert loaded(self.store, name, contract) == list(self.expected[name].items())

    def reopen(self) -> None:
        self.store.close()
        self.store = self.open()
        self.frozen, self.mutable = self.fresh(), self.fresh()
        self.writes = {"f": {}, "m": {}}
        self.seen = {"f": {}, "m": {}}
        self.continues = False
        if not self.generation:
            self.expected = {"f": {}, "m": {}}
            return
        with self.store.load(NS) as snapshot:
            for name, mapping in self.sections().items():
                entries = snapshot.section(name, mapping[0])
                restore_into(mapping[1], list(entries), list(entries.values()), [])
                self.store.mark_baseline(NS, name, mapping[1], snapshot.generation)
        # Only tracked mappings can continue the head: fingerprints died with the process.
        self.continues = self.tracked


def _raw(mapping: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The dict behind a TrackedDict (reading it is not reading through the mapping)."""
    return mapping._data if isinstance(mapping, warmstart.TrackedDict) else mapping


@STATEFUL
class HashDiffAgreement(RuleBasedStateMachine):
    """The same history checkpointed by tracking and by hash/identity diff."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="warmstart-agree-"))
        self.tracked = _Side(self.dir / "tracked", tracked=True)
        self.untracked = _Side(self.dir / "untracked", tracked=False)
        self.sides = (self.tracked, self.untracked)

    def teardown(self) -> None:
        for side in self.sides:
            side.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(key=KEYS, n=st.integers(0, 3))
    def set_frozen(self, key: str, n: int) -> None:
        value = Frozen(n)  # a new object, even when equal to the old one
        for side in self.sides:
            side.frozen[key] = value
            side.wrote("f", key)

    @rule(key=KEYS)
    def reassign_frozen(self, key: str) -> None:
        """Writing back the same object: a tracked write, no change for identity diff."""
        for side in self.sides:
            if key in side.frozen:
                side.frozen[key] = side.frozen[key]
                side.wrote("f", key)

    @rule(key=KEYS, n=st.integers(0, 3))
    def set_mutable(self, key: str, n: int) -> None:
        for side in self.sides:
            side.mutable[key] = Val(n)
            side.wrote("m", key)

    @rule(key=KEYS, tag=st.integers(0, 3))
    def mutate_in_place(self, key: str, tag: int) -> None:
        """In-place change: found by hash diff alone; a tracked mapping needs the write back."""
        for side in self.sides:
            if key in side.mutable:
                side.mutable[key].tags.append(tag)
                if side.tracked:
                    side.mutable[key] = side.mutable[key]
                    side.wrote("m", key)

    @rule(key=KEYS, section=st.sampled_from(["f", "m"]))
    def delete(self, key: str, section: str) -> None:
        for side in self.sides:
            mapping = side.frozen if section == "f" else side.mutable
            mapping.pop(key, None)
            side.writes[section].pop(key, None)

    @rule()
    def checkpoint(self) -> None:
        for side in self.sides:
            side.checkpoint()
        for name, contract in (("f", FROZEN), ("m", VALS)):
            tracked = dict(loaded(self.tracked.store, name, contract))
            untracked = dict(loaded(self.untracked.store, name, contract))
            assert tracked == untracked == dict(_raw(self.tracked.sections()[name][1]))

    @rule()
    def reopen(self) -> None:
        for side in self.sides:
            side.reopen()


class TestHashDiffAgreesWithTracking(HashDiffAgreement.TestCase):
    """Tracked and hash/identity-diffed checkpoints of every history load the same mapping."""


# -- hash diff details ---------------------------------------------------------------


def delta_keys(store: warmstart.Store, section: str, contract: Any) -> tuple[list[Any], list[Any]]:
    """Upserted and deleted keys of the head's own delta chunks."""
    with store.load(NS) as snapshot:
        assert snapshot.manifest.kind == "delta"
        refs = tuple(
            r
            for r in snapshot.section_manifest(section).deltas
            if r.sequence == snapshot.generation
        )
        upserts: list[Any] = []
        deleted: list[Any] = []
        for _, decoded in snapshot.chunks(section, contract, refs=refs):
            upserts += decoded.keys
            deleted += decoded.deleted
    return upserts, deleted


class TestHashDiff:
    """Untracked mappings saved with mode="delta" write only what changed."""

    def test_auto_mode_writes_bases_for_untracked_mappings(self, tmp_path: Path) -> None:
        """Without mode="delta", an untracked mapping is always saved whole."""
        d = {"a": Val(1)}
        with warmstart.Store(tmp_path / "s", sync=False, compaction=RELAXED) as store:
            store.save(NS, {"s": (VALS, d)})
            d["b"] = Val(2)
            store.save(NS, {"s": (VALS, d)})
            assert kinds(store) == ["full", "full"]

    def test_only_changed_entries_are_written(self, tmp_path: Path) -> None:
        """Mutated in place, replaced, added and removed entries; nothing else."""
        d = {f"k{i}": Val(i) for i in range(20)}
        with warmstart.Store(tmp_path / "s", sync=False, compaction=RELAXED) as store:
            store.save(NS, {"s": (VALS, d)}, mode="delta")
            d["k3"].tags.append(1)
            d["k5"] = Val(5)  # equal copy: same bytes, no change
            d["k7"] = Val(70)
            d["new"] = Val(0)
            del d["k1"]
            store.save(NS, {"s": (VALS, d)}, mode="delta")
            assert kinds(store) == ["full", "delta"]
            assert delta_keys(store, "s", VALS) == (["k3", "k7", "new"], ["k1"])
            assert dict(loaded(store)) == d

    def test_frozen_values_are_compared_by_identity(self, tmp_path: Path) -> None:
        """A frozen value replaced by an equal new object is rewritten; the same object is not."""
        d = {f"k{i}": Frozen(i) for i in range(5)}
        with warmstart.Store(tmp_path / "s", sync=False, compaction=RELAXED) as store:
            store.save(NS, {"s": (FROZEN, d)}, mode="delta")
            d["k2"] = Frozen(2)
            d["k3"] = d["k3"]
            store.save(NS, {"s": (FROZEN, d)}, mode="delta")
            assert delta_keys(store, "s", FROZEN) == (["k2"], [])

    def test_frozen_values_with_mutable_fields_are_compared_by_hash(self, tmp_path: Path) -> None:
        """A frozen Struct whose list field changes in place is still found changed."""
        contract = warmstart.Contract("shallow", ShallowFrozen, key=str)
        d = {"a": ShallowFrozen(1, []), "b": ShallowFrozen(2, [])}
        with warmstart.Store(tmp_path / "s", sync=False, compaction=RELAXED) as store:
            store.save(NS, {"s": (contract, d)}, mode="delta")
            d["a"].tags.append(5)
            store.save(NS, {"s": (contract, d)}, mode="delta")
            assert delta_keys(store, "s", contract) == (["a"], [])
            with store.load(NS) as snapshot:
                assert snapshot.section("s", contract) == d

    def test_loading_the_head_keeps_the_fingerprints(self, tmp_path: Path) -> None:
        """Reading back the generation just saved does not turn the next save into a base."""
        d = {"a": Val(1), "b": Val(2)}
        with warmstart.Store(tmp_path / "s", sync=False, compaction=RELAXED) as store:
            store.save(NS, {"s": (VALS, d)}, mode="delta")
            assert loaded(store) == list(d.items())
            d["c"] = Val(3)
            store.save(NS, {"s": (VALS, d)}, mode="delta")
            assert loaded(store) == list(d.items())
            d["a"].tags.append(9)
            store.save(NS, {"s": (VALS, d)}, mode="delta")
            assert kinds(store) == ["full", "delta", "delta"]
            assert loaded(store) == [("b", Val(2)), ("c", Val(3)), ("a", Val(1, [9]))]

    def test_a_new_store_object_starts_with_a_base(self, tmp_path: Path) -> None:
        """Fingerprints live in the store object: a reopened store writes a base first."""
        d = {"a": Val(1)}
        with warmstart.Store(tmp_path / "s", sync=False, compaction=RELAXED) as store:
            store.save(NS, {"s": (VALS, d)}, mode="delta")
        with warmstart.Store(tmp_path / "s", sync=False, compaction=RELAXED) as store:
            loaded(store)
            d["b"] = Val(2)
            store.save(NS, {"s": (VALS, d)}, mode="delta")
            d["c"] = Val(3)
            store.save(NS, {"s": (VALS, d)}, mode="delta")
            assert kinds(store) == ["full", "full", "delta"]


# -- other writers ------------------------------------------------------------------


class WVal(msgspec.Struct, frozen=True):
    """The worker's self-describing value (same contract name and shape)."""

    key: str
    writer: int
    seq: int
    check: int
    payload: str


WVALS = warmstart.Contract("crash-val", WVal, key=str)
WNS = "crash"
WSECTION = "entries"


def run_worker(path: Path, mode: str, *pairs: str) -> tuple[int, str]:
    """Commit one generation from another process; return its number and kind."""
    done = subprocess.run(
        [sys.executable, str(WORKER), "write", str(path), mode, *pairs],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    generation, kind = done.stdout.split()
    return int(generation), kind


def wval(key: str, seq: int) -> WVal:
    return WVal(key, 0, seq, 0, "")


@pytest.fixture
def wstore(tmp_path: Path) -> Iterator[warmstart.Store]:
    with warmstart.Store(tmp_path / "s", sync=False, compaction=RELAXED) as store:
        yield store


def wload(store: warmstart.Store) -> dict[str, tuple[int, int]]:
    """The head as key -> (writer, seq)."""
    with store.load(WNS) as snapshot:
        return {k: (v.writer, v.seq) for k, v in snapshot.section(WSECTION, WVALS).items()}


class TestOtherWriters:
    """When someone else moved the head, the next save is a full base, never a stray delta."""

    def _ours(self, store: warmstart.Store) -> warmstart.TrackedDict[str, WVal]:
        mapping = warmstart.TrackedDict({"a": wval("a", 1), "b": wval("b", 2)})
        store.save(WNS, {WSECTION: (WVALS, mapping)})
        mapping["c"] = wval("c", 3)
        store.save(WNS, {WSECTION: (WVALS, mapping)})
        assert [g.kind for g in store.generations(WNS)] == ["delta", "full"]
        return mapping

    @pytest.mark.parametrize("their_mode", ["full", "delta"])
    @pytest.mark.parametrize("load_first", [False, True], ids=["save-blind", "load-then-save"])
    def test_a_second_process_saving_the_namespace(
        self, wstore: warmstart.Store, tmp_path: Path, their_mode: str, load_first: bool
    ) -> None:
        """After another process commits (a base or a delta of our head), we write a base."""
        ours = self._ours(wstore)
        generation, kind = run_worker(tmp_path / "s", their_mode, "z=9")
        assert (generation, kind) == (3, their_mode)
        their_keys = {"z"} if their_mode == "full" else {"a", "b", "c", "z"}
        if load_first:
            assert set(wload(wstore)) == their_keys
        ours["d"] = wval("d", 4)
        assert wstore.save(WNS, {WSECTION: (WVALS, ours)}) == 4
        infos = wstore.generations(WNS)
        assert [(g.kind, g.generation) for g in infos] == [
            ("full", 4),
            (their_mode, 3),
            ("delta", 2),
        ]
        assert wstore.manifest(WNS, 4).parent == 3
        assert wstore.manifest(WNS, 4).lineage != wstore.manifest(WNS, 3).lineage
        assert wload(wstore) == {k: (0, v.seq) for k, v in ours.items()}
        with wstore.load(WNS, generation=3) as snapshot:
            assert set(snapshot.section(WSECTION, WVALS)) == their_keys
        ours["e"] = wval("e", 5)
        wstore.save(WNS, {WSECTION: (WVALS, ours)})
        assert wstore.generations(WNS)[0].kind == "delta"
        assert wload(wstore) == {k: (0, v.seq) for k, v in ours.items()}

    def test_a_second_store_object_in_this_process(self, tmp_path: Path) -> None:
        """A head written through another Store object on the same path is not extended."""
        path = tmp_path / "s"
        with warmstart.Store(path, sync=False, compaction=RELAXED) as first:
            ours = self._ours(first)
        with warmstart.Store(path, sync=False, compaction=RELAXED) as second:
            second.save(WNS, {WSECTION: (WVALS, {"z": wval("z", 9)})})
        with warmstart.Store(path, sync=False, compaction=RELAXED) as again:
            assert set(wload(again)) == {"z"}  # loading their head does not adopt our mapping
            ours["d"] = wval("d", 4)
            again.save(WNS, {WSECTION: (WVALS, ours)})
            assert again.generations(WNS)[0].kind == "full"
            assert set(wload(again)) == {"a", "b", "c", "d"}

    def test_saving_after_loading_an_older_generation(self, wstore: warmstart.Store) -> None:
        """A mapping restored from an older generation is saved as a base, never a delta."""
        ours = self._ours(wstore)
        ours["d"] = wval("d", 4)
        wstore.save(WNS, {WSECTION: (WVALS, ours)})
        with wstore.load(WNS, generation=2) as snapshot:
            entries = snapshot.section(WSECTION, WVALS)
        older: warmstart.TrackedDict[str, WVal] = warmstart.TrackedDict()
        restore_into(older, list(entries), list(entries.values()), [])
        wstore.mark_baseline(WNS, WSECTION, older, 2)  # not the head: ignored
        older["x"] = wval("x", 7)
        assert wstore.save(WNS, {WSECTION: (WVALS, older)}) == 4
        assert wstore.generations(WNS)[0].kind == "full"
        assert set(wload(wstore)) == {"a", "b", "c", "x"}

    def test_a_reopened_store_loading_an_older_generation(self, tmp_path: Path) -> None:
        """A new store object that loaded only an older generation writes a base."""
        path = tmp_path / "s"
        with warmstart.Store(path, sync=False, compaction=RELAXED) as first:
            self._ours(first)
        with warmstart.Store(path, sync=False, compaction=RELAXED) as store:
            with store.load(WNS, generation=1) as snapshot:
                entries = snapshot.section(WSECTION, WVALS)
            older: warmstart.TrackedDict[str, WVal] = warmstart.TrackedDict()
            restore_into(older, list(entries), list(entries.values()), [])
            store.mark_baseline(WNS, WSECTION, older, 1)
            older["x"] = wval("x", 7)
            store.save(WNS, {WSECTION: (WVALS, older)})
            assert store.generations(WNS)[0].kind == "full"
            assert set(wload(store)) == {"a", "b", "x"}

    def test_a_dropped_and_recreated_namespace(self, wstore: warmstart.Store) -> None:
        """Generation numbers restart after drop(): a mapping of the old lineage writes a base."""
        ours = self._ours(wstore)
        wstore.drop(WNS)
        wstore.save(WNS, {WSECTION: (WVALS, {"z": wval("z", 9)})})
        wstore.save(WNS, {WSECTION: (WVALS, {"z": wval("z", 10)})})
        ours["d"] = wval("d", 4)
        wstore.save(WNS, {WSECTION: (WVALS, ours)})
        assert wstore.generations(WNS)[0].kind == "full"
        assert set(wload(wstore)) == {"a", "b", "c", "d"}

    def test_a_failed_save_keeps_its_changes_for_the_next_delta(
        self, wstore: warmstart.Store
    ) -> None:
        """An EncodeError loses no change: the next delta still carries it."""
        ours = self._ours(wstore)
        ours["a"] = wval("a", 100)
        del ours["b"]
        ours["bad"] = "not a WVal"  # type: ignore[assignment]
        with pytest.raises(warmstart.EncodeError):
            wstore.save(WNS, {WSECTION: (WVALS, ours)})
        del ours["bad"]
        wstore.save(WNS, {WSECTION: (WVALS, ours)})
        assert wstore.generations(WNS)[0].kind == "delta"
        assert wload(wstore) == {"c": (0, 3), "a": (0, 100)}

    def test_a_failed_section_gives_back_the_other_sections_changes(
        self, wstore: warmstart.Store
    ) -> None:
        """When one section fails to encode, the sections prepared before it lose nothing."""
        first = warmstart.TrackedDict({"a": wval("a", 1)})
        second = warmstart.TrackedDict({"b": wval("b", 1)})
        sections = {"first": (WVALS, first), "second": (WVALS, second)}
        wstore.save(WNS, sections)
        first["a"] = wval("a", 2)
        second["bad"] = "oops"
        with pytest.raises(warmstart.EncodeError):
            wstore.save(WNS, sections)
        del second["bad"]
        wstore.save(WNS, sections)
        assert wstore.generations(WNS)[0].kind == "delta"
        with wstore.load(WNS) as snapshot:
            assert snapshot.section("first", WVALS) == {"a": wval("a", 2)}
            assert snapshot.section("second", WVALS) == {"b": wval("b", 1)}


# -- compaction ----------------------------------------------------------------------


class TestCompaction:
    """A chain past its length or byte-ratio threshold gives way to a fresh base."""

    def test_chain_length(self, tmp_path: Path) -> None:
        """With max_deltas=3, every fourth save after a base is a base again."""
        policy = warmstart.CompactionPolicy(max_deltas=3, max_ratio=1000.0)
        mapping = warmstart.TrackedDict({f"k{i}": Val(i) for i in range(50)})
        seen = []
        with warmstart.Store(tmp_path / "s", sync=False, keep=1, compaction=policy) as store:
            for i in range(9):
                mapping[f"k{i}"] = Val(100 + i)
                mapping.pop(f"k{40 + i}")
                store.save(NS, {"s": (VALS, mapping)})
                head = store.generations(NS)[0]
                seen.append((head.kind, head.delta_chain))
                assert dict(loaded(store)) == dict(mapping)
            assert store.verify().ok
            assert store.verify().orphans == 0
        assert seen == [
            ("full", 0),
            ("delta", 1),
            ("delta", 2),
            ("delta", 3),
            ("full", 0),
            ("delta", 1),
            ("delta", 2),
            ("delta", 3),
            ("full", 0),
        ]

    def test_byte_ratio(self, tmp_path: Path) -> None:
        """A base is written exactly when the chain's bytes reach max_ratio of the base's."""
        policy = warmstart.CompactionPolicy(max_deltas=1000, max_ratio=0.5)
        mapping = warmstart.TrackedDict({f"k{i:03d}": Val(i, list(range(20))) for i in range(200)})
        with warmstart.Store(tmp_path / "s", sync=False, compaction=policy) as store:
            store.save(NS, {"s": (VALS, mapping)})
            bases = 0
            for round_ in range(12):
                section = store.manifest(NS).section("s")
                assert section is not None
                delta_bytes = sum(c.stored_bytes for c in section.deltas)
                due = delta_bytes >= 0.5 * section.base_bytes
                for i in range(25):
                    mapping[f"k{(round_ * 25 + i) % 200:03d}"] = Val(-i, [round_] * 30)
                store.save(NS, {"s": (VALS, mapping)})
                head = store.manifest(NS)
                assert head.kind == ("full" if due else "delta")
                bases += due
                assert dict(loaded(store)) == dict(mapping)
            assert 1 <= bases < 12

    def test_compaction_order_is_the_mapping_order(self, tmp_path: Path) -> None:
        """After compaction the base holds the mapping's own order, not the replayed one."""
        policy = warmstart.CompactionPolicy(max_deltas=1, max_ratio=1000.0)
        mapping = warmstart.TrackedDict({"a": Val(1), "b": Val(2), "c": Val(3)})
        with warmstart.Store(tmp_path / "s", sync=False, compaction=policy) as store:
            store.save(NS, {"s": (VALS, mapping)})
            mapping["a"] = Val(10)
            store.save(NS, {"s": (VALS, mapping)})
            assert [k for k, _ in loaded(store)] == ["b", "c", "a"]  # upserts move to the end
            mapping["b"] = Val(20)
            store.save(NS, {"s": (VALS, mapping)})
            assert kinds(store)[-1] == "full"
            assert [k for k, _ in loaded(store)] == ["a", "b", "c"]

    def test_explicit_full_save_restarts_the_chain(self, tmp_path: Path) -> None:
        """mode="full" compacts whatever the policy says, and deltas resume after it."""
        mapping = warmstart.TrackedDict({"a": Val(1)})
        with warmstart.Store(tmp_path / "s", sync=False, compaction=RELAXED) as store:
            store.save(NS, {"s": (VALS, mapping)})
            mapping["b"] = Val(2)
            store.save(NS, {"s": (VALS, mapping)})
            mapping["c"] = Val(3)
            store.save(NS, {"s": (VALS, mapping)}, mode="full")
            mapping["d"] = Val(4)
            store.save(NS, {"s": (VALS, mapping)})
            assert kinds(store) == ["delta", "full", "delta"]
            assert store.generations(NS)[0].delta_chain == 1
            assert dict(loaded(store)) == dict(mapping)


class TestTimedDeltaChain:
    """A timed cache checkpointed as deltas: expiries follow each key's latest upsert."""

    def test_expiries_follow_the_latest_upsert(self, tmp_path: Path) -> None:
        # Each entry lives 1000 + n seconds: an upsert's new expiry is visible.
        cache = warmstart.track(
            cachetools.TLRUCache(maxsize=100, ttu=lambda _k, v, now: now + 1000 + v.n)
        )
        for i in range(6):
            cache[f"k{i}"] = Val(i)
        sections = {"c": (VALS, cache)}
        with warmstart.Store(tmp_path, compaction=RELAXED) as store:
            store.save(NS, sections)
            cache["k1"] = Val(11)
            del cache["k2"]
            store.save(NS, sections)
            cache["k3"] = Val(33)
            cache["k9"] = Val(9)  # a new key
            store.save(NS, sections)
            assert store.manifest(NS).delta_chain == 2
            with store.load(NS) as snapshot:
                section = snapshot.read("c", VALS)
        entries, expires = section.entries, section.expires
        assert list(entries)[:3] == ["k0", "k4", "k5"]  # the untouched base, in order
        assert list(entries)[3] == "k1"  # then each delta's upserts
        assert set(list(entries)[4:]) == {"k3", "k9"}
        assert (entries["k1"], entries["k3"]) == (Val(11), Val(33))
        assert set(expires) == set(entries)
        # Wall-clock expiries, rebased at each save (the saves are milliseconds apart).
        offsets = {k: round(expires[k] - expires["k0"]) for k in entries}
        assert offsets == {"k0": 0, "k4": 4, "k5": 5, "k1": 11, "k3": 33, "k9": 9}
