"""The single C calls a checkpoint of an LRU cache makes, each timed beside the probe.

A manual split of ``benchmarks.stall``: which step holds the GIL longest.
Reads cachetools' private attributes (as ``warmstart.containers`` does).

Run: ``python -m benchmarks.stall_split [entries]`` (default 1,000,000).
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from typing import Any

import cachetools
import msgspec
import xxhash

from benchmarks.generate_data import RECORDS, make_records
from benchmarks.probe import probe


def _row(name: str, fn: Callable[[], Any]) -> Any:
    result, out = probe(fn)
    print(
        f"| {name} | {result.seconds * 1000:.0f} | {result.thread.max * 1000:.0f} "
        f"| {result.loop.max * 1000:.0f} |",
        flush=True,
    )
    return out


def main(n: int) -> None:
    records = make_records(n)
    cache = cachetools.LRUCache(maxsize=n)
    for k, v in records.items():
        cache[k] = v
    gc.collect()
    order = cache._LRUCache__order
    data = cache._Cache__data
    encode = RECORDS.encode_value
    peek = cachetools.Cache.__getitem__
    print("| step (one call) | wall ms | thread max ms | asyncio max ms |\n|---|---|---|---|")
    keys = _row("list(order): LRU keys in order, C", lambda: list(order))
    _row("dict.copy() of the cache's dict, C", data.copy)
    _row("list(d) + list(d.values()), C", lambda: (list(records), list(records.values())))
    values = _row(
        "[peek(cache, k) for k in keys], Python (under the section lock)",
        lambda: [peek(cache, k) for k in keys],
    )
    _row(
        "list(map(xxh3_64_intdigest, map(encode, values))), C",
        lambda: list(map(xxhash.xxh3_64_intdigest, map(encode, values))),
    )
    _row("msgspec encode of all values in one call, C", lambda: msgspec.msgpack.encode(values))
    chunk = values[:2000]
    _row("msgspec encode of one 2,000-entry chunk, C", lambda: msgspec.msgpack.encode(chunk))
    _row("gc.collect() with the records in the heap", gc.collect)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
