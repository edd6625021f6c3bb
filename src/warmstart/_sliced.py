"""Reading a live container a slice at a time: bounded GIL holds, consistent results.

A checkpoint reads containers that the service's threads keep writing. Read
in one C call (``dict.copy()``, ``list(order)``), a million entries hold the
GIL for 30-460 ms; read a slice at a time, other threads write between the
slices. Two ways to still save one consistent state:

- **Tracked containers** (``TrackedDict``, a ``LoggedDict``, a cache passed
  through ``track()``): the change log knows the keys without listing the
  container (its index, folded with the changes since), and from the moment
  the read begins every write first records the value it replaces
  (``ChangeLog.capture``). Each slice reads the current values of its keys
  and replaces those written since by the recorded ones: the result is the
  container as of the moment the read began, at any size. The keys are a
  list of the log's own, which nobody writes, so the slices never depend on
  iterating the live container.
- **Untracked containers**: each slice is read atomically (one C call, or
  under the container's lock), so every key is saved with a value it held;
  a container of up to ``SLICE`` entries is one slice, so one moment. A
  larger one is read by iterating its dict: CPython's iterator raises when
  the dict changes size between two slices, and the read starts over, up to
  three times, before one atomic read (a key inserted at a steady size is
  appended after every key the dict held: the read asks the iterator for no
  more keys than that, and stops before it). What a read of a large
  untracked container that other threads write can give is each key with a
  value it held during the read; a key
  written during the read may be in it or not, and a key that stays in the
  container could be missed if a write resized the table between two slices
  to the same size (rare: a dict resizes once every hundreds of thousands of
  inserts). Track the container to rule that out.

The service's lock given with a section (``state(lock=...)``) is held for
each slice, never across the pauses between them.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import operator
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from warmstart._containers import dict_behind, entries_of, peek_entries
from warmstart._pacing import (
    SLICE,
    Pieces,
    drop,
    gather,
    long_lived,
    long_lived_lists,
    pace,
    parts,
)
from warmstart.delta import ABSENT, ChangeLog, ChangeSet, TrackedDict, change_log, fold_keys

__all__ = ("Entries", "Taken", "keys_of", "listed", "read_all", "read_keys")

#: Held while a slice is read: the service's lock, or a no-op.
Guard = contextlib.AbstractContextManager[Any]
#: Keys, values and wall-clock expiries (or empty), coldest first: lists when
#: read in one step, :class:`~warmstart._pacing.Pieces` when read in slices
#: (a flat list growing to a million entries copies itself as it grows).
Entries = tuple[Sequence[Any], Sequence[Any], Sequence[float]]
#: What a read of a tracked container took from its change log: the keys
#: written (in last-write order), deleted, and whether history is unknown.
Taken = tuple[Sequence[Any], set[Any], bool]

#: Times a large untracked container is read again after it changed under
#: the read, before it is read in one step.
ATTEMPTS = 3
#: The most recent keys an LRU or FIFO cache read out of recency order keeps
#: in that order, last (what a progressive restore brings back first).
HOT = 1024
#: Entries per step when walking an OrderedDict's links (an LRU cache's
#: recency list): each step finds the key's node by hash, 1-1.5 us a key in a
#: million-entry cache, so a SLICE-long step held the GIL for 6 ms.
ORDER_SLICE = 512
#: Entries per step when iterating an untracked dict in its own order: each
#: key and value read, often a cache miss each once writes scattered them,
#: so a SLICE-long step of a hash diff's read held the GIL for 6-9 ms.
DICT_SLICE = 2048
#: Entries per step when looking keys up in no particular order (a delta's
#: upserts): a cache miss each, 0.5-1 us at a million entries.
SCATTERED_SLICE = 1024
#: Entries per step when looking a tracked container's keys up in its own
#: order (a base read from the index): 0.3-0.7 us a key at a million entries.
LOOKUP_SLICE = 2048


def _private(mapping: object, cls_name: str, attr: str) -> Any:
    return getattr(mapping, f"_{cls_name}__{attr}", None)


class _View:
    """Where a container keeps what a read needs."""

    __slots__ = ("data", "items", "links", "mapping", "order", "timer")

    def __init__(self, mapping: Mapping[Any, Any]) -> None:
        self.mapping = mapping
        #: The dict holding the entries (None: an unknown mapping, read whole).
        self.data: dict[Any, Any] | None = dict_behind(mapping)
        #: The policy order, when it is not the dict's: an LRU or FIFO cache's
        #: recency list, or an OrderedDict itself.
        self.order: Any = None
        #: TTLCache links / TLRUCache items, with each key's expiry.
        self.links: Any = None
        self.items: Any = None
        self.timer: Callable[[], float] | None = None
        if self.data is not None:
            # An OrderedDict (untracked): its links are its order.
            ordered = isinstance(mapping, dict) and hasattr(mapping, "move_to_end")
            self.order = mapping if ordered and change_log(mapping) is None else None
            return
        data = vars(mapping).get("_Cache__data") if hasattr(mapping, "__dict__") else None
        if not isinstance(data, dict):
            return
        self.data = data
        self.order = _private(mapping, "LRUCache", "order") or _private(
            mapping, "FIFOCache", "order"
        )
        self.links = _private(mapping, "TTLCache", "links")
        self.items = _private(mapping, "TLRUCache", "items")
        if self.links is not None or self.items is not None:
            self.timer = mapping.timer  # type: ignore[attr-defined]

    @property
    def timed(self) -> bool:
        return self.timer is not None

    def hot_tail(self) -> list[Any]:
        """The ``HOT`` most recent keys, coldest first (one bounded step)."""
        if self.order is None:
            return []
        try:
            hot = list(itertools.islice(reversed(self.order), HOT))  # ~1 ms at 1M entries
        except RuntimeError:  # changed under an unguarded read
            return []
        hot.reverse()
        return hot

    def expiries(self, keys: list[Any]) -> list[float | None]:
        """Each key's expiry on the cache's timer (None: not in the index, or removed)."""
        if self.links is not None:
            return [None if link is None else link.expires for link in map(self.links.get, keys)]
        return [
            None if item is None or item.removed else item.expires
            for item in map(self.items.get, keys)
        ]


class _ChangedError(Exception):
    """The container changed under an iterating read: start it over."""


def read_all(
    mapping: Mapping[Any, Any], guard: Guard | None, *, stable_order: bool = False
) -> tuple[Taken | None, Entries]:
    """Every entry of ``mapping``, in policy order, a slice at a time (see the module doc).

    ``guard`` is the lock the service writes the container under (None: none).
    A tracked container's change log is taken at the moment the read stands
    for; the changes come back with the entries, for the caller to give back
    if the save fails. ``stable_order``: an untracked LRU or FIFO cache (or
    OrderedDict) is read in its table's order, its most recent keys last,
    never in recency order, which every read of the cache changes: reads
    that fingerprints are kept from and diffed against then line up (a
    base read in recency order, the next read in table order, parted at
    every key).
    """
    view = _View(mapping)
    log = change_log(mapping)
    lock = guard if guard is not None else contextlib.nullcontext()
    if view.data is None:
        # An unknown mapping: read the old way, in one step under its lock.
        taken = None
        try:
            with lock:
                taken = _taken(*log.take_raw()) if log is not None else None
                entries = entries_of(mapping)
        except BaseException:
            if log is not None and taken is not None:
                _give_back(log, taken)
            raise
        return taken, entries
    if log is None:
        return None, _enumerate(view, guard, recency=not stable_order)[0]
    # A TrackedDict or LoggedDict writes under its log's lock; a tracked
    # cache under the service's lock, if it has one. Only then do the size
    # and the take at the start of the read describe the same moment.
    exact = guard is not None or isinstance(mapping, (dict, TrackedDict))
    with log.read_lock:
        return _read_tracked(view, log, lock, exact=exact)


def _taken(dirty: dict[Any, None], deletes: set[Any], cleared: bool) -> Taken:
    # A full change set is given back as "write a base": its keys are not needed.
    return ([] if cleared else listed(dirty)), deletes, cleared


def listed(keys: Any) -> Sequence[Any]:
    """``list(keys)`` a slice at a time, as :class:`Pieces` (a private dict of many dirty keys)."""
    out = long_lived(len(keys))
    it = iter(keys)
    while chunk := list(itertools.islice(it, SLICE)):
        out.extend(chunk)
        pace()
    return out


def _give_back(log: ChangeLog, taken: Taken) -> None:
    upserts, deletes, cleared = taken
    log.restore(ChangeSet(upserts=upserts, deletes=deletes, full=cleared))


class _Began:
    """The moment a read of a tracked container stands for (``ChangeLog.begin_read``)."""

    __slots__ = ("cleared", "deletes", "dirty", "epoch", "hot", "index", "now", "pending", "size")

    def __init__(self, view: _View, log: ChangeLog) -> None:
        self.epoch = log.epoch
        began = log.begin_read(view.mapping)
        self.dirty, self.deletes, self.cleared, self.index, self.pending, self.size = began
        self.hot = view.hot_tail()
        self.now = view.timer() if view.timer is not None else 0.0

    def release(self) -> None:
        """Free the old index, the takes folded into it and the dirty keys, a slice at a time."""
        index, self.index = self.index, None
        drop(index)
        del index
        pending, self.pending = self.pending, []
        while pending:
            upserts, deletes = pending.pop()
            drop(upserts)
            drop(deletes)
            del upserts, deletes
        dirty, self.dirty = self.dirty, {}
        drop(dirty)


def _begin(view: _View, log: ChangeLog, lock: Guard) -> _Began:
    began = None
    try:
        with lock:
            # The moment the read stands for: the changes so far are taken,
            # and from here on every write records the value it replaces.
            began = _Began(view, log)
    except BaseException:
        if began is not None:  # the service's lock failed on release
            log.end_read(began.epoch, None, began.pending)
            _give_back(log, _taken(began.dirty, began.deletes, began.cleared))
        raise
    return began


def _read_tracked(
    view: _View, log: ChangeLog, lock: Guard, *, exact: bool
) -> tuple[Taken, Entries]:
    """A tracked container as of one moment, from its index and captured old values."""
    for _ in range(ATTEMPTS):
        began = _begin(view, log, lock)
        taken = _taken(began.dirty, began.deletes, began.cleared)
        try:
            read = None if began.index is None else _from_index(view, log, lock, began, exact)
            if read is None:
                # The log lost track (or a write bypassed it): list the container.
                read = _enumerate(view, lock if exact else None)
                if log.capture:
                    # Written during the listing: that read is of no one moment.
                    with lock:
                        whole = entries_of(view.mapping)
                    read = (whole, len(whole[0]))
        except BaseException:
            log.end_read(began.epoch, None, began.pending)
            _give_back(log, taken)
            raise
        keys, values, expires = read[0]
        del read
        if log.end_read(began.epoch, keys, None):
            began.release()
            ordered = _ordered(view, (keys, values, expires))
            if ordered[1] is not values:  # sorted into new pieces (the keys are the index)
                drop(values)
                drop(expires)
            return taken, ordered
        del keys, values, expires
        # A clear() ran during the read: it stands for no moment. Again.
        _give_back(log, taken)
    last: Taken | None = None
    try:
        with lock:
            last = _taken(*log.take_raw())
            entries = entries_of(view.mapping)
    except BaseException:
        if last is not None:
            _give_back(log, last)
        raise
    log.rebase(entries[0])
    return last, entries


def _from_index(
    view: _View, log: ChangeLog, lock: Guard, began: _Began, exact: bool
) -> tuple[Entries, int] | None:
    """The keys the log knows of, with their values as of ``began`` (None: the log missed some)."""
    assert began.index is not None
    keys = fold_keys(began.index, began.pending)
    if began.hot:
        moved = _hot_last(keys, began.hot)
        drop(keys)
        keys = moved
    read = _as_of(view, log, lock, keys, began.now)
    if read[0][0] is not keys:
        drop(keys)
    del keys
    if exact and not view.timed and read[1] != began.size:
        # More or fewer keys than the container held: a write bypassed the log.
        log_drift(read[1], began.size)
        return None
    return read


def log_drift(found: int, size: int) -> None:
    import logging  # noqa: PLC0415 - only on this rare path

    logging.getLogger("warmstart.store").warning(
        "a tracked container held %d entries where its change log knew of %d: a write "
        "bypassed the log (dict.__setitem__ on a LoggedDict?); listing it instead",
        size,
        found,
    )


def _hot_last(keys: Sequence[Any], hot: list[Any]) -> Pieces:
    """``keys`` with the ``hot`` ones moved to the end, in ``hot``'s order."""
    hot_set = set(hot)
    out = long_lived(len(keys))
    for part in parts(keys):
        out.extend(itertools.filterfalse(hot_set.__contains__, part))
        pace()
    out.extend(hot)
    return out


