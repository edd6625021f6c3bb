"""Import time: ``python -I -c "import warmstart"`` against its dependencies alone.

Each variant is a fresh interpreter, run interleaved with the others; the
figure is the median wall time of the whole process, and "import cost" is
that minus the bare interpreter's. "Cold" compiles every module from source
into an empty bytecode cache (``-X pycache_prefix``), as a first start after
an install without precompiled bytecode does.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time

from benchmarks._common import ROOT, Check, Report, Table, median

COLD = "import warmstart, cold bytecode cache"
VARIANTS = (
    ("bare interpreter: python -I -c pass", "pass"),
    ("msgspec + zstandard + lmdb + xxhash", "import msgspec, zstandard, lmdb, xxhash"),
    ("import warmstart", "import warmstart"),
    (
        "import warmstart + the engine (first boot(), Store, @cached)",
        "import warmstart; warmstart.boot; warmstart.Store; warmstart.cached",
    ),
    (COLD, "import warmstart"),
)


def _once(code: str, *, cold: bool = False) -> float:
    with tempfile.TemporaryDirectory() as cache:
        options = ["-X", f"pycache_prefix={cache}"] if cold else []
        started = time.perf_counter()
        subprocess.run([sys.executable, "-I", *options, "-c", code], check=True, cwd=ROOT.parent)
        return time.perf_counter() - started


def bench_import(repeats: int) -> Report:
    for label, code in VARIANTS:  # warm the page cache and the bytecode caches
        _once(code, cold=label == COLD)
    times: dict[str, list[float]] = {label: [] for label, _ in VARIANTS}
    for _ in range(repeats):
        for label, code in VARIANTS:
            times[label].append(_once(code, cold=label == COLD))
    m = {label: median(t) for label, t in times.items()}
    bare = m[VARIANTS[0][0]]
    deps = m[VARIANTS[1][0]]
    ours = m[VARIANTS[2][0]]
    rows = [[label, 1000 * m[label], 1000 * (m[label] - bare)] for label, _ in VARIANTS]
    table = Table(
        f"Import time, fresh interpreter (python -I), median of {repeats}",
        ["what", "process ms", "import cost ms"],
        rows,
    )
    checks = [
        Check(
            "import warmstart: cost beyond its dependencies, ms",
            1000 * (ours - deps),
            "<= 30 ms",
            1000 * (ours - deps) <= 30,
            detail=f"warmstart {1000 * (ours - bare):.1f} ms vs dependencies "
            f"{1000 * (deps - bare):.1f} ms",
        )
    ]
    return Report("Import", [table], checks, raw={"times": times})
