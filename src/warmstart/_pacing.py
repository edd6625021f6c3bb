"""Bounded GIL holds: a checkpoint works in slices and lets the service run between them.

A checkpoint runs in a thread beside the service's request threads and event
loop. CPython hands the GIL to a waiting thread between bytecodes only after
the switch interval (5 ms), or at once when the holder blocks; one long C call
(copying a million-entry dict, hashing every value in one ``map``) keeps it to
its end. So every step of a checkpoint that is O(entries) works on slices of
at most :data:`SLICE` entries (each one C call well under a millisecond) and
calls :func:`pace` between them. Once the thread has worked ``budget`` seconds
since it last let go, ``pace`` sleeps ``pause`` seconds. A real sleep:
``time.sleep(0)`` releases the GIL and takes it straight back before a waiting
thread wakes up, unless that thread already waited a whole switch interval.

A :class:`Pacer` also measures what the checkpoint cost the rest of the
process: the CPU time of the checkpointing thread (time it held the GIL, plus
the little it spent in C code that releases it) and the longest stretch of
CPU between two yields, about the longest time it kept the GIL from other
threads. Not counted: time the thread was descheduled while it held the
GIL (another process, or the hypervisor taking the virtual CPU), which
other threads also wait through and which no pause can prevent.

>>> with Pacer(budget=0.0) as pacer:   # yield at every pace()
...     for _ in range(3):
...         pace()
>>> pacer.yields
3
"""

from __future__ import annotations

import contextlib
import contextvars
import gc
import heapq
import itertools
import operator
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypedDict

__all__ = (
    "SLICE",
    "Costs",
    "Pacer",
    "Pieces",
    "current",
    "drop",
    "gather",
    "helper_thread",
    "long_lived",
    "long_lived_lists",
    "pace",
    "pacing",
    "parts",
    "released",
    "slices",
    "sorted_in_steps",
)

#: Entries handled in one uninterrupted step: a C-level pass over 4,096
#: entries of a large container (a dict lookup is a cache miss each) takes
#: 0.1-0.5 ms on the benchmark machine.
SLICE = 4096

_current: contextvars.ContextVar[Pacer | None] = contextvars.ContextVar(
    "warmstart_pacer", default=None
)


class Costs(TypedDict):
    """What a paced piece of work cost the other threads (``CheckpointReport`` fields)."""

    cpu_seconds: float
    longest_hold_seconds: float
    longest_collection_seconds: float


