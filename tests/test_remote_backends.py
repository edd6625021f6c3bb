"""The Remote protocol on every backend; URLs, extras and deadlines (warmstart.remote)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest

import warmstart
from conftest import make_records
from remote_workers.checks import loaded, save
from remote_workers.servers import (  # noqa: F401 - fixtures
    Backend,
    _backend,
    _moto,
    _redis,
    _remote,
    free_port,
)
from warmstart.remote import (
    FileRemote,
    Remote,
    RemoteConflictError,
    RemoteError,
    RemoteUnavailableError,
    open_remote,
    pull,
    pull_with_deadline,
    push,
    push_with_deadline,
)
from warmstart.remote._redis import RedisRemote
from warmstart.remote._s3 import ObjectStoreRemote


class TestProtocol:
    def test_backend_is_a_remote(self, remote):
        """Every backend satisfies the runtime-checkable Remote protocol."""
        assert isinstance(remote, Remote)
        assert remote.atomic is isinstance(remote, RedisRemote)

    def test_put_is_put_if_absent_unless_overwrite(self, remote):
        """A put leaves an existing key alone and says so; overwrite replaces it."""
        assert remote.put({"p/a": b"1", "p/b": b"2"}) == {"p/a", "p/b"}
        assert remote.put({"p/a": b"x", "p/c": b"3"}) == {"p/c"}
        assert remote.get(["p/a", "p/b", "p/c", "p/missing"]) == {
            "p/a": b"1",
            "p/b": b"2",
            "p/c": b"3",
        }
        assert remote.put({"p/a": b"x"}, overwrite=True) == {"p/a"}
        assert remote.get(["p/a"]) == {"p/a": b"x"}

    def test_stat_and_list_see_only_what_exists_under_the_prefix(self, remote):
        """stat reports existing keys; list returns exactly the keys under a prefix."""
        remote.put({"q/b/1": b"1", "q/b/2": b"2", "q/bc/3": b"3", "q/x": b"4"})
        many = [f"q/b/{n}" for n in range(40)]
        assert set(remote.stat(["q/b/1", "q/nope"])) == {"q/b/1"}
        assert set(remote.stat(many)) == {"q/b/1", "q/b/2"}
        stats = remote.stat(["q/b/1"])
        if remote.atomic:
            assert stats == {"q/b/1": None}
        else:
            assert abs(time.time() - (stats["q/b/1"] or 0)) < 120
        assert set(remote.list("q/b/")) == {"q/b/1", "q/b/2"}
        assert set(remote.list("q/")) == {"q/b/1", "q/b/2", "q/bc/3", "q/x"}

    def test_delete_ignores_missing_keys_and_respects_its_guard(self, remote):
        """delete skips missing keys; with a moved guard head it deletes nothing."""
        remote.put({"d/a": b"1", "d/b": b"2"})
        remote.swap_head("d/head", None, b"h1")
        remote.delete(["d/a", "d/never"])
        assert set(remote.list("d/")) >= {"d/b"}
        with pytest.raises(RemoteConflictError):
            remote.delete(["d/b"], unless_moved=("d/head", b"h0"))
        assert remote.get(["d/b"]) == {"d/b": b"2"}
        remote.delete(["d/b"], unless_moved=("d/head", b"h1"))
        assert remote.get(["d/b"]) == {}

    def test_swap_head_is_a_compare_and_set(self, remote):
        """A head moves only from the value read, and only when required keys exist."""
        assert remote.get_head("h/head") is None
        assert remote.swap_head("h/head", None, b"v1") == set()
        with pytest.raises(RemoteConflictError):
            remote.swap_head("h/head", None, b"v2")
        with pytest.raises(RemoteConflictError):
            remote.swap_head("h/head", b"v0", b"v2")
        assert remote.swap_head("h/head", b"v1", b"v2", require=["h/a", "h/b"]) == {"h/a", "h/b"}
        assert remote.get_head("h/head") == b"v1"
        remote.put({"h/a": b"", "h/b": b""})
        for n in range(2, 6):
            assert (
                remote.swap_head("h/head", b"v%d" % (n - 1), b"v%d" % n, require=["h/a"]) == set()
            )
        assert remote.get_head("h/head") == b"v5"

    def test_racing_swaps_have_one_winner(self, backend):
        """Of several threads swapping from the same value, exactly one succeeds."""
        remotes = [backend.open() for _ in range(6)]
        remotes[0].swap_head("r/head", None, b"base")
        barrier = threading.Barrier(len(remotes))
        won: list[int] = []

        def swap(n: int) -> None:
            barrier.wait(10)
            try:
                remotes[n].swap_head("r/head", b"base", b"from %d" % n)
            except RemoteConflictError:
                return
            won.append(n)

        threads = [threading.Thread(target=swap, args=(n,)) for n in range(len(remotes))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(won) == 1
        assert remotes[0].get_head("r/head") == b"from %d" % won[0]
        for r in remotes:
            r.close()

    @pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "a/./b", "a\\b"])
    def test_keys_cannot_escape(self, remote, key):
        """Keys with empty, dot or absolute parts are refused before any I/O."""
        with pytest.raises(ValueError, match="relative key"):
            remote.put({key: b"x"})


class TestSlotHeads:
    def test_file_and_local_store_share_slot_heads(self, tmp_path):
        """FileRemote and obstore's LocalStore on one directory see the same heads."""
        from obstore.store import LocalStore

        files = FileRemote(tmp_path / "r")
        objects = ObjectStoreRemote(LocalStore(str(tmp_path / "r")))
        files.swap_head("n/@ws/head", None, b"one")
        assert objects.get_head("n/@ws/head") == b"one"
        objects.swap_head("n/@ws/head", b"one", b"two")
        files.swap_head("n/@ws/head", b"two", b"three")
        assert objects.get_head("n/@ws/head") == b"three"
        # Old slots go once two newer ones exist.
        assert len(files.list("n/@ws/head/")) == 2

    def test_temporary_files_are_not_listed(self, tmp_path):
        """A crash's leftover temporary file is invisible to list."""
        remote = FileRemote(tmp_path / "r")
        remote.put({"a/b": b"1"})
        (tmp_path / "r" / "a" / ".ws-tmp-b.123").write_bytes(b"partial")
        assert set(remote.list("")) == {"a/b"}


