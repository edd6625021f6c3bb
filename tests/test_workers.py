"""Worker slots and the shared warm pool (issue 19).

Slots are checked with real processes holding them (a flock is per open
file, so two holders in one process would not tell us anything). The pool is
checked in one process: each "worker" is a boot of a slot namespace.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

import warmstart
from warmstart.errors import ConfigurationError, StoreError
from warmstart.workers import Pool, claim_slot, release_slot, slot_namespace, slot_of
from warmstart.workers._pool import ranking

cachetools = pytest.importorskip("cachetools")

HOLDER = """
import json, sys
from warmstart.workers import claim_slot
slot = claim_slot(sys.argv[1], "svc", workers=int(sys.argv[2]) or None, wait=float(sys.argv[3]))
info = {"index": slot.index, "overflow": slot.overflow, "waited": slot.waited}
print(json.dumps(info), flush=True)
sys.stdin.read()  # hold the slot until the test closes stdin
"""


class Holder:
    """A process that claims a slot and holds it until released."""

    def __init__(self, directory: Path, workers: int = 0, wait: float = 0.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(directory), str(workers), str(wait)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def slot(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "the holder died"
        return json.loads(line)  # type: ignore[no-any-return]

    def release(self) -> None:
        self.proc.communicate(timeout=10)  # closes stdin: the holder exits

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.communicate(timeout=10)


@pytest.fixture
def holders() -> Any:
    made: list[Holder] = []

    def make(directory: Path, workers: int = 0, wait: float = 0.0) -> Holder:
        holder = Holder(directory, workers, wait)
        made.append(holder)
        return holder

    yield make
    for holder in made:
        if holder.proc.poll() is None:
            holder.kill()
        else:
            holder.proc.communicate(timeout=10)


class TestSlots:
    def test_names(self) -> None:
        assert slot_namespace("svc", 3) == "svc/worker-3"
        assert slot_of("a/b/worker-12") == ("a/b", 12)
        for other in ("svc", "svc/worker-", "svc/worker-x", "/worker-1", "svc/worker-01"):
            assert slot_of(other) is None
        with pytest.raises(ConfigurationError):
            slot_namespace("svc", -1)

    def test_the_lowest_free_slot_in_turn(self, tmp_path: Path, holders: Any) -> None:
        """Holders take 0, 1, 2; a released slot is the next one taken; a killed holder's too."""
        a, b, c = holders(tmp_path), None, None
        assert a.slot()["index"] == 0
        b = holders(tmp_path)
        assert b.slot()["index"] == 1
        c = holders(tmp_path)
        assert c.slot()["index"] == 2
        b.release()
        assert holders(tmp_path).slot()["index"] == 1
        a.kill()  # the kernel drops a dead process's lock, whatever killed it
        assert holders(tmp_path).slot()["index"] == 0

    def test_all_n_held_overflows_or_waits(self, tmp_path: Path, holders: Any) -> None:
        """With N slots held: no wait takes N; a wait takes the slot freed meanwhile."""
        first, second = holders(tmp_path, 2), holders(tmp_path, 2)
        assert {first.slot()["index"], second.slot()["index"]} == {0, 1}
        over = holders(tmp_path, 2).slot()
        assert over == {"index": 2, "overflow": True, "waited": over["waited"]}
        waiting = holders(tmp_path, 2, 30.0)
        time.sleep(1.0)  # it started and waits
        first.release()
        got = waiting.slot()
        assert got["index"] in (0, 1)
        assert not got["overflow"]
        assert got["waited"] >= 0.3

    def test_one_process_holds_one_slot_per_service(self, tmp_path: Path) -> None:
        slot = claim_slot(tmp_path, "svc", workers=2)
        try:
            assert claim_slot(tmp_path, "svc") is slot
            other = claim_slot(tmp_path, "other")
            assert (other.index, other.namespace) == (0, "other/worker-0")
            release_slot(other)
            info = json.loads((tmp_path / "slots").glob("*.0").__next__().read_text())
            assert info["pid"] == os.getpid()
        finally:
            release_slot(slot)
        again = claim_slot(tmp_path, "svc")
        assert again.index == 0
        assert again is not slot
        release_slot(again)
        release_slot(again)  # twice: nothing

    def test_a_forked_child_claims_its_own_slot(self, tmp_path: Path) -> None:
        """The parent's slot is not the child's: the child forgets it at fork and claims another."""
        slot = claim_slot(tmp_path, "svc")
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                child = claim_slot(tmp_path, "svc")
                os.write(write, str(child.index).encode())
            finally:
                os._exit(0)
        os.close(write)
        index = int(os.read(read, 10))
        os.waitpid(pid, 0)
        os.close(read)
        assert (slot.index, index) == (0, 1)
        release_slot(slot)

    def test_bad_arguments(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigurationError, match="workers"):
            claim_slot(tmp_path, "svc", workers=0)
        with pytest.raises(ConfigurationError, match="wait"):
            claim_slot(tmp_path, "svc", wait=-1)
        with pytest.raises(ConfigurationError, match="service"):
            claim_slot(tmp_path, "x" * 300)
        blocker = tmp_path / "file"
        blocker.write_text("")
        with pytest.raises(StoreError, match="writable store directory"):
            claim_slot(blocker / "store", "svc")


