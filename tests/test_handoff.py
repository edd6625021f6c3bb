"""Hand-off to the successor (issue 18), with real processes.

The service is tests/services/rollout_service.py: each test starts
predecessors and successors as separate processes on real stores (and a real
``redis-server`` for two hosts), and checks what the successor came back
with and when.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import warmstart
from remote_workers.servers import RedisServer, _redis  # noqa: F401 - fixture
from test_boot_e2e import Service

NS = "catalog"


@pytest.fixture(name="run")
def _run() -> Iterator[Callable[..., Service]]:
    """Start a service script; any still running at the end is killed."""
    started: list[Service] = []

    def start(script: str, *args: object) -> Service:
        service = Service(script, *args)
        started.append(service)
        return service

    yield start
    for service in started:
        if service.proc.poll() is None:
            service.proc.kill()
        service.wait()
        for pipe in (service.proc.stdin, service.proc.stdout, service.proc.stderr):
            if pipe is not None:
                pipe.close()


def rollout(run: Any, store: Path, *options: object) -> tuple[Service, dict[str, Any]]:
    """Start the service and read its boot report."""
    service = run("rollout_service.py", store, *options)
    return service, service.read("booted")


def send(service: Service, command: str) -> dict[str, Any]:
    """Send a command and read its answer (other lines, such as ``checkpointing``, skipped)."""
    assert service.proc.stdin is not None
    service.proc.stdin.write(command + "\n")
    service.proc.stdin.flush()
    return service.read(command.split(maxsplit=1)[0])


def head(store: Path) -> int | None:
    with warmstart.Store(store, readonly=True) as opened:
        infos = opened.generations(NS)
    return max((i.generation for i in infos), default=None)


def sockets(store: Path) -> list[str]:
    folder = store / "handoff"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


class TestOneHost:
    def test_the_successor_gets_the_writes_made_since_the_last_checkpoint(
        self, run: Any, store_path: Path
    ) -> None:
        """Without hand-off the successor misses what the predecessor wrote since its last
        checkpoint; with it, it restores everything, after one delta checkpoint."""
        old, booted = rollout(run, store_path, "--handoff", 5)
        assert booted["handoff"]["status"] == "none"  # nobody to ask: no wait
        assert booted["handoff"]["seconds"] < 0.5
        send(old, "put a 1 b 2")
        assert send(old, "checkpoint")["status"] == "saved"
        send(old, "put c 3 a 4")  # after the last checkpoint
        _, blind = rollout(run, store_path)
        assert blind["items"] == {"a": "1", "b": "2"}
        _, new = rollout(run, store_path, "--handoff", 5)
        assert new["items"] == {"a": "4", "b": "2", "c": "3"}
        report = new["handoff"]
        assert report["status"] == "answered"
        assert report["asked"] == 1  # the blind successor does not listen
        assert report["answers"][0]["status"] == "saved"
        assert report["generation"] == new["generation"]
        stats = send(old, "stats")
        assert (stats["requests"], stats["handoff_checkpoints"]) == (1, 1)

    def test_a_dead_predecessor_costs_nothing(self, run: Any, store_path: Path) -> None:
        """A SIGKILLed predecessor leaves its socket; the next boot is refused at once,
        removes it, and does not wait."""
        old, _ = rollout(run, store_path, "--handoff", 5)
        send(old, "put a 1")
        send(old, "checkpoint")
        assert len(sockets(store_path)) == 1
        old.signal(signal.SIGKILL)
        old.wait()
        started = time.monotonic()
        _, new = rollout(run, store_path, "--handoff", 5)
        assert new["handoff"]["status"] == "none"
        assert new["handoff"]["seconds"] < 0.5
        assert time.monotonic() - started < 5.0
        assert new["items"] == {"a": "1"}
        assert len(sockets(store_path)) == 1  # the stale one is gone; the new one listens

    def test_successors_asking_at_once_share_checkpoints(self, run: Any, store_path: Path) -> None:
        """Every successor is answered and restores every write. One hand-off checkpoint
        runs at a time: the two requests that arrive while the first (slow) one runs
        share the next."""
        old, _ = rollout(run, store_path, "--handoff", 10)
        send(old, "put a 1 b 2")
        send(old, "hold")  # the first hand-off checkpoint waits for "release"
        first = run("rollout_service.py", store_path, "--handoff", 10)
        old.read("checkpointing")
        send(old, "put c 3")  # during the first hand-off: the next one has it
        later = [run("rollout_service.py", store_path, "--handoff", 10) for _ in range(2)]
        deadline = time.monotonic() + 20
        while send(old, "stats")["requests"] < 3:  # both asked while the first one runs
            assert time.monotonic() < deadline
            time.sleep(0.05)
        send(old, "release")
        booted = [s.read("booted") for s in (first, *later)]
        # (the slow checkpoint waits before it reads: it may hold c too)
        assert booted[0]["items"].items() >= {"a": "1", "b": "2"}.items()
        for new in booted[1:]:
            assert new["items"] == {"a": "1", "b": "2", "c": "3"}
        for new in booted:
            assert new["handoff"]["status"] == "answered"
            assert "saved" in [a["status"] for a in new["handoff"]["answers"]]
        stats = send(old, "stats")
        assert stats["requests"] == 3
        assert stats["handoff_checkpoints"] == 2

    def test_a_predecessor_shutting_down_answers_with_its_shutdown_checkpoint(
        self, run: Any, store_path: Path
    ) -> None:
        """A successor that asks while the predecessor's SIGTERM checkpoint runs is answered
        once that checkpoint is in (or finds no listener): it restores every write."""
        old, _ = rollout(run, store_path, "--handoff", 10)
        send(old, "put a 1 b 2")
        send(old, "slow 1.5")
        old.signal(signal.SIGTERM)
        assert old.read("checkpointing")["delay"] == 1.5
        started = time.monotonic()
        _, new = rollout(run, store_path, "--handoff", 10)
        assert time.monotonic() - started < 8.0
        assert new["items"] == {"a": "1", "b": "2"}
        assert new["handoff"]["status"] in {"answered", "none"}
        for answer in new["handoff"]["answers"]:
            assert answer["status"] in {"saved", "closed", "skipped", "gone"}
        assert old.wait() == -signal.SIGTERM
        assert len(sockets(store_path)) == 1  # the predecessor removed its own

    def test_a_request_nobody_answers_costs_the_deadline_and_its_late_answer_is_kept(
        self, run: Any, store_path: Path
    ) -> None:
        """A stopped predecessor (SIGSTOP) accepts but cannot answer: the successor waits
        its deadline and restores the head it has. Once resumed, the predecessor answers
        into the void: its checkpoint is the head for the next boot, and the running
        successor never applies it."""
        old, _ = rollout(run, store_path, "--handoff", 5)
        send(old, "put a 1")
        send(old, "checkpoint")
        send(old, "put b 2")
        before = head(store_path)
        old.signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            new, booted = rollout(run, store_path, "--handoff", 1.0)
            waited = time.monotonic() - started
        finally:
            old.signal(signal.SIGCONT)
        assert booted["handoff"]["status"] == "timeout"
        assert 0.9 < booted["handoff"]["seconds"] < 2.0
        assert waited < 10.0
        assert booted["items"] == {"a": "1"}
        assert booted["generation"] == before
        # The late answer: the predecessor checkpoints anyway; kept for the next boot.
        deadline = time.monotonic() + 10
        while head(store_path) == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert head(store_path) == (before or 0) + 1
        assert send(old, "stats")["handoff_checkpoints"] == 1
        assert send(new, "items")["items"] == {"a": "1"}  # never applied to the running one
        _, third = rollout(run, store_path)
        assert third["items"] == {"a": "1", "b": "2"}

    def test_an_answer_after_the_deadline_is_left_for_the_next_boot(
        self, run: Any, store_path: Path
    ) -> None:
        """A slow predecessor (its hand-off checkpoint takes 2 s) answers after a 0.5 s
        deadline: the successor has started with what it had."""
        old, _ = rollout(run, store_path, "--handoff", 5)
        send(old, "put a 1")
        send(old, "checkpoint")
        send(old, "put b 2")
        send(old, "slow 2.0")
        new, booted = rollout(run, store_path, "--handoff", 0.5)
        assert booted["handoff"]["status"] == "timeout"
        assert booted["handoff"]["seconds"] < 1.5
        assert booted["items"] == {"a": "1"}
        old.read("checkpointing")
        assert send(old, "stats")["handoff_checkpoints"] == 1
        deadline = time.monotonic() + 10
        while head(store_path) == booted["generation"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert send(new, "items")["items"] == {"a": "1"}
        _, third = rollout(run, store_path)
        assert third["items"] == {"a": "1", "b": "2"}


def _wait_for_listeners(redis: RedisServer, prefix: str, count: int) -> None:
    """Block until ``count`` instances listen on the namespace's channel."""
    import redis as redis_py

    client = redis_py.Redis.from_url(redis.url)
    channel = f"{prefix}{NS}/@ws/handoff"
    deadline = time.monotonic() + 10
    try:
        while client.pubsub_numsub(channel)[0][1] < count:
            assert time.monotonic() < deadline, "the predecessor never subscribed"
            time.sleep(0.02)
    finally:
        client.close()


