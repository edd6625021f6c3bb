"""Helpers for your own tests: a temporary store, a fake clock, a round-trip check.

>>> import msgspec
>>> from warmstart import Contract
>>> class Row(msgspec.Struct):
...     name: str
>>> ROWS = Contract("row", Row, key=int)
>>> assert_round_trip(ROWS, {1: Row("a"), 2: Row("b")})
>>> clock = FakeClock(1000.0)
>>> with temporary_store(clock=clock) as store:
...     _ = store.save("svc", {"rows": (ROWS, {1: Row("a")})})
...     clock.advance(90)
...     with store.load("svc") as snapshot:
...         print(snapshot.age(clock()))
90.0
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

from warmstart.contract import Contract
from warmstart.store import Store

__all__ = ("FakeClock", "assert_round_trip", "temporary_store")


def __dir__() -> tuple[str, ...]:
    return __all__


class FakeClock:
    """A wall clock your test moves by hand: pass it as ``clock=`` to ``Store`` or ``boot``.

    Args:
        now: the time it starts at, in seconds since the epoch.
    """

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward (checkpoints then look ``seconds`` older)."""
        self.now += seconds


@contextlib.contextmanager
def temporary_store(**options: Any) -> Iterator[Store]:
    """A real store in a temporary directory, closed and removed at the end.

    ``options`` are ``Store``'s keyword arguments (``keep=``, ``secret=``,
    ``clock=``...). ``sync=False`` by default: tests need no fsync.
    """
    with tempfile.TemporaryDirectory(prefix="warmstart-test-") as path:
        store = Store(path, **{"sync": False, **options})
        try:
            yield store
        finally:
            store.close()


def assert_round_trip(contract: Contract[Any], entries: Mapping[Any, Any]) -> None:
    """Assert that ``entries`` come back equal and in order through a real save and load.

    Run it in a test for each contract your service keeps warm: it fails if a
    value cannot be encoded, or does not come back the same.

    Raises:
        AssertionError: naming the first key that differs.
    """
    with temporary_store() as store:
        store.save("round-trip", {"section": (contract, entries)})
        with store.load("round-trip") as snapshot:
            restored = snapshot.section("section", contract)
    expected = dict(entries)
    if list(restored) != list(expected):
        missing = [k for k in expected if k not in restored]
        msg = f"Expected the same keys in the same order, missing {missing[:5]!r}"
        raise AssertionError(msg)
    for key, value in expected.items():
        if restored[key] != value or type(restored[key]) is not type(value):
            msg = f"Expected {value!r} at key {key!r}, got {restored[key]!r}"
            raise AssertionError(msg)
