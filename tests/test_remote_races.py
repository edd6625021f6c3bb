"""Concurrent pushers, pushes killed midway, servers killed midway (warmstart.remote)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import warmstart
from conftest import make_records
from remote_workers.checks import assert_complete, loaded, save
from remote_workers.servers import (  # noqa: F401 - fixtures
    Backend,
    _backend,
    _moto,
    _redis,
    _remote,
    redis_server,
)
from remote_workers.worker import race_state
from warmstart.remote import (
    Remote,
    RemoteConflictError,
    RemoteUnavailableError,
    _layout,
    pull,
    push,
    push_with_deadline,
)
from warmstart.remote._layout import Layout, decode_head
from warmstart.remote._redis import RedisRemote
from warmstart.remote._sync import namespace_dir

WORKER = Path(__file__).parent / "remote_workers" / "worker.py"
WORKERS = 4
ROUNDS = 3


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class _Watcher(threading.Thread):
    """Polls a head while pushers race, and records every generation it sees."""

    def __init__(self, remote: Remote, namespace: str) -> None:
        super().__init__(daemon=True)
        self.remote = remote
        self.head = Layout(namespace).head
        self.seen: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.005):
            raw = self.remote.get_head(self.head)
            if raw is not None:
                self.seen.append(decode_head(raw, "test").generation)


class TestConcurrentPushers:
    def test_racing_processes_publish_one_at_a_time(self, backend, remote, tmp_path):
        """Pushers in several processes never move the head backwards or onto missing chunks."""
        start = tmp_path / "start"
        procs = [
            spawn("race", str(tmp_path / f"w{w}"), backend.kind, backend.arg, "svc",
                  str(w), str(ROUNDS), str(start))
            for w in range(WORKERS)
        ]  # fmt: skip
        watcher = _Watcher(backend.open(), "svc")
        watcher.start()
        for proc in procs:
            assert proc.stdout is not None
            assert json.loads(proc.stdout.readline())["status"] == "ready"
        start.touch()
        outcomes: list[dict[str, Any]] = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            outcomes += [json.loads(line) for line in out.splitlines()]
        watcher.stop.set()
        watcher.join(10)
        watcher.remote.close()
        assert watcher.seen == sorted(watcher.seen), "the head went backwards"
        published = sorted(o["generation"] for o in outcomes if o["status"] == "pushed")
        # Every publication took the next number: none overwrote another.
        assert published == list(range(1, len(published) + 1))
        assert len(outcomes) == WORKERS * ROUNDS
        assert {o["status"] for o in outcomes} <= {"pushed", "conflict", "behind"}
        assert_complete(remote, "svc", warmstart.codec.Codec())
        with warmstart.Store(tmp_path / "reader", sync=False) as reader:
            result = pull(reader, remote, "svc")
            assert result.remote_generation == published[-1]
            mark = reader.manifest("svc").watermark
            assert loaded(reader) == race_state(mark["worker"], mark["round"])


class TestLosingPush:
    def test_loser_is_told_and_publishes_nothing(self, backend, remote, tmp_path):
        """A push whose head moved under it raises RemoteConflictError naming the winner."""
        with (
            warmstart.Store(tmp_path / "a", sync=False) as a,
            warmstart.Store(tmp_path / "b", sync=False) as b,
        ):
            save(a, make_records(2000, prefix="a"))
            save(b, make_records(2000, prefix="b"))
            racing = _PushFirst(remote, lambda: push(b, remote, "svc"))
            with pytest.raises(RemoteConflictError, match=r"found generation 1 pushed by"):
                push(a, racing, "svc")
            assert racing.fired
            with warmstart.Store(tmp_path / "reader", sync=False) as reader:
                pull(reader, remote, "svc")
                assert loaded(reader) == make_records(2000, prefix="b")
            chunks = [k for k in remote.list(namespace_dir("svc")) if "/chunks/" in k]
            if remote.atomic:
                # On Redis the loser removes what only it wrote.
                assert len(chunks) == len(b.manifest("svc").digests())
            # Its state was saved before the winner's: a plain retry reports it behind.
            assert push(a, remote, "svc").status == "behind"
            again = push(a, remote, "svc", force=True)
            assert (again.status, again.generation) == ("pushed", 2)

    def test_conflict_under_a_deadline_is_reported(self, backend, remote, tmp_path):
        """push_with_deadline reports a lost race as a conflict outcome, without raising."""
        with (
            warmstart.Store(tmp_path / "a", sync=False) as a,
            warmstart.Store(tmp_path / "b", sync=False) as b,
        ):
            save(a, make_records(100, prefix="a"))
            save(b, make_records(100, prefix="b"))
            racing = _PushFirst(remote, lambda: push(b, remote, "svc"))
            outcome = push_with_deadline(a, racing, "svc", deadline=30)
            assert (outcome.status, outcome.ok, outcome.report) == ("conflict", False, None)
            assert "was not published" in (outcome.error or "")


class _PushFirst:
    """A real remote whose first head swap is preceded by another (real) push."""

    def __init__(self, remote: Remote, other: Any) -> None:
        self._remote = remote
        self._other = other
        self.fired = False
        self.url = remote.url
        self.atomic = remote.atomic

    def __getattr__(self, name: str) -> Any:
        return getattr(self._remote, name)

    def swap_head(self, key: str, expected: Any, new: bytes, *, require: Any = ()) -> set[str]:
        if not self.fired:
            self.fired = True
            self._other()
        return self._remote.swap_head(key, expected, new, require=require)


class TestKilledPusher:
    def test_sigkill_mid_push_leaves_the_previous_head(self, backend, remote, tmp_path):
        """A pusher killed between chunk uploads leaves the old head intact; a retry completes."""
        first, second = make_records(30_000), make_records(30_000, salt=9)
        with warmstart.Store(tmp_path / "s", sync=False) as store:
            save(store, first)
            push(store, remote, "svc")
            save(store, second, mode="full")
            assert len(store.manifest("svc").digests()) >= 3
        proc = spawn("push-kill", str(tmp_path / "s"), backend.kind, backend.arg, "svc", "2")
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL, err
        with warmstart.Store(tmp_path / "r1", sync=False) as reader:
            assert pull(reader, remote, "svc").remote_generation == 1
            assert loaded(reader) == first
        with warmstart.Store(tmp_path / "s", sync=False) as store:
            retry = push(store, remote, "svc")
            assert (retry.status, retry.generation) == ("pushed", 2)
        with warmstart.Store(tmp_path / "r2", sync=False) as reader:
            pull(reader, remote, "svc")
            assert loaded(reader) == second
        assert_complete(remote, "svc", warmstart.codec.Codec())


class TestRedisKilled:
    def test_redis_killed_mid_push_then_retry_completes(self, tmp_path, monkeypatch):
        """Redis killed between chunk uploads keeps a consistent head; a retry completes."""
        monkeypatch.setattr(_layout, "BATCH_BYTES", 64 * 1024)
        first, second = make_records(30_000), make_records(30_000, salt=5)
        with (
            redis_server(tmp_path / "redis", appendonly=True) as server,
            warmstart.Store(tmp_path / "s", sync=False) as store,
        ):
            url = f"{server.url}?prefix=kill:"
            remote = RedisRemote.from_url(url, timeout=2)
            save(store, first)
            push(store, remote, "svc")
            save(store, second, mode="full")
            moved = 0

            def kill_after_two(progress: Any) -> None:
                nonlocal moved
                if progress.rate > 0:
                    moved += 1
                    if moved == 2:
                        server.kill()

            with pytest.raises(RemoteUnavailableError, match="unavailable"):
                push(store, remote, "svc", progress=kill_after_two)
            server.start()  # same port, same append-only file
            with warmstart.Store(tmp_path / "r1", sync=False) as reader:
                assert pull(reader, remote, "svc").remote_generation == 1
                assert loaded(reader) == first
            retry = push(store, remote, "svc")
            assert (retry.status, retry.generation) == ("pushed", 2)
            assert retry.chunks_shipped > 0
            with warmstart.Store(tmp_path / "r2", sync=False) as reader:
                pull(reader, remote, "svc")
                assert loaded(reader) == second
            assert_complete(remote, "svc", warmstart.codec.Codec())
            remote.close()


class _Before:
    """A real remote that runs ``action`` once, just before call number ``nth`` of ``method``."""

    def __init__(self, remote: Remote, method: str, action: Any, nth: int = 1) -> None:
        self._remote = remote
        self._method = method
        self._action = action
        self._calls = 0
        self._nth = nth
        self.fired = False
        self.url = remote.url
        self.atomic = remote.atomic

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._remote, name)
        if name != self._method:
            return real

        def call(*args: Any, **kwargs: Any) -> Any:
            self._calls += 1
            if self._calls == self._nth:
                self.fired = True
                self._action()
            return real(*args, **kwargs)

        return call


class TestCollectedUnderUs:
    def test_chunks_collected_before_publish_are_written_again(self, remote, tmp_path):
        """Chunks a concurrent collection removes before the head swap are uploaded again."""
        with warmstart.Store(tmp_path / "a", sync=False) as a:
            save(a, make_records(5000))

            def collect_everything() -> None:
                chunks = [k for k in remote.list(namespace_dir("svc")) if "/chunks/" in k]
                remote.delete(chunks)

            racing = _Before(remote, "swap_head", collect_everything)
            report = push(a, racing, "svc")
            assert racing.fired
            assert report.chunks_shipped == 2 * len(a.manifest("svc").digests())
        assert_complete(remote, "svc", warmstart.codec.Codec())

    def test_local_chunks_swept_during_a_pull_are_fetched(self, remote, tmp_path):
        """Chunks a concurrent local save sweeps while a pull downloads are fetched after all."""
        data = warmstart.TrackedDict(make_records(5000))
        with (
            warmstart.Store(tmp_path / "a", sync=False) as a,
            warmstart.Store(tmp_path / "b", sync=False, keep=1) as b,
        ):
            save(a, data)
            push(a, remote, "svc")
            pull(b, remote, "svc")
            data["k1"] = make_records(1, salt=7)["k0"]
            save(a, data)
            push(a, remote, "svc")
            # While b downloads the delta, a full save there drops (keep=1) and
            # sweeps the base chunks the pull counted as present.
            sweep = lambda: save(b, make_records(3), mode="full")  # noqa: E731
            racing = _Before(remote, "get", sweep, nth=2)  # 1: the manifest, 2: the chunks
            result = pull(b, racing, "svc")
            assert racing.fired
            assert result.status == "pulled"
            assert result.chunks_skipped == 0
            assert loaded(b) == dict(data)

    def test_pull_of_a_head_retired_midway_pulls_the_newer_head(self, remote, tmp_path):
        """If newer pushes retire the generation being pulled, the pull takes the newer head."""
        with (
            warmstart.Store(tmp_path / "a", sync=False) as a,
            warmstart.Store(tmp_path / "b", sync=False) as b,
        ):
            save(a, make_records(3000, salt=1))
            push(a, remote, "svc")

            def two_more_pushes() -> None:
                for salt in (2, 3):
                    save(a, make_records(3000, salt=salt))
                    push(a, remote, "svc", keep=1, grace=0)

            racing = _Before(remote, "get", two_more_pushes, nth=2)
            result = pull(b, racing, "svc")
            assert racing.fired
            assert result.remote_generation == 3
            assert loaded(b) == make_records(3000, salt=3)
