"""Change tracking: mappings that record what changed since the last checkpoint.

A :class:`TrackedDict`, or any Python-level mapping (a ``cachetools`` cache)
passed through :func:`track`, records dirty and deleted keys at O(1) per
write; cache evictions and expiries count as deletions.

>>> d = TrackedDict({"a": 1, "b": 2})
>>> d.mark_clean()
>>> d["c"] = 3; del d["a"]
>>> changes = d.take_changes()
>>> changes.upserts, sorted(changes.deletes)
(['c'], ['a'])
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Iterator, MutableMapping, Sequence, Sized
from typing import Any, Generic, TypeVar

import msgspec

from warmstart._pacing import SLICE, Pieces, drop, long_lived, pace, parts
from warmstart.errors import ContractError

__all__ = (
    "ABSENT",
    "ChangeLog",
    "ChangeSet",
    "LoggedDict",
    "TrackedDict",
    "change_log",
    "fold_keys",
    "is_tracked",
    "mark_changed",
    "track",
    "watch_reads",
)


#: Where a mapping passed through track() keeps its change log: an attribute
#: of the service's own object, under a name its class will not use.
LOG_ATTRIBUTE = "_warm_log"

K = TypeVar("K")
V = TypeVar("V")


class ChangeSet(msgspec.Struct, frozen=True, kw_only=True):
    """Keys written (in last-write order) and keys deleted since a checkpoint.

    ``full`` means the history is unknown (a ``clear()``, or no baseline): the
    next checkpoint must write a fresh base.
    """

    #: A list, or for a large change set the pieces of one (``Pieces``).
    upserts: Sequence[Any]
    deletes: set[Any]
    full: bool = False

    def merge_back(self, later: ChangeSet) -> ChangeSet:
        """Combine this (older, failed to commit) change set with a later one."""
        upserts = [k for k in self.upserts if k not in later.deletes]
        seen = set(later.upserts)
        upserts = [*(k for k in upserts if k not in seen), *later.upserts]
        deletes = (self.deletes - seen) | later.deletes
        return ChangeSet(upserts=upserts, deletes=deletes, full=self.full or later.full)


class _Absent:
    __slots__ = ()

    def __repr__(self) -> str:
        return "ABSENT"


#: Stands for "not in the mapping" in captured old values and sliced reads.
ABSENT: Any = _Absent()

#: (keys written in last-write order, keys deleted): one take of a change log.
Taken = tuple[Iterable[Any], set[Any]]


class ChangeLog:
    """The record a tracked mapping keeps: O(1) per write, thread-safe.

    Besides the changes since the last checkpoint (``dirty``, ``deletes``),
    the log knows which keys the mapping holds, in the mapping's order,
    without listing them: the keys it held at some take (``index``) and what
    every take since deleted and moved to the end (``since``: inserted keys,
    or for an LRU or FIFO cache every written key). Folding the two gives the
    keys at the last take, a slice at a time (:func:`fold_keys`), so that a
    checkpoint never walks the live mapping, which other threads change
    under it.

    While a checkpoint reads the mapping a slice at a time, ``capture`` holds
    the value each key had when the read began, recorded by a write before it
    changes the key (copy-on-write): the read then gives the mapping as of
    one moment, whatever the writes in between.
    """

    __slots__ = (
        "baseline",
        "capture",
        "cleared",
        "deletes",
        "dirty",
        "epoch",
        "index",
        "inserted",
        "lock",
        "moves",
        "muted",
        "read_lock",
        "reads_write",
        "removed",
        "removed_all",
        "since",
        "since_size",
    )

    def __init__(self, keys: Iterable[Any] | None = (), *, moves: bool = False) -> None:
        self.dirty: dict[Any, None] = {}
        #: Keys inserted (absent before) since the last take, in insertion order.
        self.inserted: dict[Any, None] = {}
        #: Whether a write moves a key to the end of the mapping's order (an
        #: LRU or FIFO cache), or only an insert does (a dict).
        self.moves = moves
        self.deletes: set[Any] = set()
        self.cleared = True  # no checkpoint yet: the first one is a full base
        self.baseline: object = None
        self.lock = threading.Lock()
        # While a background restore fills the mapping: the keys the service
        # removed (present or not yet restored) and whether it cleared it. The
        # restore must not bring those back with their saved, stale values.
        self.removed: set[Any] | None = None
        self.removed_all = False
        #: The keys at some earlier take, in order (None: unknown), and what
        #: each take since then wrote and deleted.
        self.index: Sequence[Any] | None = None if keys is None else list(keys)
        self.since: list[Taken] = []
        self.since_size = 0
        #: Key -> value (or ABSENT) when the running sliced read began.
        self.capture: dict[Any, Any] | None = None
        #: Writes are the restore's own (under the container's lock): not changes.
        self.muted = False
        #: Bumped by clear(): a sliced read across it is void.
        self.epoch = 0
        #: One sliced read of the mapping at a time.
        self.read_lock = threading.Lock()
        # Values of a type that can change in place (a list field, a mutable
        # Struct): a value read may be changed without a write through the
        # mapping, so a read counts as a write (issue 14). Set from the
        # contract at restore and at each save (watch_reads).
        self.reads_write = False

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
    def wrote(self, key: Any, *, new: bool = False) -> None:
        """``key`` was written (``new``: it was not in the mapping before)."""
        if self.muted:
            return
        with self.lock:
            self.wrote_locked(key, new)

    def wrote_locked(self, key: Any, new: bool) -> None:
        self.deletes.discard(key)
        # pop + set moves a rewritten key to the end: last-write order.
        dirty = self.dirty
        dirty.pop(key, None)
        dirty[key] = None
        if new:
            self.inserted[key] = None

    def wrote_all(self, keys: Iterable[Any]) -> None:
        """Every key of ``keys`` may have changed (their values were handed out)."""
        if self.muted:
            return
        with self.lock:
            for key in keys:
                self.wrote_locked(key, False)

    def deleted(self, key: Any) -> None:
        with self.lock:
            self.deleted_locked(key)

    def deleted_locked(self, key: Any) -> None:
        self.dirty.pop(key, None)
        self.inserted.pop(key, None)
        self.deletes.add(key)

    def captured(self, key: Any, value: Any) -> None:
        """Before ``key`` changes: keep the ``value`` it had when a running read began."""
        capture = self.capture
        if capture is not None and key not in capture:
            capture.setdefault(key, value)

    # -- writes to a dict behind the log (TrackedDict, LoggedDict) -------------
    # The dict is changed under the log's lock, after its old value was
    # captured: a take, and the start of a read, fall between whole writes.

    def set_in(self, data: dict[Any, Any], key: Any, value: Any) -> None:
        with self.lock:
            old = dict.get(data, key, ABSENT)
            capture = self.capture
            if capture is not None and key not in capture:
                capture[key] = old
            dict.__setitem__(data, key, value)
            self.wrote_locked(key, old is ABSENT)

    def pop_from(self, data: dict[Any, Any], key: Any) -> Any:
        """Remove ``key`` from ``data``; its value, or ABSENT."""
        with self.lock:
            removed = self.removed
            if removed is not None:
                # A background restore fills this dict: the key stays removed,
                # even if it is not restored yet (an invalidation).
                removed.add(key)
            value = dict.pop(data, key, ABSENT)
            if value is not ABSENT:
                self.captured(key, value)
                self.deleted_locked(key)
            return value

    def setdefault_in(self, data: dict[Any, Any], key: Any, default: Any) -> Any:
        with self.lock:
            value = dict.get(data, key, ABSENT)
            if value is not ABSENT:
                if self.reads_write:
                    self.wrote_locked(key, False)  # handed out: may change in place
                return value
            self.captured(key, ABSENT)
            dict.__setitem__(data, key, default)
            self.wrote_locked(key, True)
            return default

    def popitem_from(self, data: dict[Any, Any], *, last: bool) -> tuple[Any, Any]:
        """Remove the last entry (``dict.popitem``) or the first (``MutableMapping.popitem``)."""
        with self.lock:
            if last:
                key, value = dict.popitem(data)
            else:
                key = next(iter(data), ABSENT)
                if key is ABSENT:
                    raise KeyError("popitem(): mapping is empty")
                value = dict.pop(data, key)
            self.note_removal(key)
            self.captured(key, value)
            self.deleted_locked(key)
            return key, value

    def clear_locked(self) -> None:
        """The mapping was emptied (call under the lock, with the mapping's own clear)."""
        self.dirty.clear()
        self.inserted.clear()
        self.deletes.clear()
        self.cleared = True
        self.removed_all = self.removed is not None
        self.index = []
        self.since = []
        self.since_size = 0
        self.epoch += 1

    # -- checkpoints -------------------------------------------------------------

    def take(self) -> ChangeSet:
        """The changes since the last take (and start recording anew)."""
        dirty, deletes, cleared = self.take_raw()
        return ChangeSet(upserts=list(dirty), deletes=deletes, full=cleared)

    def take_raw(self) -> tuple[dict[Any, None], set[Any], bool]:
        """:meth:`take` without listing the upserts: the dict of them, now private."""
        with self.lock:
            dirty, deletes, cleared = self.dirty, self.deletes, self.cleared
            self._remember(dirty if self.moves else self.inserted, deletes)
            self.dirty = {}
            self.inserted = {}
            self.deletes = set()
            self.cleared = False
            return dirty, deletes, cleared

    def _remember(self, upserts: Iterable[Any], deletes: set[Any], *, count: bool = True) -> None:
        index = self.index
        if index is None:
            return
        self.since.append((upserts, deletes))
        if count:
            self.since_size += len(upserts) + len(deletes)  # type: ignore[arg-type]
            if self.since_size > 2 * len(index) + 65536:
                # Never checkpointed as a base since: stop keeping the changes
                # (the next base lists the mapping instead).
                self.index = None
                self.since = []
                self.since_size = 0

    def restore(self, changes: ChangeSet) -> None:
        """Put back changes whose checkpoint failed, ahead of newer ones."""
        with self.lock:
            if changes.full:
                # A base is written next whatever the keys: they need not be merged
                # (a million of them would be a long step under the lock).
                self.cleared = True
                return
            later = ChangeSet(upserts=list(self.dirty), deletes=self.deletes, full=self.cleared)
            merged = changes.merge_back(later)
            self.dirty = dict.fromkeys(merged.upserts)
            self.deletes = merged.deletes
            self.cleared = merged.full

    def begin_read(
        self, mapping: Sized
    ) -> tuple[dict[Any, None], set[Any], bool, Sequence[Any] | None, list[Taken], int]:
        """Start a sliced read: take the changes, and capture old values from now on.

        Returns the changes (as :meth:`take_raw`), the index and the takes to
        fold into it (the last one is this take): together, the keys now; and
        ``len(mapping)`` at that moment (under the lock a TrackedDict's and a
        LoggedDict's writes hold). Call :meth:`end_read` when done, under
        :attr:`read_lock`.
        """
        with self.lock:
            size = len(mapping)
            dirty, deletes, cleared = self.dirty, self.deletes, self.cleared
            moved = dirty if self.moves else self.inserted
            self.dirty = {}
            self.inserted = {}
            self.deletes = set()
            self.cleared = False
            index, pending = self.index, [*self.since, (moved, deletes)]
            self.since = []
            self.since_size = 0
            self.capture = {}
            return dirty, deletes, cleared, index, pending, size

    def end_read(
        self, epoch: int, keys: Sequence[Any] | None, pending: list[Taken] | None = None
    ) -> bool:
        """End a sliced read begun at ``epoch``; False if a clear() voided it.

        ``keys``: the keys the mapping held when the read began, in saved
        order, the index from now on. Without them (the read failed), the
        takes it folded are kept for the next read (``pending``).
        """
        with self.lock:
            self.capture = None
            if self.epoch != epoch:
                return False
            if keys is not None:
                self.index = keys
            elif pending is not None and self.index is not None:
                self.since[:0] = pending
            return True

    def rebase(self, keys: Iterable[Any]) -> None:
        """The mapping holds ``keys`` now (in this order): a restore filled it.

        Listed under the log's lock, which a TrackedDict's or LoggedDict's
        writes hold (a cache's are held off by the caller's lock).
        """
        with self.lock:
            self.index = list(keys)
            self.since = []
            self.since_size = 0

    def restored(self, keys: list[Any]) -> None:
        """A background restore put ``keys`` in, unlogged: they join the index, last.

        They are new to the mapping (the restore never overwrites, and skips
        what the service removed), so they are appended as they are: folded
        as changes instead, a million restored keys made one step of the next
        base (a set of them growing) hold the GIL for 27 ms. No checkpoint
        reads the index while a restore runs.
        """
        with self.lock:
            index = self.index
            if isinstance(index, (list, Pieces)):
                index.extend(keys)
            elif index is not None:
                self.index = [*index, *keys]

    def moved_last(self, keys: list[Any]) -> None:
        """A restore moved ``keys`` to the end of the mapping's order, unlogged."""
        with self.lock:
            self._remember(keys, set(), count=False)


def fold_keys(index: Sequence[Any], pending: list[Taken]) -> Sequence[Any]:
    """The keys after the takes ``pending`` (oldest first) applied to ``index``.

    Replay order: the keys no take touched keep their place, then each
    take's writes in order, each key at its last write; deleted keys go.
    Every step handles at most ``SLICE`` keys, pacing between them.

    >>> list(fold_keys(["a", "b", "c"], [(["b", "x"], {"c"}), (["a"], set())]))
    ['b', 'x', 'a']
    """
    later: set[Any] = set()
    tails: list[Pieces] = []
    for upserts, deletes in reversed(pending):
        kept = long_lived(len(upserts))  # type: ignore[arg-type]
        for chunk in _chunks_of(upserts):
            kept.extend(itertools.filterfalse(later.__contains__, chunk) if later else chunk)
            pace()
        tails.append(kept)
        del kept  # the tails hold it: dropped from there
        for chunk in itertools.chain(_chunks_of(upserts), _chunks_of(deletes)):
            later.update(chunk)
            pace()
    if not later:  # nothing written or deleted: the index as it is
        return index
    keys = long_lived(len(index))
    for chunk in _chunks_of(index):
        keys.extend(itertools.filterfalse(later.__contains__, chunk))
        pace()
    drop(later)
    while tails:
        tail = tails.pop()
        for chunk in _chunks_of(tail):
            keys.extend(chunk)
            pace()
        drop(tail)
        del tail
    return keys


def _chunks_of(items: Iterable[Any]) -> Iterator[list[Any]]:
    """``items`` as lists of at most ``SLICE`` (a list or Pieces is sliced, else iterated)."""
    if isinstance(items, (list, Pieces)):
        yield from parts(items)
        return
    it = iter(items)
    while chunk := list(itertools.islice(it, SLICE)):
        yield chunk


_MISSING: Any = object()


def _popped(key: Any, value: Any, default: Any) -> Any:
    """``dict.pop`` semantics for a value taken with ``ABSENT`` (or ``_MISSING``) as default."""
    if value is not _MISSING and value is not ABSENT:
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
        self._warm_log = ChangeLog(self._data)

    def __getitem__(self, key: K) -> V:
        value = self._data[key]
        if self._warm_log.reads_write:
            self._warm_log.wrote(key)
        return value

    def __setitem__(self, key: K, value: V) -> None:
        self._warm_log.set_in(self._data, key, value)

    def __delitem__(self, key: K) -> None:
        if self._warm_log.pop_from(self._data, key) is ABSENT:
            raise KeyError(key)

    def pop(self, key: K, default: Any = _MISSING) -> Any:
        return _popped(key, self._warm_log.pop_from(self._data, key), default)

    def popitem(self) -> tuple[K, V]:
        return self._warm_log.popitem_from(self._data, last=False)

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __repr__(self) -> str:
        return f"TrackedDict({self._data!r})"

    def get(self, key: K, default: Any = None) -> Any:
        if key in self._data:
            return self[key]
        return default

    def clear(self) -> None:
        log = self._warm_log
        with log.lock:
            self._data.clear()
            log.clear_locked()

    def setdefault(self, key: K, default: Any = None) -> Any:
        # Atomic under the log's lock: a background restore uses the dict's own
        # setdefault, so that it never overwrites a value the live service just wrote.
        return self._warm_log.setdefault_in(self._data, key, default)

    def items(self) -> Any:
        if self._warm_log.reads_write:
            self._warm_log.wrote_all(self._data)
        return self._data.items()

    def values(self) -> Any:
        if self._warm_log.reads_write:
            self._warm_log.wrote_all(self._data)
        return self._data.values()

    def keys(self) -> Any:
        return self._data.keys()

    def mark_clean(self) -> None:
        """Forget recorded changes: the current content is the baseline."""
        self._warm_log.take()

    def take_changes(self) -> ChangeSet:
        """Return and reset the changes since the last checkpoint."""
        return self._warm_log.take()

    def mark_changed(self, key: K) -> None:
        """Record that the value under ``key`` was changed in place (see :func:`mark_changed`)."""
        mark_changed(self, key)


class LoggedDict(dict[K, V]):
    """A ``dict`` that records its changes, for a plain dict a boot tracks for the service.

    A ``dict`` cannot record its own writes and its class cannot be changed in
    place, so a boot with periodic checkpoints puts the content of a warm
    attribute holding a plain ``dict`` into one of these and sets the
    attribute to it (only when nothing else refers to the dict). Reads are
    the dict's own, in C; every method that writes is overridden to record the
    write. Code that writes through ``dict``'s C API directly
    (``dict.__setitem__(d, ...)``, a C extension's ``PyDict_SetItem``)
    bypasses the record; the next base checkpoint finds such changes.
    """

    __slots__ = ("_warm_hits", "_warm_log")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._warm_log = ChangeLog(dict.keys(self))

    def __setitem__(self, key: K, value: V) -> None:
        self._warm_log.set_in(self, key, value)

    def __delitem__(self, key: K) -> None:
        if self._warm_log.pop_from(self, key) is ABSENT:
            raise KeyError(key)

    def pop(self, key: K, default: Any = _MISSING) -> Any:
        return _popped(key, self._warm_log.pop_from(self, key), default)

    def popitem(self) -> tuple[K, V]:
        return self._warm_log.popitem_from(self, last=True)

    def setdefault(self, key: K, default: Any = None) -> Any:
        return self._warm_log.setdefault_in(self, key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __ior__(self, other: Any) -> LoggedDict[K, V]:  # type: ignore[override,misc]
        self.update(other)
        return self

    def clear(self) -> None:
        log = self._warm_log
        with log.lock:
            dict.clear(self)
            log.clear_locked()

    def copy(self) -> dict[K, V]:
        """A plain dict with the same entries."""
        return dict(self)

    def __reduce__(self) -> Any:
        return dict, (dict(self),)


def _data_of(mapping: Any) -> dict[Any, Any] | None:
    """A cachetools cache's own dict (None for other mappings)."""
    data = vars(mapping).get("_Cache__data")
    return data if isinstance(data, dict) else None


def _current(mapping: Any, cls: Any, key: Any) -> Any:
    """``key``'s value now, or ABSENT, read without touching recency or ``__missing__``."""
    data = _data_of(mapping)
    if data is not None:
        return data.get(key, ABSENT)
    return cls.__getitem__(mapping, key) if cls.__contains__(mapping, key) else ABSENT


def _tracking_class(cls: Any) -> type:
    """A subclass of ``cls`` that records writes, deletions and evictions."""
    cached = _TRACKING_CLASSES.get(cls)
    if cached is not None:
        return cached
    namespace: dict[str, Any] = {"__module__": __name__, "__qualname__": f"Tracked{cls.__name__}"}
    namespace.update(_writes(cls))
    namespace.update(_removals(cls))
    if hasattr(cls, "expire"):
        namespace["expire"] = _tracking_expire(cls)
    tracking = type(f"Tracked{cls.__name__}", (cls,), namespace)
    _TRACKING_CLASSES[cls] = tracking
    return tracking


def _writes(cls: Any) -> dict[str, Callable[..., Any]]:
    """A tracking subclass's writes, and its reads (writes when values can change in place)."""

    # Each write captures the old value first, for a sliced read in progress
    # (ChangeLog.capture); the service's lock (state(lock=...)) makes the
    # capture and the write one step for a read holding it.
    def __setitem__(self: Any, key: Any, value: Any) -> None:  # noqa: N807
        log: ChangeLog = self._warm_log
        old = _current(self, cls, key)
        if log.capture is not None:
            log.captured(key, old)
        cls.__setitem__(self, key, value)
        log.wrote(key, new=old is ABSENT)

    def __getitem__(self: Any, key: Any) -> Any:  # noqa: N807
        # get(), values() and items() of a cache read through here too.
        value = cls.__getitem__(self, key)
        if self._warm_log.reads_write:
            self._warm_log.wrote(key)
        return value

    return {"__setitem__": __setitem__, "__getitem__": __getitem__}


def _removals(cls: Any) -> dict[str, Callable[..., Any]]:
    """A tracking subclass's deletions, evictions and clear()."""

    # During a background restore, which the service's lock (given with
    # state(lock=...)) serialises with these calls, a removed key must stay
    # removed, whether it was restored yet or not.
    def __delitem__(self: Any, key: Any) -> None:  # noqa: N807
        log: ChangeLog = self._warm_log
        log.note_removal(key)
        if log.capture is not None:
            log.captured(key, _current(self, cls, key))
        cls.__delitem__(self, key)
        log.deleted(key)

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
        log: ChangeLog = self._warm_log
        log.captured(key, value)
        log.deleted(key)
        return key, value

    def clear(self: Any) -> None:
        cls.clear(self)
        log: ChangeLog = self._warm_log
        with log.lock:
            log.clear_locked()

    return {"__delitem__": __delitem__, "pop": pop, "popitem": popitem, "clear": clear}


_TRACKING_CLASSES: dict[Any, type] = {}


def _tracking_expire(cls: Any) -> Callable[..., Any]:
    def expire(self: Any, time: Any = None) -> Any:
        # TTL caches drop expired entries here, bypassing __delitem__.
        expired = cls.expire(self, time) if time is not None else cls.expire(self)
        log: ChangeLog = self._warm_log
        for key, value in expired or ():
            log.captured(key, value)
            log.deleted(key)
        return expired

    return expire


def track(mapping: MutableMapping[K, V]) -> MutableMapping[K, V]:
    """Add change tracking to ``mapping`` in place, and return it.

    Works for Python-level mappings such as ``cachetools`` caches (evictions
    and TTL expiries count as deletions). A plain ``dict`` cannot be changed in
    place: use :class:`TrackedDict`, or leave it untracked (hash diff).

    >>> import cachetools
    >>> from warmstart.delta import is_tracked
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
    data = _data_of(mapping)
    # The keys now, without touching recency (a cachetools cache's own dict):
    # the log folds later changes into them instead of listing the cache again.
    keys = list(data) if data is not None else list(mapping.keys())
    # An LRU or FIFO cache moves a written key to the end of its order; a
    # plain cache (LFU, RR, TTL by expiry) keeps it in place, as a dict does.
    moves = any(
        getattr(mapping, f"_{name}__order", None) is not None for name in ("LRUCache", "FIFOCache")
    )
    mapping.__class__ = _tracking_class(cls)
    setattr(mapping, LOG_ATTRIBUTE, ChangeLog(keys, moves=moves))
    return mapping


def mark_changed(mapping: object, key: Any) -> None:
    """Record that the value under ``key`` of a tracked mapping was changed in place.

    A tracked mapping records writes made through it. A value changed in
    place (``rows[k].price = x``) is not a write; when the contract's value
    type can change in place, reads already count as writes, so this is
    only needed for a change made through a reference kept elsewhere. The
    cheapest rule: frozen Structs (``msgspec.Struct, frozen=True``) with no
    list, dict or set fields, replaced rather than mutated.

    >>> d = TrackedDict(a=[1])
    >>> d.mark_clean()
    >>> mark_changed(d, "a")
    >>> d.take_changes().upserts
    ['a']
    """
    log = change_log(mapping)
    if log is None:
        msg = f"Expected a tracked mapping (TrackedDict or track()), got {type(mapping).__name__}"
        raise TypeError(msg)
    log.wrote(key)


def watch_reads(mapping: object, mutable_values: bool) -> None:
    """Make reads of a tracked mapping count as writes when its values can change in place."""
    log = change_log(mapping)
    if log is not None:
        log.reads_write = mutable_values


def is_tracked(mapping: object) -> bool:
    """Whether ``mapping`` records its own changes."""
    return isinstance(getattr(mapping, LOG_ATTRIBUTE, None), ChangeLog)


def change_log(mapping: object) -> ChangeLog | None:
    """The change log of a tracked mapping, or None."""
    log = getattr(mapping, LOG_ATTRIBUTE, None)
    return log if isinstance(log, ChangeLog) else None
