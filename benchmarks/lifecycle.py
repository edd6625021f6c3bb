"""A long-lived boot: attaching many objects, and data.mdb over many periodic checkpoints.

Issue 14's two measures:

- **attach**: 1,000 / 10,000 / 100,000 instances of a keyed ``@warm`` class
  built inside one boot, warm (each restores its own section) and cold. 0.1
  scanned lists per attach (quadratic: 8,000 took 18 s).
- **data.mdb**: a long-lived boot with ``interval=`` over a cache of 20,000
  churning entries (20% rewritten between checkpoints), 200 periodic
  checkpoints; the file size after 40, 120 and 200 against the bound (12
  generations' stored bytes + 1 MiB). 0.1 kept its restore's read
  transaction open, so LMDB could not reuse pages: 14 MiB after 40, 43 MiB
  after 120.

``python -m benchmarks.lifecycle [--quick]``
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

import warmstart
from benchmarks._common import Check, Report, Table, finish, median

ATTACH = (1_000, 10_000, 100_000)
CHURN_ENTRIES = 20_000
CHECKPOINTS = 200


class Small(msgspec.Struct):
    id: int
    name: str


SMALL = warmstart.Contract("small", Small, key=int)


@warmstart.warm(key="shard", rows=SMALL)
class Shard:
    def __init__(self, shard: int) -> None:
        self.shard = shard
        self.rows: dict[int, Small] = {}


@warmstart.warm(rows=SMALL)
class Cache:
    def __init__(self) -> None:
        self.rows: dict[int, Small] = {}


def _boot(path: Path, **options: Any) -> warmstart.Boot:
    return warmstart.boot(
        path, namespace="bench", signals=False, store_options={"sync": False}, **options
    )


def attach_seconds(n: int, workdir: Path, repeats: int) -> tuple[float, float]:
    """(cold, warm) median seconds to build and attach ``n`` keyed instances."""
    cold, warm = [], []
    for _ in range(repeats):
        path = workdir / f"attach-{n}"
        shutil.rmtree(path, ignore_errors=True)
        with _boot(path) as b:
            started = time.perf_counter()
            shards = [Shard(i) for i in range(n)]
            cold.append(time.perf_counter() - started)
            for shard in shards:
                shard.rows[shard.shard] = Small(shard.shard, "x")
        with _boot(path, checkpoint_on_exit=False) as b:
            started = time.perf_counter()
            shards = [Shard(i) for i in range(n)]
            warm.append(time.perf_counter() - started)
        b.close()
        assert shards[-1].rows == {n - 1: Small(n - 1, "x")}
    return median(cold), median(warm)


def data_file_growth(
    workdir: Path, entries: int, checkpoints: int, *, pinned: bool = False
) -> dict[str, Any]:
    """data.mdb after each 40 checkpoints of a long-lived boot over a churning cache.

    ``pinned``: hold a read transaction of the restored generation open
    meanwhile, as 0.1's boot did, for the comparison.
    """
    path = workdir / ("pinned" if pinned else "churn")
    shutil.rmtree(path, ignore_errors=True)
    with _boot(path) as b:
        Cache().rows.update({i: Small(i, "seed") for i in range(entries)})
    sizes: dict[int, int] = {}
    with _boot(path, interval=3600) as b:  # ticks driven by hand, at full speed
        cache = Cache()
        assert b.store is not None
        held = b.store.load("bench") if pinned else None
        for tick in range(1, checkpoints + 1):
            step = tick * entries // 5
            for i in range(step, step + entries // 5):
                cache.rows[i % entries] = Small(i % entries, f"tick {tick}")
            b._tick()
            if tick % 40 == 0:
                sizes[tick] = (path / "data.mdb").stat().st_size
        if held is not None:
            held.close()
        with warmstart.Store(path, readonly=True) as store:
            generation = store.generations("bench")[0]
    one = max(generation.stored_bytes, 1)
    return {"sizes": sizes, "generation_bytes": one, "bound": 12 * one + (1 << 20)}


def bench_lifecycle(quick: bool, workdir: Path) -> Report:
    sizes = ATTACH[:2] if quick else ATTACH
    report = Report("Lifecycle")
    rows = []
    for n in sizes:
        cold, warm = attach_seconds(n, workdir, repeats=1 if n >= 100_000 or quick else 3)
        rows.append([n, cold, warm, 1e6 * warm / n])
        report.raw[f"attach_{n}"] = {"cold": cold, "warm": warm}
    report.tables.append(
        Table(
            "Attach: keyed @warm instances built in one boot (median seconds)",
            ["instances", "cold s", "warm s", "warm us per instance"],
            rows,
            note="Warm: each instance restores its own section from the boot's generation.",
        )
    )
    per = [r[3] for r in rows]
    report.checks.append(
        Check(
            "attach is linear: us per instance at the largest size / at 1,000",
            per[-1] / per[0],
            "<= 3",
            per[-1] / per[0] <= 3,
        )
    )
    checkpoints = 60 if quick else CHECKPOINTS
    growth = data_file_growth(workdir, CHURN_ENTRIES, checkpoints)
    pinned = data_file_growth(workdir, CHURN_ENTRIES, checkpoints, pinned=True)
    report.raw["data_file"] = growth
    report.raw["data_file_pinned"] = pinned
    report.tables.append(
        Table(
            f"data.mdb of a long-lived boot: {CHURN_ENTRIES:,} entries, 20% rewritten per "
            "checkpoint",
            ["checkpoints", "data.mdb MiB", "with a read transaction held (0.1) MiB", "bound MiB"],
            [
                [tick, size / 2**20, pinned["sizes"][tick] / 2**20, growth["bound"] / 2**20]
                for tick, size in sorted(growth["sizes"].items())
            ],
            note=(
                "Bound: 12 generations' stored bytes + 1 MiB (keep=3 generations, the pages "
                "LMDB frees per commit and reuses from the next, and the B-tree's own). "
                f"One generation: {growth['generation_bytes'] / 2**20:.2f} MiB."
            ),
        )
    )
    last = max(growth["sizes"].values())
    report.checks.append(
        Check(
            f"data.mdb after {checkpoints} checkpoints, MiB",
            last / 2**20,
            f"<= {growth['bound'] / 2**20:.1f}",
            last <= growth["bound"],
        )
    )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="warmstart-lifecycle-"))
    try:
        report = bench_lifecycle(args.quick, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return finish(report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