def _as_of(
    view: _View, log: ChangeLog, lock: Guard, keys: Sequence[Any], now: float
) -> tuple[Entries, int]:
    """The values ``keys`` had when the read began: current ones, unless a write captured the old.

    Returns the entries present then (unexpired, for a timed cache) and how
    many keys were present (expired ones included).
    """
    data = view.data
    assert data is not None
    get = data.get
    out_keys, out_values, out_expires = long_lived_lists(len(keys))
    present = 0
    dropped = False
    for chunk in parts(keys, min(SLICE, LOOKUP_SLICE)):
        with lock:
            values = list(map(get, chunk, itertools.repeat(ABSENT)))
            expiries = view.expiries(chunk) if view.timed else None
        capture = log.capture
        if capture:
            values = list(map(capture.get, chunk, values))
        here = list(map(operator.is_not, values, itertools.repeat(ABSENT)))
        if expiries is not None:
            keep = [h and e is not None and now < e for h, e in zip(here, expiries)]
            present += sum(here)
            out_expires.extend(itertools.compress(expiries, keep))
        else:
            keep = here
            present += sum(here)
        if all(keep):
            out_keys.extend(chunk)
            out_values.extend(values)
        else:
            dropped = True
            out_keys.extend(itertools.compress(chunk, keep))
            out_values.extend(itertools.compress(values, keep))
        pace()
    keys_read: Sequence[Any] = keys
    if dropped:
        keys_read = out_keys
    else:  # the same keys: keep the list, free the copy
        drop(out_keys)
    expires: Sequence[float] = out_expires
    if view.timed:
        shift = time.time() - now
        expires = _shifted(out_expires, shift)
        drop(out_expires)
    return (keys_read, out_values, expires), present