class Pacer:
    """Yields the GIL every ``budget`` seconds of work and measures the holds between yields.

    Use it as a context manager around a checkpoint: inside, :func:`pace`
    (called by the code that reads, diffs and encodes) paces with it.
    Nested ``with pacing()`` blocks reuse the outer pacer.

    Args:
        budget: seconds of work between two yields (wall clock, checked at
            each :func:`pace`; the CPU actually used is what is measured).
        pause: seconds each yield sleeps, long enough for a waiting thread
            to wake up and take the GIL.
    """

    __slots__ = (
        "_began",
        "_cpu_mark",
        "_cpu_started",
        "_gc_mark",
        "_mark",
        "_started",
        "_thread",
        "_token",
        "budget",
        "cpu",
        "longest",
        "longest_collection",
        "pause",
        "paused",
        "steps",
        "trace",
        "wall",
        "where",
        "yields",
    )

    def __init__(
        self, *, budget: float = 0.001, pause: float = 0.0001, trace: bool = False
    ) -> None:
        self.budget = budget
        self.pause = pause
        #: Record where the longest stretch ended (``where``): for diagnosis.
        self.trace = trace
        self.where: list[str] = []
        self._began: list[str] = []
        #: Calls to :meth:`pace`, and how many of them ended a stretch (and
        #: slept, when another thread was alive to take the GIL).
        self.steps = 0
        self.yields = 0
        #: The longest stretch of CPU between two yields, in seconds.
        self.longest = 0.0
        #: The longest collection this thread ran meanwhile (CPU seconds; part
        #: of a stretch). A young collection walks every object the process
        #: made since the last one, whichever thread's allocation triggers it.
        self.longest_collection = 0.0
        self._thread = 0
        self._gc_mark = 0.0
        #: CPU seconds of the pacing thread, and wall seconds, between enter and exit.
        self.cpu = 0.0
        self.wall = 0.0
        #: Seconds slept in yields (part of ``wall``, not of ``cpu``).
        self.paused = 0.0
        self._started = self._mark = 0.0
        self._cpu_started = self._cpu_mark = 0.0
        self._token: contextvars.Token[Pacer | None] | None = None

    def __enter__(self) -> Pacer:
        self._started = self._mark = time.perf_counter()
        self._cpu_started = self._cpu_mark = time.thread_time()
        self._token = _current.set(self)
        self._thread = threading.get_ident()
        gc.callbacks.append(self._collecting)
        return self

    def __exit__(self, *exc: object) -> None:
        cpu = time.thread_time()
        self._stretch(cpu - self._cpu_mark)
        self.cpu = cpu - self._cpu_started
        self.wall = time.perf_counter() - self._started
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._collecting)
        if self._token is not None:
            _current.reset(self._token)
            self._token = None

    def pace(self, *, before_long_step: bool = False) -> None:
        """Between two slices: yield if this thread has worked ``budget`` seconds.

        ``before_long_step``: yield now, whatever the budget says, so that a
        step known to be long (a generation's commit transaction) starts a
        stretch of its own instead of ending one.
        """
        self.steps += 1
        now = time.perf_counter()
        if now - self._mark < self.budget and not before_long_step:
            return
        self.end_stretch()
        self.yields += 1
        # Nobody else to run (a script saving in its main thread, with at most
        # the save's own compression worker): no pause, no wall time lost.
        if threading.active_count() > 1 + _helpers[0]:
            time.sleep(self.pause)
            self.paused += time.perf_counter() - now
        self.start_stretch()

    def end_stretch(self) -> None:
        """Close the current stretch here; :meth:`start_stretch` opens the next."""
        self._stretch(time.thread_time() - self._cpu_mark)

    def start_stretch(self) -> None:
        """Open a stretch here (after a call that did not hold the GIL)."""
        self._mark = time.perf_counter()
        self._cpu_mark = time.thread_time()
        if self.trace:
            self._began = traceback.format_stack(limit=8)[:-2]

    def costs(self) -> Costs:
        """What the work cost the other threads, as a ``CheckpointReport`` names it."""
        return Costs(
            cpu_seconds=self.cpu,
            longest_hold_seconds=self.longest,
            longest_collection_seconds=self.longest_collection,
        )

    def _collecting(self, phase: str, _info: dict[str, int]) -> None:
        """A ``gc.callbacks`` entry: times the collections this thread runs."""
        if threading.get_ident() != self._thread:
            return
        if phase == "start":
            self._gc_mark = time.thread_time()
        elif self._gc_mark:
            took = time.thread_time() - self._gc_mark
            self._gc_mark = 0.0
            self.longest_collection = max(self.longest_collection, took)

    def _stretch(self, cpu: float) -> None:
        if cpu > self.longest:
            self.longest = cpu
            if self.trace:
                end = traceback.format_stack(limit=8)[:-2]
                self.where = ["began:\n", *self._began, "ended:\n", *end]


#: Threads a save starts for itself (its compression worker), which need the
#: GIL only for moments: not a reason to pause.
_helpers = [0]
_helpers_lock = threading.Lock()


@contextlib.contextmanager
def helper_thread() -> Iterator[None]:
    """Inside, one more thread is alive that pauses need not make room for."""
    with _helpers_lock:
        _helpers[0] += 1
    try:
        yield
    finally:
        with _helpers_lock:
            _helpers[0] -= 1


def pace(*, before_long_step: bool = False) -> None:
    """Let other threads run if the current checkpoint has worked long enough (see :class:`Pacer`).

    A no-op outside a pacer. ``before_long_step``: yield whatever the budget
    says (see :meth:`Pacer.pace`).
    """
    pacer = _current.get()
    if pacer is not None:
        pacer.pace(before_long_step=before_long_step)


@contextlib.contextmanager
def released() -> Iterator[None]:
    """Around a C call that lets go of the GIL (an LMDB commit): its CPU is no hold.

    The current checkpoint's stretch ends before the call and a new one
    starts after it; the call's CPU still counts in the checkpoint's total.
    A commit of a million-entry save is 2-15 ms of CPU (writing pages,
    the kernel's writeback at fsync) while other threads run; counted as a
    stretch, it was reported as the checkpoint's longest hold.
    """
    pacer = _current.get()
    if pacer is None:
        yield
        return
    pacer.end_stretch()
    try:
        yield
    finally:
        pacer.start_stretch()


