"""A boot that checkpoints periodically tracks the containers it attaches (issue 15).

With ``interval=``, a cachetools cache is tracked in place and a plain dict
is swapped for a ``LoggedDict`` (when nothing else refers to it), so that a
periodic checkpoint costs what changed; a warm progressive boot's first
checkpoint is a small delta, not the whole restored cache; and every
checkpoint reports its CPU and its longest stretch without a yield.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import cachetools
import msgspec
import pytest

import warmstart
from warmstart.delta import LoggedDict, change_log, fold_keys, is_tracked

NS = "svc"


class Row(msgspec.Struct, frozen=True):
    value: int


ROWS = warmstart.Contract("row", Row, key=int)
SIZE = 60_000  # several base chunks: a hot part and a background part


@warmstart.warm(
    rows=ROWS,
    cache=warmstart.state(ROWS, lock="lock"),
    plain=warmstart.state(ROWS, track=False),
)
class Service:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rows: dict[int, Row] = {}
        self.cache: Any = cachetools.LRUCache(maxsize=2 * SIZE)
        self.plain: dict[int, Row] = {}


@warmstart.warm(rows=ROWS)
class Aliased:
    def __init__(self) -> None:
        self.rows: dict[int, Row] = {}
        self.get = self.rows.get  # another reference to the dict


def _boot(path: Path, **options: Any) -> warmstart.Boot:
    return warmstart.boot(path, namespace=NS, signals=False, **options)


def test_a_periodic_boot_tracks_caches_in_place_and_swaps_plain_dicts(store_path: Path) -> None:
    with _boot(store_path, interval=3600) as boot:
        service = Service()
        cache = service.cache
        assert type(service.rows) is LoggedDict
        assert isinstance(service.rows, dict)
        assert is_tracked(service.cache)
        assert service.cache is cache  # the same object, its class swapped
        assert type(service.plain) is dict  # state(track=False)
        service.rows[1] = Row(1)
        assert service.rows == {1: Row(1)}
    assert boot.report.status == "cold"


def test_without_an_interval_nothing_is_tracked_unless_asked(store_path: Path) -> None:
    @warmstart.warm(rows=warmstart.state(ROWS, track=True), other=ROWS)
    class Asked:
        def __init__(self) -> None:
            self.rows: dict[int, Row] = {}
            self.other: dict[int, Row] = {}

    with _boot(store_path):
        service = Asked()
        assert type(service.rows) is LoggedDict
        assert type(service.other) is dict


def test_a_dict_referenced_elsewhere_stays_untracked(
    store_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="warmstart.boot"), _boot(store_path, interval=3600):
        service = Aliased()
        assert type(service.rows) is dict
        service.rows[1] = Row(1)
        assert service.get(1) == Row(1)
    assert "stays untracked" in caplog.text


def test_state_refuses_a_track_that_is_not_a_bool() -> None:
    with pytest.raises(warmstart.ContractError, match="track"):
        warmstart.state(ROWS, track="yes")  # type: ignore[arg-type]


def _delta_entries(store: warmstart.Store, section: str) -> int:
    found = store.manifest(NS).section(section)
    assert found is not None
    return sum(ref.entries for ref in found.deltas if ref.sequence == store.manifest(NS).generation)


def test_a_periodic_checkpoint_of_a_tracked_container_holds_what_changed(store_path: Path) -> None:
    with _boot(store_path, interval=3600) as boot:
        service = Service()
        for i in range(1000):
            service.rows[i] = Row(i)
            with service.lock:
                service.cache[i] = Row(i)
        assert boot.checkpoint() is not None  # the first: a base
        service.rows[5] = Row(-5)
        with service.lock:
            service.cache[7] = Row(-7)
        assert boot.checkpoint() is not None
        assert boot.store is not None
        assert boot.store.manifest(NS).kind == "delta"
        assert _delta_entries(boot.store, "Service.rows") == 1
        assert _delta_entries(boot.store, "Service.cache") == 1


@pytest.mark.parametrize("attr", ["rows", "cache"])
def test_the_first_checkpoint_after_a_warm_progressive_boot_is_small(
    store_path: Path, attr: str
) -> None:
    """The background restore's inserts are not changes (they were logged as such before)."""
    saved = {i: Row(i) for i in range(SIZE)}
    with warmstart.Store(store_path) as store:
        store.save(NS, {f"Service.{attr}": (ROWS, saved)})
    with _boot(store_path, interval=3600, checkpoint_on_exit=False) as boot:
        service = Service()
        assert boot.wait_ready(60)
        section = boot.report.sections[f"Service.{attr}"]
        assert section.status == "warm"
        assert section.restored == SIZE
        container = getattr(service, attr)
        with service.lock:
            container[3] = Row(-3)
        assert boot.checkpoint() is not None
        assert boot.store is not None
        assert boot.store.manifest(NS).kind == "delta"
        assert _delta_entries(boot.store, f"Service.{attr}") == 1
        # The log's index knows every key, in the container's order.
        log = change_log(container)
        assert log is not None
        assert log.index is not None
        moved = log.dirty if log.moves else log.inserted
        with service.lock:
            folded = fold_keys(log.index, [*log.since, (moved, log.deletes)])
            present = list(container.keys())
        assert sorted(folded) == sorted(present)
        boot.close()
    with warmstart.Store(store_path) as store, store.load(NS) as snapshot:
        assert snapshot.section(f"Service.{attr}", ROWS) == {**saved, 3: Row(-3)}