def _shifted(expires: Sequence[float], shift: float) -> Pieces:
    out = long_lived(len(expires))
    for part in parts(expires):
        out.extend(e + shift for e in part)
        pace()
    return out


def _enumerate(view: _View, guard: Guard | None, *, recency: bool = True) -> tuple[Entries, int]:
    """An untracked container (or one whose log lost track), iterated a slice at a time.

    Each slice is read under ``guard``, or in C calls that pair each key
    with its own value; a change of the container's size between slices
    starts the read over (see the module doc). A large LRU or FIFO cache (or
    OrderedDict) is read in its recency order first; any read of it between
    two slices moves a key, which fails that iteration, and the read goes on
    in its dict's order, which reads do not change, with its ``HOT`` most
    recent keys moved last, in recency order. Without ``recency``, straight
    to the dict's order.
    """
    data = view.data
    assert data is not None
    lock = guard if guard is not None else contextlib.nullcontext()
    if len(data) > SLICE:
        orders = [True] if view.order is not None and recency else []
        for by_order in orders + [False] * ATTEMPTS:
            try:
                return _iterate(view, guard, by_order=by_order)
            except (RuntimeError, _ChangedError):
                continue
    # Small (one slice: one moment), or it kept changing: one step.
    with lock:
        entries = entries_of(view.mapping)
    return entries, len(entries[0])