# -- the pool ------------------------------------------------------------------------


class Row(msgspec.Struct, frozen=True):
    n: int


ROWS = warmstart.Contract("row", Row, key=str)


@warmstart.warm(rows=warmstart.state(ROWS, lock="lock"))
class Lru:
    def __init__(self, capacity: int = 6) -> None:
        self.lock = threading.RLock()
        self.rows = cachetools.LRUCache(maxsize=capacity)


@warmstart.warm(rows=ROWS)
class Plain:
    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}


@warmstart.warm(rows=ROWS)
class Tracked:
    def __init__(self) -> None:
        self.rows: warmstart.TrackedDict[str, Row] = warmstart.TrackedDict()


def seed(store: Path, worker: int, cls: type, keys: list[str], service: str = "svc") -> None:
    """Worker ``worker`` serves ``keys`` (in that order) and checkpoints its slot."""
    with warmstart.boot(store, namespace=slot_namespace(service, worker), signals=False):
        obj = cls()
        for key in keys:
            obj.rows[key] = Row(int(key[1:]) if key[1:].isdigit() else 0)


def boot_slot(store: Path, worker: int, cls: type, pool: Any = True, **options: Any) -> Any:
    options.setdefault("checkpoint_on_exit", False)
    with warmstart.boot(
        store, namespace=slot_namespace("svc", worker), signals=False, pool=pool, **options
    ) as b:
        obj = cls()
    assert b.wait_ready(10)
    b.close()
    return b, obj


class TestRanking:
    def test_interleaved_by_position_own_first(self) -> None:
        assert ranking([["a1", "a0"], ["b2", "b1", "b0"]]) == ["a0", "b0", "a1", "b1", "b2"]
        assert ranking([[], ["b0"]]) == ["b0"]
        assert ranking([["x", "a0"], ["x"]]) == ["a0", "x"]  # a key once, at its hottest

    def test_prefer_own(self) -> None:
        assert ranking([["a1", "a0"], ["b1", "b0"]], prefer_own=True) == ["a0", "a1", "b0", "b1"]


