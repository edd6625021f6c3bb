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

import threading
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Any, Generic, TypeVar

import msgspec

from warmstart.errors import ContractError

__all__ = (
    "ChangeLog",
    "ChangeSet",
    "TrackedDict",
    "change_log",
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

    upserts: list[Any]
    deletes: set[Any]
    full: bool = False

    def merge_back(self, later: ChangeSet) -> ChangeSet:
        """Combine this (older, failed to commit) change set with a later one."""
        upserts = [k for k in self.upserts if k not in later.deletes]
        seen = set(later.upserts)
        upserts = [k for k in upserts if k not in seen] + later.upserts
        deletes = (self.deletes - seen) | later.deletes
        return ChangeSet(upserts=upserts, deletes=deletes, full=self.full or later.full)


class ChangeLog:
    """The record a tracked mapping keeps: O(1) per write, thread-safe."""

    __slots__ = (
        "baseline",
        "cleared",
        "deletes",
        "dirty",
        "lock",
        "reads_write",
        "removed",
        "removed_all",
    )

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
    def wrote(self, key: Any) -> None:
        with self.lock:
            self.deletes.discard(key)
            # pop + set moves a rewritten key to the end: last-write order.
            self.dirty.pop(key, None)
            self.dirty[key] = None

    def wrote_all(self, keys: Iterable[Any]) -> None:
        """Every key of ``keys`` may have changed (their values were handed out)."""
        with self.lock:
            for key in keys:
                self.deletes.discard(key)
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
            changes = ChangeSet(upserts=list(self.dirty), deletes=self.deletes, full=self.cleared)
            self.dirty = {}
            self.deletes = set()
            self.cleared = False
            return changes

    def restore(self, changes: ChangeSet) -> None:
        """Put back changes whose checkpoint failed, ahead of newer ones."""
        with self.lock:
            later = ChangeSet(upserts=list(self.dirty), deletes=self.deletes, full=self.cleared)
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
        self._warm_log = ChangeLog()

    def __getitem__(self, key: K) -> V:
        value = self._data[key]
        if self._warm_log.reads_write:
            self._warm_log.wrote(key)
        return value

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
        if key in self._data:
            return self[key]
        return default

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
        if len(self._data) != before or self._warm_log.reads_write:
            self._warm_log.wrote(key)
        return value

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

    def __setitem__(self: Any, key: Any, value: Any) -> None:  # noqa: N807
        cls.__setitem__(self, key, value)
        self._warm_log.wrote(key)

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

    return {"__delitem__": __delitem__, "pop": pop, "popitem": popitem, "clear": clear}


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
    mapping.__class__ = _tracking_class(cls)
    setattr(mapping, LOG_ATTRIBUTE, ChangeLog())
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
