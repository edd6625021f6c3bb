"""Warm start end to end: real service processes, signals, kills, releases and damaged stores.

The services are the scripts in ``tests/services/``: ``kv_service.py`` (a
key-value service driven over stdin), and ``release_v1.py``/``release_v2.py``
(two releases of a pricing service whose quote contract changed). Every test
starts them as separate processes on a real store directory, and checks what
the next process comes back with.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import lmdb
import pytest

import warmstart

SERVICES = Path(__file__).with_name("services")
TIMEOUT = 30.0


class Service:
    """One service process, spoken to over stdin and stdout (JSON lines)."""

    def __init__(self, script: str, *args: object) -> None:
        # As if started from a shell with job control: a suite run in the
        # background of a plain shell has SIGINT ignored, and the service
        # would inherit that (the boot rightly keeps an ignored SIGINT).
        ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, str(SERVICES / script), *map(str, args)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        finally:
            if ignored:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        self._pumps = [
            threading.Thread(target=self._pump, daemon=True),
            threading.Thread(target=self._pump_stderr, daemon=True),
        ]
        for pump in self._pumps:
            pump.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        self._stderr.extend(self.proc.stderr)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def read(self, event: str | None = None) -> dict[str, Any]:
        """The next JSON line (of that event); fails if the process ends first."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            if line is None:
                self.wait()
                msg = f"service ended before {event!r}: {self.stderr}"
                raise AssertionError(msg)
            message: dict[str, Any] = json.loads(line)
            if event is None or message["event"] == event:
                return message

    def send(self, command: str) -> dict[str, Any]:
        """Send one command and return its answer."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self) -> int:
        """Wait for the exit status and the end of its output."""
        status = self.proc.wait(timeout=TIMEOUT)
        for pump in self._pumps:
            pump.join(TIMEOUT)
        return status

    def rest(self) -> list[dict[str, Any]]:
        """Every JSON line left, after the process ended."""
        self.wait()
        out = []
        while (line := self.lines.get(timeout=TIMEOUT)) is not None:
            out.append(json.loads(line))
        return out


@pytest.fixture
def services() -> Iterator[list[Service]]:
    """Started services; any still running at the end is killed."""
    started: list[Service] = []
    yield started
    for service in started:
        if service.proc.poll() is None:
            service.proc.kill()
        service.wait()
        for pipe in (service.proc.stdin, service.proc.stdout, service.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def run(services: list[Service]) -> Any:
    """Start a service script and return it."""

    def start(script: str, *args: object) -> Service:
        service = Service(script, *args)
        services.append(service)
        return service

    return start


def kv(run: Any, store: Path, *options: object) -> tuple[Service, dict[str, Any]]:
    """Start the key-value service and read its boot report."""
    service = run("kv_service.py", store, *options)
    return service, service.read("booted")


def release(run: Any, script: str, store: Path, *args: object) -> tuple[dict[str, Any], int]:
    """Run one release of the pricing service to completion; its boot report and status."""
    service = run(script, store, *args)
    lines = service.rest()
    booted = [line for line in lines if line["event"] == "booted"]
    return (booted[0] if booted else {}), service.proc.returncode


def head(store: Path, namespace: str) -> int:
    with warmstart.Store(store, readonly=True) as opened, opened.load(namespace) as snapshot:
        return snapshot.generation


def flip_chunks(store: Path, digests: Iterable[bytes] | None = None) -> int:
    """Flip one byte in the middle of chunk values, in data.mdb, through LMDB itself."""
    wanted = None if digests is None else set(digests)
    env = lmdb.open(str(store), max_dbs=8, subdir=True)
    try:
        chunks = env.open_db(b"chunks", create=False)
        with env.begin(write=True) as txn:
            doomed = [
                (bytes(key), bytearray(value))
                for key, value in txn.cursor(db=chunks)
                if wanted is None or bytes(key)[4:] in wanted
            ]
            for key, value in doomed:
                value[len(value) // 2] ^= 0xFF
                txn.put(key, bytes(value), db=chunks)
    finally:
        env.close()
    return len(doomed)


class TestSignals:
    """SIGTERM and SIGINT checkpoint, then the process goes on as it would have."""

    def test_sigterm_saves_then_dies_by_the_signal(self, run: Any, tmp_path: Path) -> None:
        """A service restored, sent SIGTERM and restarted has its state back."""
        store = tmp_path / "store"
        service, booted = kv(run, store)
        assert booted["status"] == "cold"
        service.send("put a 1 b 2")
        service.signal(signal.SIGTERM)
        assert service.wait() == -signal.SIGTERM  # the default behaviour, after saving
        service, booted = kv(run, store)
        assert (booted["status"], booted["generation"]) == ("warm", 1)
        assert booted["items"] == {"a": "1", "b": "2"}
        service.send("put c 3")
        service.signal(signal.SIGTERM)
        assert service.wait() == -signal.SIGTERM
        _, booted = kv(run, store)
        assert booted["items"] == {"a": "1", "b": "2", "c": "3"}
        assert booted["generation"] == 2

    def test_sigterm_chains_to_the_installed_handler(self, run: Any, tmp_path: Path) -> None:
        """A SIGTERM handler installed before the boot still runs, after the checkpoint."""
        store = tmp_path / "store"
        service, _ = kv(run, store, "--handler", "exit7")
        service.send("put a 1")
        service.signal(signal.SIGTERM)
        assert service.read("handler")["signal"] == signal.SIGTERM
        assert service.wait() == 7
        _, booted = kv(run, store)
        assert booted["items"] == {"a": "1"}

    def test_sigint_saves_then_interrupts(self, run: Any, tmp_path: Path) -> None:
        """SIGINT checkpoints, then raises KeyboardInterrupt as Python's own handler would."""
        store = tmp_path / "store"
        service, _ = kv(run, store)
        service.send("put a 1")
        service.signal(signal.SIGINT)
        assert service.wait() in (-signal.SIGINT, 1)
        assert "KeyboardInterrupt" in service.stderr
        _, booted = kv(run, store)
        assert booted["items"] == {"a": "1"}

    def test_a_checkpoint_past_its_deadline_keeps_the_previous_generation(
        self, run: Any, tmp_path: Path
    ) -> None:
        """A SIGTERM checkpoint that cannot finish in time: the process ends, the head stays."""
        store = tmp_path / "store"
        service, _ = kv(run, store, "--deadline", "0.5")
        service.send("put a 1")
        assert service.send("checkpoint")["generation"] == 1
        service.send("put b 2")
        service.send("block")  # no checkpoint can finish from now on
        started = time.monotonic()
        service.signal(signal.SIGTERM)
        assert service.wait() == -signal.SIGTERM
        assert time.monotonic() - started < 5
        assert head(store, "kv") == 1
        _, booted = kv(run, store)
        assert booted["items"] == {"a": "1"}

    def test_atexit_saves_a_startup_only_boot(self, run: Any, tmp_path: Path) -> None:
        """A boot left open after startup (``checkpoint_on_exit=False``) saves at exit."""
        store = tmp_path / "store"
        service, _ = kv(run, store, "--startup-only")
        service.send("put a 1")
        service.close_stdin()
        assert service.wait() == 0
        _, booted = kv(run, store)
        assert booted["items"] == {"a": "1"}


