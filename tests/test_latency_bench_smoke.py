"""The GIL-hold probe sees a known stall; the stall and latency benchmarks run at toy sizes.

Figures at these sizes mean nothing (the real runs are ``python -m
benchmarks.stall`` and ``python -m benchmarks.latency``, docs/benchmarks.md);
what is checked is that the probe measures what it claims and that both
benchmarks run end to end.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.probe import DelayStats, Probe, percentile, probe  # noqa: E402
from benchmarks.stall import (  # noqa: E402
    BOOT_ONLY,
    CASES,
    CONTAINERS,
    NO_CONTAINER,
    NO_PATH,
    PATHS,
    bench_stall,
)


def _long_c_call(kept: list[list[int]]) -> float:
    """Seconds of one C call that never lets go of the GIL (build and sort 3M ints).

    The list goes to ``kept``, for the caller to free after the probe:
    freeing it is a second hold, and the GIL may change hands between the
    two, which would split the stall the tickers see in two.
    """
    started = time.perf_counter()
    kept.append(sorted(range(3_000_000)))
    took = time.perf_counter() - started
    # Stay in this frame while the tickers catch up: the one that gets the
    # GIL second takes the stacks, and the worker must still be here.
    time.sleep(0.05)
    return took


def test_probe_sees_a_long_c_call_in_another_thread() -> None:
    took: list[float] = []
    kept: list[list[int]] = []
    worker = threading.Thread(target=lambda: took.append(_long_c_call(kept)), name="worker")
    with Probe() as running:
        worker.start()
        worker.join()
    kept.clear()
    result = running.result
    assert result is not None
    held = took[0]
    assert held > 0.02, "the stall is too short to tell from noise"
    # Both tickers were kept waiting about as long as the call held the GIL.
    assert result.thread.max >= 0.7 * held
    assert result.loop.max >= 0.7 * held
    assert result.thread.max < held + 0.5
    # The stall is attributed to the worker's frame, and lands in a bucket that long.
    assert result.stalls
    assert "_long_c_call" in result.stalls[0].culprit(prefer="tests/")
    assert any(n for label, n in result.thread.histogram if label.startswith((">=", "1", "2", "5")))
    assert "max" in result.summary()


def test_probe_counts_collections_and_stays_quiet_when_idle() -> None:
    def work() -> None:
        time.sleep(0.05)  # releases the GIL: no stall beyond scheduling noise
        gc.collect()

    result, _ = probe(work)
    assert result.gc.gen2 >= 1
    assert result.gc.gen2_pause > 0
    assert result.thread.ticks >= 10
    assert result.loop.ticks >= 10
    assert result.thread.p50 < 0.005


def test_delay_stats() -> None:
    stats = DelayStats.of([0.0005, 0.0015, 0.003, 0.25])
    assert stats.max == 0.25
    assert dict(stats.histogram) == {"<1 ms": 1, "1-2 ms": 1, "2-5 ms": 1, "200-500 ms": 1}
    assert percentile([1.0, 2.0, 3.0], 50) == 2.0
    assert DelayStats.of([]).summary() == "no ticks"


@pytest.mark.usefixtures("frozen_heap")
def test_stall_benchmark_runs(tmp_path: Path) -> None:
    started = time.perf_counter()
    report = bench_stall((2000,), 1, tmp_path, control_seconds=0.1)
    assert time.perf_counter() - started < 30  # about 2 s; generous for a loaded machine
    (table,) = report.tables
    # Store.save has no restore: its rows skip the boot-only cases; the
    # control without a checkpoint is one row per container, and the
    # host's floor (idle, paced spin) one row per size.
    per_path = len(PATHS) * len(CASES) - len(BOOT_ONLY) - (len(PATHS) - 1) * len(NO_PATH)
    floor = (len(CONTAINERS) - 1) * len(NO_CONTAINER)
    assert len(table.rows) == len(CONTAINERS) * per_path - floor
    spin = next(row for row in table.rows if row[3] == "paced spin")
    # The spin ran under the pacer: short stretches, and CPU for most of its time.
    assert spin[table.columns.index("longest stretch ms")] < 50
    assert spin[table.columns.index("CPU ms")] > 30
    assert all(len(row) == len(table.columns) for row in table.rows)
    walls = [row[table.columns.index("checkpoint s")] for row in table.rows]
    assert all(w > 0 for w in walls)


def test_latency_benchmark_runs(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    from benchmarks.latency import bench_latency, summarize, zipf_paths

    paths = zipf_paths(1000, 2000, seed=1)
    hot = sum(p.startswith("/item/0") for p in paths)
    assert hot > 50  # id 0 is the hottest
    report = bench_latency(
        (2000,), 1, 1.0, 2.0, tmp_path, rate=100, configs=(("2 s", 2.0, "default"),)
    )
    (row,) = report.tables[0].rows
    (run,) = report.raw["results"]["2000 2 s"]
    assert run["requests"] > 100
    assert run["boot"] == "warm"
    assert sum(run["errors"].values()) == 0
    assert 0 < run["p50"] <= run["p99"] <= run["max"]
    assert row[0] == 2000
    assert summarize(_no_samples(), (0.0, 1.0))["requests"] == 0


def _no_samples():
    from collections import Counter

    from benchmarks.latency import Samples

    return Samples([], [], [], Counter(), 0)
