"""The boot lifecycle in a long-lived service (issue 14), in one process.

Each class is one defect of 0.1 that lost warm state, or disk, silently; the
tests with real processes, forks and signals are in test_lifecycle_processes.py.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import tracemalloc
from pathlib import Path
from typing import Any

import msgspec
import pytest

import warmstart
from conftest import RECORDS, Record, make_records
from warmstart.delta import mark_changed

NS = "svc"


def boot(path: Path, **options: Any) -> warmstart.Boot:
    options.setdefault("signals", False)
    options.setdefault("store_options", {"sync": False})
    return warmstart.boot(path, namespace=options.pop("namespace", NS), **options)


@warmstart.warm(rows=RECORDS)
class Catalog:
    def __init__(self) -> None:
        self.rows: dict[str, Record] = {}


@warmstart.warm(rows=RECORDS)
class Prices:
    def __init__(self) -> None:
        self.rows: dict[str, Record] = {}


@warmstart.warm(key="tenant", rows=RECORDS)
class Tenant:
    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.rows: dict[str, Record] = {}


def head(path: Path, namespace: str = NS) -> warmstart.store.GenerationInfo:
    with warmstart.Store(path, readonly=True) as store:
        return store.generations(namespace)[0]


class TestReadTransactions:
    """1. A boot pinned LMDB pages for its whole life: data.mdb grew at every checkpoint."""

    def test_no_snapshot_outlives_the_restore(self, store_path: Path) -> None:
        """The read transaction ends once restored (startup-only) or at the first checkpoint."""
        with boot(store_path) as first:
            Catalog().rows.update(make_records(10))
        with boot(store_path, checkpoint_on_exit=False) as b:
            catalog = Catalog()
            assert b.snapshot is not None  # the with body may build more objects
        assert b.snapshot is None  # startup is over: released
        assert catalog.rows == make_records(10)
        b.close()
        with boot(store_path) as b:  # the lifespan pattern: open for the service's life
            catalog = Catalog()
            b.checkpoint()
            assert b.snapshot is None
        assert first.report.status == "cold"

    def test_a_late_attach_reads_a_fresh_snapshot(self, store_path: Path) -> None:
        """An object attached after the snapshot was released restores from a new one."""
        with boot(store_path) as b:
            Catalog().rows.update(make_records(3))
            Prices().rows.update(make_records(4))
        with boot(store_path, checkpoint_on_exit=False) as b:
            catalog = Catalog()
        assert b.snapshot is None
        b.checkpoint()  # Prices' section is carried forward meanwhile
        prices = b.attach(Prices())
        assert b.snapshot is None
        assert (catalog.rows, prices.rows) == (make_records(3), make_records(4))
        b.close()

    def test_data_file_stays_bounded_over_many_checkpoints(self, store_path: Path) -> None:
        """200 full checkpoints of a churning 2,000-entry cache in a long-lived boot:
        data.mdb stays within 12 generations' bytes (it grew by one per checkpoint)."""
        with boot(store_path) as b:
            catalog = Catalog()
            for i in range(200):
                catalog.rows.clear()
                catalog.rows.update(make_records(2000, salt=i))
                assert b.checkpoint().status == "saved"
            size = (store_path / "data.mdb").stat().st_size
            one = head(store_path).stored_bytes
        assert size <= 12 * one + (1 << 20), (size, one)


class TestSeveralBoots:
    """3. Two boots on one store directory in one process: the second started cold for ever."""

    def test_two_components_share_one_environment(self, store_path: Path) -> None:
        """Two namespaces of one path, open at once, both restore and both save."""
        with (
            boot(store_path, namespace="catalog", capture=Catalog) as a,
            boot(store_path, namespace="prices", capture=Prices) as b,
        ):
            Catalog().rows.update(make_records(2))
            Prices().rows.update(make_records(3))
        with (
            boot(store_path, namespace="catalog", capture=Catalog) as a,
            boot(store_path, namespace="prices", capture=Prices) as b,
        ):
            catalog, prices = Catalog(), Prices()
        assert (a.report.status, b.report.status) == ("warm", "warm")
        assert (catalog.rows, prices.rows) == (make_records(2), make_records(3))
        assert set(a.report.sections) == {"Catalog.rows"}
        assert set(b.report.sections) == {"Prices.rows"}

    def test_nested_boots_route_by_capture(self, store_path: Path) -> None:
        """The innermost boot that accepts an object captures it; others go outwards."""
        with boot(store_path, namespace="outer") as outer:
            with boot(store_path, namespace="inner", capture=Prices) as inner:
                Catalog().rows.update(make_records(1))
                Prices().rows.update(make_records(2))
            assert outer.report.sections.keys() == {"Catalog.rows"}
            assert inner.report.sections.keys() == {"Prices.rows"}

    def test_capture_must_name_classes(self, store_path: Path) -> None:
        """A typo in capture= is refused, not a boot that captures nothing."""
        with pytest.raises(TypeError, match="capture as a class"):
            boot(store_path, capture="Catalog")  # type: ignore[arg-type]


