"""The benchmark suite at toy sizes, so that it cannot rot between full runs.

Figures at these sizes mean nothing; what is checked is that every benchmark
runs end to end (fresh-process children included), checks its own results and
renders. The full suite is ``make bench``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

# benchmarks/ is a package at the repository root, beside src/ and tests/.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import generate_data  # noqa: E402
from benchmarks.codec import bench_codec  # noqa: E402
from benchmarks.delta import bench_delta  # noqa: E402
from benchmarks.hotpaths import bench_profile  # noqa: E402
from benchmarks.importtime import bench_import  # noqa: E402
from benchmarks.run import render  # noqa: E402
from benchmarks.store import bench_store  # noqa: E402

# The benchmarks collect before measuring: keep the suite's own heap out of it.
pytestmark = pytest.mark.usefixtures("frozen_heap")


def _well_formed(report) -> None:
    assert report.tables
    for table in report.tables:
        assert table.rows
        assert all(len(row) == len(table.columns) for row in table.rows)
    assert all(check.verdict in ("PASS", "FAIL", "info") for check in report.checks)


def test_generated_changes_are_what_they_say() -> None:
    data = generate_data.make_records(1000)
    before = dict(data)
    updates, inserts, deletes = generate_data.change_some(data, 0.01, seed=1, next_id=1000)
    assert len(data) == 1000 + inserts - deletes
    assert sum(1 for k in before if k in data and data[k] is not before[k]) == updates
    plain = generate_data.make_record_dicts(3)
    assert generate_data.as_dicts(generate_data.make_records(3)) == plain


def test_codec() -> None:
    report = bench_codec(2000, 1)
    _well_formed(report)
    assert {c.name for c in report.checks} >= {"codec encode / pickle.dumps"}


def test_store(tmp_path: Path) -> None:
    report = bench_store(2000, 100, 1, tmp_path, methods=["warmstart", "pickle", "diskcache"])
    _well_formed(report)
    restored = report.raw["records"]["restores"]
    assert all(run["ok"] for runs in restored.values() for run in runs)
    assert report.raw["records"]["memory"]["structs"]["rss_after"] > 0


def test_delta(tmp_path: Path) -> None:
    report = bench_delta(2000, 1, tmp_path)
    _well_formed(report)
    scenarios = report.raw["scenarios"]
    assert set(scenarios) == {"tracked", "hash", "identity"}
    # A delta writes a small fraction of what a full save does.
    assert all(s["bytes_ratio"] < 0.5 for s in scenarios.values())


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux /proc")
def test_import_and_render(tmp_path: Path) -> None:
    report = bench_import(1)
    _well_formed(report)
    text = render([report], argparse.Namespace(quick=True, only="import", load_before="0.0"))
    assert "| import warmstart |" in text
    assert "**Machine:**" in text


def test_hotpaths(tmp_path: Path) -> None:
    report = bench_profile(2000, tmp_path)
    _well_formed(report)
    assert len(report.tables) == 4


def test_hostile(tmp_path: Path) -> None:
    """Issue 17's inputs, small: refused, each within its bound (a fresh process each)."""
    from benchmarks.hostile import bench_hostile

    report = bench_hostile(True, tmp_path)
    _well_formed(report)
    assert all(check.passed for check in report.checks), report.checks
    assert not any("FOREIGN" in row["outcome"] for row in report.raw["rows"])


def test_a_run_keeps_the_block_it_does_not_measure() -> None:
    from benchmarks.run import KEPT, kept_block

    page = f"# Benchmarks\n\nold tables\n\n{KEPT[0]}\n## Tail latency\n\n| a |\n{KEPT[1]}\n"
    assert kept_block(page) == f"{KEPT[0]}\n## Tail latency\n\n| a |\n{KEPT[1]}"
    assert kept_block("# Benchmarks\n") == ""


def test_lifecycle(tmp_path: Path) -> None:
    from benchmarks.lifecycle import attach_seconds, data_file_growth

    cold, warm = attach_seconds(200, tmp_path, repeats=1)
    assert cold > 0
    assert warm > 0
    growth = data_file_growth(tmp_path, 500, 40)
    pinned = data_file_growth(tmp_path, 500, 40, pinned=True)
    assert growth["sizes"][40] <= growth["bound"]
    assert pinned["sizes"][40] > growth["sizes"][40]  # the comparison measures something
