"""Checkpoint stalls: how long one checkpoint keeps the rest of the process waiting.

Each checkpoint runs with :mod:`benchmarks.probe` beside it: a 1 ms thread
ticker and a 1 ms asyncio ticker (each in its own thread) record how late
they wake, which is about the longest uninterrupted GIL hold of the
checkpoint; collector pauses are counted through ``gc.callbacks``.

Cases, for a ``cachetools.LRUCache`` and a plain dict of small records
(``benchmarks.generate_data``), through ``Store.save`` and through a boot's
``boot.checkpoint()`` (a ``@warm`` object with ``state(contract, lock=...)``):

- ``full``: a full save (``mode="full"``; a boot without ``interval``, whose
  checkpoints of an untracked container are full saves);
- ``delta-mode base``: the first save with ``mode="delta"`` (what the first
  tick of ``boot(interval=...)`` does): a full save that also fingerprints
  every entry for the next diff;
- ``hash delta``: the next ``mode="delta"`` saves, each after 1% of the
  entries changed (half updates, a quarter inserts, a quarter deletes):
  untracked, so every entry is read and hashed and diffed, or saved in full
  once the store measured the diff dearer than a full save ("saved as");
  through a boot, the container is declared ``state(track=False)``;
- ``restored hash delta`` (through a boot only): the first ``mode="delta"``
  checkpoints of a process that restored the untracked container warm, each
  after 1% of the entries changed and 1% more inserted as new keys: a full
  LRU cache evicts its oldest entries to make room, a dict loses its oldest
  keys as well (a run of deletions off the front of the read order). The
  first one writes the base (a restore leaves no fingerprints) and checks
  that the state changed since the restore; the next ones are diffs;
- ``collector only`` (no checkpoint, once per container): the control. After
  the same 1% change, the probe runs beside one collection of the young
  generations (``gc.collect(1)``), which is what the service's next
  automatic young collection costs, whichever thread's allocation
  triggers it, checkpoint or not;
- ``idle`` and ``paced spin`` (no checkpoint and no container, once per
  size): the floor of this host. ``idle`` runs the probe beside nothing;
  ``paced spin`` beside a thread that does nothing but short C steps
  (about 0.05 ms each) under warmstart's own pacer, with its defaults,
  the best any paced checkpoint can do. Each lasts ``CONTROL_SECONDS``,
  about a full save of a million entries. Whatever delays the probe sees
  beside them (the kernel or the hypervisor descheduling a thread, timer
  wake-ups) a checkpoint's figures include too;
- ``tracked delta``: the same change on a tracked container
  (``warmstart.track(cache)``; ``TrackedDict`` for the dict; through a boot
  with ``interval``, the boot tracks it when it is attached);
- ``tracked base``: a fresh base of the tracked container (what compaction
  writes every dozen deltas), read a slice at a time from the change log's
  index, as of one moment.

Besides the probe, each checkpoint's own figures (``warmstart._pacing``): its
CPU time and its longest stretch of CPU between two yields.

Nothing is frozen out of the collector's sight: the records live in the heap
as they do in a service, so a generation-2 collection that a checkpoint
triggers walks all of them. Each figure is the median of ``repeats`` saves;
the culprit is the innermost ``warmstart`` frame of the worker when the
thread ticker woke after its longest delay (the call that held the GIL ends
on that line).

With ``--realtime`` the tickers run at a real-time priority (``SCHED_FIFO``)
so that on a loaded machine they wait for the GIL, not for a CPU.

Run: ``python -m benchmarks.stall [--quick] [--sizes 50000,1000000] [--realtime]``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import cachetools

import warmstart
from benchmarks._common import Report, Table, finish, machine, median, versions
from benchmarks.generate_data import RECORDS, change_some, key, make_records, record
from benchmarks.probe import Probe, ProbeResult
from warmstart._pacing import Pacer, pace, pacing

SIZES = (50_000, 1_000_000)
QUICK_SIZES = (50_000,)
NAMESPACE = "stall"
SECTION = "cache"
FRACTION = 0.01
CONTAINERS = ("LRUCache", "dict")
PATHS = ("Store.save", "boot.checkpoint()")
CASES = (
    "full",
    "delta-mode base",
    "hash delta",
    "restored hash delta",
    "tracked delta",
    "tracked base",
    "collector only",
    "idle",
    "paced spin",
)
#: Cases that only a boot has (a restore before the checkpoints).
BOOT_ONLY = ("restored hash delta",)
#: Cases measured once per container, not per path (no checkpoint at all).
NO_PATH = ("collector only", "idle", "paced spin")
#: Cases measured once per size: no container either.
NO_CONTAINER = ("idle", "paced spin")
#: How long each of those runs: about a full save of a million entries.
CONTROL_SECONDS = 1.5


def _paced_spin(seconds: float) -> int:
    """Short C steps under the pacer for ``seconds``: a perfectly sliced checkpoint."""
    steps = list(range(4096))
    with pacing():
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            sorted(steps)  # one C call of about 0.05 ms
            pace()
    return 0


def _idle(seconds: float) -> int:
    """Nothing for ``seconds``. Like ``_paced_spin``, returns 0: None would be a failed save."""
    time.sleep(seconds)
    return 0


def _container(kind: str, n: int, *, tracked: bool) -> Any:
    """A filled container of ``n`` records: an LRU cache (maxsize ``n``) or a dict."""
    records = make_records(n)
    if kind == "dict":
        return warmstart.TrackedDict(records) if tracked else records
    cache = cachetools.LRUCache(maxsize=n)
    if tracked:
        warmstart.track(cache)
    for k, v in records.items():
        cache[k] = v
    return cache


@contextmanager
def _saver(
    path: str, kind: str, n: int, case: str, root: Path, control_seconds: float
) -> Iterator[tuple[Any, Callable[[], Any]]]:
    """(container, one checkpoint) for ``case`` through ``path``."""
    if case in NO_CONTAINER:
        work = _idle if case == "idle" else _paced_spin
        yield None, lambda: work(control_seconds)
        return
    tracked = case.startswith("tracked")
    every_base = warmstart.CompactionPolicy(max_deltas=0)
    compaction = every_base if case == "tracked base" else None
    if case in NO_PATH:
        container = _container(kind, n, tracked=False)
        yield container, lambda: gc.collect(1)
        return
    if path == "Store.save":
        container = _container(kind, n, tracked=tracked)
        lock = threading.RLock()
        sections = {SECTION: (RECORDS, container, lock)}
        mode = (
            "full" if case == "full" else "delta" if case.startswith(("hash", "delta")) else "auto"
        )
        with warmstart.Store(root, compaction=compaction) as store:
            yield container, lambda: store.save(NAMESPACE, sections, mode=mode)
        return

    holder: dict[str, Any] = {}

    # Untracked when built: with an interval the boot tracks it when it is
    # attached (the tracked cases), unless track=False (the others).
    state = warmstart.state(RECORDS, section=SECTION, lock="lock", track=None if tracked else False)

    restored = case in BOOT_ONLY

    @warmstart.warm(cache=state)
    class Service:
        def __init__(self) -> None:
            self.lock = threading.RLock()
            if holder.get("saved"):  # a restoring process starts empty; its boot fills it
                self.cache: Any = {} if kind == "dict" else cachetools.LRUCache(maxsize=n)
            else:
                self.cache = _container(kind, n, tracked=False)
            holder["service"] = self

    if restored:  # a first process checkpoints at exit, the measured one restores
        with warmstart.boot(root, namespace=NAMESPACE, signals=False):
            Service()
        holder["saved"] = True

    # interval: the checkpointer saves in delta mode (a tick in an hour never comes).
    interval = None if case == "full" else 3600.0
    boot = warmstart.boot(
        root,
        namespace=NAMESPACE,
        interval=interval,
        signals=False,
        checkpoint_on_exit=False,
        store_options={"compaction": compaction} if compaction else None,
    )
    with boot:
        Service()
    try:
        yield holder["service"].cache, boot.checkpoint
    finally:
        boot.close()


class Sample(NamedTuple):
    wall: float
    probe: ProbeResult
    cpu: float  # the checkpointing thread's CPU seconds
    longest: float  # its longest CPU stretch between two yields
    kind: str  # what the checkpoint wrote: "full" or "delta"


def _measure(
    path: str,
    kind: str,
    n: int,
    case: str,
    repeats: int,
    root: Path,
    *,
    realtime: bool,
    control_seconds: float = CONTROL_SECONDS,
) -> list[Sample]:
    """``repeats`` probed checkpoints of one case."""
    out = []
    with _saver(path, kind, n, case, root, control_seconds) as (container, save):
        gc.collect()
        next_id = n
        deltas = case in (
            "hash delta",
            "restored hash delta",
            "tracked delta",
            "tracked base",
            "collector only",
        )
        restored = case in BOOT_ONLY
        if deltas:
            save()  # the base the deltas build on
            if case == "hash delta":
                # Two diffs: the store measures them against the base before choosing.
                for seed in (97, 98):
                    _, inserts, _ = change_some(container, FRACTION, seed=seed, next_id=next_id)
                    next_id += inserts
                    save()
        # Only the first delta-mode save of a store writes the base: one sample a store.
        for r in range(1 if case == "delta-mode base" else repeats):
            if deltas:
                _, inserts, _ = change_some(container, FRACTION, seed=r + 1, next_id=next_id)
                next_id += inserts
            if restored:
                next_id = _insert_past_capacity(container, n, next_id)
            # A boot measures its own checkpoints (its report); Store.save, this pacer.
            boot = getattr(save, "__self__", None)
            pacer: Any = Pacer() if boot is None else contextlib.nullcontext()
            with Probe(realtime=realtime) as probe:
                started = time.perf_counter()
                with pacer:
                    generation = save()
                wall = time.perf_counter() - started
            # boot.checkpoint() answers with a report, Store.save with the generation.
            generation = getattr(generation, "generation", generation)
            if generation is None:
                msg = f"{path} {kind} {case}: the checkpoint failed"
                raise RuntimeError(msg)
            assert probe.result is not None
            if boot is None:
                cpu, longest = pacer.cpu, pacer.longest
            else:
                report = boot.report.checkpoints[-1]
                cpu, longest = report.cpu_seconds, report.longest_hold_seconds
            out.append(Sample(wall, probe.result, cpu, longest, _saved_as(save, generation)))
    return out


def _insert_past_capacity(container: Any, n: int, next_id: int) -> int:
    """Insert 1% of ``n`` new records, evicting as many of the oldest entries (as a full cache)."""
    count = int(n * FRACTION)
    if isinstance(container, dict):  # a dict has no capacity: its oldest keys go
        for oldest in list(itertools.islice(container, count)):
            del container[oldest]
    for j in range(next_id, next_id + count):
        container[key(j)] = record(j)
    return next_id + count


def _saved_as(save: Callable[[], Any], generation: int) -> str:
    """What a checkpoint wrote for the section: a base ("full") or a delta."""
    boot = getattr(save, "__self__", None)
    store = boot.store if boot is not None else None
    for cell in getattr(save, "__closure__", None) or ():
        if isinstance(cell.cell_contents, warmstart.Store):
            store = cell.cell_contents
    written = store.manifest(NAMESPACE, generation).section(SECTION) if store else None
    if written is None:
        return "-"
    return "delta" if any(c.sequence == generation for c in written.deltas) else "full"


def bench_stall(
    sizes: tuple[int, ...],
    repeats: int,
    workdir: Path,
    *,
    containers: tuple[str, ...] = CONTAINERS,
    paths: tuple[str, ...] = PATHS,
    cases: tuple[str, ...] = CASES,
    realtime: bool = False,
    control_seconds: float = CONTROL_SECONDS,
) -> Report:
    report = Report("Checkpoint stalls")
    rows = []
    raw: dict[str, Any] = {}
    for n in sizes:
        for kind in containers:
            for path in paths:
                for case in cases:
                    if case in BOOT_ONLY and path != "boot.checkpoint()":
                        continue
                    if case in NO_PATH and path != paths[0]:
                        continue
                    if case in NO_CONTAINER and kind != containers[0]:
                        continue
                    runs: list[Sample] = []
                    # A base is written once per store: take a fresh store per sample.
                    rounds = repeats if case == "delta-mode base" else 1
                    for i in range(rounds):
                        root = workdir / f"{n}-{kind}-{path[:5]}-{case.replace(' ', '-')}-{i}"
                        runs += _measure(
                            path,
                            kind,
                            n,
                            case,
                            repeats,
                            root,
                            realtime=realtime,
                            control_seconds=control_seconds,
                        )
                        shutil.rmtree(root, ignore_errors=True)
                        gc.collect()
                    shown = "(none)" if case in NO_PATH else path
                    owner = "-" if case in NO_CONTAINER else kind
                    rows.append(_row(n, owner, shown, case, runs))
                    raw[f"{n} {kind} {path} {case}"] = [
                        {
                            "wall": r.wall,
                            "cpu": r.cpu,
                            "longest": r.longest,
                            "saved_as": r.kind,
                            "thread_max": r.probe.thread.max,
                            "loop_max": r.probe.loop.max,
                            "collections": r.probe.gc.collections,
                            "gc_longest": r.probe.gc.longest,
                            "gen2": r.probe.gc.gen2,
                            "gen2_pause": r.probe.gc.gen2_pause,
                            "stalls": [
                                (s.delay, s.culprit(thread="MainThread")) for s in r.probe.stalls
                            ],
                        }
                        for r in runs
                    ]
                    print(
                        f"[stall] {n:,} {kind} {path} {case}: {rows[-1][4] * 1000:.0f} ms wall, "
                        f"{rows[-1][5]:.1f} ms CPU, longest stretch {rows[-1][6]:.2f} ms, "
                        f"thread max {rows[-1][7]:.1f} ms, asyncio max {rows[-1][9]:.1f} ms, "
                        f"longest GC {rows[-1][11]:.1f} ms, saved as {rows[-1][14]}",
                        flush=True,
                    )
    realtime_note = (
        " The tickers ran at a real-time priority (SCHED_FIFO): on this shared machine they "
        "wait for the GIL, not for a CPU."
        if realtime
        else ""
    )
    report.tables.append(
        Table(
            f"One checkpoint beside a 1 ms thread ticker and a 1 ms asyncio ticker, "
            f"median of {repeats} (1% changed before each delta)",
            [
                "entries",
                "container",
                "path",
                "case",
                "checkpoint s",
                "CPU ms",
                "longest stretch ms",
                "thread max ms",
                "thread p99 ms",
                "asyncio max ms",
                "asyncio p99 ms",
                "longest GC ms",
                "gen-2 GCs",
                "gen-2 pause ms",
                "saved as",
                "longest wait ends at",
            ],
            rows,
            note=(
                "CPU: the checkpointing thread's CPU time (about its GIL time; compression runs"
                " in a worker thread without the GIL). Longest stretch: its longest stretch of "
                "CPU between two yields, as the boot reports it "
                "(CheckpointReport.longest_hold_seconds). Thread/asyncio max: the longest a "
                "ticker woke late during the checkpoint (between bytecodes the GIL changes "
                "hands after 5 ms; one C call holds it to its end). Longest GC: the longest "
                "collection of any generation during the checkpoint, in any thread, worst "
                "sample (the collector holds the GIL meanwhile; a young collection walks the "
                "objects the service made since the last one, whichever thread's allocation "
                "triggers it). Gen-2: collections of the oldest generation during the "
                "checkpoint and their pause (collector on, nothing frozen). Saved as: what the "
                "checkpoint wrote for the section. Longest wait ends at: the innermost "
                "warmstart frame of the checkpointing thread when the thread ticker woke after "
                "its longest delay, in the worst sample; '(parked)' when that thread was "
                "pausing between slices (the ticker waited for something else: another thread, "
                "the collector, the scheduler)." + realtime_note
            ),
        )
    )
    report.raw = raw
    return report


def _row(n: int, kind: str, path: str, case: str, runs: list[Sample]) -> list[Any]:
    probes = [r.probe for r in runs]
    worst = max(probes, key=lambda p: p.thread.max)
    culprit = worst.stalls[0].culprit(thread="MainThread") if worst.stalls else "-"
    kinds = sorted({r.kind for r in runs})
    return [
        n,
        kind,
        path,
        case,
        median([r.wall for r in runs]),
        1000 * median([r.cpu for r in runs]),
        1000 * median([r.longest for r in runs]),
        1000 * median([p.thread.max for p in probes]),
        1000 * median([p.thread.p99 for p in probes]),
        1000 * median([p.loop.max for p in probes]),
        1000 * median([p.loop.p99 for p in probes]),
        1000 * max(p.gc.longest for p in probes),
        median([float(p.gc.gen2) for p in probes]),
        1000 * median([p.gc.gen2_pause for p in probes]),
        "/".join(kinds),
        culprit,
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stall", description=__doc__)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SIZES} entries, 2 repeats")
    parser.add_argument("--sizes", help="comma-separated entry counts")
    parser.add_argument("--repeats", type=int, help="saves per case (default 5, --quick 2)")
    parser.add_argument("--containers", default=",".join(CONTAINERS))
    parser.add_argument("--paths", default=",".join(PATHS), help="Store.save,boot.checkpoint()")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument(
        "--realtime", action="store_true", help="tickers at a real-time priority (SCHED_FIFO)"
    )
    parser.add_argument("--json", type=Path, help="also write every raw measurement here")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    sizes = QUICK_SIZES if args.quick else SIZES
    if args.sizes:
        sizes = tuple(int(s) for s in args.sizes.split(","))
    repeats = args.repeats or (2 if args.quick else 5)
    workdir = Path(tempfile.mkdtemp(prefix="warmstart-stall-", dir=args.workdir))
    print(f"[stall] {machine()} {versions()}", flush=True)
    try:
        report = bench_stall(
            sizes,
            repeats,
            workdir,
            containers=tuple(args.containers.split(",")),
            paths=tuple(args.paths.split(",")),
            cases=tuple(args.cases.split(",")),
            realtime=args.realtime,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return finish(report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