def _iterate(view: _View, guard: Guard | None, *, by_order: bool) -> tuple[Entries, int]:
    data = view.data
    assert data is not None
    lock = guard if guard is not None else contextlib.nullcontext()
    # Keys in policy (or the dict's own) order; each key's value read right
    # after, in C: a value another thread writes in between is that key's own.
    with lock:
        it = iter(view.order) if by_order else iter(dict.keys(data))
        # A dict's iterator walks its entries in place: a key inserted since
        # is appended after every key it held then. Asking for no more than
        # that many keys ends the read before the iterator meets one too many
        # (it raises then, and the keys of that slice would be lost): with
        # an LRU cache's steady insert-and-evict, every read of a large cache
        # failed near its end and fell back to one atomic read (776 ms).
        remaining = len(data)
    size = sys.getsizeof(data)
    now = view.timer() if view.timer is not None else 0.0
    keys, values, expires = long_lived_lists(len(data))
    get = data.get
    step = min(SLICE, ORDER_SLICE) if by_order else min(SLICE, DICT_SLICE)
    while remaining > 0:
        with lock:
            ks = list(itertools.islice(it, min(step, remaining)))
            remaining -= len(ks)
            vs = list(map(get, ks, itertools.repeat(ABSENT)))
            expiries = view.expiries(ks) if view.timed else None
            if sys.getsizeof(data) != size:
                raise _ChangedError  # resized: the iterator's position is no longer valid
        if not ks:
            break
        keep = list(map(operator.is_not, vs, itertools.repeat(ABSENT)))
        if expiries is not None:
            keep = [k and e is not None and now < e for k, e in zip(keep, expiries)]
            expires.extend(itertools.compress(expiries, keep))
        if all(keep):
            keys.extend(ks)
            values.extend(vs)
        else:
            keys.extend(itertools.compress(ks, keep))
            values.extend(itertools.compress(vs, keep))
        pace()
    if not by_order and view.order is not None and not view.timed:
        moved = _with_hot_last(view, guard, keys, values)
        if moved is not None:
            # The lists before the move: freed a slice at a time.
            drop(keys)
            drop(values)
            keys, values = moved
    if not view.timed:
        return (keys, values, expires), len(keys)
    shifted = _shifted(expires, time.time() - now)
    drop(expires)
    # Soonest expiry first, as a read in one step gives them: a restore inserts so.
    ordered = _ordered(view, (keys, values, shifted))
    if ordered[0] is not keys:  # sorted into new pieces: these are freed a step at a time
        drop(keys)
        drop(values)
        drop(shifted)
    return ordered, len(ordered[0])


