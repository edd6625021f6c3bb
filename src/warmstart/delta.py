"""Change tracking, delta operations, replay, and the compaction policy.

A periodic checkpoint should cost what changed, not what exists. Changes are
found one of three ways, cheapest first:

* **tracked**: a :class:`TrackedDict`, or any Python-level mapping (a
  ``cachetools`` cache) passed through :func:`track`, records dirty and deleted
  keys at O(1) per write; cache evictions and expiries count as deletions.
* **identity**: for an untracked mapping whose values are immutable (frozen
  Structs), a snapshot of references from the last checkpoint; a value that is
  the same object is unchanged, so only replaced values are encoded.
* **hash**: for an untracked mapping of mutable values, the xxh3-64 of each
  entry's encoded bytes at the last checkpoint, compared entry by entry.

A delta is a list of upserts (in last-write order) and a set of deletions; a
key is in one or the other, never both. Replay removes every touched key and
appends the upserts in order, so it is deterministic and idempotent: applying a
delta twice, or a prefix of it and then all of it, gives the same mapping in
the same order.

>>> d = TrackedDict({"a": 1, "b": 2})
>>> d.mark_clean()
>>> d["c"] = 3; del d["a"]
>>> changes = d.take_changes()
>>> changes.upserts, sorted(changes.deletes)
(['c'], ['a'])
>>> state = {"a": 1, "b": 2}
>>> replay(state, [("c", 3)], ["a"])
>>> state
{'b': 2, 'c': 3}
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import operator
import threading
from collections.abc import (
    Callable,
    Iterable,
    Iterator,
    MutableMapping,
    Sequence,
)
from typing import Any, Generic, TypeVar

import xxhash

from warmstart.errors import ContractError

__all__ = (
    "ChangeSet",
    "CompactionPolicy",
    "TrackedDict",
    "is_tracked",
    "replay",
    "track",
)


def __dir__() -> tuple[str, ...]:
    return __all__


K = TypeVar("K")
V = TypeVar("V")


@dataclasses.dataclass
class ChangeSet:
    """Keys written (in last-write order) and keys deleted since a checkpoint.

    ``full`` means the history is unknown (a ``clear()``, or no baseline): the
    next checkpoint must write a fresh base.
    """

    upserts: list[Any]
    deletes: set[Any]
    full: bool = False

    def merge_back(self, later: ChangeSet) -> ChangeSet:
        """Combine this (older, failed to commit) change set with a later one."""
        upserts = [k for k in self.upserts if k not in later.deletes]
        seen = set(later.upserts)
        upserts = [k for k in upserts if k not in seen] + later.upserts
        deletes = (self.deletes - seen) | later.deletes
        return ChangeSet(upserts, deletes, self.full or later.full)


class _ChangeLog:
    """The record a tracked mapping keeps: O(1) per write, thread-safe."""

    __slots__ = ("baseline", "cleared", "deletes", "dirty", "lock", "removed", "removed_all")

    def __init__(self) -> None:
        self.dirty: dict[Any, None] = {}
        self.deletes: set[Any] = set()
        self.cleared = True  # no checkpoint yet: the first one is a full base
        self.baseline: object = None
        self.lock = threading.Lock()
        # While a background restore fills the mapping: the keys the service
        # removed (present or not yet restored) and whether it cleared it. The
        # restore must not bring those back with their saved, stale values.
        self.removed: set[Any] | None = None
        self.removed_all = False

    def begin_restore(self) -> None:
        """A background restore starts filling the mapping: record removals."""
        with self.lock:
            self.removed = set()
            self.removed_all = False

    def end_restore(self) -> None:
        with self.lock:
            self.removed = None
            self.removed_all = False

    def note_removal(self, key: Any) -> None:
        removed = self.removed
        if removed is not None:
            removed.add(key)

    def restorable(self, keys: list[Any]) -> list[bool] | None:
        """Which of ``keys`` a background restore may still insert (None: all of them)."""
        if self.removed_all:
            return [False] * len(keys)
        removed = self.removed
        if not removed:
            return None
        return [key not in removed for key in keys]

    # The lock makes a write and a concurrent checkpoint's take() atomic with
    # respect to each other: every write lands in exactly one checkpoint.
    def wrote(self, key: Any) -> None:
        with self.lock:
            self.deletes.discard(key)
            # pop + set moves a rewritten key to the end: last-write order.
            self.dirty.pop(key, None)
            self.dirty[key] = None

    def deleted(self, key: Any) -> None:
        with self.lock:
            self.deleted_locked(key)

    def deleted_locked(self, key: Any) -> None:
        self.dirty.pop(key, None)
        self.deletes.add(key)

    def take(self) -> ChangeSet:
        with self.lock:
            changes = ChangeSet(list(self.dirty), self.deletes, self.cleared)
            self.dirty = {}
            self.deletes = set()
            self.cleared = False
            return changes

    def restore(self, changes: ChangeSet) -> None:
        """Put back changes whose checkpoint failed, ahead of newer ones."""
        with self.lock:
            later = ChangeSet(list(self.dirty), self.deletes, self.cleared)
            merged = changes.merge_back(later)
            self.dirty = dict.fromkeys(merged.upserts)
            self.deletes = merged.deletes
            self.cleared = merged.full


_MISSING: Any = object()


def _popped(key: Any, value: Any, default: Any) -> Any:
    """``dict.pop`` semantics for a value taken with ``_MISSING`` as default."""
    if value is not _MISSING:
        return value
    if default is _MISSING:
        raise KeyError(key)
    return default


class TrackedDict(MutableMapping[K, V], Generic[K, V]):
    """A dict that records which keys changed since the last checkpoint.

    Every write is O(1) extra work; iteration order is insertion order, as for
    ``dict``. Use it for warm state checkpointed periodically.

    >>> d = TrackedDict(a=1)
    >>> d["b"] = 2
    >>> dict(d)
    {'a': 1, 'b': 2}
    """

    __slots__ = ("_data", "_warm_hits", "_warm_log")
    #: warmstart.counted() may count this class's lookups in place.
    _warm_hits_slot = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._data: dict[K, V] = dict(*args, **kwargs)
        self._warm_log = _ChangeLog()

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __setitem__(self, key: K, value: V) -> None:
        self._data[key] = value
        self._warm_log.wrote(key)

    def __delitem__(self, key: K) -> None:
        log = self._warm_log
        if log.removed is not None:
            self.pop(key)  # records the removal for the restore under way
            return
        del self._data[key]
        log.deleted(key)

    def pop(self, key: K, default: Any = _MISSING) -> Any:
        log = self._warm_log
        if log.removed is not None:
            # A background restore is filling this dict: remove the key and
            # record it in one step under the lock the restore inserts under,
            # even when it is not restored yet (an invalidation).
            with log.lock:
                if log.removed is not None:
                    log.removed.add(key)
                    value = self._data.pop(key, _MISSING)
                    if value is not _MISSING:
                        log.deleted_locked(key)
                    return _popped(key, value, default)
        value = self._data.pop(key, _MISSING)
        if value is not _MISSING:
            log.deleted(key)
        return _popped(key, value, default)

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __repr__(self) -> str:
        return f"TrackedDict({self._data!r})"

    def get(self, key: K, default: Any = None) -> Any:
        return self._data.get(key, default)

    def clear(self) -> None:
        log = self._warm_log
        with log.lock:
            self._data.clear()
            log.dirty.clear()
            log.deletes.clear()
            log.cleared = True
            log.removed_all = log.removed is not None

    def setdefault(self, key: K, default: Any = None) -> Any:
        # dict.setdefault is atomic under the GIL: a background restore uses it
        # so that it never overwrites a value the live service just wrote.
        before = len(self._data)
        value = self._data.setdefault(key, default)
        if len(self._data) != before:
            self._warm_log.wrote(key)
        return value

    def items(self) -> Any:
        return self._data.items()

    def values(self) -> Any:
        return self._data.values()

    def keys(self) -> Any:
        return self._data.keys()

    def mark_clean(self) -> None:
        """Forget recorded changes: the current content is the baseline."""
        self._warm_log.take()

    def take_changes(self) -> ChangeSet:
        """Return and reset the changes since the last checkpoint."""
        return self._warm_log.take()


def _tracking_class(cls: Any) -> type:
    """A subclass of ``cls`` that records writes, deletions and evictions."""
    cached = _TRACKING_CLASSES.get(cls)
    if cached is not None:
        return cached
    namespace: dict[str, Any] = {"__module__": __name__, "__qualname__": f"Tracked{cls.__name__}"}

    def __setitem__(self: Any, key: Any, value: Any) -> None:  # noqa: N807
        cls.__setitem__(self, key, value)
        self._warm_log.wrote(key)

    # During a background restore, which the service's lock (given with
    # state(lock=...)) serialises with these calls, a removed key must stay
    # removed, whether it was restored yet or not.
    def __delitem__(self: Any, key: Any) -> None:  # noqa: N807
        self._warm_log.note_removal(key)
        cls.__delitem__(self, key)
        self._warm_log.deleted(key)

    def pop(self: Any, key: Any, default: Any = _MISSING) -> Any:
        if key in self:
            value = self[key]
            del self[key]
            return value
        self._warm_log.note_removal(key)
        return _popped(key, _MISSING, default)

    def popitem(self: Any) -> tuple[Any, Any]:
        # cachetools evicts through popitem(): an eviction is a deletion.
        key, value = cls.popitem(self)
        self._warm_log.deleted(key)
        return key, value

    def clear(self: Any) -> None:
        cls.clear(self)
        log = self._warm_log
        with log.lock:
            log.cleared = True
            log.removed_all = log.removed is not None

    namespace.update(
        __setitem__=__setitem__, __delitem__=__delitem__, pop=pop, popitem=popitem, clear=clear
    )
    if hasattr(cls, "expire"):
        namespace["expire"] = _tracking_expire(cls)
    tracking = type(f"Tracked{cls.__name__}", (cls,), namespace)
    _TRACKING_CLASSES[cls] = tracking
    return tracking


_TRACKING_CLASSES: dict[Any, type] = {}


def _tracking_expire(cls: Any) -> Callable[..., Any]:
    def expire(self: Any, time: Any = None) -> Any:
        # TTL caches drop expired entries here, bypassing __delitem__.
        expired = cls.expire(self, time) if time is not None else cls.expire(self)
        for key, _ in expired or ():
            self._warm_log.deleted(key)
        return expired

    return expire


def track(mapping: MutableMapping[K, V]) -> MutableMapping[K, V]:
    """Add change tracking to ``mapping`` in place, and return it.

    Works for Python-level mappings such as ``cachetools`` caches (evictions
    and TTL expiries count as deletions). A plain ``dict`` cannot be changed in
    place: use :class:`TrackedDict`, or leave it untracked (hash diff).

    >>> import cachetools
    >>> cache = track(cachetools.LRUCache(maxsize=2))
    >>> cache["a"] = 1; cache["b"] = 2; cache["c"] = 3   # evicts "a"
    >>> is_tracked(cache)
    True
    """
    if is_tracked(mapping):
        return mapping
    cls = type(mapping)
    # A dict subclass's C methods (update, pop, setdefault) bypass the tracking
    # __setitem__/__delitem__, so its deltas would silently miss writes.
    if not hasattr(mapping, "__dict__") or isinstance(mapping, dict):
        msg = (
            f"Expected a mapping whose class can be extended (a cachetools cache, a "
            f"MutableMapping subclass), got {cls.__name__}; use warmstart.TrackedDict"
        )
        raise ContractError(msg)
    mapping.__class__ = _tracking_class(cls)
    mapping._warm_log = _ChangeLog()  # type: ignore[attr-defined]
    return mapping


def is_tracked(mapping: object) -> bool:
    """Whether ``mapping`` records its own changes."""
    return isinstance(getattr(mapping, "_warm_log", None), _ChangeLog)


def change_log(mapping: object) -> _ChangeLog | None:
    """The change log of a tracked mapping, or None."""
    log = getattr(mapping, "_warm_log", None)
    return log if isinstance(log, _ChangeLog) else None


# -- untracked mappings: identity snapshot or per-entry hashes ---------------


class Fingerprints:
    """What an untracked mapping looked like at its last checkpoint.

    Immutable values are remembered by reference (a value that is the same
    object is unchanged, found in C with ``operator.is_not``); mutable values
    by the xxh3-64 of their encoded bytes, since they may change in place.

    Keys and prints are kept as two lists in the order the mapping was read,
    not as a dict: the next read is mostly the same sequence (deletions drop
    out, inserts come last), so :meth:`diff` lines the two up run by run in C
    and only looks keys up by hash where the sequences part. Hashing every key
    into a dict cost more than a full save's encoding at a million entries
    (docs/benchmarks.md). Keys come from a mapping, so they are unique; the
    lists given to :meth:`diff` are kept, not copied.
    """

    __slots__ = ("_keys", "_pending", "_prints", "by_identity")

    def __init__(self, by_identity: bool) -> None:
        self.by_identity = by_identity
        self._keys: list[Any] = []
        self._prints: list[Any] = []
        # What the last diff read: keys, their prints, the change set and where
        # its upserts sit. update() adopts it when it advances past that diff.
        self._pending: tuple[list[Any], list[Any], ChangeSet, list[int]] | None = None

    @property
    def seen(self) -> dict[Any, Any]:
        """Key -> print (the value itself, or its xxh3-64) as of the last checkpoint."""
        return dict(zip(self._keys, self._prints))

    def _print_all(self, values: Sequence[Any], encode: Callable[[Any], bytes]) -> list[Any]:
        if self.by_identity:
            return values if type(values) is list else list(values)  # kept, not copied
        return list(map(xxhash.xxh3_64_intdigest, map(encode, values)))

    @classmethod
    def of(
        cls,
        keys: Sequence[Any],
        values: Sequence[Any],
        encode: Callable[[Any], bytes],
        *,
        by_identity: bool,
    ) -> Fingerprints:
        """Fingerprint entries (as read by ``containers.entries_of``); lists are kept."""
        prints = cls(by_identity)
        prints._keys = keys if type(keys) is list else list(keys)
        prints._prints = prints._print_all(values, encode)
        return prints

    def diff(
        self, keys: Sequence[Any], values: Sequence[Any], encode: Callable[[Any], bytes]
    ) -> ChangeSet:
        """Keys upserted (in the given order) and deleted since these prints."""
        keys = keys if type(keys) is list else list(keys)
        new = self._print_all(values, encode)
        old_keys, old_prints = self._keys, self._prints
        changed = operator.is_not if self.by_identity else operator.ne
        runs, apart_new, apart_old = _align(keys, old_keys)
        # Where the sequences agree, compare prints position by position, in C.
        at: list[int] = []
        for i, j, run in zip(*runs):
            pairs = map(changed, _iter_from(new, i), _iter_from(old_prints, j))
            at.extend(itertools.compress(range(i, i + run), pairs))
        # Where they part, look keys up by hash, as a dict would.
        gone = {old_keys[j]: old_prints[j] for j in apart_old}
        if apart_new:
            at.extend(i for i in apart_new if changed(gone.get(keys[i]), new[i]))
            at.sort()
        upserts = list(map(keys.__getitem__, at))
        deletes: set[Any] = set()
        if gone:
            present = set(map(keys.__getitem__, apart_new))
            deletes = set(itertools.filterfalse(present.__contains__, gone))
        changes = ChangeSet(upserts, deletes)
        self._pending = (keys, new, changes, at)
        return changes

    def positions(self, changes: ChangeSet) -> list[int]:
        """Where the upserts of the last :meth:`diff` sit in the entries it read.

        A delta takes the upserted values from that same read: values read
        again later could pair a change set of one moment with the mapping of
        another, while a thread writes.
        """
        if self._pending is None or self._pending[2] is not changes:
            msg = "Expected the change set of the last diff"
            raise ValueError(msg)
        return self._pending[3]

    def update(
        self,
        keys: Sequence[Any],
        values: Sequence[Any],
        changes: ChangeSet,
        encode: Callable[[Any], bytes],
    ) -> None:
        """Advance these prints past a committed delta.

        ``keys``/``values`` are the upserted entries written. When they are the
        upserts of the last :meth:`diff`, with the values it read (taken at
        :meth:`positions`), that read is adopted as is: O(1).
        """
        pending, self._pending = self._pending, None
        if pending is not None and pending[2] is changes and keys == changes.upserts:
            self._keys, self._prints = pending[0], pending[1]
            return
        # Any other change set: through a dict.
        fresh = self._print_all(values, encode)
        seen = self.seen
        for key in changes.deletes:
            seen.pop(key, None)
        for key in changes.upserts:
            seen.pop(key, None)
        seen.update(zip(keys, fresh))
        self._keys, self._prints = list(seen), list(seen.values())

    def bytes_per_entry(self) -> float:
        """Approximate memory this record costs per entry (for the docs)."""
        import sys  # noqa: PLC0415 - diagnostics only

        if not self._keys:
            return 0.0
        per_slot = (sys.getsizeof(self._keys) + sys.getsizeof(self._prints)) / len(self._keys)
        if self.by_identity:
            return per_slot
        return per_slot + sys.getsizeof(self._prints[0])


#: Positions searched ahead of a mismatch for the next agreement.
_RESYNC_WINDOW = 32
#: First and largest slice compared at once when measuring a run of equal keys
#: (the largest bounds the copy a compare makes).
_RUN_FIRST = 32
_RUN_MAX = 4096


def _iter_from(items: list[Any], start: int) -> Iterator[Any]:
    """Iterate ``items[start:]`` without copying it (a list iterator moved on)."""
    it: Any = iter(items)
    it.__setstate__(start)
    return it  # type: ignore[no-any-return]


def _run(new: list[Any], i: int, old: list[Any], j: int) -> int:
    """How many keys from ``new[i]`` and ``old[j]`` on are equal, pairwise (in C).

    Runs are long (hundreds of keys between two deletions when 1% of a
    million changed), so slices are compared, doubling in size while they
    agree: a slice compare checks identity before equality and costs less
    than a pairwise ``map``. The slice that failed is halved with slice
    compares down to ``_RUN_FIRST`` positions, searched pairwise.
    """
    limit = min(len(new) - i, len(old) - j)
    done, size = 0, _RUN_FIRST
    while done < limit:
        size = min(size, limit - done)
        a, b = i + done, j + done
        if new[a : a + size] != old[b : b + size]:
            # The first disagreement is in this slice: halve it with slice compares.
            lo, hi = 0, size
            while hi - lo > _RUN_FIRST:
                mid = (lo + hi) // 2
                if new[a + lo : a + mid] == old[b + lo : b + mid]:
                    lo = mid
                else:
                    hi = mid
            pairs = map(operator.ne, _iter_from(new, a + lo), _iter_from(old, b + lo))
            return done + lo + operator.indexOf(pairs, True)
        done += size
        size = min(size * 2, _RUN_MAX)
    return limit


def _index(items: list[Any], item: Any, start: int, stop: int) -> int | None:
    """Where ``item`` is in ``items[start:stop]`` (searched in C), or None."""
    try:
        return items.index(item, start, stop)
    except ValueError:
        return None


def _align(
    keys: list[Any], old_keys: list[Any]
) -> tuple[tuple[list[int], list[int], list[int]], list[int], list[int]]:
    """Line ``keys`` up with ``old_keys``: the runs that agree, and what is left apart.

    Returns the runs as three lists ``(i, j, length)`` where ``keys[i + k] ==
    old_keys[j + k]`` (lists of ints, not tuples: the collector ignores ints, so
    thousands of runs trigger no collection that would walk the million-entry
    lists), then the positions of ``keys`` and of ``old_keys`` in no run. Runs are
    found greedily; at a mismatch a short window ahead in each sequence is
    searched for the next agreement. When the sequences part too often (a
    reordered cache) the rest is left apart, to be looked up by hash.
    """
    n, m = len(keys), len(old_keys)
    if keys == old_keys:  # nothing inserted, deleted or moved: one compare in C
        return ([0], [0], [n]) if n else ([], [], []), [], []
    run_new: list[int] = []
    run_old: list[int] = []
    run_len: list[int] = []
    apart_new: list[int] = []
    apart_old: list[int] = []
    i = j = 0
    budget = 64 + n // 64
    while i < n and j < m:
        run = _run(keys, i, old_keys, j)
        if run:
            run_new.append(i)
            run_old.append(j)
            run_len.append(run)
            i += run
            j += run
            if i == n or j == m:
                break
        # keys[i] != old_keys[j]: find where the sequences meet again.
        budget -= 1
        if budget < 0:
            break
        found = _index(old_keys, keys[i], j + 1, min(j + 1 + _RESYNC_WINDOW, m))
        if found is not None:  # old keys dropped out (deleted, or moved to the end)
            apart_old.extend(range(j, found))
            j = found
            continue
        found = _index(keys, old_keys[j], i + 1, min(i + 1 + _RESYNC_WINDOW, n))
        if found is not None:  # new keys came in between
            apart_new.extend(range(i, found))
            i = found
            continue
        apart_new.append(i)
        apart_old.append(j)
        i += 1
        j += 1
    apart_new.extend(range(i, n))
    apart_old.extend(range(j, m))
    return (run_new, run_old, run_len), apart_new, apart_old


def deeply_immutable(tp: Any) -> bool:
    """Whether values of Struct type ``tp`` can never change in place.

    Only then does an unchanged reference prove unchanged content: a frozen
    Struct with a ``list`` field can still be mutated in place, so it must be
    diffed by hash, not by identity.
    """
    cached = _IMMUTABLE.get(tp)
    if cached is None:
        import msgspec.inspect  # noqa: PLC0415 - only untracked delta saves need it

        cached = _IMMUTABLE[tp] = _immutable_info(msgspec.inspect.type_info(tp), set())
    return cached


_IMMUTABLE: dict[Any, bool] = {}


def _immutable_info(info: Any, visiting: set[int]) -> bool:  # noqa: PLR0911 - one per kind
    import msgspec.inspect as mi  # noqa: PLC0415

    scalars = (
        mi.NoneType, mi.BoolType, mi.IntType, mi.FloatType, mi.StrType, mi.BytesType,
        mi.DateTimeType, mi.DateType, mi.TimeType, mi.TimeDeltaType, mi.UUIDType,
        mi.DecimalType, mi.LiteralType, mi.EnumType,
    )  # fmt: skip
    if isinstance(info, scalars):
        return True
    if isinstance(info, (mi.VarTupleType, mi.FrozenSetType)):
        return _immutable_info(info.item_type, visiting)
    if isinstance(info, (mi.TupleType, mi.UnionType)):
        parts = info.item_types if isinstance(info, mi.TupleType) else info.types
        return all(_immutable_info(part, visiting) for part in parts)
    if isinstance(info, mi.StructType):
        if id(info) in visiting:  # a recursive type: decided by its other fields
            return True
        if not getattr(info.cls.__struct_config__, "frozen", False):
            return False
        visiting.add(id(info))
        return all(_immutable_info(f.type, visiting) for f in info.fields)
    return False  # lists, dicts, sets, Any, dataclasses...: mutable or unknown


# -- replay -------------------------------------------------------------------


def replay(
    state: dict[Any, Any], upserts: Iterable[tuple[Any, Any]], deletes: Iterable[Any]
) -> None:
    """Apply one delta to ``state`` in place: deletions, then upserts moved to the end.

    Idempotent: replaying the same delta again leaves ``state`` unchanged.
    """
    # A key written twice counts once, at its last position (delta semantics).
    last: dict[Any, Any] = {}
    for key, value in upserts:
        last.pop(key, None)
        last[key] = value
    replay_batch(state, list(last), list(last.values()), deletes)


def replay_batch(
    state: dict[Any, Any], keys: Sequence[Any], values: Sequence[Any], deletes: Iterable[Any]
) -> None:
    """:func:`replay` for keys and values as two lists, in three C-level passes.

    Each key appears at most once in ``keys`` (a delta's upserts are unique),
    so removing every upserted key and then appending them all equals moving
    each to the end in order; restoring
    a base plus a chain of deltas spends its time decoding, not looping.
    """
    pop = state.pop
    collections.deque(map(pop, deletes, itertools.repeat(None)), maxlen=0)
    collections.deque(map(pop, keys, itertools.repeat(None)), maxlen=0)
    state.update(zip(keys, values))


class FoldedChain:
    """A chain of deltas reduced to its net effect, for a restore.

    ``upserts`` holds what the chain leaves, in replay order (each key at its
    last upsert); :attr:`touched` every key the chain upserted or deleted:
    those entries of the base are superseded.
    """

    __slots__ = ("_deleted", "_superseded", "_touched", "expires", "upserts")

    def __init__(self) -> None:
        self.upserts: dict[Any, Any] = {}
        self.expires: dict[Any, float] = {}
        self._deleted: set[Any] = set()
        self._touched: set[Any] | None = None
        self._superseded: list[list[Any]] = []

    def add(
        self, keys: list[Any], values: list[Any], deleted: list[Any], expires: list[float]
    ) -> None:
        """Fold in the next delta chunk (in manifest order)."""
        replay_batch(self.upserts, keys, values, deleted)
        if expires:
            self.expires.update(zip(keys, expires))
        self._deleted.update(deleted)
        self._touched = None

    @property
    def touched(self) -> set[Any]:
        """Every key the chain upserted or deleted.

        A key upserted and not deleted after is still in ``upserts``, so these
        are the deleted keys and the upserts, one union once the chain is read.
        """
        if self._touched is None:
            self._touched = self._deleted.union(self.upserts)
        return self._touched

    def drop_superseded(self, chunk: dict[Any, Any]) -> None:
        """Remove from one base chunk's entries the keys the chain touched.

        Done per chunk, while its entries are fresh in the cache: popping a
        superseded key from the finished million-entry dict instead costs
        about 1.5 us (a cache miss for the slot, one for the key, several to
        free the value), the dominant cost of replaying a chain in order.
        """
        touched = self.touched
        if not touched:
            return
        superseded = touched.intersection(chunk)
        if superseded:
            self._superseded.append(list(map(chunk.pop, superseded)))

    def release(self) -> None:
        """Free the superseded base values, all at once, after the base is read.

        Freed chunk by chunk they leave holes that the allocator fills with the
        next chunks' objects, scattering them: the rest of a million-record
        restore then ran 60-80 ms slower, against ~50 ms to free them together.
        """
        self._superseded.clear()

    def keep_mask(self, keys: list[Any]) -> list[bool] | None:
        """Which of a base chunk's ``keys`` the chain left alone (None: all of them)."""
        touched = self.touched
        if not touched:
            return None
        keep = list(map(operator.not_, map(touched.__contains__, keys)))
        return None if all(keep) else keep


@dataclasses.dataclass(frozen=True)
class CompactionPolicy:
    """When the next checkpoint writes a fresh base instead of another delta.

    Args:
        max_deltas: longest delta chain before compacting. Restore decodes every
            delta after the base, so a long chain slows boot.
        max_ratio: compact once the deltas' stored bytes reach this fraction of
            the base's. Restore cost grows with the entries the deltas hold,
            not with their number, so this is the bound that matters.

    The defaults weigh checkpoint cost against restore cost, measured by
    benchmarks/delta.py (docs/benchmarks.md) at 1,000,000 records with deltas
    of 1% each: a delta costs 12-17 ms and a fresh base a full save, 0.28-0.43
    s; a restore of the base plus 4 deltas cost 1.10-1.17x the compacted base,
    plus 8 deltas 1.17-1.21x, plus 16 deltas 1.32-1.50x. Checkpoints run far
    more often than restores, so 10% compacts 1% deltas after the twelfth (a
    base every thirteen checkpoints: about 37 ms per checkpoint amortized,
    against about 53 ms when compacting after the seventh) while a restore stays near
    1.25x; smaller deltas chain up to 16.
    """

    max_deltas: int = 16
    max_ratio: float = 0.10

    def wants_base(self, chain: int, delta_bytes: int, base_bytes: int) -> bool:
        """Whether a checkpoint on a chain this long and this heavy should compact."""
        return chain >= self.max_deltas or delta_bytes >= self.max_ratio * max(base_bytes, 1)
