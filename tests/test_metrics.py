"""Boot reports and the counters a boot keeps: what came back warm, what did not, and why."""

from __future__ import annotations

import logging
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cachetools
import lmdb
import msgspec
import pytest

import warmstart
from conftest import RECORDS, Record, make_records
from warmstart import BootReport, ColdStartWarning
from warmstart.metrics import Metrics, SectionReport

NS = "svc"


def boot(path: Path | warmstart.Store, **options: Any) -> warmstart.Boot:
    options.setdefault("signals", False)
    return warmstart.boot(path, namespace=NS, **options)


@warmstart.warm(rows=RECORDS)
class First:
    """One warm object."""

    def __init__(self) -> None:
        self.rows: dict[str, Record] = {}


@warmstart.warm(rows=RECORDS)
class Second:
    """Another one."""

    def __init__(self) -> None:
        self.rows: dict[str, Record] = {}


class TestBootReport:
    """``boot.report`` says which generation was used and what each section got."""

    def test_warm_report(self, store_path: Path) -> None:
        """A warm boot reports the generation, its age, and every section's numbers."""
        with boot(store_path, watermark=lambda: "lsn-7"):
            First().rows.update(make_records(30))
            Second().rows.update(make_records(5))
        with boot(store_path) as b:
            First()
            Second()
        report = b.report
        assert (report.status, report.reason, report.generation) == ("warm", "head generation", 1)
        assert report.watermark == "lsn-7"
        assert report.generation_age is not None
        assert report.generation_age >= 0
        assert report.fallback == []
        assert list(report.sections) == ["First.rows", "Second.rows"]
        first = report.sections["First.rows"]
        assert (first.status, first.saved, first.restored) == ("warm", 30, 30)
        assert first.bytes > 0
        assert first.seconds > 0
        assert report.restored == 35
        assert report.warm_fraction == 1.0
        assert report.time_to_ready is not None
        assert report.time_to_warm is not None
        assert 0 < report.time_to_ready <= report.time_to_warm

    def test_summary_lines(self) -> None:
        """The summary has one line for the boot and one per section, with what was left out."""
        report = BootReport("svc", status="partial", reason="head generation", generation=4)
        report.sections["A.rows"] = SectionReport(
            "A.rows", "warm", saved=10, restored=6, upgraded=6, dropped_invalid=1,
            dropped_expired=2, skipped_capacity=1,
        )  # fmt: skip
        report.sections["B.rows"] = SectionReport("B.rows", "cold", reason="incompatible")
        assert str(report).splitlines() == [
            "warmstart 'svc': partial from generation 4 (head generation)",
            "  A.rows: warm, 6/10 restored, 6 upgraded, 1 invalid, 2 expired, 1 over capacity",
            "  B.rows: cold, 0/0 restored - incompatible",
        ]
        assert report.restored == 6
        assert report.warm_fraction == 0.6

    def test_cold_report_says_why(self, store_path: Path) -> None:
        """A cold boot has no generation and a reason on the boot and on each section."""
        with boot(store_path) as b:
            First()
        assert (b.report.status, b.report.generation) == ("cold", None)
        assert b.report.sections["First.rows"].reason == "no checkpoint yet"
        assert b.report.warm_fraction == 0.0


