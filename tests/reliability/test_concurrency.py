"""Concurrency: four processes save and load one store, their own namespaces and a shared one.

Each worker (see ``_workers.py``) saves its own namespace and a shared one in
turns, reloads both, and reads another worker's namespace, checking every
snapshot entry by entry against the generation its watermark names. Own
namespaces mix delta and full saves; in the shared one deltas go stale as the
head moves under each writer, so full bases and deltas interleave.

The parent then checks: no worker saw a torn or inconsistent read, a generation
going backwards or its own last commit missing; the shared namespace's
generations handed out to all workers are distinct and gap-free (no commit lost
or duplicated); and the heads are exactly the last commits. A deadlock shows as
a worker still running at the deadline.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _workers import check_snapshot

import warmstart

WORKERS = Path(__file__).with_name("_workers.py")
PROCESSES = 4


def run_workers(store: Path, seconds: float) -> list[dict[str, Any]]:
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKERS),
                "concurrency",
                str(store),
                str(w),
                str(seconds),
                str(PROCESSES),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(PROCESSES)
    ]
    results = []
    try:
        for proc in procs:
            try:
                out, err = proc.communicate(timeout=seconds + 60)
            except subprocess.TimeoutExpired:
                pytest.fail(f"worker {proc.pid} still running 60 s after its deadline: deadlock")
            assert proc.returncode == 0, err
            results.append(json.loads(out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return results


def check_final_state(store_path: Path, results: list[dict[str, Any]]) -> None:
    shared = sorted(g for r in results for g in r["shared"])
    assert shared == list(range(1, len(shared) + 1)), "shared generations lost or duplicated"
    with warmstart.Store(store_path, readonly=True) as store:
        assert store.verify().ok
        for result in results:
            with store.load(f"own-{result['worker']}") as snapshot:
                assert snapshot.generation == result["last_own"]
                assert snapshot.watermark == [result["worker"], result["counter"]]
                assert check_snapshot(snapshot, writer=result["worker"]) == []
        with store.load("shared") as snapshot:
            assert snapshot.generation == shared[-1]
            writer = next(r for r in results if shared[-1] in r["shared"])
            assert snapshot.watermark == [writer["worker"], writer["counter"]]
            assert check_snapshot(snapshot) == []


def summary(results: list[dict[str, Any]], seconds: float) -> str:
    saves = sum(r["saves"] for r in results)
    loads = sum(r["loads"] for r in results)
    return f"{PROCESSES} processes for {seconds:.0f} s: {saves} saves, {loads} checked loads"


class TestConcurrency:
    def test_four_processes(self, tmp_path: Path) -> None:
        """Four processes saving and loading for 6 s lose no commit and never read a torn state."""
        results = run_workers(tmp_path / "store", seconds=6)
        print(summary(results, 6))
        for result in results:
            assert result["problem_count"] == 0, result["problems"]
            assert result["loads"] > 0
        check_final_state(tmp_path / "store", results)

    @pytest.mark.slow
    def test_four_processes_two_minutes(self, tmp_path: Path) -> None:
        """Four processes saving and loading for two minutes lose nothing and tear nothing."""
        results = run_workers(tmp_path / "store", seconds=120)
        print(summary(results, 120))
        for result in results:
            assert result["problem_count"] == 0, result["problems"]
        check_final_state(tmp_path / "store", results)
