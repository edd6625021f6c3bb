"""``benchmarks/workers.py`` runs end to end at a toy size (figures: docs/benchmarks.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytest.importorskip("gunicorn")
pytest.importorskip("cachetools")

from benchmarks.workers import Sizes, bench_workers, hottest_served, route, zipf_ranks  # noqa: E402


def test_routing_and_keys() -> None:
    ranks = zipf_ranks(1000, 5000, seed=1)
    assert ranks.count(0) > ranks.count(10) > ranks.count(500)
    assert [route("balanced", False, 7, i) for i in range(5)] == [0, 1, 2, 3, 0]
    assert route("sticky", True, 7, 0) == route("sticky", False, 7, 0) == 3
    assert route("sticky, moved", True, 7, 0) == 0
    assert hottest_served("sticky", 1, 100, 3) == {"k1", "k5", "k9"}


def test_the_benchmark_runs(tmp_path: Path) -> None:
    sizes = Sizes(keys=400, capacity=50, warmup=800, measure=200, cost_entries=2000)
    report = bench_workers(sizes, tmp_path, traffics=("sticky",), strategies=(("pool", "pool"),))
    (row,) = report.tables[0].rows
    (result,) = report.raw["results"]
    assert row[:2] == ["sticky", "pool"]
    assert len(result["pool_back"]) == len(result["own_back"]) == 4
    assert all(n > 0 for n in result["pooled"])  # every worker merged the others' slots
    assert 0 < result["hit_ratio"] <= 1
    own, pooled = (row for row in report.tables[1].rows if row[1] == "eager")
    assert (own[3], pooled[3]) == (0, 1500)  # the pool took 3/4 of a full cache from the peers
