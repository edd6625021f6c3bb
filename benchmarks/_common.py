"""Shared helpers: timing, fresh-process children, memory, results and machine."""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of one call."""
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def timed_cpu(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process, all threads, result) of one call.

    CPU time moves less than wall time when other processes compete for the
    cores (cache contention and a VM's steal time still show), so a CPU ratio
    beside a wall-time ratio helps tell load from a real difference.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


@contextmanager
def frozen_inputs() -> Iterator[None]:
    """Move the harness's own data out of the collector's sight while measuring.

    The inputs a benchmark builds (a million records) are not part of the work
    measured; freezing them makes every collection during a measurement cost
    what it would in a process holding only the measured objects.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextmanager
def forced_diff() -> Iterator[None]:
    """Untracked sections are diffed whatever their measured cost (to measure the diff itself).

    A store saves an untracked section in full once a diff of it measured
    dearer than a full save (``Baselines.diffable``); inside, it always diffs.
    """
    from warmstart.store import _prepare

    real = _prepare.Baselines.diffable
    _prepare.Baselines.diffable = lambda *_: True  # type: ignore[method-assign]
    try:
        yield
    finally:
        _prepare.Baselines.diffable = real  # type: ignore[method-assign]


def peak_rss() -> int:
    """Peak resident set size of this process, in bytes.

    ``VmHWM`` of the process's own address space: unlike ``ru_maxrss``, which
    Linux carries over from the parent through fork and exec, it starts afresh
    in each child.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss() -> int:
    """Resident set size of this process now, in bytes."""
    try:
        import psutil
    except ImportError:  # the bench extra is not installed: Linux's own count
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    return int(psutil.Process().memory_info().rss)


def dir_bytes(path: Path) -> int:
    """Bytes of every file under ``path`` (apparent size)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_child(op: str, **kwargs: Any) -> dict[str, Any]:
    """Run ``python -m benchmarks.child op`` in a fresh process; return its JSON."""
    return run_module("benchmarks.child", op, **kwargs)


def run_module(module: str, op: str, **kwargs: Any) -> dict[str, Any]:
    """Run ``python -m module op JSON`` in a fresh process; return its last JSON line."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", module, op, json.dumps(kwargs)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        msg = f"benchmark child {op} {kwargs} failed ({proc.returncode}):\n{proc.stderr}"
        raise RuntimeError(msg)
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# -- results --------------------------------------------------------------------


@dataclasses.dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]] = dataclasses.field(default_factory=list)
    note: str = ""


@dataclasses.dataclass
class Check:
    """One figure against its target."""

    name: str
    value: float
    target: str
    passed: bool | None  # None: reported, no target
    detail: str = ""

    @property
    def verdict(self) -> str:
        return "info" if self.passed is None else ("PASS" if self.passed else "FAIL")


@dataclasses.dataclass
class Report:
    title: str
    tables: list[Table] = dataclasses.field(default_factory=list)
    checks: list[Check] = dataclasses.field(default_factory=list)
    raw: dict[str, Any] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)


def fmt(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if value != value:  # noqa: PLR0124 - NaN
        return "-"
    size = abs(value)
    spec = ",.0f" if size >= 100 else ".1f" if size >= 10 else ".2f" if size >= 1 else ".3f"
    return format(value, spec)


def mib(n: float) -> float:
    return n / (1024 * 1024)


# -- the machine ------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        ram = f"{psutil.virtual_memory().total / 2**30:.1f} GiB"
    except ImportError:  # pragma: no cover
        ram = "?"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "ram": ram,
        "os": f"{platform.system()} {platform.release()}",
    }


PACKAGES = (
    "warmstart",
    "msgspec",
    "zstandard",
    "lmdb",
    "xxhash",
    "diskcache",
    "sqlitedict",
    "cachetools",
    "psutil",
)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    import sqlite3

    out["sqlite"] = sqlite3.sqlite_version
    return out


def finish(report: Report, json_path: Path | None) -> int:
    """The end of a benchmark module run alone: print the report, write its raw figures."""
    print_report(report)
    if json_path:
        json_path.write_text(json.dumps(report.raw, indent=1, default=str))
    return 0


def print_report(report: Report) -> None:
    """Print a report's tables and checks as markdown (a benchmark module run alone)."""
    for table in report.tables:
        print(f"\n{table.title}\n")
        print("| " + " | ".join(table.columns) + " |")
        print("|" + "---|" * len(table.columns))
        for row in table.rows:
            print("| " + " | ".join(fmt(c) for c in row) + " |")
        if table.note:
            print(f"\n{table.note}")
    for check in report.checks:
        print(f"{check.verdict}: {check.name}: {fmt(check.value)} (target {check.target})")