class TestTwoHosts:
    def test_the_successor_on_another_host_gets_a_fresh_push(
        self, run: Any, tmp_path: Path, redis: RedisServer
    ) -> None:
        """Two stores, one Redis: the request goes through pub/sub, the predecessor
        checkpoints and pushes, the successor pulls it."""
        prefix = f"t{time.monotonic_ns()}:"
        url = f"{redis.url}?prefix={prefix}"
        old, _ = rollout(run, tmp_path / "host-a", "--handoff", 5, "--remote", url)
        send(old, "put a 1")
        send(old, "checkpoint")  # pushed
        send(old, "put b 2")
        _wait_for_listeners(redis, prefix, 1)
        _, blind = rollout(run, tmp_path / "host-b", "--remote", url)
        assert blind["items"] == {"a": "1"}
        _, new = rollout(run, tmp_path / "host-c", "--handoff", 5, "--remote", url)
        assert new["items"] == {"a": "1", "b": "2"}
        assert new["pull"] == "done"
        report = new["handoff"]
        assert (report["status"], report["asked"]) == ("answered", 1)
        assert report["answers"][0]["via"] == "remote"

    def test_nobody_listening_on_the_remote_costs_nothing(
        self, run: Any, tmp_path: Path, redis: RedisServer
    ) -> None:
        """PUBLISH says how many listen: with none, the boot does not wait."""
        url = f"{redis.url}?prefix=t{time.monotonic_ns()}:"
        _, booted = rollout(run, tmp_path / "host-a", "--handoff", 5, "--remote", url)
        assert booted["handoff"]["status"] == "none"
        assert booted["handoff"]["seconds"] < 1.0

    def test_a_file_remote_has_no_channel_the_successor_gets_the_last_push(
        self, run: Any, tmp_path: Path
    ) -> None:
        """Object storage and files cannot carry requests: no wait, the newest push."""
        url = (tmp_path / "shared").as_uri()
        old, _ = rollout(run, tmp_path / "host-a", "--handoff", 5, "--remote", url)
        send(old, "put a 1")
        send(old, "checkpoint")
        send(old, "put b 2")
        _, new = rollout(run, tmp_path / "host-b", "--handoff", 5, "--remote", url)
        assert new["handoff"]["status"] == "none"
        assert new["items"] == {"a": "1"}


@pytest.mark.parametrize("value", [0, -1.0, "2s", True])
def test_bad_handoff_and_heartbeat_settings_are_refused(value: object, tmp_path: Path) -> None:
    for name in ("handoff", "heartbeat"):
        with pytest.raises(ValueError, match=f"Expected {name} as seconds > 0"):
            warmstart.boot(tmp_path, namespace=NS, **{name: value})  # type: ignore[arg-type]


def test_an_unreachable_redis_costs_at_most_the_deadline(tmp_path: Path) -> None:
    """Redis refusing connections: the request fails at once, is reported, never raised;
    the listener retries in the background and stops with the boot."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    started = time.monotonic()
    with warmstart.boot(
        tmp_path / "store",
        namespace=NS,
        signals=False,
        handoff=1.0,
        remote=f"redis://127.0.0.1:{port}/0",
        remote_deadline=0.5,
    ) as boot:
        pass
    assert time.monotonic() - started < 5.0
    report = boot.handoff_report
    assert report is not None
    assert report.status in {"none", "timeout"}
    assert report.errors
    assert report.seconds < 1.5