class TestUrls:
    def test_unknown_scheme_is_refused(self):
        """open_remote names the schemes it knows."""
        with pytest.raises(ValueError, match="redis://, rediss://"):
            open_remote("ftp://example.com/x")

    def test_file_url_needs_a_local_absolute_path(self):
        """file:// URLs with a host are refused."""
        with pytest.raises(ValueError, match="file:///absolute/path"):
            open_remote("file://otherhost/x")

    def test_credentials_never_show(self):
        """Passwords and secret query values are redacted in url and reports."""
        redis = open_remote("redis://user:hunter2@127.0.0.1:1/0?prefix=p:")
        assert "hunter2" not in redis.url
        assert redis.url == "redis://user:***@127.0.0.1:1/0?prefix=p:"
        s3 = open_remote(
            "s3://b/p?endpoint=http://127.0.0.1:1&region=r&access_key_id=AK&secret_access_key=SK"
        )
        assert "SK" not in s3.url
        assert "secret_access_key=***" in s3.url
        assert isinstance(s3, ObjectStoreRemote)
        assert s3.conditional == "etag"

    def test_s3_query_selects_slot_heads(self):
        """conditional=slots in an s3:// URL selects slot heads."""
        remote = open_remote("s3://b/p?region=r&skip_signature=true&conditional=slots")
        assert isinstance(remote, ObjectStoreRemote)
        assert remote.conditional == "slots"
        with pytest.raises(ValueError, match="conditional"):
            open_remote("s3://b/p?region=r&conditional=maybe")

    def test_bad_s3_configuration_is_a_value_error(self):
        """An unknown S3 configuration key is refused up front."""
        with pytest.raises(ValueError, match="usable S3 URL"):
            open_remote("s3://b/p?no_such_option=1")

    def test_redis_prefix_comes_from_the_query(self, redis):
        """The prefix query parameter prefixes every Redis key."""
        remote = open_remote(f"{redis.url}?prefix=pfx-test:")
        assert isinstance(remote, RedisRemote)
        remote.put({"k": b"v"})
        assert remote._client.get(b"pfx-test:k") == b"v"
        remote.close()


