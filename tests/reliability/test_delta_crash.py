"""SIGKILL a process in the middle of tracked delta saves: a restore is always one whole generation.

The child (``_delta_worker.py loop``) restores the head, then changes entries
and saves deltas (compacting now and then) until it is killed. Before each
save it fsyncs the digest of the content it is about to commit, and after it
the digest of what a load must give, in order. After every kill the parent
loads the head and checks it is exactly the last committed generation, or the
one in flight when the kill landed, never a mix, a torn entry or an older one.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pytest
import xxhash

import warmstart
from conftest import killed_env

WORKER = Path(__file__).parent / "_delta_worker.py"
NAMESPACE = "crash"
SECTION = "entries"


class Val(msgspec.Struct, frozen=True):
    """The worker's self-describing value, read back under the same contract."""

    key: str
    writer: int
    seq: int
    check: int
    payload: str


VALS = warmstart.Contract("crash-val", Val, key=str)
_encode = msgspec.msgpack.Encoder(order="deterministic").encode


def consistent(key: str, value: Val) -> bool:
    check = xxhash.xxh3_64_intdigest(f"{key}:{value.writer}:{value.seq}".encode())
    return value.key == key and value.check == check and value.payload == f"{key}/{value.seq}-" * 8


def ordered_digest(entries: dict[str, Val]) -> str:
    return xxhash.xxh3_128_hexdigest(_encode(list(entries.items())))


def unordered_digest(entries: dict[str, Val]) -> str:
    return xxhash.xxh3_128_hexdigest(_encode(sorted(entries.items())))


@dataclass
class SideFile:
    """What the child recorded: digests of generations about to commit, and committed."""

    pending: dict[int, str] = field(default_factory=dict)
    committed: dict[int, tuple[str, str]] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> SideFile:
        side = cls()
        if not path.exists():
            return side
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == "pending":
                side.pending[int(parts[1])] = parts[2]  # the latest attempt wins
            elif len(parts) == 4 and parts[0] == "committed":
                side.committed[int(parts[1])] = (parts[2], parts[3])
        return side


@dataclass
class Outcome:
    """How the kills landed."""

    kills: int = 0
    in_flight: int = 0  # the kill landed between a pending record and its commit record
    generations: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


def check_restore(store_path: Path, side: SideFile, outcome: Outcome) -> int:
    """Load the head and check it is exactly one generation the child recorded."""
    last_committed = max(side.committed, default=0)
    with warmstart.Store(store_path) as store:
        try:
            snapshot = store.load(NAMESPACE)
        except warmstart.CheckpointNotFoundError:
            assert last_committed == 0, "a committed generation was lost"
            return 0
        with snapshot:
            assert snapshot.fallback == (), snapshot.fallback
            generation = snapshot.generation
            entries = snapshot.section(SECTION, VALS)
        report = store.verify()
        assert report.ok, report.problems
    torn = [k for k, v in entries.items() if not consistent(k, v)]
    assert not torn, f"generation {generation}: entries not whole: {torn[:5]}"
    assert generation >= last_committed, f"lost generation {last_committed}, got {generation}"
    if generation in side.committed:
        assert generation == last_committed
        kind, digest = side.committed[generation]
        assert ordered_digest(entries) == digest, f"generation {generation} ({kind}) differs"
    else:
        # Committed, but the kill came before the child could record it.
        assert generation in side.pending, f"generation {generation} was never attempted"
        assert unordered_digest(entries) == side.pending[generation], f"generation {generation}"
    if max(side.pending, default=0) > last_committed:
        outcome.in_flight += 1
    return generation


def run_kills(tmp_path: Path, kills: int, seed: int) -> Outcome:
    rng = random.Random(seed)
    store_path = tmp_path / "store"
    side_path = tmp_path / "side.log"
    outcome = Outcome()
    for attempt in range(kills):
        size = side_path.stat().st_size if side_path.exists() else 0
        with (tmp_path / f"child-{attempt}.err").open("wb") as errors:
            child = subprocess.Popen(
                [
                    sys.executable,
                    str(WORKER),
                    "loop",
                    str(store_path),
                    str(side_path),
                    str(attempt),
                ],
                stdout=subprocess.DEVNULL,
                stderr=errors,
                env=killed_env(),
            )
            try:
                deadline = time.monotonic() + 30
                # Wait for the child to be inside its save loop, then kill it at a random moment.
                while (side_path.stat().st_size if side_path.exists() else 0) == size:
                    assert child.poll() is None, (tmp_path / f"child-{attempt}.err").read_text()
                    assert time.monotonic() < deadline, "the child made no progress"
                    time.sleep(0.005)
                time.sleep(rng.uniform(0.0, 0.25))
                assert child.poll() is None, (tmp_path / f"child-{attempt}.err").read_text()
                child.send_signal(signal.SIGKILL)
            finally:
                child.kill()
                child.wait()
        assert child.returncode == -signal.SIGKILL
        outcome.kills += 1
        side = SideFile.read(side_path)
        outcome.generations = check_restore(store_path, side, outcome)
    for kind, _ in SideFile.read(side_path).committed.values():
        outcome.kinds[kind] = outcome.kinds.get(kind, 0) + 1
    return outcome


class TestDeltaCrash:
    """A process SIGKILLed during tracked delta saves always leaves one whole generation."""

    def test_kills(self, tmp_path: Path) -> None:
        """Fifteen kills at random moments: every restore is one committed generation."""
        seed = random.randrange(1 << 30)
        outcome = run_kills(tmp_path, 15, seed)
        assert outcome.kills == 15, seed
        assert outcome.generations > 15, (seed, outcome)
        assert outcome.kinds.get("delta", 0) > 0, (seed, outcome)
        assert outcome.kinds.get("full", 0) > 0, (seed, outcome)

    @pytest.mark.slow
    def test_many_kills(self, tmp_path: Path) -> None:
        """Two hundred kills: restores stay exact, and some kills land mid-save."""
        seed = random.randrange(1 << 30)
        outcome = run_kills(tmp_path, 200, seed)
        assert outcome.kills == 200, seed
        assert outcome.in_flight > 0, (seed, outcome)
        assert outcome.kinds.get("delta", 0) > outcome.kinds.get("full", 0) > 0, (seed, outcome)