def current() -> Pacer | None:
    """The pacer of the checkpoint running in this thread, if any."""
    return _current.get()


@contextlib.contextmanager
def pacing(**options: Any) -> Iterator[Pacer]:
    """A pacer for the work inside: the current one, or a new one made with ``options``."""
    outer = _current.get()
    if outer is not None:
        yield outer
        return
    with Pacer(**options) as pacer:
        yield pacer


def drop(items: Any) -> None:
    """Empty a big list, set, dict or :class:`Pieces` a slice at a time, if private.

    Freeing a million references is one C call of 5-20 ms (a decref, often a
    cache miss, each): a checkpoint drops its big temporaries through this
    instead. The caller's one reference (a variable, or the attribute it is
    about to rebind) must be the only one, and the caller must not use the
    container again; shared containers are left alone. The pieces of a
    :class:`Pieces` go back to the reserve, empty.
    """
    # The caller's reference, this argument, and getrefcount's own.
    if sys.getrefcount(items) > 3:
        return
    if type(items) is Pieces:
        items.release()
        return
    if len(items) <= SLICE:
        return
    if isinstance(items, list):
        # Shrinking from the end: each step is a decref per entry and, at
        # most, a realloc that keeps the block in place.
        while items:
            del items[-SLICE:]
            pace()
    elif isinstance(items, (set, dict)):
        pop = items.pop if isinstance(items, set) else items.popitem
        while items:
            for _ in range(min(SLICE, len(items))):
                pop()
            pace()


#: A sequence expected to hold at least this many entries is kept in old
#: pieces (see Pieces); so is any past this many.
OLD_AT = 16384
#: Empty lists kept in reserve (in the oldest generation): enough pieces for
#: a few sequences of 4 million entries.
RESERVE = 4096

_reserve: list[list[Any]] = []
_reserve_lock = threading.Lock()


