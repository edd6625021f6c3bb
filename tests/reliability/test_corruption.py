"""Corruption: damaged chunks are detected by verify and by load; damaged files are survived.

Two kinds of damage, on copies of one store holding three self-describing
generations (see ``_workers.py``):

* **chunk damage**: one stored chunk (or manifest) gets a flipped bit or is
  truncated, through the ``lmdb`` package, as a bad sector under one value
  would. Every case must be caught: verify names the namespace, the generations
  that use the chunk and the chunk; load falls back to the newest generation
  that does not use it, with identical content, or fails cleanly if none.
* **file damage**: bits flipped at random offsets anywhere in ``data.mdb``,
  B-tree pages and meta pages included. LMDB trusts its own pages, so this is
  probed in child processes and every outcome is counted: no effect (free
  space, slack), detected (fell back, or verify found it), a clean error, or a
  crash of the child. What must never happen is a load that returns data other
  than one whole committed generation.
"""

from __future__ import annotations

import collections
import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import lmdb
import pytest
from _workers import NAMESPACE, build, check_snapshot

import warmstart

WORKERS = Path(__file__).with_name("_workers.py")
GENERATIONS = 5  # with keep=3, generations 3, 4 and 5 remain
#: Stores probed per child process; a crash costs the rest of the batch a respawn.
BATCH = 10


@pytest.fixture(scope="module")
def base_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corruption") / "base"
    build(str(path), GENERATIONS)
    return path


def copy_store(base: Path, target: Path) -> Path:
    target.mkdir(parents=True)
    shutil.copy2(base / "data.mdb", target / "data.mdb")
    return target


def users_of_chunks(path: Path) -> tuple[dict[bytes, list[int]], list[int]]:
    """Which retained generations use each chunk digest, and the generations, newest first."""
    users: dict[bytes, list[int]] = collections.defaultdict(list)
    with warmstart.Store(path, readonly=True) as store:
        generations = [g.generation for g in store.generations(NAMESPACE)]
        for generation in generations:
            for digest in store.manifest(NAMESPACE, generation).digests():
                users[digest].append(generation)
    return dict(users), generations


def damage_value(path: Path, table: bytes, rng: random.Random) -> tuple[bytes, str]:
    """Flip one bit of, or truncate, one random value of ``table``; return its key."""
    env = lmdb.open(str(path), max_dbs=4, map_size=1 << 30)
    try:
        db = env.open_db(table)
        with env.begin(write=True) as txn:
            keys = [bytes(k) for k in txn.cursor(db=db).iternext(values=False)]
            key = rng.choice(keys)
            value = bytearray(txn.get(key, db=db))
            if rng.random() < 0.5:
                offset = rng.randrange(len(value))
                value[offset] ^= 1 << rng.randrange(8)
                how = f"bit flip at byte {offset} of {len(value)}"
            else:
                length = rng.randrange(len(value))
                del value[length:]
                how = f"truncated to {length} bytes"
            txn.put(key, bytes(value), db=db)
    finally:
        env.close()
    return key, how


def chunk_trial(base: Path, work: Path, rng: random.Random) -> str:
    """Damage one chunk; check verify and load; return the outcome."""
    path = copy_store(base, work)
    users, generations = users_of_chunks(path)
    key, how = damage_value(path, b"chunks", rng)
    digest = key[4:]
    broken = users[digest]
    context = f"chunk {digest.hex()} used by {broken}: {how}"
    with warmstart.Store(path, keep=3, sync=False) as store:
        report = store.verify()
        found = sorted((p.namespace, p.generation, p.chunk) for p in report.problems)
        assert found == sorted((NAMESPACE, g, digest.hex()) for g in broken), context
        healthy = [g for g in generations if g not in broken]
        if not healthy:
            with pytest.raises(warmstart.CheckpointNotFoundError, match="none did"):
                store.load(NAMESPACE)
            return "no generation left: clean error"
        with store.load(NAMESPACE) as snapshot:
            assert snapshot.generation == healthy[0], context
            assert check_snapshot(snapshot) == [], context
            skipped = [int(r.split(":")[0].split()[1]) for r in snapshot.fallback]
            assert skipped == [g for g in generations if g > healthy[0]], context
        return "fell back" if skipped else "head intact, older generation damaged"


