"""Shared fixtures: real stores on disk, a fake clock, the Hypothesis profile."""

from __future__ import annotations

import os
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, settings

import warmstart
from warmstart import testing

settings.register_profile(
    "default",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "slow",
    deadline=None,
    max_examples=2000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def peak(call: Callable[[], Any]) -> tuple[int, Any]:
    """(peak bytes traced while ``call`` runs, its result or the exception it raised)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        try:
            result: Any = call()
        except Exception as exc:
            result = exc
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


def tables_of(store: warmstart.Store) -> dict[str, dict[bytes, bytes]]:
    """Every record of the store's four tables, as stored (to show a refusal changed nothing)."""
    out: dict[str, dict[bytes, bytes]] = {}
    with store._env.read() as txn:
        for name, db in store._env.dbs.items():
            with txn.cursor(db=db) as cur:
                out[name] = {bytes(k): bytes(v) for k, v in cur}
    return out


class Record(msgspec.Struct):
    """The benchmark's small record: six fields of the usual kinds."""

    id: int
    name: str
    score: float
    tags: list[int]
    active: bool
    kind: str


RECORDS = warmstart.Contract("record", Record, key=str)


def make_records(n: int, *, prefix: str = "k", salt: int = 0) -> dict[str, Record]:
    return {
        f"{prefix}{i}": Record(
            i + salt, f"n{i}", i * 0.5, [i, i + 1, i + 2], i % 2 == 0, "abc"[i % 3]
        )
        for i in range(n)
    }


def killed_env() -> dict[str, str]:
    """The environment for a child that always ends by SIGKILL: without coverage's start-up hook.

    Coverage measures a child (``patch = ["subprocess"]``) from start-up but
    writes its data at exit, which a SIGKILL never reaches: starting the
    measurement in such a child costs a few tenths of a second and counts
    nothing. A child that may exit normally keeps the hook.
    """
    return {
        k: v
        for k, v in os.environ.items()
        if k not in ("COVERAGE_PROCESS_CONFIG", "COVERAGE_PROCESS_START")
    }


# The helper users get, used by the suite too.
FakeClock = testing.FakeClock


@pytest.fixture(autouse=True)
def _close_boots_left_open() -> Iterator[None]:
    """Close the boots a test kept open past its ``with`` (``checkpoint_on_exit=False``).

    Open, each keeps its agent and restore threads and its store, and at the
    suite's exit its exit checkpoint runs (warning that nothing is attached
    once the test's objects are gone).
    """
    engine = sys.modules.get("warmstart.boot._boot")
    before = set(engine._OPEN_BOOTS) if engine is not None else set()
    yield
    engine = sys.modules.get("warmstart.boot._boot")
    if engine is None:
        return
    for opened in list(engine._OPEN_BOOTS):
        if opened not in before:
            opened.close()


@pytest.fixture
def frozen_heap() -> Iterator[None]:
    """What earlier tests left on the heap, out of the collector's way for one test.

    The benchmarks collect before each measurement. In the suite's process a
    full collection walks every object hundreds of earlier tests left: the
    stall benchmark's 40 collections took 25 s there and 1.2 s alone. The
    benchmarks' own helper does it (``benchmarks._common.frozen_inputs``).
    """
    from benchmarks._common import frozen_inputs  # only these tests need it

    with frozen_inputs():
        yield


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(store_path: Path, clock: FakeClock) -> Iterator[warmstart.Store]:
    with warmstart.Store(store_path, clock=clock, sync=False) as s:
        yield s


# A source and a target store, and a tracked mapping to move between them
# (transfer and remote tests).
@pytest.fixture
def source(tmp_path: Path, clock: FakeClock) -> Iterator[warmstart.Store]:
    with warmstart.Store(tmp_path / "source", sync=False, clock=clock) as s:
        yield s


@pytest.fixture
def target(tmp_path: Path) -> Iterator[warmstart.Store]:
    with warmstart.Store(tmp_path / "target", sync=False) as s:
        yield s


@pytest.fixture
def tracked() -> warmstart.TrackedDict[str, Record]:
    return warmstart.TrackedDict(make_records(20_000))