class Pieces(Sequence[Any]):
    """A long sequence kept as lists of at most ``SLICE`` entries: it grows without copying.

    A flat list of a million entries grows by reallocation: at each geometric
    step its 8 MB are copied to fresh pages, which fault in. Three such lists
    growing together in one step of a read held the GIL for 4-7 ms (issue
    15), and pre-sizing one (``[None] * 1_000_000``) is itself a 6-9 ms step.
    A piece never grows past ``SLICE`` entries (32 KB), so appending is
    bounded work whatever the length, and so is freeing (:func:`drop`, a
    piece a step).

    Every piece but the last is full, so entry ``i`` is in piece
    ``i // size``. Pieces of a long sequence come from a reserve of empty
    lists that are in the oldest generation already: a young container is
    walked by every young collection until promoted, each of its references
    touched (a cache miss each), and young lists of a million keys made one
    young collection take 116 ms. Only when the reserve is empty are new
    lists made, enough to fill it (``RESERVE``), and promoted while empty by one
    collection of the young generations (``gc.collect(1)``), which walks the
    service's young objects of the moment: from a fraction of a millisecond
    to 10-30 ms right after a burst of writes. The service's young objects
    are collected as they would have been, not promoted unseen
    (``gc.freeze(); gc.unfreeze()`` would be O(1), but leave the service's
    young cyclic garbage to the next full collection). :func:`drop` gives the
    pieces back.

    Reads: iteration, ``len``, indexing and slicing (a slice is a new
    ``list``), :meth:`parts`. Writes: :meth:`append`, :meth:`extend`.

    >>> items = Pieces()
    >>> items.extend(range(5))
    >>> items.append(5)
    >>> items[4], items[-1], items[1:3], len(items)
    (4, 5, [1, 2], 6)
    """

    __slots__ = ("_len", "_old", "_pieces", "_size", "_young")

    def __init__(self, expected: int = 0, items: Iterable[Any] = ()) -> None:
        #: Entries per piece: SLICE when made (tests shrink it).
        self._size = SLICE
        self._pieces: list[list[Any]] = []
        self._len = 0
        #: Whether new pieces come from the old reserve (see the class doc),
        #: and how many of the first pieces are young lists.
        self._old = expected >= OLD_AT
        self._young = 0
        if items:
            self.extend(items)

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[Any]:
        return itertools.chain.from_iterable(self._pieces)

    def __repr__(self) -> str:
        return f"Pieces({list(self)!r})"

    def __sizeof__(self) -> int:
        return (
            object.__sizeof__(self)
            + sys.getsizeof(self._pieces)
            + sum(map(sys.getsizeof, self._pieces))
        )

    def __eq__(self, other: object) -> bool:
        """Equal to any sequence of equal entries in the same order (compared a piece a step)."""
        if other is self:
            return True
        if not isinstance(other, (list, tuple, Pieces)) or len(other) != self._len:
            return False
        start = 0
        for piece in self._pieces:
            theirs = other[start : start + len(piece)]
            if piece != (theirs if type(theirs) is list else list(theirs)):
                return False
            start += len(piece)
            pace()
        return True

    __hash__ = None  # type: ignore[assignment]

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            start, stop, step = index.indices(self._len)
            if step != 1:
                return list(self)[index]
            return self._window(start, stop)
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            msg = "Pieces index out of range"
            raise IndexError(msg)
        piece, at = divmod(index, self._size)
        return self._pieces[piece][at]

    def _window(self, start: int, stop: int) -> list[Any]:
        if stop <= start:
            return []
        size = self._size
        first, at = divmod(start, size)
        last, end = divmod(stop, size)
        if first == last:
            return self._pieces[first][at:end]
        out = self._pieces[first][at:]
        for piece in itertools.islice(self._pieces, first + 1, last):
            out.extend(piece)
        if end:
            out.extend(self._pieces[last][:end])
        return out

    def gather(self, positions: Iterable[int]) -> list[Any]:
        """``[self[i] for i in positions]``, in C where the positions run contiguous."""
        positions = positions if type(positions) is list else list(positions)
        if not positions:
            return []
        low, high = positions[0], positions[-1]
        if high - low == len(positions) - 1 and low >= 0 and _ascending(positions):
            return self._window(low, high + 1)  # consecutive (a range): slices, in C
        size, pieces = self._size, self._pieces
        return [pieces[p][i] for p, i in map(divmod, positions, itertools.repeat(size))]

    def iter_from(self, start: int) -> Iterator[Any]:
        """Iterate from entry ``start`` on, without copying."""
        piece, at = divmod(start, self._size)
        if piece >= len(self._pieces):
            return iter(())
        rest = itertools.chain.from_iterable(itertools.islice(self._pieces, piece + 1, None))
        return itertools.chain(itertools.islice(self._pieces[piece], at, None), rest)

    def index(self, value: Any, start: int = 0, stop: int | None = None) -> int:
        """Where ``value`` first is in ``self[start:stop]`` (searched in C, a piece at a time)."""
        stop = self._len if stop is None else min(stop, self._len)
        size = self._size
        while start < stop:
            piece, at = divmod(start, size)
            end = min(size, at + stop - start)
            try:
                return piece * size + self._pieces[piece].index(value, at, end)
            except ValueError:
                start += end - at
        msg = f"{value!r} is not in Pieces"
        raise ValueError(msg)

    def parts(self) -> Iterator[list[Any]]:
        """The pieces themselves, in order (read them, never keep or change them)."""
        return iter(self._pieces)

    def append(self, item: Any) -> None:
        pieces = self._pieces
        if not pieces or len(pieces[-1]) == self._size:
            pieces.append(self._piece())
        pieces[-1].append(item)
        self._len += 1

    def extend(self, items: Iterable[Any]) -> None:
        """Append ``items`` (a bounded batch: pace between calls), filling the last piece first."""
        if type(items) is not list:
            items = list(items)
        count = len(items)
        if not count:
            return
        pieces, size = self._pieces, self._size
        done = 0
        if pieces:
            room = size - len(pieces[-1])
            if room >= count:
                pieces[-1].extend(items)
                self._len += count
                return
            if room:
                pieces[-1].extend(itertools.islice(items, room))
                done = room
        while done < count:
            piece = self._piece()
            piece.extend(itertools.islice(items, done, done + size))
            pieces.append(piece)
            done += size
        self._len += count

    def _piece(self) -> list[Any]:
        size = self._size
        if not self._old and len(self._pieces) * size < OLD_AT:
            self._young += 1
            return []
        self._old = True
        # Should the reserve run out, it is filled whole: one collection
        # (10-20 ms after a burst of writes, see the class doc) per process,
        # not one in each checkpoint that needs more pieces than the last
        # (the first diff after a base holds the base's prints besides its
        # own read). 4,096 empty lists are 230 KB.
        return _old_list()

    def release(self) -> None:
        """Empty the pieces a step each and give them to the reserve.

        Through :func:`drop`, which checks that nothing else refers to this
        sequence: its pieces are reused.
        """
        pieces, self._pieces, self._len = self._pieces, [], 0
        young, self._young = self._young, 0
        while pieces:
            piece = pieces.pop()
            del piece[:]
            # The first pieces of a sequence that grew long are young: not kept.
            if len(pieces) >= young and sys.getrefcount(piece) == 2:
                _give_back(piece)
            del piece
            pace()