class TestExtras:
    SCRIPT = textwrap.dedent(
        """
        import sys
        sys.modules[sys.argv[1]] = None  # as if the extra were not installed
        from warmstart.remote import open_remote
        try:
            open_remote(sys.argv[2])
        except ImportError as exc:
            print(type(exc).__name__, exc)
        """
    )

    @pytest.mark.parametrize(
        ("module", "url", "extra"),
        [("redis", "redis://127.0.0.1:1/0", "redis"), ("obstore", "s3://b/p", "s3")],
    )
    def test_missing_extra_names_the_install_command(self, module, url, extra):
        """Without its package, a backend raises MissingExtraError naming the pip command."""
        out = subprocess.run(
            [sys.executable, "-c", self.SCRIPT, module, url],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        assert out.startswith("MissingExtraError")
        assert f"pip install {module}" in out
        assert f"'{extra}' extra" in out

    def test_importing_warmstart_remote_loads_no_extra(self):
        """import warmstart.remote imports neither redis nor obstore."""
        code = (
            "import sys, warmstart.remote; print('redis' in sys.modules, 'obstore' in sys.modules)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
        ).stdout
        assert out.split() == ["False", "False"]


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    for conn in accepted:
        conn.close()
    server.close()


class TestDeadlines:
    def test_pull_returns_at_the_deadline_and_commits_nothing(self, tmp_path, silent_server):
        """A remote that never answers costs the deadline, not more, and leaves the store alone."""
        remote = RedisRemote.from_url(f"redis://127.0.0.1:{silent_server}/0", timeout=30)
        with warmstart.Store(tmp_path / "s", sync=False) as store:
            started = time.perf_counter()
            outcome = pull_with_deadline(store, remote, "svc", deadline=0.5)
            elapsed = time.perf_counter() - started
            assert (outcome.status, outcome.ok, outcome.report) == ("timeout", False, None)
            assert 0.5 <= elapsed < 1.5
            assert store.namespaces() == []

    @pytest.mark.parametrize(
        "url",
        [
            "redis://127.0.0.1:{port}/0",
            "s3://b/p?endpoint=http://127.0.0.1:{port}&region=r&access_key_id=a&secret_access_key=b",
        ],
    )
    def test_unreachable_remote_is_reported_quickly(self, tmp_path, url):
        """A refused connection ends as unavailable, well within the deadline."""
        target = url.format(port=free_port())
        with warmstart.Store(tmp_path / "s", sync=False) as store:
            save(store, make_records(10))
            pulled = pull_with_deadline(store, target, "svc", deadline=5)
            pushed = push_with_deadline(store, target, "svc", deadline=5)
        for outcome in (pulled, pushed):
            assert outcome.status == "unavailable", outcome.error
            assert outcome.seconds < 5
            assert "secret_access_key=b" not in outcome.remote
        with pytest.raises(RemoteUnavailableError), warmstart.Store(tmp_path / "s") as store:
            push(store, target, "svc")

    def test_pull_if_newer(self, tmp_path, remote, clock):
        """At boot a pull happens only when the remote head was saved after the local one."""
        with (
            warmstart.Store(tmp_path / "a", sync=False, clock=clock) as a,
            warmstart.Store(tmp_path / "b", sync=False, clock=clock) as b,
        ):
            assert pull_with_deadline(b, remote, "svc", deadline=10).status == "empty"
            save(a, make_records(10))
            push(a, remote, "svc")
            clock.advance(5)
            save(b, make_records(20))
            skipped = pull_with_deadline(b, remote, "svc", deadline=10)
            assert skipped.status == "done"
            assert skipped.report is not None
            assert skipped.report.status == "skipped"
            assert loaded(b) == make_records(20)
            clock.advance(5)
            save(a, make_records(30))
            push(a, remote, "svc")
            done = pull_with_deadline(b, remote, "svc", deadline=10)
            assert done.report is not None
            assert done.report.status == "pulled"
            assert loaded(b) == make_records(30)

    def test_push_with_deadline_after_a_save(self, tmp_path, remote):
        """A push under a deadline reports its PushReport when it finishes in time."""
        with warmstart.Store(tmp_path / "a", sync=False) as a:
            save(a, make_records(100))
            outcome = push_with_deadline(a, remote, "svc", deadline=30)
        assert outcome.ok
        assert outcome.report is not None
        assert outcome.report.status == "pushed"
        with warmstart.Store(tmp_path / "b", sync=False) as b:
            pull(b, remote, "svc")
            assert loaded(b) == make_records(100)

    def test_damaged_remote_is_a_failed_outcome(self, tmp_path, remote):
        """Damage found by a pull under a deadline is reported as failed, not raised."""
        with warmstart.Store(tmp_path / "a", sync=False) as a:
            save(a, make_records(100))
            push(a, remote, "svc")
        head = "svc/@ws/head"
        newest = max(k for k in remote.list("svc/@ws/") if k == head or k.startswith(head + "/"))
        remote.put({newest: b"\xff not a head"}, overwrite=True)
        with warmstart.Store(tmp_path / "b", sync=False) as b:
            outcome = pull_with_deadline(b, remote, "svc", deadline=30)
            assert b.namespaces() == []
        assert outcome.status == "failed"
        assert "malformed" in (outcome.error or "")


def test_remote_error_tree():
    """Remote errors are store errors, and unavailability is a ConnectionError."""
    assert issubclass(RemoteError, warmstart.StoreError)
    assert issubclass(RemoteUnavailableError, ConnectionError)
    assert issubclass(RemoteConflictError, RemoteError)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_file_remote_in_a_read_only_directory(tmp_path):
    """A filesystem remote that refuses writes raises RemoteError, not a bare OSError."""
    root = tmp_path / "ro"
    remote = FileRemote(root)
    root.chmod(0o500)
    try:
        with pytest.raises(RemoteError, match="Expected to write"):
            remote.put({"a/b": b"1"})
    finally:
        root.chmod(0o700)
