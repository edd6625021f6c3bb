"""A GIL-hold probe: how long a piece of work keeps other threads from running.

Two tickers run while the work runs: a thread that sleeps 1 ms in a loop and
an asyncio loop (in its own thread) that awaits ``asyncio.sleep(0.001)``.
Each records its scheduling delay, the time it woke up minus the time it
asked to. A ticker wakes late when another thread holds the GIL: between
bytecodes CPython hands the GIL over after the switch interval (5 ms), but
one long C call (copying a dict, hashing every value in one ``map``, encoding
a large list) holds it to the end. The longest delay is therefore about the
longest uninterrupted GIL hold of the work, which is what a request thread or
an event loop of a service waits at worst while a checkpoint runs beside it.

Collector pauses during the window are counted through ``gc.callbacks``
(every generation; generation 2 apart), and each long delay is attributed:
the thread ticker takes the stacks of the other threads the moment it gets
the GIL back, so the frame that just let go of it is on top.

    with Probe() as probe:
        store.save(...)
    print(probe.result.summary())
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import math
import os
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from typing import Any

#: Upper bounds (ms) of the histogram buckets; the last bucket is open.
BUCKETS_MS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0)


@dataclasses.dataclass(frozen=True)
class DelayStats:
    """Scheduling delays of one ticker, in seconds."""

    ticks: int
    max: float
    p50: float
    p99: float
    #: (bucket label, ticks) for every non-empty bucket of BUCKETS_MS.
    histogram: tuple[tuple[str, int], ...]

    @classmethod
    def of(cls, delays: list[float]) -> DelayStats:
        if not delays:
            return cls(0, math.nan, math.nan, math.nan, ())
        ordered = sorted(delays)
        counts: Counter[str] = Counter()
        for delay in ordered:
            counts[_bucket(delay * 1000)] += 1
        labels = [_label(i) for i in range(len(BUCKETS_MS) + 1)]
        histogram = tuple((label, counts[label]) for label in labels if counts[label])
        return cls(
            len(ordered), ordered[-1], percentile(ordered, 50), percentile(ordered, 99), histogram
        )

    def summary(self) -> str:
        """``'max 12.3 ms, p99 4.1 ms, p50 0.1 ms; <1 ms: 480, 10-20 ms: 1'``."""
        if not self.ticks:
            return "no ticks"
        buckets = ", ".join(f"{label}: {n}" for label, n in self.histogram)
        return (
            f"max {self.max * 1000:.1f} ms, p99 {self.p99 * 1000:.1f} ms, "
            f"p50 {self.p50 * 1000:.2f} ms over {self.ticks} ticks; {buckets}"
        )


def _bucket(ms: float) -> str:
    for i, bound in enumerate(BUCKETS_MS):
        if ms < bound:
            return _label(i)
    return _label(len(BUCKETS_MS))


def _label(i: int) -> str:
    if i == 0:
        return f"<{BUCKETS_MS[0]:g} ms"
    if i == len(BUCKETS_MS):
        return f">={BUCKETS_MS[-1]:g} ms"
    return f"{BUCKETS_MS[i - 1]:g}-{BUCKETS_MS[i]:g} ms"


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list (NaN when empty)."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclasses.dataclass(frozen=True)
class GcStats:
    """Collections that ran during the window (any thread)."""

    collections: int
    pause: float  # seconds, all generations
    gen2: int
    gen2_pause: float  # seconds
    gen2_max: float  # seconds
    longest: float  # seconds: the longest collection of any generation


@dataclasses.dataclass(frozen=True)
class Stall:
    """One long delay of the thread ticker and where the other threads were."""

    delay: float
    #: thread name -> innermost frames, outermost first ("file:line function").
    stacks: tuple[tuple[str, tuple[str, ...]], ...]

    def culprit(self, prefer: str = "warmstart/", thread: str | None = None) -> str:
        """Where the GIL was let go: the innermost ``prefer`` frame of a running thread.

        Threads parked in a wait (a lock, a queue, a selector, a checkpoint's
        pause) cannot have held the GIL; of the others, the first with a frame
        under ``prefer`` names its innermost such frame, else its innermost
        frame. With ``thread``, only that thread is considered: if it was
        parked, the wait was not its doing ("(parked) ..."): another thread,
        the collector or the operating system's scheduler kept the ticker
        waiting.
        """
        if thread is not None:
            mine = [(n, f) for n, f in self.stacks if n == thread and f]
            if not mine:
                return "?"
            frames = mine[0][1]
            if frames[-1].startswith(_PARKED):
                return f"(parked) {frames[-1]}"
            inner = [f for f in frames if f.startswith(prefer)]
            return inner[-1] if inner else frames[-1]
        running = [(n, f) for n, f in self.stacks if f and not f[-1].startswith(_PARKED)]
        for _, frames in running:
            mine = [f for f in frames if f.startswith(prefer)]
            if mine:
                return mine[-1]
        return running[0][1][-1] if running else "?"


#: Innermost frames of a thread that waits (it holds no GIL there): a lock, a
#: queue, a selector, a checkpoint's pause between two slices.
_PARKED = ("threading.py:", "queue.py:", "selectors.py:", "thread.py:", "warmstart/_pacing.py:")


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    seconds: float
    thread: DelayStats
    loop: DelayStats
    gc: GcStats
    #: The longest stalls of the thread ticker, longest first.
    stalls: tuple[Stall, ...]

    def summary(self) -> str:
        lines = [
            f"window {self.seconds * 1000:.1f} ms",
            f"thread ticker: {self.thread.summary()}",
            f"asyncio ticker: {self.loop.summary()}",
            (
                f"gc: {self.gc.collections} collections ({self.gc.pause * 1000:.1f} ms), "
                f"gen 2: {self.gc.gen2} ({self.gc.gen2_pause * 1000:.1f} ms, "
                f"max {self.gc.gen2_max * 1000:.1f} ms)"
            ),
        ]
        lines += [f"stall {s.delay * 1000:.1f} ms after {s.culprit()}" for s in self.stalls]
        return "\n".join(lines)


class Probe:
    """Tickers and collector accounting around a piece of work (a context manager).

    Args:
        period: seconds each ticker sleeps (1 ms).
        thread: run the thread ticker.
        loop: run the asyncio ticker.
        attribute_over: a thread-ticker delay at least this long (seconds)
            records the other threads' stacks (None: never).
        keep_stalls: how many of the longest stalls to keep.
        realtime: run the tickers with a real-time scheduling priority
            (``SCHED_FIFO``, when the process may): on a loaded machine a
            ticker then waits for the GIL, not for a CPU, and its delays
            measure the GIL holds of the process rather than the load of
            other processes. ``realtime_ok`` says whether it took.
    """

    def __init__(
        self,
        *,
        period: float = 0.001,
        thread: bool = True,
        loop: bool = True,
        attribute_over: float | None = 0.010,
        keep_stalls: int = 5,
        realtime: bool = False,
    ) -> None:
        self.period = period
        self.realtime = realtime
        self.realtime_ok: bool | None = None
        self._want_thread = thread
        self._want_loop = loop
        self.attribute_over = attribute_over
        self.keep_stalls = keep_stalls
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._thread_delays: list[float] = []
        self._loop_delays: list[float] = []
        self._stalls: list[Stall] = []
        self._gc_started = 0.0
        self._gc: list[tuple[int, float]] = []
        self._started = 0.0
        self._loop_ready = threading.Event()
        self.result: ProbeResult | None = None

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> None:
        gc.callbacks.append(self._on_gc)
        if self._want_thread:
            self._spawn(self._run_thread, "probe-thread-ticker")
        if self._want_loop:
            self._spawn(self._run_loop, "probe-asyncio-ticker")
            self._loop_ready.wait(5.0)
        # Let both tickers take their first steps before the work starts.
        time.sleep(10 * self.period)
        self._started = time.perf_counter()

    def stop(self) -> ProbeResult:
        seconds = time.perf_counter() - self._started
        # One more period so a stall at the very end of the work is recorded.
        time.sleep(2 * self.period)
        self._stop.set()
        for thread in self._threads:
            thread.join()
        gc.callbacks.remove(self._on_gc)
        gen2 = [p for g, p in self._gc if g == 2]
        stalls = sorted(self._stalls, key=lambda s: -s.delay)[: self.keep_stalls]
        self.result = ProbeResult(
            seconds=seconds,
            thread=DelayStats.of(self._thread_delays),
            loop=DelayStats.of(self._loop_delays),
            gc=GcStats(
                collections=len(self._gc),
                pause=sum(p for _, p in self._gc),
                gen2=len(gen2),
                gen2_pause=sum(gen2),
                gen2_max=max(gen2, default=0.0),
                longest=max((p for _, p in self._gc), default=0.0),
            ),
            stalls=tuple(stalls),
        )
        return self.result

    def __enter__(self) -> Probe:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # -- tickers ------------------------------------------------------------------

    def _prioritize(self) -> None:
        if not self.realtime or not hasattr(os, "sched_setscheduler"):
            return
        try:
            os.sched_setscheduler(threading.get_native_id(), os.SCHED_FIFO, os.sched_param(1))
        except OSError:
            self.realtime_ok = False
        else:
            self.realtime_ok = self.realtime_ok is not False

    def _run_thread(self) -> None:
        self._prioritize()
        period, stop, delays = self.period, self._stop, self._thread_delays
        clock, sleep = time.perf_counter, time.sleep
        threshold = math.inf if self.attribute_over is None else self.attribute_over
        while not stop.is_set():
            intended = clock() + period
            sleep(period)
            late = clock() - intended
            delays.append(late)
            if late >= threshold:
                self._stalls.append(Stall(late, _stacks()))

    def _run_loop(self) -> None:
        self._prioritize()
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._tick())
        finally:
            loop.close()

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop_ready.set()
        period, stop, delays = self.period, self._stop, self._loop_delays
        while not stop.is_set():
            intended = loop.time() + period
            await asyncio.sleep(period)
            delays.append(loop.time() - intended)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self._gc.append((info["generation"], time.perf_counter() - self._gc_started))


def _stacks(depth: int = 12) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The other threads' innermost frames (the probe's own threads left out)."""
    names = {t.ident: t.name for t in threading.enumerate()}
    out = []
    for ident, frame in sys._current_frames().items():
        name = names.get(ident, str(ident))
        if name.startswith("probe-"):
            continue
        frames = traceback.extract_stack(frame, limit=depth)
        out.append(
            (name, tuple(f"{_short(s.filename)}:{s.lineno} {s.name}" for s in frames)),
        )
    return tuple(out)


def _short(filename: str) -> str:
    for marker in ("/warmstart/", "/benchmarks/", "/site-packages/"):
        at = filename.rfind(marker)
        if at >= 0:
            return filename[at + 1 :]
    return filename.rsplit("/", 1)[-1]


def probe(work: Callable[[], Any], **options: Any) -> tuple[ProbeResult, Any]:
    """Run ``work()`` under a :class:`Probe`; return (its result, what ``work`` returned)."""
    with Probe(**options) as running:
        value = work()
    assert running.result is not None
    return running.result, value


if __name__ == "__main__":
    # A self-check: a long C call in this thread should show as a stall of its length.
    result, _ = probe(lambda: sorted(range(3_000_000)))
    print(result.summary())
