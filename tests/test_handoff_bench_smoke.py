"""benchmarks/handoff.py at a toy size, so that it cannot rot between full runs (issue 18).

The figures mean nothing at this size; what is checked is that the service,
the successors and the report run end to end, and that a successor with
hand-off holds the writes one without it misses.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks.handoff import bench_handoff


def _check(report, layouts: int) -> None:  # type: ignore[no-untyped-def]
    (table, costs) = report.tables
    assert len(table.rows) == 2 * layouts
    for row in table.rows:
        assert len(row) == len(table.columns)
    without, with_handoff = table.rows[0], table.rows[1]
    assert with_handoff[2] < without[2]  # a fresher state
    assert len(costs.rows) == 1  # the idle services are watched only in real runs
    assert all(check.verdict in ("PASS", "FAIL") for check in report.checks)


def test_one_host(tmp_path: Path) -> None:
    _check(bench_handoff("tiny", tmp_path, two_hosts=False), layouts=1)


@pytest.mark.slow
def test_two_hosts(tmp_path: Path) -> None:
    _check(bench_handoff("tiny", tmp_path), layouts=2)
