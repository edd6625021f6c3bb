"""Counting lookups served by restored entries (the warm hit fraction)."""

from __future__ import annotations

from pathlib import Path

import cachetools
import msgspec
import pytest

import warmstart


class Row(msgspec.Struct):
    value: int


ROWS = warmstart.Contract("row", Row, key=int)


@warmstart.warm(rows=ROWS)
class Service:
    def __init__(self, kind: str) -> None:
        rows: object = warmstart.TrackedDict() if kind == "tracked" else cachetools.LRUCache(10_000)
        self.rows = warmstart.counted(rows)  # type: ignore[type-var]


class TestCounted:
    def test_plain_dict_is_refused(self) -> None:
        """A dict cannot be counted in place; the error names what can."""
        with pytest.raises(warmstart.ContractError, match="TrackedDict"):
            warmstart.counted({})

    def test_counted_twice_is_one_counter(self) -> None:
        """Counting an already counted mapping keeps its counter."""
        cache = warmstart.counted(cachetools.LRUCache(4))
        assert warmstart.counted(cache) is cache
        assert warmstart.metrics.counter_of(cache) is not None

    def test_counting_composes_with_tracking(self) -> None:
        """A tracked cache can be counted too, and still records its changes."""
        cache = warmstart.counted(warmstart.track(cachetools.LRUCache(4)))
        cache["a"] = 1
        assert cache.get("a") == 1
        assert warmstart.delta.is_tracked(cache)
        counter = warmstart.metrics.counter_of(cache)
        assert counter is not None
        assert counter.lookups == 1


@pytest.mark.parametrize("kind", ["tracked", "lru"])
class TestWarmHitFraction:
    def test_boot_reports_hits_on_restored_entries(self, tmp_path: Path, kind: str) -> None:
        """Lookups of restored keys count as warm hits; new and rewritten keys do not."""
        with warmstart.boot(tmp_path, namespace="n", signals=False):
            service = Service(kind)
            for i in range(100):
                service.rows[i] = Row(i)
        with warmstart.boot(tmp_path, namespace="n", signals=False) as boot:
            service = Service(kind)
            assert boot.wait_ready(30)
            service.rows[0] = Row(-1)  # rewritten: no longer the restored value
            service.rows[1000] = Row(1000)  # new
            for i in (0, 1, 2, 3, 1000):
                assert service.rows[i].value in (i, -1)
            assert service.rows.get(5000) is None  # a miss
            assert boot.metrics.get("lookups_total") == 6
            assert boot.metrics.get("warm_hits_total") == 3  # keys 1, 2 and 3
            assert boot.metrics.warm_hit_fraction == pytest.approx(0.5)