class TestKill:
    """A SIGKILL loses at most what changed since the last periodic checkpoint."""

    @staticmethod
    def settle(service: Service) -> int:
        """Wait for a periodic checkpoint that started after now; return its generation."""
        first = service.send("stats")["checkpoints"]
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            stats = service.send("stats")
            if stats["checkpoints"] >= first + 2:
                return int(stats["generation"])
            time.sleep(0.05)
        msg = "no periodic checkpoint"
        raise AssertionError(msg)

    def test_kill_between_periodic_checkpoints(self, run: Any, tmp_path: Path) -> None:
        """After kill -9 a restart has all up to the last checkpoint, and no breaker trips."""
        store = tmp_path / "store"
        service, _ = kv(run, store, "--interval", "0.3")
        service.send("put " + " ".join(f"a{i} {i}" for i in range(20)))
        settled = self.settle(service)
        service.send("put " + " ".join(f"b{i} {i}" for i in range(20)))
        service.signal(signal.SIGKILL)
        assert service.wait() == -signal.SIGKILL
        first = {f"a{i}": str(i) for i in range(20)}
        later = {f"b{i}": str(i) for i in range(20)}

        # Killed while running (not while restoring): the next boot is warm.
        service, booted = kv(run, store, "--interval", "0.3")
        assert booted["status"] == "warm", booted
        assert booted["generation"] >= settled
        items = booted["items"]
        assert first.items() <= items.items()  # nothing before the last checkpoint is lost
        assert set(items) - set(first) <= set(later)  # and nothing else appears
        assert all(items[k] == later[k] for k in set(items) - set(first))
        service.send("put c 1")
        settled = self.settle(service)
        service.signal(signal.SIGKILL)
        service.wait()
        _, booted = kv(run, store)
        assert booted["status"] == "warm"
        assert booted["generation"] >= settled
        assert booted["items"]["c"] == "1"
        assert booted["fallback"] == []


