"""A progressive restore leaves a container in saved order, hot entries last."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import msgspec
import pytest

import warmstart


class Row(msgspec.Struct):
    value: int


ROWS = warmstart.Contract("row", Row, key=int)
SIZE = 60_000  # several chunks: a hot part and a background part


def make(kind: str) -> Any:
    factories = {
        "dict": dict,
        "ordered": collections.OrderedDict,
        "tracked": warmstart.TrackedDict,
    }
    return factories[kind]()


@warmstart.warm(rows=ROWS)
class Service:
    def __init__(self, kind: str) -> None:
        self.rows = make(kind)


@pytest.mark.parametrize("kind", ["dict", "ordered", "tracked"])
class TestProgressiveOrder:
    def test_saved_order_survives_background_restore(self, tmp_path: Path, kind: str) -> None:
        """After the background phase the order equals the saved order, not hot-first."""
        with warmstart.boot(tmp_path, namespace="n", signals=False):
            Service("dict").rows.update({i: Row(i) for i in range(SIZE)})
        with warmstart.boot(
            tmp_path, namespace="n", signals=False, checkpoint_on_exit=False
        ) as boot:
            service = Service(kind)
            hottest_present = SIZE - 1 in service.rows
        assert boot.wait_ready(30)
        boot.close()
        assert boot.report.sections["Service.rows"].restored == SIZE
        assert hottest_present  # the hot part was in place before the body ran
        assert list(service.rows) == list(range(SIZE))

    def test_next_checkpoint_keeps_the_order(self, tmp_path: Path, kind: str) -> None:
        """A checkpoint after a progressive restore saves the same order again."""
        with warmstart.boot(tmp_path, namespace="n", signals=False):
            Service("dict").rows.update({i: Row(i) for i in range(SIZE)})
        with warmstart.boot(tmp_path, namespace="n", signals=False) as boot:
            Service(kind)
            assert boot.wait_ready(30)
        with warmstart.Store(tmp_path) as store, store.load("n") as snapshot:
            assert list(snapshot.section("Service.rows", ROWS)) == list(range(SIZE))
