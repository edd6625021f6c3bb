"""The benchmark workloads: small records, 1 KiB blobs, and a 1% change.

Deterministic: the same ``n`` and ``seed`` give the same data in every process,
so a child process can rebuild the expected state to check a restore.
"""

from __future__ import annotations

import random
from collections.abc import MutableMapping
from typing import Any

import msgspec

import warmstart

KINDS = ("free", "pro", "team")


class Record(msgspec.Struct):
    """The small record: six fields of the usual kinds."""

    id: int
    name: str
    score: float
    tags: list[int]
    active: bool
    kind: str  # enum-like: one of KINDS


class FrozenRecord(msgspec.Struct, frozen=True):
    """The same record, immutable all the way down: deltas diff it by identity."""

    id: int
    name: str
    score: float
    tags: tuple[int, ...]
    active: bool
    kind: str


class Blob(msgspec.Struct):
    """One opaque 1 KiB value (a rendered fragment, a serialized response)."""

    data: bytes


RECORDS = warmstart.Contract("record", Record, key=str)
FROZEN_RECORDS = warmstart.Contract("frozen-record", FrozenRecord, key=str)
BLOBS = warmstart.Contract("blob", Blob, key=str)
BLOB_SIZE = 1024


def _mix(i: int) -> int:
    """A cheap deterministic scramble of ``i`` (Knuth's multiplicative hash)."""
    return (i * 2654435761) & 0xFFFFFFFF


def _fields(i: int, salt: int = 0) -> tuple[int, str, float, list[int], bool, str]:
    h = _mix(i + salt)
    return (
        i,
        f"user{h % 1000003}",
        h / 4294967.296,
        [h % 1000, (h >> 10) % 1000, (h >> 20) % 4096],
        h & 1 == 0,
        KINDS[h % 3],
    )


def _frozen_fields(i: int, salt: int = 0) -> tuple[int, str, float, tuple[int, ...], bool, str]:
    id_, name, score, tags, active, kind = _fields(i, salt)
    return id_, name, score, tuple(tags), active, kind


def record(i: int, *, frozen: bool = False, salt: int = 0) -> Any:
    """Record number ``i`` (``salt`` varies the contents for updates)."""
    if frozen:
        return FrozenRecord(*_frozen_fields(i, salt))
    return Record(*_fields(i, salt))


def key(i: int) -> str:
    return f"k{i}"


def make_records(n: int, *, frozen: bool = False) -> dict[str, Any]:
    """``n`` records keyed ``k0`` .. ``k{n-1}``."""
    if frozen:
        return {f"k{i}": FrozenRecord(*_frozen_fields(i)) for i in range(n)}
    return {f"k{i}": Record(*_fields(i)) for i in range(n)}


def make_record_dicts(n: int) -> dict[str, dict[str, Any]]:
    """The same ``n`` records as plain dicts, built directly."""
    out = {}
    for i in range(n):
        id_, name, score, tags, active, kind = _fields(i)
        out[f"k{i}"] = {
            "id": id_,
            "name": name,
            "score": score,
            "tags": tags,
            "active": active,
            "kind": kind,
        }
    return out


def as_dicts(records: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The same records as plain dicts (what pickle and its peers store)."""
    return {
        k: {
            "id": v.id,
            "name": v.name,
            "score": v.score,
            "tags": list(v.tags),
            "active": v.active,
            "kind": v.kind,
        }
        for k, v in records.items()
    }


def make_blobs(n: int, *, seed: int = 7) -> dict[str, bytes]:
    """``n`` values of 1 KiB that compress about 2x (half random, half text)."""
    rng = random.Random(seed)
    text = b"warm state: rendered fragment, headers and a cached response body. " * 16
    out = {}
    for i in range(n):
        head = rng.randbytes(BLOB_SIZE // 2)
        out[f"b{i}"] = head + text[: BLOB_SIZE - len(head)]
    return out


def as_blobs(values: dict[str, bytes]) -> dict[str, Blob]:
    return {k: Blob(v) for k, v in values.items()}


def change_some(
    mapping: MutableMapping[str, Any],
    fraction: float,
    *,
    seed: int,
    next_id: int,
    frozen: bool = False,
    in_place: bool = False,
) -> tuple[int, int, int]:
    """Change ``fraction`` of the keys: half updates, a quarter inserts, a quarter deletes.

    Updates assign a new record (what a tracked mapping sees) or, with
    ``in_place`` (mutable records), change a field of the stored one (what only
    a hash diff sees). Inserts use ids from ``next_id`` on. Returns
    (updates, inserts, deletes).
    """
    total = max(int(len(mapping) * fraction), 4)
    updates, inserts = total // 2, total // 4
    deletes = total - updates - inserts
    rng = random.Random(seed)
    picked = rng.sample(list(mapping.keys()), updates + deletes)
    for k in picked[:updates]:
        old = mapping[k]
        if in_place:
            old.score += 1.0
        else:
            mapping[k] = record(int(k[1:]), frozen=frozen, salt=1 + seed)
    for k in picked[updates:]:
        del mapping[k]
    for j in range(next_id, next_id + inserts):
        mapping[key(j)] = record(j, frozen=frozen)
    return updates, inserts, deletes
