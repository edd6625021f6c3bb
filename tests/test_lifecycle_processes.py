"""The boot lifecycle with real processes: fork after boot, signals at start-up (issue 14).

The service is tests/services/lifecycle_service.py; each test runs it as a
subprocess and reads its JSON lines.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

import warmstart

SERVICE = Path(__file__).with_name("services") / "lifecycle_service.py"
NS = "svc"


def run(store: Path, mode: str, *args: object, timeout: float = 60) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, str(SERVICE), str(store), mode, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def start(store: Path, mode: str) -> subprocess.Popen[str]:
    """The service in the background; use it as a context manager (closes its pipes)."""
    return subprocess.Popen(
        [sys.executable, str(SERVICE), str(store), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def restoring(store: Path) -> bool:
    """Whether a marker says "restoring" (its last byte; an idle one says 0)."""
    markers = store / "markers"
    if not markers.is_dir():
        return False
    states = [p.read_bytes()[-1:] for p in markers.iterdir() if not p.name.startswith(".")]
    return b"\x01" in states


def wait_for(proc: subprocess.Popen[str], event: str) -> dict[str, Any]:
    assert proc.stdout is not None
    for line in proc.stdout:
        record = json.loads(line)
        if record["event"] == event:
            return record
    msg = f"the service ended before {event!r}: {proc.stderr.read() if proc.stderr else ''}"
    raise AssertionError(msg)


def state(store: Path) -> tuple[int, dict[str, int], dict[int, str]]:
    """(head generation, {key: n} of the head, quarantined generations)."""
    with warmstart.Store(store, readonly=True) as opened, opened.load(NS) as snapshot:
        contract = warmstart.Contract("row", _Row)
        rows = snapshot.section("Catalog.rows", contract)
        return snapshot.generation, {k: v.n for k, v in rows.items()}, opened.quarantined(NS)


class _Row(msgspec.Struct):
    name: str
    n: int = 0


class TestForkAfterBoot:
    """2. gunicorn's preload_app: the master's idle copy destroyed the workers' state."""

    def test_workers_save_their_own_and_the_idle_master_writes_nothing(
        self, store_path: Path
    ) -> None:
        """Each forked worker checkpoints (periodically and at exit); the master, unchanged
        since its restore, leaves the head its last worker wrote."""
        run(store_path, "seed", 50)
        events = run(store_path, "preload")
        master = next(e for e in events if e["event"] == "master")
        assert (master["status"], master["rows"]) == ("warm", 50)
        workers = [e for e in events if e["event"] == "worker"]
        assert len(workers) == 2
        assert all(w["periodic"] >= 1 for w in workers)  # the periodic thread runs in each child
        final = next(e for e in events if e["event"] == "master-checkpoint")
        assert final["status"] == "skipped"
        assert "another process" in final["error"]
        _, rows, quarantined = state(store_path)
        assert "w1" in rows  # the last worker's state is the head
        assert len(rows) == 51
        assert quarantined == {}


class TestSignals:
    """4. A clean stop (SIGTERM, Ctrl-C) was taken for a crash: the next boot started cold."""

    @pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
    def test_a_stop_during_startup_is_not_a_crash(self, store_path: Path, signum: int) -> None:
        """Stopped while connecting to its database, before any @warm object: next boot warm."""
        run(store_path, "seed", 20)
        generation, _, _ = state(store_path)
        with start(store_path, "startup") as proc:
            assert wait_for(proc, "opened")["status"] == "warm"
            proc.send_signal(signum)
            proc.wait(20)
        assert not restoring(store_path)
        with warmstart.boot(store_path, namespace=NS, signals=False) as b:
            pass
        assert (b.report.status, b.report.fallback) == ("warm", [])
        assert b.report.generation == generation

    def test_a_stop_during_a_restore_is_prompt_and_not_a_crash(self, store_path: Path) -> None:
        """SIGTERM while the main thread restores: exits at once (not after the 20 s
        deadline), clears its marker, and the generation is not quarantined."""
        run(store_path, "seed", 3000)  # about 6 s to restore through the slow upgrader
        generation, _, _ = state(store_path)
        with start(store_path, "restore") as proc:
            wait_for(proc, "opened")
            deadline = time.monotonic() + 20
            while not restoring(store_path):
                assert time.monotonic() < deadline, "the restore never started"
                time.sleep(0.005)
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
        assert time.monotonic() - sent < 5
        assert proc.returncode == -signal.SIGTERM
        assert not restoring(store_path)
        after, _, quarantined = state(store_path)
        assert (after, quarantined) == (generation, {})


class TestMarkers:
    """4. A stray file in markers/, or a long namespace, made every boot cold for ever."""

    def test_stray_and_malformed_markers_are_ignored(self, store_path: Path) -> None:
        """Junk names, a pid beyond the C int range and a wrong length: all skipped."""
        run(store_path, "seed", 5)
        with warmstart.Store(store_path) as store:
            good = struct.pack(">Qd", 1, time.time())
            for name in ("restoring-x-y", f"restoring-{2**40}-beef", "notes.txt"):
                store.set_marker(NS, name, good)
            store.set_marker(NS, "restoring-1-beef", b"short")
        (store_path / "markers" / "README").write_text("not a marker")
        for _ in range(2):
            with warmstart.boot(store_path, namespace=NS, signals=False) as b:
                pass
            assert b.report.status == "warm"

    def test_a_namespace_of_255_bytes_boots_warm(self, store_path: Path) -> None:
        """Marker file names no longer grow with the namespace."""
        namespace = "n" * 255

        @warmstart.warm(rows=warmstart.Contract("row", _Row))
        class Catalog:
            def __init__(self) -> None:
                self.rows: dict[str, _Row] = {}

        with warmstart.boot(store_path, namespace=namespace, signals=False):
            Catalog().rows["a"] = _Row("a")
        with warmstart.boot(store_path, namespace=namespace, signals=False) as b:
            catalog = Catalog()
        assert b.report.status == "warm"
        assert catalog.rows == {"a": _Row("a")}

    def test_a_real_crash_still_trips_the_breaker(self, store_path: Path) -> None:
        """SIGKILL during the restore: the next boot quarantines that generation, once."""
        run(store_path, "seed", 3000)
        generation, _, _ = state(store_path)
        with start(store_path, "restore") as proc:
            wait_for(proc, "opened")
            while not restoring(store_path):
                time.sleep(0.005)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(20)
        with (
            pytest.warns(warmstart.ColdStartWarning, match="crash-loop"),
            warmstart.boot(store_path, namespace=NS, signals=False) as b,
        ):
            pass
        assert b.report.status == "cold"
        with warmstart.Store(store_path, readonly=True) as store:
            assert generation in store.quarantined(NS)
