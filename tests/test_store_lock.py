"""Another process holding LMDB's writer lock never hangs a boot or freezes threads."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path

import lmdb
import msgspec
import pytest

import warmstart


class Row(msgspec.Struct):
    value: int


ROWS = warmstart.Contract("row", Row)


@warmstart.warm(rows=ROWS)
class Service:
    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}


def _hold_writer(
    path: str,
    held: multiprocessing.synchronize.Event,
    release: multiprocessing.synchronize.Event,
    seconds: float,
) -> None:
    env = lmdb.open(path, max_dbs=8)
    txn = env.begin(write=True)
    held.set()
    release.wait(seconds)  # until the test is done with the lock (at most ``seconds``)
    txn.abort()


@pytest.fixture
def release_writer() -> multiprocessing.synchronize.Event:
    """Set it to make the process holding the writer lock let go of it."""
    return multiprocessing.get_context("spawn").Event()


@pytest.fixture
def locked_store(tmp_path: Path, release_writer: multiprocessing.synchronize.Event):  # type: ignore[no-untyped-def]
    path = tmp_path / "store"
    with warmstart.boot(path, namespace="n", signals=False):
        Service().rows["a"] = Row(1)
    context = multiprocessing.get_context("spawn")
    held = context.Event()
    holder = context.Process(target=_hold_writer, args=(str(path), held, release_writer, 30.0))
    holder.start()
    assert held.wait(30)
    yield path
    release_writer.set()
    holder.join(30)


class TestWriterLock:
    def test_boot_starts_cold_within_open_timeout(self, locked_store: Path) -> None:
        """With the writer lock held elsewhere, boot gives up after open_timeout and starts cold."""
        started = time.perf_counter()
        settings = {"signals": False, "open_timeout": 0.3, "checkpoint_on_exit": False}
        with (
            pytest.warns(warmstart.ColdStartWarning, match="open within 0.3s"),
            warmstart.boot(locked_store, namespace="n", **settings) as boot,
        ):
            service = Service()
        assert time.perf_counter() - started < 2.0
        assert boot.report.status == "cold"
        assert service.rows == {}
        boot.close()

    def test_strict_boot_raises_store_timeout(self, locked_store: Path) -> None:
        """strict=True turns the lock wait into StoreTimeoutError (a TimeoutError)."""
        with (
            pytest.raises(TimeoutError),
            warmstart.boot(
                locked_store, namespace="n", signals=False, open_timeout=0.3, strict=True
            ),
        ):
            pass

    def test_waiting_open_releases_the_gil(
        self, locked_store: Path, release_writer: multiprocessing.synchronize.Event
    ) -> None:
        """While a Store open waits for the lock, other threads of the process keep running."""
        opened = threading.Event()

        def open_store() -> None:
            warmstart.Store(locked_store).close()
            opened.set()

        worker = threading.Thread(target=open_store)
        worker.start()
        ticks = 0
        deadline = time.perf_counter() + 0.5
        while time.perf_counter() < deadline:
            ticks += 1
        assert not opened.is_set()  # still waiting for the writer lock
        assert ticks > 10_000  # and this thread ran meanwhile
        release_writer.set()
        worker.join(30)
        assert opened.is_set()
