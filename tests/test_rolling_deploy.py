"""Staged exposure decided by the live readers (issue 18): ``write_version="auto"``.

Pure rules first (``warmstart.exposure``), then boots in one process, then a
three-step rolling deploy v1 -> v2 with real processes on one host, and two
hosts sharing a real Redis where a killed reader's record expires.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

import warmstart
from remote_workers.servers import RedisServer, _redis  # noqa: F401 - fixture
from test_boot_e2e import Service
from test_handoff import _run, rollout, send  # noqa: F401 - fixture
from warmstart.errors import ContractError
from warmstart.exposure import Instance, choose, problems, readable

NS = "catalog"
SECTION = "Catalog.items"


class ItemV1(msgspec.Struct):
    value: str


class ItemV2(msgspec.Struct):
    text: str
    note: str = ""


class ItemV3(msgspec.Struct):
    text: str
    note: str = ""
    extra: int = 0


def up(old: dict[str, Any]) -> dict[str, Any]:
    return {"text": old["value"], "note": "upgraded"}


V1 = warmstart.Contract("item", ItemV1, key=str, version=1)
V2 = warmstart.Contract("item", ItemV2, key=str, version=2, upgraders={1: up})
AUTO = warmstart.Contract(
    "item",
    ItemV2,
    key=str,
    version=2,
    upgraders={1: up},
    write_version="auto",
    write_type=ItemV1,
    downgrader=lambda item: ItemV1(item.text),
)


def instance(*contracts: warmstart.Contract[Any], expires: float = 1e12) -> Instance:
    return Instance(
        id=f"host/{id(contracts)}",
        host="host",
        pid=1,
        namespace=NS,
        started_at=0.0,
        expires_at=expires,
        reads=tuple(map(readable, contracts)),
    )


class TestRules:
    def test_readable_follows_the_upgrader_chain(self) -> None:
        """A reader reaches back as far as its upgraders go without a gap."""
        v3 = warmstart.Contract("item", ItemV3, key=str, version=3, upgraders={2: dict})
        assert readable(v3).oldest == 2
        assert readable(V2).oldest == 1
        assert readable(V1).oldest == 1

    def test_problems_mirror_the_contracts_own_decision(self) -> None:
        """What a reader can read, decided from schemas alone, is what its plan() says."""
        for reader in (V1, V2):
            for writer in (V1.schema, V2.schema):
                found = problems(readable(reader), writer)
                try:
                    reader.plan(writer)
                except warmstart.IncompatibleVersionError:
                    assert found
                else:
                    assert found == []

    def test_auto_writes_the_old_version_while_an_old_reader_lives(self) -> None:
        choice = choose(AUTO, [instance(V1), instance(AUTO)])
        assert choice.contract.write_version == 1
        assert choice.contract.write_schema == V1.schema
        assert "reads 'item' v1" in choice.held_back_by[0]
        assert choose(AUTO, [instance(AUTO)]).contract.write_version == 2
        assert choose(AUTO, []).contract.write_version == 2

    def test_an_expired_record_does_not_count(self) -> None:
        gone = instance(V1, expires=100.0)
        assert choose(AUTO, [gone], now=50.0).contract.write_version == 1
        assert choose(AUTO, [gone], now=150.0).contract.write_version == 2

    def test_readers_of_other_contracts_do_not_hold_it_back(self) -> None:
        other = warmstart.Contract("other", ItemV1, key=str)
        assert choose(AUTO, [instance(other)]).contract.write_version == 2

    def test_a_plain_contract_is_left_alone(self) -> None:
        assert choose(V2, [instance(V1)]).contract is V2


class TestAutoContract:
    def test_outside_a_boot_it_writes_the_previous_version(self, tmp_path: Path) -> None:
        """Store.save with an auto contract writes what the old release reads."""
        assert AUTO.auto
        assert AUTO.write_version == 1
        assert repr(AUTO) == "Contract('item', ItemV2, key=str, version=2, write_version='auto')"
        with warmstart.Store(tmp_path) as store:
            store.save(NS, {SECTION: (AUTO, {"a": ItemV2("x")})})
            assert store.manifest(NS).section(SECTION).schema.version == 1  # type: ignore[union-attr]
            with store.load(NS) as snapshot:
                assert snapshot.section(SECTION, V1) == {"a": ItemV1("x")}

    def test_a_pinned_copy_is_not_auto(self) -> None:
        pinned = AUTO.with_write_version(None)
        assert (pinned.auto, pinned.write_version) == (False, 2)

    def test_auto_needs_a_previous_version_and_a_downgrader(self) -> None:
        with pytest.raises(ContractError, match="only from version 2 on"):
            warmstart.Contract("item", ItemV1, version=1, write_version="auto")
        with pytest.raises(ContractError, match="Expected a downgrader and write_type"):
            warmstart.Contract("item", ItemV2, version=2, upgraders={1: up}, write_version="auto")


def written_version(store: Path) -> int:
    with warmstart.Store(store, readonly=True) as opened:
        found = opened.manifest(NS).section(SECTION)
    assert found is not None
    return found.schema.version


class TestInOneProcess:
    def test_the_switch_comes_once_the_last_old_reader_closes(self, tmp_path: Path) -> None:
        """Two boots of one store: the v2 one writes v1 while the v1 one is open, v2 after."""

        @warmstart.warm(items=warmstart.state(V1, section=SECTION))
        class Old:
            def __init__(self) -> None:
                self.items: dict[str, ItemV1] = {"a": ItemV1("1")}

        @warmstart.warm(items=warmstart.state(AUTO, section=SECTION))
        class New:
            def __init__(self) -> None:
                self.items: dict[str, ItemV2] = {}

        store = tmp_path / "store"
        options: dict[str, Any] = {"signals": False, "heartbeat": 0.2}
        old = warmstart.boot(store, namespace=NS, capture=Old, checkpoint_on_exit=False, **options)
        with old:
            keep = Old()  # noqa: F841 - attached while the boot is open
        assert old.checkpoint().status == "saved"
        with warmstart.boot(store, namespace=NS, capture=New, **options) as new:
            fresh = New()
            assert fresh.items == {"a": ItemV2("1", "upgraded")}
            fresh.items["b"] = ItemV2("2")
            _wait_for_record(store, 2)
            assert new.checkpoint().status == "saved"
            assert written_version(store) == 1  # the old boot still reads
            old.close()  # the last v1 reader goes: its record with it
            _wait_for_record(store, 1)
            fresh.items["c"] = ItemV2("3")
            assert new.checkpoint().status == "saved"
            assert written_version(store) == 2
        with warmstart.Store(store, readonly=True) as opened, opened.load(NS) as snapshot:
            assert snapshot.section(SECTION, V2) == {
                "a": ItemV2("1", "upgraded"),
                "b": ItemV2("2"),
                "c": ItemV2("3"),
            }

    def test_without_records_it_stays_staged(self, tmp_path: Path) -> None:
        """heartbeat=None: no reader records, so no switch; the previous version is written."""

        @warmstart.warm(items=warmstart.state(AUTO, section=SECTION))
        class New:
            def __init__(self) -> None:
                self.items: dict[str, ItemV2] = {"a": ItemV2("1")}

        with warmstart.boot(tmp_path, namespace=NS, signals=False, heartbeat=None) as boot:
            New()
        assert boot.report.status == "cold"
        assert written_version(tmp_path) == 1
        assert not (tmp_path / "readers").exists()


def _wait_for_record(store: Path, count: int) -> None:
    folder = store / "readers"
    deadline = time.monotonic() + 10
    while True:
        names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
        found = [n for n in names if not n.startswith(".")]
        if len(found) == count:
            return
        assert time.monotonic() < deadline, f"expected {count} reader records, found {found}"
        time.sleep(0.02)


def assert_read_everything(booted: dict[str, Any], items: dict[str, str]) -> None:
    """No section incompatible, no entry dropped, every item back."""
    assert booted["status"] == "warm", booted["reason"]
    section = booted["sections"][SECTION]
    assert section["status"] == "warm", section["reason"]
    assert section["dropped_invalid"] == 0
    assert booted["items"] == items


def leave(service: Service) -> None:
    """Stop a service the normal way (its exit checkpoint) and wait for it."""
    assert service.proc.stdin is not None
    service.proc.stdin.write("exit\n")
    service.proc.stdin.flush()
    service.read("bye")
    assert service.wait() == 0


def wait_for_version(store: Path, version: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while written_version(store) != version:
        assert time.monotonic() < deadline, f"the head never switched to v{version}"
        time.sleep(0.05)


class TestRollingDeploy:
    def test_three_steps_on_one_host(self, run: Any, store_path: Path) -> None:
        """Two replicas, A writes and B only reads, replaced one at a time by v2 (auto).

        Step 1: A2 (v2) replaces A1; B1 (v1) still lives, so A2 writes v1, and a v1
        process that restarts now reads everything. Step 2: B2 replaces B1; with the
        last v1 reader gone, the head switches to v2 by itself. Step 3: A3 replaces A2.
        No boot reads a version it cannot, none drops an entry, none misses one.
        """
        common = ("--interval", 0.2, "--heartbeat", 0.2, "--handoff", 5)
        a1, booted = rollout(run, store_path, "--release", "v1", *common)
        assert booted["status"] == "cold"
        send(a1, "put a 1")
        send(a1, "checkpoint")
        b1, booted = rollout(run, store_path, "--release", "v1", *common)
        assert_read_everything(booted, {"a": "1"})
        # Step 1.
        a2, booted = rollout(run, store_path, "--release", "v2auto", *common)
        assert_read_everything(booted, {"a": "1"})
        assert booted["sections"][SECTION]["upgraded"] == 1
        leave(a1)
        send(a2, "put b 2")
        assert send(a2, "checkpoint")["status"] == "saved"
        assert written_version(store_path) == 1  # B1 (v1) lives
        c1, booted = rollout(run, store_path, "--release", "v1", *common)
        assert_read_everything(booted, {"a": "1", "b": "2"})  # a v1 restart reads it
        leave(c1)
        time.sleep(0.5)  # periodic checkpoints of A2 while B1 lives: still v1
        assert written_version(store_path) == 1
        # Step 2.
        b2, booted = rollout(run, store_path, "--release", "v2auto", *common)
        assert_read_everything(booted, {"a": "1", "b": "2"})
        leave(b1)
        send(a2, "put c 3")
        wait_for_version(store_path, 2)  # by itself: the last v1 reader is gone
        # Step 3.
        a3, booted = rollout(run, store_path, "--release", "v2auto", *common)
        assert_read_everything(booted, {"a": "1", "b": "2", "c": "3"})
        assert booted["sections"][SECTION]["upgraded"] == 0  # v2, read as is
        for service in (a2, b2, a3):
            leave(service)
        with warmstart.Store(store_path, readonly=True) as opened, opened.load(NS) as snapshot:
            assert set(snapshot.section(SECTION, V2)) == {"a", "b", "c"}
        assert not list((store_path / "readers").iterdir())  # every record withdrawn

    def test_a_killed_reader_on_another_host_stops_counting_when_its_record_expires(
        self, run: Any, tmp_path: Path, redis: RedisServer
    ) -> None:
        """Records on the remote: host B's v2 writes v1 while host A's v1 reader lives,
        and v2 once A's record expires after A is SIGKILLed (three heartbeats)."""
        url = f"{redis.url}?prefix=t{time.monotonic_ns()}:"
        common = ("--interval", 0.2, "--heartbeat", 0.3, "--remote", url)
        reader, _ = rollout(run, tmp_path / "host-a", "--release", "v1", *common)
        send(reader, "put r 0")
        send(reader, "checkpoint")
        writer, booted = rollout(run, tmp_path / "host-b", "--release", "v2auto", *common)
        assert_read_everything(booted, {"r": "0"})
        send(writer, "put w 1")
        time.sleep(1.5)  # several heartbeats and periodic checkpoints
        assert written_version(tmp_path / "host-b") == 1
        reader.signal(signal.SIGKILL)
        reader.wait()
        killed = time.monotonic()
        send(writer, "put w 2")
        wait_for_version(tmp_path / "host-b", 2)
        assert time.monotonic() - killed < 5.0
        _, booted = rollout(run, tmp_path / "host-c", "--release", "v2auto", *common)
        assert_read_everything(booted, {"r": "0", "w": "2"})