class TestReleases:
    """A contract upgrade and a rollback, across two releases of one service."""

    def test_upgrade_then_rollback(self, run: Any, tmp_path: Path) -> None:
        """v2 upgrades what v1 wrote; v1, rolled back to, reads what v2 wrote."""
        store = tmp_path / "store"
        booted, status = release(run, "release_v1.py", store, "A=1", "B=2")
        assert (status, booted["status"]) == (0, "cold")

        booted, status = release(run, "release_v2.py", store, "C=3:EUR")
        assert status == 0
        assert booted["quotes"] == {"A": [1.0, "USD"], "B": [2.0, "USD"]}
        quotes = booted["sections"]["PriceService.quotes"]
        assert (quotes["status"], quotes["restored"], quotes["upgraded"]) == ("warm", 2, 2)
        assert booted["settings"] == "hello from v1"

        # Rollback: release 1 ignores the currency it does not know.
        booted, status = release(run, "release_v1.py", store)
        assert status == 0
        assert booted["status"] == "warm"
        assert booted["warnings"] == []
        assert booted["quotes"] == {"A": [1.0], "B": [2.0], "C": [3.0]}

        # Forward again: release 1 wrote version 1, so everything is upgraded.
        booted, _ = release(run, "release_v2.py", store)
        assert booted["quotes"] == {"A": [1.0, "USD"], "B": [2.0, "USD"], "C": [3.0, "USD"]}
        assert booted["sections"]["PriceService.quotes"]["upgraded"] == 3

    def test_a_rollback_it_cannot_read_starts_that_section_cold(
        self, run: Any, tmp_path: Path
    ) -> None:
        """A release that cannot read a newer contract starts that section cold, and only it."""
        store = tmp_path / "store"
        release(run, "release_v1.py", store, "A=1")
        booted, _ = release(run, "release_v2.py", store, "--renamed", "B=2:EUR")
        assert booted["quotes"] == {"A": [1.0, "USD"]}  # upgraded through v2 to v3
        assert booted["sections"]["PriceService.quotes"]["upgraded"] == 1

        booted, status = release(run, "release_v1.py", store)
        assert status == 0
        assert booted["status"] == "partial"
        assert booted["quotes"] == {}
        quotes = booted["sections"]["PriceService.quotes"]
        assert quotes["status"] == "cold"
        assert "'price' is required by v1 but not written by v3" in quotes["reason"]
        assert booted["sections"]["PriceService.settings"]["status"] == "warm"
        assert booted["settings"] == "hello from v1"
        assert any(w.startswith("ColdStartWarning") for w in booted["warnings"])