def _ascending(items: list[int]) -> bool:
    return all(map(operator.lt, items, itertools.islice(items, 1, None)))


def parts(items: Sequence[Any], size: int | None = None) -> Iterator[list[Any]]:
    """``items`` as consecutive parts of at most ``size`` (default ``SLICE``) entries.

    A :class:`Pieces` yields its pieces (or slices of them, for a smaller
    ``size``), anything else slices of itself; parts of the same ``size``
    line up whatever the type. Read the parts, never keep or change them.
    """
    size = SLICE if size is None else size
    if type(items) is Pieces:
        for piece in items.parts():
            if len(piece) <= size:
                yield piece
            else:
                for start in range(0, len(piece), size):
                    yield piece[start : start + size]
        return
    for start in range(0, len(items), size):
        part = items[start : start + size]
        yield part if type(part) is list else list(part)


def gather(items: Sequence[Any], positions: Sequence[int]) -> list[Any]:
    """``[items[i] for i in positions]`` (positions: one step's worth)."""
    if type(items) is Pieces:
        return items.gather(positions)
    return list(map(items.__getitem__, positions))


def long_lived(expected: int) -> Pieces:
    """An empty sequence that will hold about ``expected`` entries, kept in old pieces."""
    return Pieces(expected)


def long_lived_lists(expected: int) -> tuple[Pieces, Pieces, Pieces]:
    """Three sequences as :func:`long_lived` gives (a third that stays empty costs nothing)."""
    return Pieces(expected), Pieces(expected), Pieces(expected)


def _old_list() -> list[Any]:
    """An empty list in the oldest generation, from the reserve (filled whole when empty)."""
    with _reserve_lock:
        if _reserve:
            return _reserve.pop()
    enabled = gc.isenabled()
    # Made with the collector off: 4,096 allocations would trigger about
    # six young collections of their own, each walking the service's
    # young objects, before the one below that promotes them.
    gc.disable()
    try:
        made: list[list[Any]] = [[] for _ in range(RESERVE)]
    finally:
        if enabled:
            gc.enable()
    if enabled:
        gc.collect(1)  # promotes them, empty (see Pieces)
    out = made.pop()
    for items in made:
        _give_back(items)
    return out


def _give_back(items: list[Any]) -> None:
    with _reserve_lock:
        if len(_reserve) < RESERVE:
            _reserve.append(items)


#: Entries sorted in one step: 2,048 keys scattered in a large heap take
#: about 0.5-1 ms; 12,500 in one sort took 3-8 ms (a delta's deletions).
SORT_SLICE = 2048


def sorted_in_steps(items: Iterable[Any], key: Any = None) -> list[Any]:
    """``sorted(items, key=key)``, a bounded step at a time.

    Runs of ``SORT_SLICE`` entries are each sorted in one C call, then merged
    (``heapq.merge``), ``SLICE`` entries a step. Raises what ``sorted`` would
    (``TypeError`` for keys that do not compare).

    >>> sorted_in_steps({3, 1, 2})
    [1, 2, 3]
    """
    it = iter(items)
    runs = []
    while run := list(itertools.islice(it, SORT_SLICE)):
        run.sort(key=key)
        runs.append(run)
        pace()
    if len(runs) <= 1:
        return runs[0] if runs else []
    out: list[Any] = []
    merged = heapq.merge(*runs, key=key)
    while chunk := list(itertools.islice(merged, SLICE)):
        out.extend(chunk)
        pace()
    return out


def slices(total: int, size: int = SLICE) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive slices of ``range(total)``, pacing between them.

    >>> list(slices(10, 4))
    [(0, 4), (4, 8), (8, 10)]
    """
    for start in range(0, total, size):
        yield start, min(start + size, total)
        pace()