def _with_hot_last(
    view: _View, guard: Guard | None, keys: Pieces, values: Pieces
) -> tuple[Pieces, Pieces] | None:
    """A cache read in its table's order, its most recent keys moved last, in recency order.

    None when there is nothing to move.
    """
    lock = guard if guard is not None else contextlib.nullcontext()
    with lock:
        hot = view.hot_tail()
    if not hot:
        return None
    hot_set = set(hot)
    out_keys, out_values = long_lived(len(keys)), long_lived(len(keys))
    tail: dict[Any, Any] = {}
    for ks, vs in zip(parts(keys), parts(values)):
        cold = list(map(hot_set.__contains__, ks))
        if any(cold):
            tail.update(itertools.compress(zip(ks, vs), cold))
            keep = [not c for c in cold]
            out_keys.extend(itertools.compress(ks, keep))
            out_values.extend(itertools.compress(vs, keep))
        else:
            out_keys.extend(ks)
            out_values.extend(vs)
        pace()
    for key in hot:
        if key in tail:
            out_keys.append(key)
            out_values.append(tail[key])
    return out_keys, out_values


def _ordered(view: _View, entries: Entries) -> Entries:
    """A timed cache's entries by expiry, soonest first (a restore inserts them so).

    Takes the lists out of ``entries``: the caller keeps no other reference.
    """
    if not view.timed or _ascending(entries[2]):
        return entries
    keys, _, expires = entries
    runs = []
    start = 0
    for part in parts(expires):
        # Sorted by the part's own list (C lookups), then as positions in the whole.
        run = sorted(range(len(part)), key=part.__getitem__)
        runs.append([start + at for at in run])
        start += len(part)
        pace()
    merged = heapq.merge(*runs, key=expires.__getitem__)
    out = long_lived_lists(len(keys))
    while at := list(itertools.islice(merged, SLICE)):
        for source, target in zip(entries, out):
            target.extend(gather(source, at))
        pace()
    return out


def _ascending(values: Sequence[float]) -> bool:
    for start in range(0, len(values), SLICE):
        chunk = values[max(0, start - 1) : start + SLICE]
        if not all(map(operator.le, chunk, itertools.islice(chunk, 1, None))):
            return False
        pace()
    return True


def read_keys(mapping: Mapping[Any, Any], keys: Sequence[Any], guard: Guard | None) -> Entries:
    """The entries of ``keys`` still present, in that order, a slice at a time.

    For a tracked container's delta: each value is one its key held during
    the read; a key written meanwhile is in the next change log too.
    """
    view = _View(mapping)
    lock = guard if guard is not None else contextlib.nullcontext()
    if view.data is None:
        with lock:
            return peek_entries(mapping, keys)
    get = view.data.get
    out_keys, out_values, out_expires = long_lived_lists(len(keys))
    now = view.timer() if view.timer is not None else 0.0
    for chunk in parts(keys, min(SLICE, SCATTERED_SLICE)):
        with lock:
            values = list(map(get, chunk, itertools.repeat(ABSENT)))
            expiries = view.expiries(chunk) if view.timed else None
        keep = list(map(operator.is_not, values, itertools.repeat(ABSENT)))
        if expiries is not None:
            keep = [k and e is not None and now < e for k, e in zip(keep, expiries)]
            out_expires.extend(itertools.compress(expiries, keep))
        if all(keep):
            out_keys.extend(chunk)
            out_values.extend(values)
        else:
            out_keys.extend(itertools.compress(chunk, keep))
            out_values.extend(itertools.compress(values, keep))
        pace()
    if view.timed:
        shifted = _shifted(out_expires, time.time() - now)
        drop(out_expires)
        return out_keys, out_values, shifted
    return out_keys, out_values, out_expires


def keys_of(mapping: Mapping[Any, Any], guard: Guard | None) -> Sequence[Any]:
    """The keys of ``mapping`` in policy order, a slice at a time (its change log untouched)."""
    view = _View(mapping)
    if view.data is None:
        with guard if guard is not None else contextlib.nullcontext():
            return entries_of(mapping)[0]
    return _enumerate(view, guard)[0][0]
