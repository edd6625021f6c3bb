"""The single C calls a checkpoint of an LRU cache made, and the steps it makes now.

A manual split of ``benchmarks.stall``: which step holds the GIL longest.
The first rows are the one-call steps of the code before issue 15; the rest
are the bounded steps that replace them (one slice of each kind, the longest
of all slices of the kind in a full pass), timed the same way. Reads
cachetools' private attributes (as ``warmstart._sliced`` does).

Run: ``python -m benchmarks.stall_split [entries] [--realtime]`` (default
1,000,000; ``--realtime``: the probe's tickers at a real-time priority).
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

REALTIME = {"on": False}


def _row(name: str, fn: Callable[[], Any]) -> Any:
    result, out = probe(fn, realtime=REALTIME["on"])
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
    print("| **now: one step of each kind (the longest of a full pass)** | | | |")
    _steps(cache, keys, values)


def _longest(name: str, steps: Callable[[], Any]) -> None:
    """Run a generator of steps beside the probe; report the longest step alone."""
    import time

    worst = 0.0

    def run() -> None:
        nonlocal worst
        it = steps()
        while True:
            started = time.thread_time()
            if next(it, None) is None:
                break
            worst = max(worst, time.thread_time() - started)
            time.sleep(0.0001)  # the pause a checkpoint takes

    result, _ = probe(run, realtime=REALTIME["on"])
    print(
        f"| {name} | {worst * 1000:.2f} (CPU of the longest step) | "
        f"{result.thread.max * 1000:.1f} | {result.loop.max * 1000:.1f} |",
        flush=True,
    )


def _steps(cache: Any, keys: list[Any], values: list[Any]) -> None:
    import itertools

    from warmstart import _sliced
    from warmstart.store._chunks import _payloads

    order = cache._LRUCache__order
    data = cache._Cache__data
    encode = RECORDS.encode_value

    def walk(source: Any, size: int, lookup: bool) -> Any:
        it = iter(source)
        while chunk := list(itertools.islice(it, size)):
            if lookup:
                list(map(data.get, chunk))
            yield True

    _longest(
        f"{_sliced.ORDER_SLICE} keys of the recency list, with their values",
        lambda: walk(order, _sliced.ORDER_SLICE, True),
    )
    _longest(
        f"{_sliced.SLICE} keys of the dict, with their values",
        lambda: walk(data, _sliced.SLICE, True),
    )
    _longest(
        f"{_sliced.LOOKUP_SLICE} values of the index's keys (a tracked base)",
        lambda: (
            (list(map(data.get, keys[i : i + _sliced.LOOKUP_SLICE])), True)[1]
            for i in range(0, len(keys), _sliced.LOOKUP_SLICE)
        ),
    )

    def prints() -> Any:
        for i in range(0, len(values), _sliced.SLICE):
            list(map(xxhash.xxh3_64_intdigest, map(encode, values[i : i + _sliced.SLICE])))
            yield True

    _longest(f"xxh3 of {_sliced.SLICE} encoded values", prints)
    _longest(
        "one chunk: checked and encoded (msgpack, about 512 KiB)",
        lambda: (True for _ in _payloads(RECORDS, keys, values, (), 0, ())),
    )


if __name__ == "__main__":
    REALTIME["on"] = "--realtime" in sys.argv
    sizes = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(int(sizes[0]) if sizes else 1_000_000)