class TestCorruptStore:
    """Damaged chunks: fall back to the newest generation that verifies, else start cold."""

    def test_head_damaged_falls_back(self, run: Any, tmp_path: Path) -> None:
        """Bytes flipped in chunks only the head uses: the previous generation is used."""
        store = tmp_path / "store"
        service, _ = kv(run, store)
        service.send("put a 1")
        service.send("exit")
        service.wait()
        service, _ = kv(run, store)
        service.send("put b 2")
        service.send("exit")
        service.wait()
        with warmstart.Store(store, readonly=True) as opened:
            only_head = opened.manifest("kv", 2).digests() - opened.manifest("kv", 1).digests()
        assert flip_chunks(store, only_head) >= 1

        service, booted = kv(run, store)
        assert booted["status"] == "warm"
        assert booted["generation"] == 1
        assert booted["items"] == {"a": "1"}
        assert booted["reason"] == "newest generation that verifies (1 skipped)"
        assert len(booted["fallback"]) == 1
        assert "generation 2" in booted["fallback"][0]

    def test_everything_damaged_starts_cold(self, run: Any, tmp_path: Path) -> None:
        """When no generation verifies, the service starts cold, says why, and saves anew."""
        store = tmp_path / "store"
        service, _ = kv(run, store)
        service.send("put a 1")
        service.send("exit")
        service.wait()
        assert flip_chunks(store) >= 1

        service, booted = kv(run, store)
        assert booted["status"] == "cold"
        assert booted["reason"].startswith("checkpoint unreadable")
        assert booted["items"] == {}
        assert any(w.startswith("ColdStartWarning") for w in booted["warnings"])
        service.send("put z 26")
        service.send("exit")
        assert service.wait() == 0
        _, booted = kv(run, store)
        assert booted["items"] == {"z": "26"}


class TestCrashLoopBreaker:
    """A boot that dies while restoring makes the next one start cold and quarantine the data."""

    @pytest.mark.parametrize("how", ["exit", "kill"])
    def test_death_in_an_upgrader(self, run: Any, tmp_path: Path, how: str) -> None:
        """Killed inside the upgrader, then: cold once, the generation quarantined, warm again."""
        store = tmp_path / "store"
        release(run, "release_v1.py", store, "A=1", "B=2")

        _, status = release(run, "release_v2.py", store, "--crash", how)
        assert status == (3 if how == "exit" else -signal.SIGKILL)
        with warmstart.Store(store, readonly=True) as opened:
            assert any(name.startswith("restoring-") for name in opened.markers("pricing"))

        booted, status = release(run, "release_v2.py", store, "D=4:USD")
        assert status == 0
        assert booted["status"] == "cold"
        assert "crash-loop breaker" in booted["reason"]
        assert "died while restoring generation 1" in booted["reason"]
        assert booted["quotes"] == {}
        assert any(w.startswith("ColdStartWarning") for w in booted["warnings"])
        with warmstart.Store(store, readonly=True) as opened:
            assert list(opened.quarantined("pricing")) == [1]
            assert opened.markers("pricing") == {}
            assert [g.generation for g in opened.generations("pricing")] == [2, 1]

        # The cold boot saved a generation of its own; the next boot uses it.
        booted, _ = release(run, "release_v2.py", store)
        assert (booted["status"], booted["generation"]) == ("warm", 2)
        assert booted["quotes"] == {"D": [4.0, "USD"]}

    def test_a_live_restorer_is_left_alone(self, tmp_path: Path) -> None:
        """A marker of a process that is still alive is another worker restoring: no breaker."""
        store_path = tmp_path / "store"
        with warmstart.Store(store_path) as store:
            store.save("pricing", {})
            # This process is alive; the marker says it restores generation 1.
            other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
            try:
                marker = (1).to_bytes(8, "big") + bytes(8)
                store.set_marker("pricing", f"restoring-{other.pid}-0000", marker)
                with warmstart.boot(store, namespace="pricing", signals=False) as b:
                    pass
                assert b.report.status == "warm"
                assert store.quarantined("pricing") == {}
            finally:
                other.kill()
                other.wait()
            b = warmstart.boot(store, namespace="pricing", signals=False)
            with pytest.warns(warmstart.ColdStartWarning, match="crash-loop breaker"):
                b.__enter__()
            b.__exit__(None, None, None)
            assert b.report.status == "cold"
            assert list(store.quarantined("pricing")) == [1]
