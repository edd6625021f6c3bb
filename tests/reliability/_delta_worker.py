"""A child process for the delta tests: it saves tracked deltas until it is killed.

Run as a script (never imported by the tests, only by pytest's doctest
collection, so importing it has no side effect)::

    python _delta_worker.py loop STORE SIDEFILE SEED
    python _delta_worker.py write STORE MODE KEY=N [KEY=N ...]

``loop`` restores the head (if any) into a fresh TrackedDict, marks it as the
baseline, then forever: changes a few entries, appends ``pending G DIGEST`` to
SIDEFILE (fsynced) with the unordered content digest of generation G it is
about to commit, saves in delta mode, and appends ``committed G KIND DIGEST``
with the ordered digest of what a load of G must give. Every value describes
itself (key, writer, sequence number and a checksum of those), so a torn or
misplaced entry is visible on its own.

``write`` commits one generation from another process: ``full`` saves a fresh
TrackedDict holding exactly the given entries; ``delta`` restores the head,
marks it, sets the given entries and saves in delta mode. It prints the
generation and its kind.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec
import xxhash

import warmstart
from warmstart._containers import restore_into
from warmstart.delta import replay

NAMESPACE = "crash"
SECTION = "entries"
KEYS = 400


class Val(msgspec.Struct, frozen=True):
    """A self-describing value: which key and write it belongs to, and a checksum."""

    key: str
    writer: int
    seq: int
    check: int
    payload: str


VALS = warmstart.Contract("crash-val", Val, key=str)
_encode = msgspec.msgpack.Encoder(order="deterministic").encode


def checksum(key: str, writer: int, seq: int) -> int:
    return xxhash.xxh3_64_intdigest(f"{key}:{writer}:{seq}".encode())


def make(key: str, writer: int, seq: int) -> Val:
    return Val(key, writer, seq, checksum(key, writer, seq), f"{key}/{seq}-" * 8)


def consistent(key: str, value: Val) -> bool:
    """Whether an entry is whole and under its own key."""
    return (
        value.key == key
        and value.check == checksum(key, value.writer, value.seq)
        and value.payload == f"{key}/{value.seq}-" * 8
    )


def ordered_digest(items: Iterable[tuple[str, Val]]) -> str:
    return xxhash.xxh3_128_hexdigest(_encode(list(items)))


def unordered_digest(items: Iterable[tuple[str, Val]]) -> str:
    return xxhash.xxh3_128_hexdigest(_encode(sorted(items)))


def open_store(path: str, *, compact: bool = True) -> warmstart.Store:
    if compact:
        policy = warmstart.CompactionPolicy(max_deltas=4, max_ratio=0.6)
    else:
        policy = warmstart.CompactionPolicy(max_deltas=1000, max_ratio=1000.0)
    return warmstart.Store(path, keep=3, compaction=policy)


def restore_head(
    store: warmstart.Store,
) -> tuple[warmstart.TrackedDict[str, Val], dict[str, Val], int]:
    """The head restored into a fresh TrackedDict marked as its baseline."""
    mapping: warmstart.TrackedDict[str, Val] = warmstart.TrackedDict()
    try:
        snapshot = store.load(NAMESPACE)
    except warmstart.CheckpointNotFoundError:
        return mapping, {}, 0
    with snapshot:
        entries = snapshot.section(SECTION, VALS)
        generation = snapshot.generation
    restore_into(mapping, list(entries), list(entries.values()), [])
    store.mark_baseline(NAMESPACE, SECTION, mapping, generation)
    return mapping, entries, generation


def record(side: Any, line: str) -> None:
    side.write(line.encode() + b"\n")
    side.flush()
    os.fsync(side.fileno())


def loop(path: str, side_path: str, seed: int) -> None:
    rng = random.Random(seed)
    store = open_store(path)
    mapping, committed, generation = restore_head(store)
    keys = [f"k{i:04d}" for i in range(KEYS)]
    seq = 0
    with Path(side_path).open("ab") as side:
        while True:
            writes: dict[str, None] = {}
            deletes: set[str] = set()
            for _ in range(rng.randint(1, 40)):
                key = rng.choice(keys)
                if rng.random() < 0.75:
                    seq += 1
                    mapping[key] = make(key, seed, seq)
                    writes.pop(key, None)
                    writes[key] = None
                    deletes.discard(key)
                elif key in mapping:
                    del mapping[key]
                    writes.pop(key, None)
                    deletes.add(key)
            record(side, f"pending {generation + 1} {unordered_digest(mapping.items())}")
            saved = store.save(NAMESPACE, {SECTION: (VALS, mapping)}, mode="delta")
            if saved != generation + 1:
                sys.exit(f"expected generation {generation + 1}, saved {saved}")
            kind = store.manifest(NAMESPACE, saved).kind
            if kind == "full":
                committed = dict(mapping.items())
            else:
                replay(committed, [(k, mapping[k]) for k in writes], deletes)
            generation = saved
            record(side, f"committed {saved} {kind} {ordered_digest(committed.items())}")


def write(path: str, mode: str, pairs: list[str]) -> None:
    with open_store(path, compact=False) as store:
        if mode == "full":
            mapping: warmstart.TrackedDict[str, Val] = warmstart.TrackedDict()
        else:
            mapping, _, _ = restore_head(store)
        for pair in pairs:
            key, seq = pair.split("=")
            mapping[key] = make(key, os.getpid(), int(seq))
        generation = store.save(NAMESPACE, {SECTION: (VALS, mapping)}, mode="delta")
        print(generation, store.manifest(NAMESPACE, generation).kind)


def main(argv: list[str]) -> None:
    if argv[0] == "loop":
        loop(argv[1], argv[2], int(argv[3]))
    elif argv[0] == "write":
        write(argv[1], argv[2], argv[3:])
    else:
        sys.exit(f"unknown command {argv[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
