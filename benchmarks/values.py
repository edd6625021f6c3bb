"""Value families and memoized functions (issue 16).

1. Save and restore of the same records held as each value family a contract
   takes (Struct, dataclass, attrs class, TypedDict, NamedTuple, pydantic v2
   model, a builtin tuple, a ``dict[str, Any]`` document), side by side:
   families interleaved in every repeat, medians reported. Saves go through
   ``Store.save`` (durable commit); restores through ``Store.load`` +
   ``Snapshot.read`` in this process, with the inputs frozen out of the
   collector's sight.
2. Per-call cost of ``@warmstart.cached`` against ``functools.lru_cache`` and
   ``cachetools.cached`` on a hit and on a miss (with eviction), interleaved.

``python -m benchmarks.values [--records N] [--repeats R] [--write]``;
``--write`` puts the section into docs/benchmarks.md (``make bench`` runs it
as ``values``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple, TypedDict

import msgspec

from benchmarks._common import (
    ROOT,
    Check,
    Report,
    Table,
    fmt,
    frozen_inputs,
    median,
    timed_cpu,
)

SECTION = "## Value types and memoized functions"


class StructRecord(msgspec.Struct):
    id: int
    name: str
    score: float
    tags: list[int]
    active: bool
    kind: str


@dataclasses.dataclass
class DataclassRecord:
    id: int
    name: str
    score: float
    tags: list[int]
    active: bool
    kind: str


class TypedDictRecord(TypedDict):
    id: int
    name: str
    score: float
    tags: list[int]
    active: bool
    kind: str


class NamedTupleRecord(NamedTuple):
    id: int
    name: str
    score: float
    tags: list[int]
    active: bool
    kind: str


def _attrs_record() -> Any:
    import attrs

    @attrs.define
    class AttrsRecord:
        id: int
        name: str
        score: float
        tags: list[int]
        active: bool
        kind: str

    return AttrsRecord


def _pydantic_record() -> Any:
    import pydantic

    class PydanticRecord(pydantic.BaseModel):
        id: int
        name: str
        score: float
        tags: list[int]
        active: bool
        kind: str

    return PydanticRecord


def _fields(i: int) -> tuple[int, str, float, list[int], bool, str]:
    return (i, f"n{i}", i * 0.5, [i, i + 1, i + 2], i % 2 == 0, "abc"[i % 3])


NAMES = ("id", "name", "score", "tags", "active", "kind")


def families() -> dict[str, tuple[Any, Any]]:
    """family label -> (contract type, build(fields tuple) -> value)."""
    attrs_record = _attrs_record()
    pydantic_record = _pydantic_record()
    return {
        "msgspec.Struct": (StructRecord, lambda f: StructRecord(*f)),
        "dataclass": (DataclassRecord, lambda f: DataclassRecord(*f)),
        "attrs": (attrs_record, lambda f: attrs_record(*f)),
        "TypedDict": (TypedDictRecord, lambda f: dict(zip(NAMES, f))),
        "NamedTuple": (NamedTupleRecord, lambda f: NamedTupleRecord(*f)),
        "pydantic v2": (
            pydantic_record,
            lambda f: pydantic_record.model_construct(**dict(zip(NAMES, f))),
        ),
        "tuple[int, str, float, list[int], bool, str]": (
            tuple[int, str, float, list[int], bool, str],
            lambda f: f,
        ),
        "dict[str, Any]": (dict[str, Any], lambda f: dict(zip(NAMES, f))),
    }


def bench_families(
    records: int, repeats: int, workdir: Path
) -> tuple[Table, list[Check], dict[str, Any]]:
    import warmstart

    kinds = families()
    data: dict[str, dict[str, Any]] = {}
    contracts: dict[str, Any] = {}
    for label, (tp, build) in kinds.items():
        data[label] = {f"k{i}": build(_fields(i)) for i in range(records)}
        contracts[label] = warmstart.Contract("rows", tp)
    saves: dict[str, list[float]] = {label: [] for label in kinds}
    loads: dict[str, list[float]] = {label: [] for label in kinds}
    save_cpu: dict[str, list[float]] = {label: [] for label in kinds}
    load_cpu: dict[str, list[float]] = {label: [] for label in kinds}
    labels = list(kinds)
    with frozen_inputs():
        for r in range(repeats):
            # Each repeat starts at another family: none always runs first.
            for label in labels[r % len(labels) :] + labels[: r % len(labels)]:
                gc.collect()
                path = workdir / f"values-{r}-{labels.index(label)}"
                with warmstart.Store(path) as store:
                    wall, cpu, _ = timed_cpu(
                        lambda: store.save("ns", {"rows": (contracts[label], data[label])})  # noqa: B023
                    )
                    saves[label].append(wall)
                    save_cpu[label].append(cpu)

                    def load(store: Any = store, label: str = label) -> int:
                        with store.load("ns") as snapshot:
                            return len(snapshot.read("rows", contracts[label]).entries)

                    wall, cpu, n = timed_cpu(load)
                    assert n == records, (label, n)
                    loads[label].append(wall)
                    load_cpu[label].append(cpu)
                shutil.rmtree(path, ignore_errors=True)
    base = "msgspec.Struct"
    table = Table(
        f"Save and restore of {records:,} records per value family, median of {repeats}",
        [
            "family",
            "save (s)",
            "x Struct",
            "save CPU x Struct",
            "restore (s)",
            "x Struct",
            "restore CPU x Struct",
        ],
    )
    checks: list[Check] = []
    for label in kinds:
        save, load = median(saves[label]), median(loads[label])
        save_x = median(save_cpu[label]) / median(save_cpu[base])
        load_x = median(load_cpu[label]) / median(load_cpu[base])
        table.rows.append(
            [
                label,
                save,
                save / median(saves[base]),
                save_x,
                load,
                load / median(loads[base]),
                load_x,
            ]
        )
        if label == base:
            continue
        target = label in ("dataclass", "attrs")
        for what, ratio in (("save", save_x), ("restore", load_x)):
            checks.append(
                Check(
                    f"{label} {what} CPU vs Struct",
                    ratio,
                    "<= 1.5x" if target else "report x",
                    (ratio <= 1.5) if target else None,
                )
            )
    table.note = (
        "The same six fields (int, str, float, list[int], bool, str) in every family; "
        "a store per run, durable commit; restore = load + read into a dict, in the "
        "benchmark process, the families interleaved (each repeat starts at another). "
        "CPU is this process's CPU time, all threads (the zstd worker included): on a "
        "shared machine it moves less than wall time, so the targets are read on it. "
        "pydantic values are read back through `model_validate`; `dict[str, Any]` "
        "documents are walked at save (data in `Any` positions must come back as it is)."
    )
    raw = {"saves": saves, "loads": loads, "save_cpu": save_cpu, "load_cpu": load_cpu}
    return table, checks, raw


# -- memoized functions --------------------------------------------------------------


def _per_call(fn: Any, keys: list[int]) -> float:
    started = time.perf_counter()
    for k in keys:
        fn(k)
    return (time.perf_counter() - started) / len(keys) * 1e9


def memo_candidates(maxsize: int) -> dict[str, Any]:
    import cachetools

    import warmstart

    contract = warmstart.Contract("n", int, key=int)

    def square(x: int) -> int:
        return x * x

    return {
        "functools.lru_cache": lambda: functools.lru_cache(maxsize=maxsize)(square),
        "cachetools.cached(LRUCache)": lambda: cachetools.cached(cachetools.LRUCache(maxsize))(
            square
        ),
        "cachetools.cached(LRUCache, lock)": lambda: cachetools.cached(
            cachetools.LRUCache(maxsize), lock=threading.Lock()
        )(square),
        "warmstart.cached (default LRU)": lambda: warmstart.cached(contract, maxsize=maxsize)(
            square
        ),
        "warmstart.cached(cache=LRUCache)": lambda: warmstart.cached(
            contract, cache=cachetools.LRUCache(maxsize)
        )(square),
    }


def bench_memo(calls: int, repeats: int) -> tuple[Table, list[Check], dict[str, Any]]:
    maxsize = 4096
    hot = list(range(1000)) * (calls // 1000)
    candidates = memo_candidates(maxsize)
    hits: dict[str, list[float]] = {name: [] for name in candidates}
    misses: dict[str, list[float]] = {name: [] for name in candidates}
    for r in range(repeats):
        for name, make in candidates.items():
            fn = make()
            for k in range(1000):
                fn(k)
            hits[name].append(_per_call(fn, hot))
            fresh = list(range(10_000 + r * calls, 10_000 + (r + 1) * calls))
            fn = make()
            for k in range(-maxsize, 0):  # full: every miss evicts
                fn(k)
            misses[name].append(_per_call(fn, fresh))
    base = "cachetools.cached(LRUCache)"
    table = _per_call_table(
        f"Per call of a memoized `square(x: int)`, ns, median of {repeats} x {calls:,} calls",
        "cachetools",
        base,
        hits,
        misses,
    )
    table.note = (
        "Hit: 1,000 keys already cached, called round-robin. Miss: distinct keys on a full "
        f"cache of {maxsize:,} (every miss evicts). The warmstart default is an "
        "OrderedDict LRU, lock-free (dict operations are atomic); with a cachetools cache "
        "it takes a lock, as cachetools.cached(lock=...) does. warmstart also checks each "
        "new key and result against the contract before caching it."
    )
    checks = []
    for what, results in (("hit", hits), ("miss", misses)):
        ratio = median(results["warmstart.cached (default LRU)"]) / median(results[base])
        checks.append(Check(f"cached {what} vs cachetools.cached", ratio, "<= 1.2x", ratio <= 1.2))
        locked = median(results["warmstart.cached(cache=LRUCache)"]) / median(
            results["cachetools.cached(LRUCache, lock)"]
        )
        checks.append(
            Check(
                f"cached(cache=LRUCache) {what} vs cachetools.cached(lock)",
                locked,
                "<= 1.2x",
                locked <= 1.2,
            )
        )
    return table, checks, {"hits": hits, "misses": misses}


def _async_per_call(fn: Any, keys: list[int], loop: Any) -> float:
    async def run() -> float:
        started = time.perf_counter()
        for k in keys:
            await fn(k)
        return (time.perf_counter() - started) / len(keys) * 1e9

    return loop.run_until_complete(run())  # type: ignore[no-any-return]


def bench_async_memo(calls: int, repeats: int) -> tuple[Table, list[Check], dict[str, Any]] | None:
    """``async def`` memoized with async_lru.alru_cache and warmstart.cached."""
    try:
        import async_lru
    except ImportError:
        return None
    import warmstart

    maxsize = 4096
    contract = warmstart.Contract("n", int, key=int)

    async def square(x: int) -> int:
        return x * x

    candidates = {
        "async_lru.alru_cache": lambda: async_lru.alru_cache(maxsize=maxsize)(square),
        "warmstart.cached (default LRU)": lambda: warmstart.cached(contract, maxsize=maxsize)(
            square
        ),
    }
    hot = list(range(1000)) * (calls // 1000)
    hits: dict[str, list[float]] = {name: [] for name in candidates}
    misses: dict[str, list[float]] = {name: [] for name in candidates}
    import asyncio

    for r in range(repeats):
        for name, make in candidates.items():
            # One loop per cache: async_lru clears a cache used from another loop.
            loop = asyncio.new_event_loop()
            try:
                fn = make()
                _async_per_call(fn, list(range(1000)), loop)
                hits[name].append(_async_per_call(fn, hot, loop))
                fn = make()
                _async_per_call(fn, list(range(-maxsize, 0)), loop)
                fresh = list(range(10_000 + r * calls, 10_000 + (r + 1) * calls))
                misses[name].append(_async_per_call(fn, fresh, loop))
            finally:
                loop.close()
    base = "async_lru.alru_cache"
    table = _per_call_table(
        f"Per await of a memoized `async def square(x: int)`, ns, median of {repeats} x "
        f"{calls:,} calls",
        "async_lru",
        base,
        hits,
        misses,
    )
    table.note = (
        "One event loop, calls awaited one after another. Both run a miss as a task that "
        "later callers of the same key await (one computation per key)."
    )
    checks = [
        Check(
            f"async cached {what} vs async_lru",
            median(results["warmstart.cached (default LRU)"]) / median(results[base]),
            "report x",
            None,
        )
        for what, results in (("hit", hits), ("miss", misses))
    ]
    return table, checks, {"hits": hits, "misses": misses}


def bench_values(records: int, repeats: int, workdir: Path, calls: int = 200_000) -> Report:
    report = Report("Value types and memoized functions")
    table, checks, raw = bench_families(records, repeats, workdir)
    report.tables.append(table)
    report.checks += checks
    report.raw["families"] = raw
    table, checks, raw = bench_memo(calls, max(repeats, 5))
    report.tables.append(table)
    report.checks += checks
    report.raw["memo"] = raw
    found = bench_async_memo(calls // 2, max(repeats, 5))
    if found is not None:
        table, checks, raw = found
        report.tables.append(table)
        report.checks += checks
        report.raw["async_memo"] = raw
    return report


def section(report: Report, load: str = "") -> str:
    lines = [
        SECTION,
        "",
        f"`python -m benchmarks.values --write` on {time.strftime('%Y-%m-%d')} (issue 16)"
        + (f", load average {load} during the run (a shared 2-core machine)" if load else "")
        + ". Absolute times move with the neighbours' load; the ratios, measured "
        "side by side, are the figures to read.",
        "",
    ]
    for table in report.tables:
        lines += [f"### {table.title}", ""]
        lines.append("| " + " | ".join(table.columns) + " |")
        lines.append("|" + "---|" * len(table.columns))
        lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in table.rows]
        lines += ["", table.note, ""] if table.note else [""]
    lines += ["| figure | measured | target | verdict |", "|---|---|---|---|"]
    for check in report.checks:
        lines.append(f"| {check.name} | {check.value:.2f}x | {check.target} | {check.verdict} |")
    return "\n".join(lines) + "\n"


def _load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def write_section(text: str, page: Path = ROOT / "docs" / "benchmarks.md") -> None:
    """Put the section into the page: replace it if present, else append it."""
    doc = page.read_text()
    if SECTION in doc:
        start = doc.index(SECTION)
        nxt = doc.find("\n## ", start + len(SECTION))
        doc = doc[:start] + text + (doc[nxt + 1 :] if nxt != -1 else "")
    else:
        doc = doc.rstrip() + "\n\n" + text
    page.write_text(doc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.values", description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="warmstart-values-"))
    before = _load()
    try:
        report = bench_values(args.records, args.repeats, workdir, args.calls)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = section(report, f"{before} before, {_load()} after")
    print(text)
    if args.write:
        write_section(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def _per_call_table(
    title: str, short: str, base: str, hits: dict[str, list[float]], misses: dict[str, list[float]]
) -> Table:
    """Medians per call of each decorator (in the order measured), and their ratio to ``base``."""
    table = Table(title, ["decorator", "hit (ns)", f"x {short}", "miss (ns)", f"x {short}"])
    base_hit, base_miss = median(hits[base]), median(misses[base])
    for name, per_hit in hits.items():
        hit, miss = median(per_hit), median(misses[name])
        table.rows.append([name, hit, hit / base_hit, miss, miss / base_miss])
    return table