class TestPool:
    def test_bounded_cache_gets_the_union_most_recent_first(self, store_path: Path) -> None:
        """Capacity 6 over three workers' 6 each: every worker's 2 hottest, LRU order kept."""
        for worker, prefix in enumerate("abc"):
            seed(store_path, worker, Lru, [f"{prefix}{i}" for i in range(6)])
        b, obj = boot_slot(store_path, 0, Lru)
        # Hottest first: position 0 of each (its own, then c, newer than b), then position 1;
        # the LRU lists them coldest first.
        assert list(obj.rows) == ["b4", "c4", "a4", "b5", "c5", "a5"]
        section = b.report.sections["Lru.rows"]
        assert (section.restored, section.pooled, section.status) == (6, 4, "warm")
        assert set(b.report.pool) == {"svc/worker-1", "svc/worker-2"}
        assert all(v.startswith("generation 1") for v in b.report.pool.values())
        assert "4 from the pool" in b.report.summary()

    def test_prefer_own_only_fills_the_room(self, store_path: Path) -> None:
        seed(store_path, 0, Lru, ["a0", "a1", "a2", "a3"])
        seed(store_path, 1, Lru, [f"b{i}" for i in range(6)])
        _, obj = boot_slot(store_path, 0, Lru, pool=Pool(prefer_own=True))
        assert list(obj.rows) == ["b4", "b5", "a0", "a1", "a2", "a3"]
        _, full = boot_slot(store_path, 1, Lru, pool=Pool(prefer_own=True))
        assert list(full.rows) == [f"b{i}" for i in range(6)]

    def test_limit_and_unbounded_containers(self, store_path: Path) -> None:
        """A dict takes every peer entry, never overwriting its own; limit caps it."""
        seed(store_path, 0, Plain, ["a0", "x1"])
        seed(store_path, 1, Plain, ["b0", "b1", "x1"])
        with warmstart.boot(store_path, namespace="svc/worker-1", signals=False) as b:
            Plain().rows["x1"] = Row(99)  # worker 1's x1 differs
        _, obj = boot_slot(store_path, 0, Plain)
        assert obj.rows == {"a0": Row(0), "x1": Row(1), "b0": Row(0), "b1": Row(1)}
        _, capped = boot_slot(store_path, 0, Plain, pool=Pool(limit=3))
        assert set(capped.rows) == {"a0", "x1", "b1"}
        assert b.report.pool == {}  # a boot without a pool merges nothing

    def test_a_tracked_dict_saves_what_it_merged(self, store_path: Path) -> None:
        """Merged entries are changes of this slot: its next delta checkpoint holds them."""
        seed(store_path, 0, Tracked, ["a0"])
        seed(store_path, 1, Tracked, ["b0", "b1"])
        with warmstart.boot(
            store_path, namespace="svc/worker-0", signals=False, pool=True, interval=3600
        ):
            obj = Tracked()
            obj.rows["a1"] = Row(1)
        assert set(obj.rows) == {"a0", "a1", "b0", "b1"}
        with warmstart.Store(store_path) as store, store.load("svc/worker-0") as snap:
            assert set(snap.section("Tracked.rows", ROWS)) == {"a0", "a1", "b0", "b1"}

    def test_ttl_entries_keep_their_lifetime_and_expired_ones_stay_out(
        self, store_path: Path
    ) -> None:
        """A timed cache ranks by expiry (latest first); expired peers' entries stay out."""

        def timed(ttl: float) -> type:
            @warmstart.warm(rows=warmstart.state(ROWS, lock="lock"))
            class Timed:
                def __init__(self) -> None:
                    self.lock = threading.RLock()
                    self.rows = cachetools.TTLCache(maxsize=3, ttl=ttl, timer=time.monotonic)

            return Timed

        long_lived = timed(100)
        seed(store_path, 2, timed(0.2), ["c0"])
        seed(store_path, 0, long_lived, ["a0", "a1"])
        time.sleep(0.01)
        seed(store_path, 1, long_lived, ["b0", "b1"])
        time.sleep(0.3)  # c0 has expired
        b, obj = boot_slot(store_path, 0, long_lived)
        assert sorted(obj.rows) == ["a1", "b0", "b1"]  # 3 of 4 alive: the soonest left out
        links = obj.rows._TTLCache__links
        assert 98 < links["b1"].expires - time.monotonic() <= 100  # its lifetime, not a new one
        assert b.report.sections["Timed.rows"].pooled == 2

    def test_progressive_restore_merges_in_the_background(self, store_path: Path) -> None:
        """A locked cache restored progressively: the merge runs after its cold phase."""
        big = [f"a{i}" for i in range(5000)]
        seed(store_path, 0, lambda: Lru(6000), big)
        seed(store_path, 1, lambda: Lru(6000), [f"b{i}" for i in range(3000)])
        with warmstart.boot(
            store_path, namespace="svc/worker-0", signals=False, pool=True, checkpoint_on_exit=False
        ) as b:
            obj = Lru(6000)
        assert b.wait_ready(20)
        b.close()
        assert len(obj.rows) == 6000
        # Position by position, own first: the 3,000 hottest of each.
        assert b.report.sections["Lru.rows"].pooled == 3000
        assert list(obj.rows)[-2:] == [
            "b2999",
            "a4999",
        ]  # the hottest stay the most recent

    def test_a_new_slot_warms_from_the_pool(self, store_path: Path) -> None:
        seed(store_path, 0, Lru, ["a0", "a1"])
        seed(store_path, 1, Lru, ["b0"])
        b, obj = boot_slot(store_path, 5, Lru)
        assert set(obj.rows) == {"a0", "a1", "b0"}
        assert b.report.status == "warm"
        assert "shared pool" in b.report.reason

    def test_peers_left_out_and_why(self, store_path: Path) -> None:
        seed(store_path, 0, Lru, ["a0"])
        clock = [time.time() - 7200]
        with warmstart.boot(
            store_path, namespace="svc/worker-1", signals=False, clock=lambda: clock[0]
        ):
            Lru().rows["old"] = Row(0)
        seed(store_path, 2, Plain, ["p0"], service="other")  # another service: not a peer
        b, obj = boot_slot(store_path, 0, Lru, max_age="1h")
        assert list(obj.rows) == ["a0"]
        assert "max_age" in b.report.pool["svc/worker-1"]
        assert "other/worker-2" not in b.report.pool
        b2, obj2 = boot_slot(store_path, 0, Lru, pool=Pool(max_age=3 * 3600))
        assert set(obj2.rows) == {"a0", "old"}
        assert b2.report.pool["svc/worker-1"].startswith("generation 1, 7200s old")

    def test_an_unreadable_peer_section_costs_only_itself(self, store_path: Path) -> None:
        class Other(msgspec.Struct):
            text: str

        @warmstart.warm(
            rows=warmstart.state(warmstart.Contract("other", Other), section="Lru.rows")
        )
        class Mismatch:
            def __init__(self) -> None:
                self.rows: dict[str, Other] = {}

        seed(store_path, 0, Lru, ["a0"])
        with warmstart.boot(store_path, namespace="svc/worker-1", signals=False):
            Mismatch().rows["m"] = Other("x")
        seed(store_path, 2, Lru, ["c0"])
        _, obj = boot_slot(store_path, 0, Lru)
        assert set(obj.rows) == {"a0", "c0"}

    def test_a_process_that_died_merging_skips_the_pool_once(self, store_path: Path) -> None:
        seed(store_path, 0, Lru, ["a0"])
        seed(store_path, 1, Lru, ["b0"])
        dead = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        with warmstart.Store(store_path) as store:
            store.set_marker("svc/worker-0", f"pool-{dead}", b"merging")
        b, obj = boot_slot(store_path, 0, Lru)
        assert list(obj.rows) == ["a0"]
        assert "died while merging" in b.report.pool["*"]
        _, again = boot_slot(store_path, 0, Lru)
        assert set(again.rows) == {"a0", "b0"}
        with warmstart.Store(store_path) as store:
            assert not any(n.startswith("pool-") for n in store.markers("svc/worker-0"))

    def test_an_unchanged_worker_leaves_its_slot_alone(self, store_path: Path) -> None:
        """Merged and never served: its exit checkpoint writes nothing (the peers keep theirs)."""
        seed(store_path, 0, Lru, ["a0"])
        seed(store_path, 1, Lru, ["b0"])
        with warmstart.boot(store_path, namespace="svc/worker-0", signals=False, pool=True) as b:
            Lru()
        report = b.checkpoint()
        assert report.status in ("skipped", "failed")
        with warmstart.Store(store_path) as store:
            assert [g.generation for g in store.generations("svc/worker-0")] == [1]

    def test_pool_needs_a_slot_namespace_or_peers(self, store_path: Path) -> None:
        with pytest.raises(ConfigurationError, match="worker slot"):
            warmstart.boot(store_path, namespace="svc", pool=True)
        with pytest.raises(ConfigurationError, match="Pool"):
            warmstart.boot(store_path, namespace="svc/worker-0", pool="yes")  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="limit"):
            Pool(limit=0)
        with pytest.raises(ConfigurationError, match="max_age"):
            Pool(max_age=-1)
        seed(store_path, 0, Lru, ["a0"])
        with warmstart.boot(
            store_path, namespace="mine", signals=False, pool=Pool(peers=("svc/worker-0", "mine"))
        ):
            obj = Lru()
        assert list(obj.rows) == ["a0"]
        assert warmstart.boot(store_path, namespace="svc", pool=False).settings.pool is None


def test_a_failed_rebuild_gives_the_cache_its_own_entries_back(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from warmstart.workers import _pool

    seed(store_path, 0, Lru, ["a0", "a1"])
    seed(store_path, 1, Lru, ["b0"])
    real = _pool._rebuild
    calls = []

    def failing(container: Any, chosen: Any, now: float) -> None:
        calls.append(chosen.keys)
        if len(calls) == 1:
            container.clear()
            msg = "boom"
            raise RuntimeError(msg)
        real(container, chosen, now)

    monkeypatch.setattr(_pool, "_rebuild", failing)
    b, obj = boot_slot(store_path, 0, Lru)
    assert list(obj.rows) == ["a0", "a1"]
    assert b.report.pool["*"] == "failed: boom"
