"""Warm start: time to ready, eager and progressive, dict and LRU cache.

Each figure is measured in a fresh process (``python -m benchmarks.boot child
...``): the clock starts before ``boot()`` is entered and stops when the
decorated object is constructed, i.e. when the service could take its first
request. Imports happen before the clock starts (import time is measured in
``benchmarks.importtime``).

Targets (issue "Warm start in a service"): progressive time to ready at most
50 ms regardless of size; an eager restore of 1,000,000 entries into a
``cachetools.LRUCache`` within 1.5x of the same restore into a dict.

Run: ``python -m benchmarks.boot [--quick]``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks import generate_data
from benchmarks._common import Check, Report, Table, fmt, median, print_report, run_module

SIZES = (100_000, 1_000_000)
QUICK_SIZES = (20_000, 100_000)
NAMESPACE = "bench"
SECTION = "Service.cache"


def _child(path: str, container: str, progressive: bool) -> dict[str, Any]:
    """In a fresh process: boot, construct, report time to ready and to warm."""
    import cachetools

    import warmstart

    lock = "lock" if container == "lru+lock" else None

    @warmstart.warm(cache=warmstart.state(generate_data.RECORDS, section=SECTION, lock=lock))
    class Service:
        def __init__(self) -> None:
            self.lock = threading.RLock()
            self.cache: Any = {} if container == "dict" else cachetools.LRUCache(maxsize=2_000_000)

    started = time.perf_counter()
    with warmstart.boot(
        path, namespace=NAMESPACE, signals=False, progressive=progressive, checkpoint_on_exit=False
    ) as boot:
        service = Service()
        ready = time.perf_counter() - started
    boot.wait_ready(120)
    warm = time.perf_counter() - started
    restored = len(service.cache)
    status = boot.report.sections[SECTION].status
    boot.close()
    return {"ready": ready, "warm": warm, "restored": restored, "status": status}


def _run_child(path: Path, container: str, progressive: bool) -> dict[str, Any]:
    return run_module(
        "benchmarks.boot", "child", path=str(path), container=container, progressive=progressive
    )


def _prepare(path: Path, n: int) -> None:
    import warmstart

    with warmstart.Store(path) as store:
        store.save(NAMESPACE, {SECTION: (generate_data.RECORDS, generate_data.make_records(n))})


def run(*, sizes: tuple[int, ...] = SIZES, repeats: int = 3) -> Report:
    """Time to ready and to fully warm, median of ``repeats`` fresh processes."""
    report = Report("Warm start: time to ready")
    table = Table(
        "Time to ready (first request can be served) and to fully warm, fresh process",
        ["entries", "container", "mode", "ready ms", "warm s", "restored"],
    )
    medians: dict[tuple[int, str, str], dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="warmstart-bench-boot-") as tmp:
        for n in sizes:
            path = Path(tmp) / f"store-{n}"
            _prepare(path, n)
            for container in ("dict", "lru", "lru+lock"):
                for mode in ("progressive", "eager"):
                    runs = [
                        _run_child(path, container, mode == "progressive") for _ in range(repeats)
                    ]
                    ready = median([r["ready"] for r in runs])
                    warm = median([r["warm"] for r in runs])
                    medians[(n, container, mode)] = {"ready": ready, "warm": warm}
                    table.rows.append(
                        [n, container, mode, fmt(ready * 1000), fmt(warm), runs[0]["restored"]]
                    )
    table.note = (
        "progressive: the hot part (deltas and the last base chunk) before the object is "
        "returned, the rest in a background thread. lru: a cachetools LRUCache without a "
        "lock, which the thread-safety contract restores eagerly even in progressive mode; "
        "lru+lock: the same cache with state(lock=...), restored progressively."
    )
    report.tables.append(table)
    for n in sizes:
        for container in ("dict", "lru+lock"):
            ready = medians[(n, container, "progressive")]["ready"] * 1000
            name = f"progressive time to ready, {n:,} entries ({container})"
            report.checks.append(Check(name, ready, "<= 50 ms", ready <= 50))
    largest = max(sizes)
    ratio = (
        medians[(largest, "lru", "eager")]["ready"] / medians[(largest, "dict", "eager")]["ready"]
    )
    report.checks.append(
        Check(
            f"eager restore into LRUCache / into dict, {largest:,} entries",
            ratio,
            "<= 1.5x",
            ratio <= 1.5,
        )
    )
    report.raw["boot"] = {f"{n}/{c}/{m}": v for (n, c, m), v in medians.items()}
    return report


def main(argv: list[str]) -> None:
    if argv and argv[0] == "child":
        args = json.loads(argv[1])
        print(json.dumps(_child(args["path"], args["container"], args["progressive"])))
        return
    quick = "--quick" in argv
    print_report(run(sizes=QUICK_SIZES if quick else SIZES, repeats=1 if quick else 3))


if __name__ == "__main__":
    main(sys.argv[1:])
