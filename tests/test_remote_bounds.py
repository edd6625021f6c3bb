"""The remote tier reads no more than it expects, and pulls in bounded batches (issue 17).

A 768 MiB object in the head slot of a ``file://`` remote cost a pull 768 MiB
of memory, and so could an oversized value on Redis or object storage; the
start-up pull runs before the crash-loop breaker, so such an object could
OOM-kill every boot. Every read is now capped by what it may hold (a head
4 MiB, a manifest a frame, a chunk the size its manifest records), checked
before the value is read whole, and a pull writes a batch at a time.
Real servers: redis-server, moto, directories.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec
import pytest

import warmstart
from conftest import peak
from remote_workers.servers import (  # noqa: F401 - fixtures
    Backend,
    _backend,
    _moto,
    _redis,
    _remote,
)
from warmstart.progress import Progress
from warmstart.remote import FileRemote, Remote, pull, push
from warmstart.remote._layout import Layout
from warmstart.remote._redis import RedisRemote
from warmstart.remote._s3 import ObjectStoreRemote

MiB = 1 << 20
MAX_HEAD = 4 * MiB  # warmstart.remote._base.MAX_HEAD


class Blob(msgspec.Struct):
    data: bytes


BLOBS = warmstart.Contract("blob", Blob, key=str)


def in_process(remote: Remote) -> bool:
    """Whether the server runs in this process (moto): its own allocations are traced too."""
    return isinstance(remote, ObjectStoreRemote) and "127.0.0.1" in remote.url


def blobs(n: int, size: int, salt: int = 0) -> dict[str, Blob]:
    """Incompressible values: the chunks hold what they say."""
    return {f"k{i}": Blob(os.urandom(size) + bytes([salt])) for i in range(n)}


def store_of(path: Path, data: dict[str, Blob]) -> warmstart.Store:
    store = warmstart.Store(path, sync=False)
    store.save("svc", {"blobs": (BLOBS, data)})
    return store


class TestReadsAreCapped:
    def test_get_refuses_a_value_over_its_limit(self, remote: Remote) -> None:
        """A value over the limit is refused having read at most the limit."""
        remote.put({"big/value": b"x" * (6 * MiB)})
        used, result = peak(lambda: remote.get(["big/value"], limit=1 * MiB))
        assert isinstance(result, warmstart.IntegrityError)
        assert "at most 1048576 bytes" in str(result)
        if not in_process(remote):
            assert used < 4 * MiB, used  # a client's reply buffers hold the range read
        assert remote.get(["big/value"], limit=6 * MiB) == {"big/value": b"x" * (6 * MiB)}

    def test_oversized_head_is_refused(self, tmp_path: Path, remote: Remote) -> None:
        """A head record over 4 MiB is refused by pull (and push) without reading it whole."""
        with store_of(tmp_path / "a", blobs(3, 100)) as a:
            push(a, remote, "svc")
            layout = Layout("svc")
            raw = remote.get_head(layout.head)
            remote.swap_head(layout.head, raw, b"\x80" * (MAX_HEAD + 1))
            a.save("svc", {"blobs": (BLOBS, blobs(3, 100, salt=1))})
            with pytest.raises(warmstart.IntegrityError, match="at most 4194304 bytes"):
                push(a, remote, "svc")
        with warmstart.Store(tmp_path / "b", sync=False) as b:
            used, result = peak(lambda: pull(b, remote, "svc"))
            assert isinstance(result, warmstart.IntegrityError), result
            assert b.namespaces() == []
        if not in_process(remote):
            assert used < 4 * MAX_HEAD, used

    def test_oversized_chunk_is_refused(self, tmp_path: Path, remote: Remote) -> None:
        """A chunk object larger than its manifest says is refused unread; nothing is committed."""
        with store_of(tmp_path / "a", blobs(4, 1000)) as a:
            push(a, remote, "svc")
            digest = next(iter(a.manifest("svc").digests()))
        remote.put({Layout("svc").chunk(digest): b"y" * (20 * MiB)}, overwrite=True)
        with warmstart.Store(tmp_path / "b", sync=False) as b:
            used, result = peak(lambda: pull(b, remote, "svc"))
            assert isinstance(result, warmstart.IntegrityError), result
            assert "refused without reading it" in str(result)
            assert b.namespaces() == []
        if not in_process(remote):
            assert used < 4 * MiB, used


def test_a_768_mib_head_slot_costs_a_pull_nothing(tmp_path: Path) -> None:
    """The issue's case: a sparse 768 MiB file in the head slot of a file:// remote."""
    remote = FileRemote(tmp_path / "remote", fsync=False)
    with store_of(tmp_path / "a", blobs(3, 100)) as a:
        push(a, remote, "svc")
    slots = sorted((tmp_path / "remote" / "svc" / "@ws" / "head").iterdir())
    with slots[-1].open("r+b") as f:
        f.truncate(768 * MiB)  # sparse: no disk used
    with warmstart.Store(tmp_path / "b", sync=False) as b:
        used, result = peak(lambda: pull(b, remote, "svc"))
    assert isinstance(result, warmstart.IntegrityError)
    assert "805306368" in str(result)
    assert used < 2 * MiB, used