def manifest_trial(base: Path, work: Path, rng: random.Random) -> str:
    """Damage one manifest; check verify and load; return the outcome."""
    path = copy_store(base, work)
    _, generations = users_of_chunks(path)
    key, how = damage_value(path, b"manifests", rng)
    generation = int.from_bytes(key[4:], "big")
    with warmstart.Store(path, keep=3, sync=False) as store:
        problems = [(p.generation, p.what.split(":")[0]) for p in store.verify().problems]
        assert problems == [(generation, "manifest")], how
        with store.load(NAMESPACE) as snapshot:
            expected = next(g for g in generations if g != generation)
            assert snapshot.generation == expected, how
            assert check_snapshot(snapshot) == [], how
    return "manifest: fell back" if generation == generations[0] else "manifest: older damaged"


def run_chunk_campaign(base: Path, work: Path, trials: int, seed: int) -> collections.Counter[str]:
    rng = random.Random(seed)
    outcomes: collections.Counter[str] = collections.Counter()
    for number in range(trials):
        trial = manifest_trial if rng.random() < 0.2 else chunk_trial
        outcomes[trial(base, work / f"t{number}", rng)] += 1
    return outcomes


# -- file damage ------------------------------------------------------------------


def flip_file(path: Path, rng: random.Random, flips: int) -> list[int]:
    data = bytearray((path / "data.mdb").read_bytes())
    offsets = [rng.randrange(len(data)) for _ in range(flips)]
    for offset in offsets:
        data[offset] ^= 1 << rng.randrange(8)
    (path / "data.mdb").write_bytes(bytes(data))
    return offsets


