"""Disk full: a save that does not fit fails cleanly and the previous generation survives.

The store lives on a real small filesystem: a 4 MiB tmpfs this test mounts when
it runs as root. Elsewhere the same checks run against a map capped with
``max_map_size``, which is how a store bounds its own size. After the failed
save the previous generation must load, in this process and in a fresh one,
verify clean, and the store must accept a save that fits.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

import warmstart


class Blob(msgspec.Struct):
    """Random bytes: they do not compress, so sizes on disk are predictable."""

    data: bytes


BLOBS = warmstart.Contract("blob", Blob, key=int)
SMALL_FS = "4m"


def blobs(count: int, seed: int) -> dict[int, Blob]:
    rng = random.Random(seed)
    return {i: Blob(rng.randbytes(1024)) for i in range(count)}


@pytest.fixture
def small_store(tmp_path: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """A store path on a full-able filesystem, and the Store options that go with it."""
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={SMALL_FS}", "tmpfs", str(mount)],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    try:
        yield mount / "store", {} if mounted else {"max_map_size": 4 << 20}
    finally:
        if mounted:
            subprocess.run(["umount", str(mount)], check=True)


def load_in_fresh_process(path: Path) -> tuple[int, int]:
    """(generation, entries) of the head, as a newly started process sees it."""
    code = textwrap.dedent(
        """
        import sys, msgspec, warmstart
        class Blob(msgspec.Struct):
            data: bytes
        blobs = warmstart.Contract("blob", Blob, key=int)
        with warmstart.Store(sys.argv[1], readonly=True) as store:
            with store.load("svc") as snapshot:
                print(snapshot.generation, len(snapshot.section("b", blobs)))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )
    generation, entries = done.stdout.split()
    return int(generation), int(entries)


class TestDiskFull:
    def test_save_that_does_not_fit(self, small_store: tuple[Path, dict[str, Any]]) -> None:
        """A save larger than the free space fails with StoreFullError and changes nothing."""
        path, options = small_store
        with warmstart.Store(path, **options) as store:
            kept = blobs(1000, seed=1)
            assert store.save("svc", {"b": (BLOBS, kept)}) == 1
            with pytest.raises(warmstart.errors.StoreFullError) as info:
                store.save("svc", {"b": (BLOBS, blobs(6000, seed=2))})
            reason = "free disk space" if not options else "max_map_size"
            assert reason in str(info.value)
            assert [g.generation for g in store.generations("svc")] == [1]
            with store.load("svc") as snapshot:
                assert snapshot.section("b", BLOBS) == kept
            assert store.verify().ok
        assert load_in_fresh_process(path) == (1, 1000)
        with warmstart.Store(path, **options) as store:
            assert store.save("svc", {"b": (BLOBS, blobs(100, seed=3))}) == 2
            with store.load("svc") as snapshot:
                assert snapshot.section("b", BLOBS) == blobs(100, seed=3)
        assert load_in_fresh_process(path) == (2, 100)

    def test_filling_up_gradually(self, small_store: tuple[Path, dict[str, Any]]) -> None:
        """Saves growing a little each time end in a clean failure that keeps the last good one."""
        path, options = small_store
        last_good = 0
        with warmstart.Store(path, keep=2, **options) as store:
            for step in range(1, 60):
                try:
                    last_good = store.save("svc", {"b": (BLOBS, blobs(100 * step, seed=step))})
                except warmstart.errors.StoreFullError:
                    break
            else:
                pytest.fail("the small filesystem never filled up")
            assert store.verify().ok
        assert last_good > 1
        assert load_in_fresh_process(path) == (last_good, 100 * last_good)