class TestLazyObjects:
    """5. Sections of objects not built in this run were dropped from the next generation."""

    def test_an_unbuilt_objects_section_is_carried_forward(self, store_path: Path) -> None:
        """A lazily built object restores its state even after runs that never built it."""
        with boot(store_path):
            Catalog().rows.update(make_records(2))
            Prices().rows.update(make_records(3))
        for _ in range(4):  # runs that never build Prices, each with checkpoints
            with boot(store_path) as b:
                Catalog().rows.update(make_records(5))
                report = b.checkpoint()
                assert report.carried == ("Prices.rows",)
        with boot(store_path):
            prices = Prices()
        assert prices.rows == make_records(3)

    def test_forget_lets_a_section_go(self, store_path: Path) -> None:
        """boot.forget() drops a section; carry_forward=False drops all unclaimed ones."""
        with boot(store_path):
            Catalog()
            Prices().rows.update(make_records(3))
        with boot(store_path) as b:
            Catalog()
            b.forget("Prices.rows")
        assert head(store_path).sections.keys() == {"Catalog.rows"}
        with boot(store_path):
            Catalog()
            Prices().rows.update(make_records(1))
        with boot(store_path, carry_forward=False):
            Catalog()
        assert head(store_path).sections.keys() == {"Catalog.rows"}

    def test_a_cold_boot_carries_nothing(self, store_path: Path) -> None:
        """A generation that was too old to restore is not carried forward either."""
        clock = warmstart.testing.FakeClock()
        with boot(store_path, clock=clock):
            Catalog()
            Prices().rows.update(make_records(3))
        clock.advance(3600)
        with boot(store_path, clock=clock, max_age="1m") as b:
            Catalog()
        assert b.report.status == "cold"
        assert head(store_path).sections.keys() == {"Catalog.rows"}