def test_a_compaction_after_a_warm_boot_reads_the_index_not_the_container(
    store_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    saved = {i: Row(i) for i in range(SIZE)}
    with warmstart.Store(store_path) as store:
        store.save(NS, {"Service.cache": (ROWS, saved)})
    policy = warmstart.CompactionPolicy(max_deltas=1, max_ratio=1000.0)
    with _boot(
        store_path, interval=3600, checkpoint_on_exit=False, store_options={"compaction": policy}
    ) as boot:
        service = Service()
        assert boot.wait_ready(60)
        with service.lock:
            service.cache[SIZE + 1] = Row(1)
        boot.checkpoint()
        with service.lock:
            del service.cache[0]
        with caplog.at_level(logging.WARNING):
            boot.checkpoint()  # compaction: a base
        assert boot.store is not None
        section = boot.store.manifest(NS).section("Service.cache")
        assert section is not None
        assert section.deltas == ()  # compacted: a base
        assert "bypassed" not in caplog.text
        with service.lock:
            expected = dict(service.cache.items())
        boot.close()
    with warmstart.Store(store_path) as store, store.load(NS) as snapshot:
        assert snapshot.section("Service.cache", ROWS) == expected


def test_each_checkpoint_reports_its_cpu_and_longest_hold(store_path: Path) -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    from warmstart.prometheus import register

    with _boot(store_path, interval=3600) as boot:
        service = Service()
        for i in range(5000):
            service.rows[i] = Row(i)
        boot.checkpoint()
        service.rows[1] = Row(-1)
        boot.checkpoint()
    reports = boot.report.checkpoints
    assert [r.reason for r in reports] == ["checkpoint", "checkpoint", "exit"]
    for report in reports:
        assert report.error is None
        assert report.cpu_seconds > 0
        assert 0 < report.longest_hold_seconds <= report.cpu_seconds + 1e-3
        # A collection in the checkpoint's thread is part of one of its stretches.
        assert 0 <= report.longest_collection_seconds <= report.longest_hold_seconds
    values = boot.metrics.snapshot()
    assert values["last_checkpoint_longest_hold_seconds"] == reports[-1].longest_hold_seconds
    assert (
        values["last_checkpoint_longest_collection_seconds"]
        == reports[-1].longest_collection_seconds
    )
    assert values["checkpoint_longest_hold_seconds_max"] == max(
        r.longest_hold_seconds for r in reports
    )
    assert values["checkpoint_cpu_seconds_total"] == pytest.approx(
        sum(r.cpu_seconds for r in reports)
    )
    registry = prometheus_client.CollectorRegistry()
    register(boot, registry=registry)
    text = prometheus_client.generate_latest(registry).decode()
    assert "warmstart_last_checkpoint_longest_hold_seconds" in text
    assert "warmstart_checkpoint_longest_hold_seconds_max" in text
    assert "warmstart_last_checkpoint_longest_collection_seconds" in text


def test_a_checkpointer_reports_its_last_checkpoint(store_path: Path) -> None:
    rows = warmstart.TrackedDict({i: Row(i) for i in range(3000)})
    with (
        warmstart.Store(store_path, sync=False) as store,
        warmstart.Checkpointer(store, NS, {"s": (ROWS, rows)}, interval=3600) as cp,
    ):
        cp.checkpoint()
    report = cp.last_report
    assert report is not None
    assert report.generation == cp.last_generation
    assert 0 < report.longest_hold_seconds <= report.cpu_seconds + 1e-3


class Mutable(msgspec.Struct):
    tags: list[int]


MUTABLE = warmstart.Contract("mutable", Mutable, key=int)


@warmstart.warm(
    plain=warmstart.state(MUTABLE),
    cache=warmstart.state(MUTABLE, lock="lock"),
)
class InPlace:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.plain: dict[int, Mutable] = {i: Mutable([i]) for i in range(100)}
        self.cache: Any = cachetools.LRUCache(maxsize=1000)
        for i in range(100):
            self.cache[i] = Mutable([i])


def test_values_that_change_in_place_are_saved_when_changed(store_path: Path) -> None:
    """A dict's reads run in C, unseen: it stays diffed; a tracked cache counts reads as writes."""
    with _boot(store_path, interval=3600) as boot:
        service = InPlace()
        assert type(service.plain) is dict  # not a LoggedDict: its reads are not seen
        assert is_tracked(service.cache)
        boot.checkpoint()
        service.plain[3].tags.append(-1)
        with service.lock:
            service.cache[4].tags.append(-1)  # a read, then a change in place
        report = boot.checkpoint()
        assert report.status == "saved"
        assert boot.store is not None
        assert _delta_entries(boot.store, "InPlace.cache") == 1
    with warmstart.Store(store_path) as store, store.load(NS) as snapshot:
        assert snapshot.section("InPlace.plain", MUTABLE)[3].tags == [3, -1]
        assert snapshot.section("InPlace.cache", MUTABLE)[4].tags == [4, -1]


def test_skipped_and_partial_checkpoints_are_reported_with_their_cost(store_path: Path) -> None:
    with _boot(store_path, interval=3600) as boot:
        service = Service()
        for i in range(5000):
            service.rows[i] = Row(i)
            service.plain[i] = Row(i)
    with _boot(store_path, interval=3600) as boot:
        service = Service()
        boot.wait_ready()
        skipped = boot.checkpoint()  # nothing changed since the restore
        assert skipped.status == "skipped"
        service.plain[-1] = "not a Row"  # type: ignore[assignment]
        service.rows[1] = Row(-1)
        partial = boot.checkpoint()
        assert partial.status == "partial"
        assert set(partial.failed) == {"Service.plain"}
        del service.plain[-1]
    assert boot.report.checkpoints[:2] == [skipped, partial]
    for report in (skipped, partial):
        assert report.seconds > 0
        assert 0 < report.longest_hold_seconds <= report.cpu_seconds + 1e-3
    values = boot.metrics.snapshot()
    assert values["checkpoint_longest_hold_seconds_max"] >= partial.longest_hold_seconds


def test_the_pristine_check_lets_go_of_its_references_a_piece_a_step() -> None:
    """What a restore noted (a million references at scale) is freed in paced steps, not at once."""
    from types import SimpleNamespace

    from warmstart._pacing import SLICE, Pacer
    from warmstart.boot._pristine import Pristine

    cache = cachetools.LRUCache(maxsize=50_000)
    cache.update((i, Row(i)) for i in range(20_000))
    attached: Any = [SimpleNamespace(obj=SimpleNamespace(cache=cache), sections={"cache": "c"})]
    pristine = Pristine(generation=1)
    pristine.note(attached)
    assert pristine.unchanged(attached)
    with Pacer(budget=0.0) as pacer:
        pristine.release()
    assert pacer.yields >= 2 * (20_000 // SLICE)  # keys and values, a piece a step
    assert not pristine.unchanged(attached)  # nothing noted any more: new state