class TestBatchedPulls:
    @pytest.fixture
    def pushed(self, tmp_path: Path) -> tuple[FileRemote, dict[str, Blob]]:
        remote = FileRemote(tmp_path / "remote", fsync=False)
        data = blobs(60_000, 600)  # about 36 MB in 70 chunks
        with store_of(tmp_path / "a", data) as a:
            push(a, remote, "svc")
        return remote, data

    def test_a_pull_holds_one_batch(
        self, tmp_path: Path, pushed: tuple[FileRemote, dict[str, Blob]]
    ) -> None:
        """Memory stays at about one 8 MiB batch, not the 36 MB the pull fetches."""
        remote, data = pushed
        with warmstart.Store(tmp_path / "b", sync=False) as b:
            used, report = peak(lambda: pull(b, remote, "svc"))
            assert report.status == "pulled"
            assert report.bytes_fetched > 30 * MiB
            assert used < 20 * MiB, used
            with b.load("svc") as snapshot:
                assert snapshot.section("blobs", BLOBS) == data

    def test_an_interrupted_pull_keeps_its_batches(
        self, tmp_path: Path, pushed: tuple[FileRemote, dict[str, Blob]]
    ) -> None:
        """Batches written before an interruption are not fetched again; nothing is visible."""
        remote, data = pushed

        def stop_halfway(p: Progress) -> None:
            if p.bytes_done > p.bytes_total // 2:
                raise KeyboardInterrupt

        with warmstart.Store(tmp_path / "b", sync=False) as b:
            with pytest.raises(KeyboardInterrupt):
                pull(b, remote, "svc", progress=stop_halfway)
            assert b.namespaces() == []
            report = pull(b, remote, "svc")
            assert report.status == "pulled"
            assert 0 < report.chunks_fetched < report.chunks_fetched + report.chunks_skipped
            assert report.chunks_skipped > 0
            with b.load("svc") as snapshot:
                assert snapshot.section("blobs", BLOBS) == data


def test_redis_reads_by_range(redis: Any) -> None:
    """On Redis the size check is STRLEN and the read GETRANGE: no GET of the whole value."""
    remote = warmstart.remote.open_remote(redis.url + "?prefix=bounds:")
    assert isinstance(remote, RedisRemote)
    remote.put({"v": b"z" * (3 * MiB)}, overwrite=True)
    with pytest.raises(warmstart.IntegrityError):
        remote.get(["v"], limit=MiB)
    assert remote.get(["v", "missing"], limit=3 * MiB) == {"v": b"z" * (3 * MiB)}
    remote.close()


class TestReaderRecords:
    """Reader records (issue 18) are remote objects too: read capped, a batch at a time."""

    def test_an_oversized_record_is_skipped_unread(self, tmp_path: Path) -> None:
        """A sparse 768 MiB record beside genuine ones: skipped, the others read."""
        from warmstart.remote import get_readers, put_reader

        remote = FileRemote(tmp_path / "remote", fsync=False)
        for i in range(70):  # more than one batch
            put_reader(remote, "svc", "host", f"{i}-00", b"record %d" % i)
        put_reader(remote, "svc", "host", "666-00", b"x")
        planted = next((tmp_path / "remote").rglob("host.666-00"))
        with planted.open("r+b") as f:
            f.truncate(768 * MiB)  # sparse: no disk used
        used, found = peak(lambda: dict(get_readers(remote, "svc")))
        assert sorted(found.values()) == sorted(b"record %d" % i for i in range(70))
        assert used < 2 * MiB, used

    def test_reads_stop_at_a_total(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Past the total the rest is not read: what a boot keeps decoded stays bounded."""
        from warmstart.remote import _handoff, get_readers, put_reader

        remote = FileRemote(tmp_path / "remote", fsync=False)
        for i in range(10):
            put_reader(remote, "svc", "host", f"{i}-00", bytes(1000))
        monkeypatch.setattr(_handoff, "MAX_READERS_BYTES", 4500)
        assert len(list(get_readers(remote, "svc"))) == 4