def probe(stores: list[Path]) -> tuple[list[dict[str, Any]], int, str]:
    """Run the probe worker on stores; return its records, exit status and stderr."""
    try:
        done = subprocess.run(
            [sys.executable, str(WORKERS), "probe", *map(str, stores)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        records = [json.loads(line) for line in out.splitlines()]
        return records, -1, "timeout"
    return [json.loads(line) for line in done.stdout.splitlines()], done.returncode, done.stderr


def run_file_campaign(
    base: Path, work: Path, trials: int, seed: int, flips: int = 1
) -> tuple[collections.Counter[str], collections.Counter[str], list[str]]:
    """Flip bits in copies of data.mdb; count load outcomes and then save outcomes."""
    rng = random.Random(seed)
    stores = []
    for number in range(trials):
        path = copy_store(base, work / f"f{number}")
        flip_file(path, rng, flips)
        stores.append(path)
    loads: collections.Counter[str] = collections.Counter()
    saves: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    notes: list[str] = []
    pending = stores
    while pending:
        batch = pending[:BATCH]
        records, status, err = probe(batch)
        done = {Path(r["store"]) for r in records if r["step"] == "save"}
        for record in records:
            counter = loads if record["step"] == "load" else saves
            counter[record["outcome"]] += 1
            if record["outcome"] in ("wrong_data", "unclean_error"):
                notes.append(json.dumps(record))
            elif record["outcome"] == "clean_error":
                errors[f"{record['step']}: {error_kind(record['error'])}"] += 1
        if status == 0:
            pending = pending[len(batch) :]
            continue
        # The child died on the first store without a save record.
        victim = next(s for s in batch if s not in done)
        loaded = any(r["step"] == "load" and Path(r["store"]) == victim for r in records)
        kind = "hang" if err == "timeout" else f"crash (exit {status})"
        (saves if loaded else loads)[kind] += 1
        notes.append(f"{victim.name}: {kind} while {'saving' if loaded else 'loading'}")
        pending = pending[batch.index(victim) + 1 :]
    notes += [f"{count} x {kind}" for kind, count in errors.most_common()]
    return loads, saves, notes


def error_kind(message: str) -> str:
    """The class of a clean error and its LMDB or integrity reason, without paths or digests."""
    name, _, text = message.partition(": ")
    text = re.sub(r"\b[0-9a-f]{32}\b", "<digest>", text)
    for reason in ("MDB_", "Expected frame", "Expected chunk", "Expected a", "found none"):
        if reason in text:
            start = text.index(reason)
            return f"{name}: {text[start : start + 60]}"
    return f"{name}: {text[:60]}"


def file_summary(
    loads: collections.Counter[str], saves: collections.Counter[str], trials: int, seed: int
) -> str:
    return (
        f"data.mdb bit flips, seed={seed}, {trials} stores: load outcomes {dict(loads)}; "
        f"then a save: {dict(saves)}"
    )


def new_seed() -> int:
    """A fresh seed per run (printed with the results), or WARMSTART_SEED to replay one."""
    return int(os.environ.get("WARMSTART_SEED", random.randrange(2**32)))


class TestChunkCorruption:
    def test_damaged_chunks_and_manifests_are_caught(
        self, base_store: Path, tmp_path: Path
    ) -> None:
        """Every flipped or truncated chunk or manifest is reported by verify, skipped by load."""
        seed = new_seed()
        outcomes = run_chunk_campaign(base_store, tmp_path, trials=40, seed=seed)
        print(f"chunk damage, seed={seed}: {dict(outcomes)}")
        assert sum(outcomes.values()) == 40

    @pytest.mark.parametrize("forger_secret", [None, b"guessed"])
    def test_keyed_store_rejects_a_forged_generation(
        self, tmp_path: Path, forger_secret: bytes | None
    ) -> None:
        """A keyed store skips a well-formed generation planted without its secret."""
        victim, forger = tmp_path / "victim", tmp_path / "forger"
        build(str(victim), 2, secret=b"s" * 32)
        build(str(forger), 3, secret=forger_secret)
        plant_newest_generation(forger, victim)
        with warmstart.Store(victim, secret=b"s" * 32, sync=False) as store:
            problems = store.verify().problems
            assert {(p.generation, p.what.split(":")[0]) for p in problems} >= {(3, "manifest")}
            with store.load(NAMESPACE) as snapshot:
                assert snapshot.generation == 2
                assert check_snapshot(snapshot) == []
                assert "MAC" in snapshot.fallback[0]
        # (Without any secret, a keyed store opens read-only only: issue 17.)
        readonly = forger_secret is None
        with warmstart.Store(victim, secret=forger_secret, sync=False, readonly=readonly) as store:
            assert not store.verify().ok  # and the forger cannot read the victim's own

    @pytest.mark.slow
    def test_damaged_chunks_and_manifests_are_caught_1000(
        self, base_store: Path, tmp_path: Path
    ) -> None:
        """A thousand damaged chunks or manifests are each reported by verify, skipped by load."""
        seed = new_seed()
        outcomes = run_chunk_campaign(base_store, tmp_path, trials=1000, seed=seed)
        print(f"chunk damage, seed={seed}: {dict(outcomes)}")
        assert sum(outcomes.values()) == 1000


def plant_newest_generation(source: Path, target: Path) -> None:
    """Copy the newest manifest and its chunks of ``source`` into ``target``, as its head."""
    tables = (b"meta", b"heads", b"manifests", b"chunks")
    read = lmdb.open(str(source), max_dbs=4, readonly=True, lock=False)
    try:
        dbs = [read.open_db(t) for t in tables]
        with read.begin() as txn:
            head = bytes(txn.get(NAMESPACE.encode(), db=dbs[1]))
            manifests = list(txn.cursor(db=dbs[2]))
            planted = [(bytes(k), bytes(v)) for k, v in manifests][-1:]
            chunks = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=dbs[3])]
    finally:
        read.close()
    write = lmdb.open(str(target), max_dbs=4, map_size=1 << 30)
    try:
        dbs = [write.open_db(t) for t in tables]
        with write.begin(write=True) as txn:
            for key, value in planted + chunks:
                txn.put(key, value, db=dbs[2] if (key, value) in planted else dbs[3])
            txn.put(NAMESPACE.encode(), head, db=dbs[1])
    finally:
        write.close()


class TestFileCorruption:
    def test_bit_flips_anywhere_in_data_mdb(self, base_store: Path, tmp_path: Path) -> None:
        """Random bit flips in data.mdb never make a load return a mix or wrong data."""
        seed = new_seed()
        loads, saves, notes = run_file_campaign(base_store, tmp_path, trials=40, seed=seed)
        print(file_summary(loads, saves, 40, seed))
        for note in notes:
            print("  ", note)
        assert sum(loads.values()) == 40
        assert loads["wrong_data"] == saves["wrong_data"] == 0, notes
        assert loads["unclean_error"] == saves["unclean_error"] == 0, notes

    @pytest.mark.slow
    @pytest.mark.parametrize("flips", [1, 8])
    def test_bit_flips_anywhere_in_data_mdb_1000(
        self, base_store: Path, tmp_path: Path, flips: int
    ) -> None:
        """A thousand damaged data.mdb copies: outcomes counted, never wrong data."""
        seed = new_seed()
        loads, saves, notes = run_file_campaign(
            base_store, tmp_path, trials=1000, seed=seed, flips=flips
        )
        print(f"{flips} flip(s) per store: " + file_summary(loads, saves, 1000, seed))
        for note in notes:
            print("  ", note)
        assert loads["wrong_data"] == saves["wrong_data"] == 0, notes