class TestCounters:
    """``boot.metrics`` counts every section once, whatever the order of events."""

    def test_every_object_is_counted(self, store_path: Path) -> None:
        """Entries of every attached object count, not only the first one's."""
        with boot(store_path):
            First().rows.update(make_records(30))
            Second().rows.update(make_records(5))
        with boot(store_path) as b:
            First()
            Second()
        assert b.metrics.get("restore_entries_total") == 35
        assert b.metrics.get("cold_sections_total") == 0
        assert b.metrics.get("readiness") == 1.0
        assert b.metrics.get("restore_seconds") > 0
        assert b.metrics.get("time_to_ready_seconds") > 0

    def test_cold_sections_are_counted_once(self, store_path: Path) -> None:
        """Each cold section counts once."""
        with boot(store_path) as b:
            First()
            Second()
        assert b.metrics.get("cold_sections_total") == 2

    def test_upgraded_invalid_and_expired(self, store_path: Path) -> None:
        """Upgraded, invalid and expired entries are counted."""

        class V1(msgspec.Struct):
            n: int

        class V2(msgspec.Struct):
            n: int

            def __post_init__(self) -> None:
                if self.n == 0:
                    raise ValueError("zero")

        timer = [0.0]

        @warmstart.warm(rows=warmstart.Contract("n", V1))
        class Old:
            def __init__(self) -> None:
                self.rows = cachetools.TTLCache(maxsize=10, ttl=100, timer=lambda: timer[0])

        @warmstart.warm(rows=warmstart.Contract("n", V2, version=2, upgraders={1: dict}))
        class New:
            def __init__(self) -> None:
                self.rows = cachetools.TTLCache(maxsize=10, ttl=100)

        Old.__name__ = New.__name__ = "Svc"
        with boot(store_path):
            old = Old()
            old.rows.update({"zero": V1(0), "one": V1(1), "two": V1(2)})
            timer[0] = 60.0
            old.rows["late"] = V1(3)
        with boot(store_path, clock=lambda: time.time() + 70) as b:
            new = New()
        assert sorted(new.rows) == ["late"]
        assert b.metrics.get("restore_upgraded_total") == 3
        assert b.metrics.get("restore_dropped_invalid_total") == 1
        assert b.metrics.get("restore_dropped_expired_total") == 2
        assert b.metrics.get("restore_entries_total") == 1

    def test_checkpoints_including_periodic_ones(self, store_path: Path) -> None:
        """Explicit, periodic and exit checkpoints are all counted, with the last generation."""
        with boot(store_path, interval=0.05) as b:
            first = First()
            first.rows.update(make_records(3))
            deadline = time.monotonic() + 10
            while b.metrics.get("checkpoints_total") < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            periodic = b.metrics.get("checkpoints_total")
            assert periodic >= 2
            generation = b.checkpoint().generation
            assert b.metrics.get("last_checkpoint_generation") == generation
        assert b.metrics.get("checkpoints_total") >= periodic + 2
        assert b.metrics.get("checkpoint_failures_total") == 0
        assert b.metrics.get("checkpoint_seconds_total") > 0
        assert b.metrics.get("last_checkpoint_seconds") > 0

    def test_fallback_to_an_older_generation_is_counted(self, store_path: Path) -> None:
        """Falling back past a damaged head counts one fallback."""
        with boot(store_path):
            First().rows.update(make_records(3))
        with boot(store_path):
            First().rows.update(make_records(6))
        with warmstart.Store(store_path) as store:
            digests = store.manifest(NS, 2).digests() - store.manifest(NS, 1).digests()
        env = lmdb.open(str(store_path), max_dbs=8)
        with env.begin(write=True) as txn:
            chunks = env.open_db(b"chunks", txn=txn, create=False)
            for key, value in list(txn.cursor(db=chunks)):
                if bytes(key)[4:] in digests:
                    txn.put(bytes(key), bytes(value)[:-1] + bytes([value[-1] ^ 1]), db=chunks)
        env.close()
        with boot(store_path) as b:
            rows = First()
        assert rows.rows == make_records(3)
        assert b.report.generation == 1
        assert b.metrics.get("restore_fallbacks_total") == 1

    def test_crash_loop_fallback_is_counted_once(self, store_path: Path) -> None:
        """A quarantine by the crash-loop breaker counts one fallback."""
        code = "import os; print(os.getpid())"
        dead = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
        with boot(store_path) as b:
            First().rows.update(make_records(1))
        with warmstart.Store(store_path) as store:
            marker = struct.pack(">Qd", 1, time.time())
            store.set_marker(NS, f"restoring-{int(dead.stdout)}-beef", marker)
        b = boot(store_path)
        with pytest.warns(ColdStartWarning, match="crash-loop"):
            b.__enter__()
        b.__exit__(None, None, None)
        assert b.metrics.get("restore_fallbacks_total") == 1
        assert len(b.report.fallback) == 1


class TestLogging:
    """Reports are logged with structured fields."""

    def test_each_section_is_logged_with_fields(
        self, store_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Every finished section yields one log record carrying its name, status and counts."""
        with boot(store_path):
            First().rows.update(make_records(4))
        with caplog.at_level(logging.INFO, logger="warmstart"), boot(store_path):
            First()
        records = [r for r in caplog.records if getattr(r, "section", None) == "First.rows"]
        assert len(records) == 1
        assert records[0].__dict__["status"] == "warm"
        assert records[0].__dict__["restored"] == 4
        assert "First.rows: warm, 4/4 restored" in records[0].getMessage()
        boot_records = [r for r in caplog.records if getattr(r, "generation", None) == 1]
        assert boot_records


class TestMetrics:
    """The counter object itself."""

    def test_concurrent_increments_are_exact(self) -> None:
        """Increments from many threads add up exactly."""
        metrics = Metrics()

        def bump() -> None:
            for _ in range(5000):
                metrics.inc("lookups_total")

        threads = [threading.Thread(target=bump) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert metrics.get("lookups_total") == 20_000

    def test_names_and_hit_fraction(self) -> None:
        """Counters and gauges are all present from the start; the hit fraction is safe at zero."""
        metrics = Metrics()
        assert set(metrics.snapshot()) == set(Metrics.COUNTERS + Metrics.GAUGES)
        assert metrics.warm_hit_fraction == 0.0
        metrics.inc("lookups_total", 4)
        metrics.inc("warm_hits_total", 3)
        assert metrics.warm_hit_fraction == 0.75
        with pytest.raises(KeyError):
            metrics.inc("no_such_counter")
