"""A hash table of up to millions of keys that grows in bounded steps.

A dict or set doubles its table when it fills: one C call that rehashes
every entry. Past about 700,000 entries that one call held the GIL for
20-40 ms in a checkpoint's diff (issue 15), however small the steps that
filled it. A :class:`KeyTable` expected to hold many keys spreads them over
``SHARDS`` dicts by hash, so no resize touches more than a shard's worth;
a small one is a single dict.

>>> table = KeyTable(expected=3)
>>> table.update(["a", "b"], [1, 2])
>>> table.get_all(["b", "z"]), len(table), "a" in table
([2, None], 2, True)
>>> table.missing(["a", "z"])
['z']
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

from warmstart._pacing import SLICE, drop, pace

__all__ = ("KeyTable",)

#: Shards of a large table: at a million keys, 15,600 a shard, whose
#: resize is a fraction of a millisecond.
SHARDS = 64
#: Keys expected from which a table is sharded (a resize of a 65,536-key
#: dict takes about half a millisecond).
SHARDED_AT = 65536


class KeyTable:
    """Key -> value, filled and read a step at a time (each step a bounded batch)."""

    __slots__ = ("_shards",)

    def __init__(self, expected: int) -> None:
        count = SHARDS if expected >= SHARDED_AT else 1
        self._shards: list[dict[Any, Any]] = [{} for _ in range(count)]

    def __len__(self) -> int:
        return sum(map(len, self._shards))

    def __contains__(self, key: Any) -> bool:
        return key in self._shard(key)

    def _shard(self, key: Any) -> dict[Any, Any]:
        shards = self._shards
        return shards[hash(key) % len(shards)] if len(shards) > 1 else shards[0]

    def update(self, keys: Iterable[Any], values: Iterable[Any]) -> None:
        """Add one step's batch of keys with their values."""
        shards = self._shards
        if len(shards) == 1:
            shards[0].update(zip(keys, values))
            return
        count = len(shards)
        for key, value in zip(keys, values):
            shards[hash(key) % count][key] = value

    def get_all(self, keys: Iterable[Any]) -> list[Any]:
        """The value of each key, None where absent."""
        shards = self._shards
        if len(shards) == 1:
            return list(map(shards[0].get, keys))
        count = len(shards)
        return [shards[hash(key) % count].get(key) for key in keys]

    def missing(self, keys: Iterable[Any]) -> list[Any]:
        """The keys not in this table, in order."""
        shards = self._shards
        if len(shards) == 1:
            return list(itertools.filterfalse(shards[0].__contains__, keys))
        count = len(shards)
        return [key for key in keys if key not in shards[hash(key) % count]]

    def batches(self) -> Iterator[list[Any]]:
        """The keys, at most ``SLICE`` per batch, pacing between batches."""
        for shard in self._shards:
            it = iter(shard)
            while batch := list(itertools.islice(it, SLICE)):
                yield batch
                pace()

    def release(self) -> None:
        """Empty the table a step at a time (see :func:`~warmstart._pacing.drop`)."""
        shards, self._shards = self._shards, [{}]
        while shards:
            shard = shards.pop()
            drop(shard)
            del shard