class TestMisWiring:
    """6. A boot with nothing attached said nothing; per-request objects failed or leaked."""

    def test_nothing_attached_warns_with_the_fix(
        self, store_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A service built before the boot opened: the checkpoint says how to attach it."""
        built_at_import = Catalog()
        with boot(store_path) as b:
            pass
        report = b._saver  # the exit checkpoint's warning
        assert report is not None
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert any("nothing is attached" in r.getMessage() for r in warnings)
        assert any("boot.attach(obj)" in r.getMessage() for r in warnings)
        with boot(store_path) as b:
            b.attach(built_at_import).rows.update(make_records(2))
        with boot(store_path) as b:
            assert b.attach(Catalog()).rows == make_records(2)

    def test_objects_built_in_other_threads_are_not_captured(self, store_path: Path) -> None:
        """A request thread's objects are not restored, saved or retained by the boot."""
        with boot(store_path) as b:
            Catalog().rows.update(make_records(2))
        with boot(store_path) as b:
            catalog = Catalog()
            built: list[Catalog] = []
            thread = threading.Thread(target=lambda: built.append(Catalog()))
            thread.start()
            thread.join()
            assert built[0].rows == {}  # not restored
            assert len(b._attached) == 1
        assert catalog.rows == make_records(2)

    def test_a_second_unkeyed_instance_never_fails(self, store_path: Path) -> None:
        """Built in the boot's own context, a duplicate is left alone, not an error."""
        with boot(store_path) as b:
            first = Catalog()
            Catalog()  # once raised ContractError: an HTTP 500 in a request
            first.rows.update(make_records(1))
        assert b.report.sections.keys() == {"Catalog.rows"}

    def test_memory_stays_flat_over_per_request_objects(self, store_path: Path) -> None:
        """10,000 per-request objects (keyed, in request tasks) are not kept by the boot."""

        async def request(i: int) -> None:
            Tenant(f"t{i}").rows["k"] = make_records(1)["k0"]

        async def serve() -> tuple[int, int]:
            # As an ASGI server runs it: the lifespan in a task of its own, the
            # requests in tasks the server creates outside the lifespan's context.
            started, stop = asyncio.Event(), asyncio.Event()
            opened: list[warmstart.Boot] = []

            async def lifespan() -> None:
                async with boot(store_path) as b:
                    Catalog()  # startup: captured
                    opened.append(b)
                    started.set()
                    await stop.wait()

            life = asyncio.create_task(lifespan())
            await started.wait()
            await asyncio.gather(*(request(i) for i in range(500)))
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.take_snapshot()
            for start in range(0, 10_000, 500):
                await asyncio.gather(*(request(i) for i in range(start, start + 500)))
            gc.collect()
            grown = sum(
                s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename")
            )
            tracemalloc.stop()
            stop.set()
            await life
            return len(opened[0]._attached), grown

        attached, grown = asyncio.run(serve())
        assert attached == 1
        assert grown < 512 * 1024, grown


class TestPartialCheckpoints:
    """7. One bad section failed the whole checkpoint, and the result said nothing."""

    def test_a_bad_section_costs_only_itself(self, store_path: Path) -> None:
        """The others are saved; the bad one keeps its previous state; the report says so."""
        with boot(store_path):
            Catalog().rows.update(make_records(2))
            Prices().rows.update(make_records(3))
        with boot(store_path) as b:
            catalog, prices = Catalog(), Prices()
            catalog.rows["bad"] = "not a Record"  # type: ignore[assignment]
            prices.rows.update(make_records(5))
            report = b.checkpoint()
            assert report.status == "partial"
            assert report.saved == ("Prices.rows",)
            assert report.carried == ("Catalog.rows",)
            assert "Expected values of type Record" in report.failed["Catalog.rows"]
            del catalog.rows["bad"]
        with boot(store_path):
            catalog, prices = Catalog(), Prices()
        assert (catalog.rows, prices.rows) == (make_records(2), make_records(5))


class TestInPlaceMutation:
    """9. A tracked value changed in place was missing from the next delta."""

    @pytest.mark.parametrize("container", ["TrackedDict", "tracked LRUCache"])
    def test_a_value_changed_in_place_is_saved(self, store_path: Path, container: str) -> None:
        """Reads of mutable values count as writes: the change reaches the next delta."""
        cachetools = pytest.importorskip("cachetools")

        @warmstart.warm(rows=warmstart.state(RECORDS, lock="lock"))
        class Rows:
            def __init__(self) -> None:
                self.lock = threading.Lock()
                self.rows: Any = (
                    warmstart.TrackedDict()
                    if container == "TrackedDict"
                    else warmstart.track(cachetools.LRUCache(maxsize=100))
                )

        with boot(store_path, interval=3600):
            Rows().rows.update(make_records(5))
        with boot(store_path, interval=3600) as b:
            rows = Rows()
            rows.rows["k1"].tags.append(99)  # in place, through a read
            report = b.checkpoint()
        with warmstart.Store(store_path, readonly=True) as store:
            assert store.manifest(NS, report.generation).kind == "delta"
        with boot(store_path):
            assert Rows().rows["k1"].tags == [1, 2, 3, 99]

    def test_mark_changed_records_a_change_made_elsewhere(self) -> None:
        """A change through a reference kept elsewhere is recorded by mark_changed()."""
        rows = warmstart.TrackedDict(make_records(2))
        rows.mark_clean()
        kept = rows["k0"]
        rows.mark_clean()
        kept.tags.append(1)
        mark_changed(rows, "k0")
        assert rows.take_changes().upserts == ["k0"]
        with pytest.raises(TypeError, match="tracked mapping"):
            mark_changed({}, "k0")

    def test_immutable_values_keep_reads_cheap(self) -> None:
        """Frozen Structs without mutable fields: a read is not a write."""

        class Frozen(msgspec.Struct, frozen=True):
            n: int

        contract = warmstart.Contract("frozen", Frozen)
        rows = warmstart.TrackedDict({"a": Frozen(1)})
        with warmstart.testing.temporary_store() as store:
            store.save(NS, {"s": (contract, rows)})
            _ = rows["a"]
            assert rows.take_changes().upserts == []
