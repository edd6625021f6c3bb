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
  untracked, so every entry is read and hashed and diffed;
- ``tracked delta``: the same change on a tracked container
  (``warmstart.track(cache)``; ``TrackedDict`` for the dict).

Nothing is frozen out of the collector's sight: the records live in the heap
as they do in a service, so a generation-2 collection that a checkpoint
triggers walks all of them. Each figure is the median of ``repeats`` saves;
the culprit is the innermost ``warmstart`` frame of the worker when the
thread ticker woke after its longest delay (the call that held the GIL ends
on that line).

Run: ``python -m benchmarks.stall [--quick] [--sizes 50000,1000000]``.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cachetools

import warmstart
from benchmarks._common import Report, Table, finish, machine, median, versions
from benchmarks.generate_data import RECORDS, change_some, make_records
from benchmarks.probe import Probe, ProbeResult

SIZES = (50_000, 1_000_000)
QUICK_SIZES = (50_000,)
NAMESPACE = "stall"
SECTION = "cache"
FRACTION = 0.01
CONTAINERS = ("LRUCache", "dict")
PATHS = ("Store.save", "boot.checkpoint()")
CASES = ("full", "delta-mode base", "hash delta", "tracked delta")


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
    path: str, kind: str, n: int, case: str, root: Path
) -> Iterator[tuple[Any, Callable[[], Any]]]:
    """(container, one checkpoint) for ``case`` through ``path``."""
    tracked = case == "tracked delta"
    if path == "Store.save":
        container = _container(kind, n, tracked=tracked)
        lock = threading.RLock()
        sections = {SECTION: (RECORDS, container, lock)}
        mode = (
            "full" if case == "full" else "delta" if case.startswith(("hash", "delta")) else "auto"
        )
        with warmstart.Store(root) as store:
            yield container, lambda: store.save(NAMESPACE, sections, mode=mode)
        return

    holder: dict[str, Any] = {}

    @warmstart.warm(cache=warmstart.state(RECORDS, section=SECTION, lock="lock"))
    class Service:
        def __init__(self) -> None:
            self.lock = threading.RLock()
            self.cache = _container(kind, n, tracked=tracked)
            holder["service"] = self

    # interval: the checkpointer saves in delta mode (a tick in an hour never comes).
    interval = None if case in ("full", "tracked delta") else 3600.0
    boot = warmstart.boot(
        root, namespace=NAMESPACE, interval=interval, signals=False, checkpoint_on_exit=False
    )
    with boot:
        Service()
    try:
        yield holder["service"].cache, boot.checkpoint
    finally:
        boot.close()


def _measure(
    path: str, kind: str, n: int, case: str, repeats: int, root: Path
) -> list[tuple[float, ProbeResult]]:
    """``repeats`` probed checkpoints of one case: (wall seconds, probe) each."""
    out = []
    with _saver(path, kind, n, case, root) as (container, save):
        gc.collect()
        next_id = n
        deltas = case in ("hash delta", "tracked delta")
        if deltas:
            save()  # the base the deltas build on
        # Only the first delta-mode save of a store writes the base: one sample a store.
        for r in range(1 if case == "delta-mode base" else repeats):
            if deltas:
                _, inserts, _ = change_some(container, FRACTION, seed=r + 1, next_id=next_id)
                next_id += inserts
            with Probe() as probe:
                started = time.perf_counter()
                generation = save()
                wall = time.perf_counter() - started
            if generation is None:
                msg = f"{path} {kind} {case}: the checkpoint failed"
                raise RuntimeError(msg)
            assert probe.result is not None
            out.append((wall, probe.result))
    return out


def bench_stall(
    sizes: tuple[int, ...],
    repeats: int,
    workdir: Path,
    *,
    containers: tuple[str, ...] = CONTAINERS,
    paths: tuple[str, ...] = PATHS,
) -> Report:
    report = Report("Checkpoint stalls")
    rows = []
    raw: dict[str, Any] = {}
    for n in sizes:
        for kind in containers:
            for path in paths:
                for case in CASES:
                    runs: list[tuple[float, ProbeResult]] = []
                    # A base is written once per store: take a fresh store per sample.
                    rounds = repeats if case == "delta-mode base" else 1
                    for i in range(rounds):
                        root = workdir / f"{n}-{kind}-{path[:5]}-{case.replace(' ', '-')}-{i}"
                        runs += _measure(path, kind, n, case, repeats, root)
                        shutil.rmtree(root, ignore_errors=True)
                        gc.collect()
                    rows.append(_row(n, kind, path, case, runs))
                    raw[f"{n} {kind} {path} {case}"] = [
                        {
                            "wall": wall,
                            "thread_max": p.thread.max,
                            "loop_max": p.loop.max,
                            "gen2": p.gc.gen2,
                            "gen2_pause": p.gc.gen2_pause,
                            "stalls": [(s.delay, s.culprit()) for s in p.stalls],
                        }
                        for wall, p in runs
                    ]
                    print(
                        f"[stall] {n:,} {kind} {path} {case}: "
                        f"{rows[-1][4] * 1000:.0f} ms wall, thread max {rows[-1][5]:.0f} ms",
                        flush=True,
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
                "thread max ms",
                "thread p99 ms",
                "asyncio max ms",
                "asyncio p99 ms",
                "gen-2 GCs",
                "gen-2 pause ms",
                "longest hold ends at",
            ],
            rows,
            note=(
                "Thread/asyncio max: the longest a ticker woke late during the checkpoint, about "
                "the longest uninterrupted GIL hold (between bytecodes the GIL changes hands "
                "every 5 ms; one C call holds it to its end). Gen-2: collections of the oldest "
                "generation during the checkpoint and their pause (collector on, nothing frozen)."
                " Longest hold ends at: the innermost warmstart frame of the checkpointing thread "
                "when the thread ticker woke after its longest delay, in the worst sample."
            ),
        )
    )
    report.raw = raw
    return report


def _row(
    n: int, kind: str, path: str, case: str, runs: list[tuple[float, ProbeResult]]
) -> list[Any]:
    walls = [w for w, _ in runs]
    probes = [p for _, p in runs]
    worst = max(probes, key=lambda p: p.thread.max)
    culprit = worst.stalls[0].culprit() if worst.stalls else "-"
    return [
        n,
        kind,
        path,
        case,
        median(walls),
        1000 * median([p.thread.max for p in probes]),
        1000 * median([p.thread.p99 for p in probes]),
        1000 * median([p.loop.max for p in probes]),
        1000 * median([p.loop.p99 for p in probes]),
        median([float(p.gc.gen2) for p in probes]),
        1000 * median([p.gc.gen2_pause for p in probes]),
        culprit,
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stall", description=__doc__)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SIZES} entries, 2 repeats")
    parser.add_argument("--sizes", help="comma-separated entry counts")
    parser.add_argument("--repeats", type=int, help="saves per case (default 5, --quick 2)")
    parser.add_argument("--containers", default=",".join(CONTAINERS))
    parser.add_argument("--paths", default=",".join(PATHS), help="Store.save,boot.checkpoint()")
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
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return finish(report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
