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
CPU between two yields, an upper bound of the longest time it kept the GIL
from other threads.

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
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

__all__ = (
    "SLICE",
    "Pacer",
    "current",
    "drop",
    "helper_thread",
    "long_lived",
    "long_lived_lists",
    "pace",
    "pacing",
    "slices",
)

#: Entries handled in one uninterrupted step: a C-level pass over 4,096
#: entries of a large container (a dict lookup is a cache miss each) takes
#: 0.1-0.5 ms on the benchmark machine.
SLICE = 4096

_current: contextvars.ContextVar[Pacer | None] = contextvars.ContextVar(
    "warmstart_pacer", default=None
)


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
        "_mark",
        "_started",
        "_token",
        "budget",
        "cpu",
        "longest",
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
        return self

    def __exit__(self, *exc: object) -> None:
        cpu = time.thread_time()
        self._stretch(cpu - self._cpu_mark)
        self.cpu = cpu - self._cpu_started
        self.wall = time.perf_counter() - self._started
        if self._token is not None:
            _current.reset(self._token)
            self._token = None

    def pace(self) -> None:
        """Between two slices: yield if this thread has worked ``budget`` seconds."""
        self.steps += 1
        now = time.perf_counter()
        if now - self._mark < self.budget:
            return
        self._stretch(time.thread_time() - self._cpu_mark)
        self.yields += 1
        # Nobody else to run (a script saving in its main thread, with at most
        # the save's own compression worker): no pause, no wall time lost.
        if threading.active_count() > 1 + _helpers[0]:
            time.sleep(self.pause)
            after = time.perf_counter()
            self.paused += after - now
            now = after
        self._mark = now
        self._cpu_mark = time.thread_time()
        if self.trace:
            self._began = traceback.format_stack(limit=8)[:-2]

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


def pace() -> None:
    """Let other threads run if the current checkpoint has worked long enough (see :class:`Pacer`).

    A no-op outside a pacer.
    """
    pacer = _current.get()
    if pacer is not None:
        pacer.pace()


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
    """Empty a big list, set or dict a slice at a time, when nothing else refers to it.

    Freeing a million references is one C call of 5-20 ms (a decref, often a
    cache miss, each): a checkpoint drops its big temporaries through this
    instead. The caller's one reference (a variable, or the attribute it is
    about to rebind) must be the only one, and the caller must not use the
    container again; shared containers are left alone. A list that
    :func:`long_lived` gave goes back to its reserve, empty.
    """
    # The caller's reference, this argument, and getrefcount's own.
    if sys.getrefcount(items) > 3:
        return
    reused = type(items) is list and id(items) in _issued
    if len(items) <= SLICE and not reused:
        return
    if isinstance(items, list):
        while items:
            del items[-SLICE:]
            pace()
        if reused:
            _give_back(items)
    elif isinstance(items, (set, dict)):
        pop = items.pop if isinstance(items, set) else items.popitem
        while items:
            for _ in range(min(SLICE, len(items))):
                pop()
            pace()


#: A list expected to hold at least this many entries starts old (see long_lived).
OLD_AT = 16384
#: Empty lists kept in reserve (in the oldest generation), and made at once when none is left.
RESERVE = 32
BATCH = 8

_reserve: list[list[Any]] = []
#: Ids of the lists handed out from the reserve (given back by drop()).
_issued: set[int] = set()
_reserve_lock = threading.Lock()


def long_lived(expected: int) -> list[Any]:
    """An empty list that will hold about ``expected`` entries, in the oldest generation.

    A young container is walked by every young collection until it is
    promoted, each of its references touched (a cache miss each): a list of
    a million keys, built while a checkpoint allocates, made one young
    collection take 116 ms. So a list expected to grow past ``OLD_AT``
    entries comes from a reserve of empty lists that are old already, and
    :func:`drop` gives it back. Only when the reserve is empty are new lists
    made, ``BATCH`` at a time, and promoted while empty by one collection of
    the young generations (``gc.collect(1)``), which walks the service's
    young objects of the moment: from a fraction of a millisecond to 10-30
    ms right after a burst of writes (issue 15 measured it at every step of
    a checkpoint until the reserve replaced it). The service's young
    objects are collected as they would have been, not promoted unseen
    (``gc.freeze(); gc.unfreeze()`` would be O(1), but leave the service's
    young cyclic garbage to the next full collection).
    """
    if expected < OLD_AT:
        return []
    return _old_lists(1)[0]


def long_lived_lists(
    expected: int, *, third: bool = True
) -> tuple[list[Any], list[Any], list[Any]]:
    """Three lists as :func:`long_lived` gives (``third=False``: the third is a plain ``[]``).

    Pass ``third=False`` when the third stays empty (expiries of a container
    without them): a list that is freed without :func:`drop` never comes back
    to the reserve, and an empty reserve costs a young collection.
    """
    if expected < OLD_AT:
        return [], [], []
    if not third:
        a, b = _old_lists(2)
        return a, b, []
    a, b, c = _old_lists(3)
    return a, b, c


def _old_lists(count: int) -> list[list[Any]]:
    with _reserve_lock:
        out = [_reserve.pop() for _ in range(min(count, len(_reserve)))]
    if len(out) < count:
        made: list[list[Any]] = [[] for _ in range(max(BATCH, count - len(out)))]
        if gc.isenabled():
            gc.collect(1)  # promotes them, empty (see long_lived)
        with _reserve_lock:
            if len(_issued) > 64 * RESERVE:
                _issued.clear()  # ids of lists freed without drop(): start over
            _issued.update(map(id, made))
        while len(out) < count:
            out.append(made.pop())
        for items in made:
            _give_back(items)
    return out


def _give_back(items: list[Any]) -> None:
    with _reserve_lock:
        if len(_reserve) < RESERVE and all(items is not kept for kept in _reserve):
            _reserve.append(items)
        else:
            _issued.discard(id(items))


def slices(total: int, size: int = SLICE) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive slices of ``range(total)``, pacing between them.

    >>> list(slices(10, 4))
    [(0, 4), (4, 8), (8, 10)]
    """
    for start in range(0, total, size):
        yield start, min(start + size, total)
        pace()
