"""Run the benchmark suite and publish the tables: ``python -m benchmarks.run``.

A full run (1,000,000 records; about 25 minutes on 2 shared cores) writes
``docs/benchmarks.md``, carrying over the block between the ``KEPT`` markers
(the checkpoint stalls and service tail latency, measured by
``benchmarks.stall`` and ``benchmarks.latency``, which take longer and pin
both cores: run on their own). ``--quick`` (100,000 records) is a smoke run and
``--only`` picks benchmarks; both print the tables and write them only where
``--out`` says. ``--json`` keeps every raw measurement.

    python -m benchmarks.run                      # everything, docs/benchmarks.md
    python -m benchmarks.run --quick              # a smoke run, printed
    python -m benchmarks.run --only store,delta --out /tmp/bench.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._common import ROOT, Report, fmt, machine, versions

BENCHMARKS = (
    "codec",
    "store",
    "delta",
    "boot",
    "lifecycle",
    "workers",
    "handoff",
    "transfer",
    "remote",
    "import",
    "hotpaths",
    "values",
    "hostile",
)
#: A block of the published page that a run keeps as it is, between these lines.
KEPT = (
    "<!-- kept by make bench: measured by benchmarks.stall and benchmarks.latency -->",
    "<!-- end of the kept block -->",
)


def kept_block(text: str) -> str:
    """The block between the ``KEPT`` markers, markers included ("" if none)."""
    begin, end = text.find(KEPT[0]), text.find(KEPT[1])
    if begin < 0 or end < begin:
        return ""
    return text[begin : end + len(KEPT[1])]


@dataclasses.dataclass(frozen=True)
class Sizes:
    records: int
    blobs: int
    repeats: int  # codec and delta: median of this many
    store_repeats: int  # store: saves and fresh-process restores
    import_repeats: int

    @classmethod
    def full(cls) -> Sizes:
        return cls(records=1_000_000, blobs=100_000, repeats=5, store_repeats=3, import_repeats=10)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(records=100_000, blobs=10_000, repeats=3, store_repeats=2, import_repeats=5)


def _load() -> str:
    try:
        return ", ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - not available
        return "?"


def run(names: list[str], sizes: Sizes, workdir: Path) -> list[Report]:
    from benchmarks.boot import SIZES as BOOT_SIZES
    from benchmarks.boot import run as bench_boot
    from benchmarks.codec import bench_codec
    from benchmarks.delta import bench_delta
    from benchmarks.handoff import bench_handoff
    from benchmarks.hostile import bench_hostile
    from benchmarks.hotpaths import bench_profile
    from benchmarks.importtime import bench_import
    from benchmarks.lifecycle import bench_lifecycle
    from benchmarks.store import bench_store
    from benchmarks.transfer import bench_transfer
    from benchmarks.values import bench_values
    from benchmarks.workers import Sizes as WorkerSizes
    from benchmarks.workers import bench_workers

    def remote() -> Report:
        from benchmarks.remote import bench_remote, redis_server

        with redis_server(workdir) as url:
            urls = {"redis (loopback)": f"{url}?prefix={{prefix}}"}
            return bench_remote(sizes.records, sizes.store_repeats, workdir, urls)

    quick_boot = sizes.records < BOOT_SIZES[-1]
    boot_sizes = (sizes.records // 5, sizes.records) if quick_boot else BOOT_SIZES

    jobs: dict[str, Callable[[], Report]] = {
        "codec": lambda: bench_codec(sizes.records, sizes.repeats),
        "store": lambda: bench_store(sizes.records, sizes.blobs, sizes.store_repeats, workdir),
        "delta": lambda: bench_delta(sizes.records, sizes.repeats, workdir),
        "boot": lambda: bench_boot(sizes=boot_sizes, repeats=sizes.store_repeats),
        "lifecycle": lambda: bench_lifecycle(sizes.records < Sizes.full().records, workdir),
        "workers": lambda: bench_workers(
            WorkerSizes.quick() if sizes.records < Sizes.full().records else WorkerSizes.full(),
            workdir,
        ),
        "handoff": lambda: bench_handoff(
            "quick" if sizes.records < Sizes.full().records else "full", workdir
        ),
        "transfer": lambda: bench_transfer(sizes.records, sizes.store_repeats, workdir),
        "remote": remote,
        "import": lambda: bench_import(sizes.import_repeats),
        "hotpaths": lambda: bench_profile(sizes.records, workdir),
        "values": lambda: bench_values(sizes.records, sizes.store_repeats, workdir),
        "hostile": lambda: bench_hostile(sizes.records < Sizes.full().records, workdir / "hostile"),
    }
    reports = []
    for name in names:
        started = time.perf_counter()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        report = jobs[name]()
        report.raw["wall_seconds"] = time.perf_counter() - started
        print(f"[bench] {name}: {report.raw['wall_seconds']:.0f} s", file=sys.stderr, flush=True)
        reports.append(report)
    return reports


def render(reports: list[Report], args: argparse.Namespace) -> str:
    box = machine()
    vers = versions()
    lines = [
        "# Benchmarks",
        "",
        "Produced by `make bench` (`python -m benchmarks.run"
        + (" --quick" if args.quick else "")
        + (f" --only {args.only}" if args.only else "")
        + f"`) on {time.strftime('%Y-%m-%d')}. Every figure is a median of several runs "
        "measured side by side in one run; absolute times on shared machines drift "
        "10-35% between runs, the ratios are what hold. Fresh-process restores go "
        "through `python -m benchmarks.child`.",
        "",
        (
            f"**Machine:** {box['cpu']}, {box['cores']} cores, {box['ram']} RAM, {box['os']}; "
            f"load average {args.load_before} before the run, {_load()} after "
            "(the machine is shared).  "
        ),
        "**Versions:** " + ", ".join(f"{k} {v}" for k, v in vers.items()) + ".",
        "",
        (
            "How the figures are taken: saves run in the benchmark process with the collector "
            "on and the inputs frozen out of its sight (`gc.freeze`), durably (fsync or the "
            "store's own commit); restores run in a fresh process each, timed from opening the "
            "store or file until the dict is rebuilt, their peak RSS is that process's `VmHWM`; "
            "files are read warm from the page cache, as after a restart on the same host. "
            "Runs of the compared paths are interleaved. *Where the time goes* times each stage "
            "of the hot paths on its own (`python -m benchmarks.hotpaths --cprofile` adds "
            "cProfile tops)."
        ),
        "",
        "## Targets",
        "",
        "| figure | measured | target | verdict |",
        "|---|---|---|---|",
    ]
    for report in reports:
        for check in report.checks:
            value = fmt(check.value)
            if check.target.endswith("%"):
                value = f"{100 * check.value:.1f}%"
            elif check.target.endswith("x"):
                value = f"{check.value:.2f}x"
            detail = f" ({check.detail})" if check.detail else ""
            lines.append(
                f"| {report.title}: {check.name}{detail} | {value} | {check.target} "
                f"| {check.verdict} |"
            )
    for report in reports:
        lines += ["", f"## {report.title}", ""]
        for table in report.tables:
            lines += [f"### {table.title}", ""]
            lines.append("| " + " | ".join(table.columns) + " |")
            lines.append("|" + "---|" * len(table.columns))
            lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in table.rows]
            if table.note:
                lines += ["", table.note]
            lines.append("")
        lines += [f"- {note}" for note in report.notes]
    text = "\n".join(lines).rstrip() + "\n"
    return text.replace("\n\n\n", "\n\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100k records: a smoke run")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    parser.add_argument("--out", type=Path, help="markdown output (full run: docs/benchmarks.md)")
    parser.add_argument("--json", type=Path, help="also write every raw measurement here")
    parser.add_argument("--workdir", type=Path, help="where stores and files are written")
    parser.add_argument("--records", type=int, help="override the number of records")
    args = parser.parse_args(argv)
    names = list(BENCHMARKS) if not args.only else [n.strip() for n in args.only.split(",")]
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmarks {sorted(unknown)}; choose from {BENCHMARKS}")
    sizes = Sizes.quick() if args.quick else Sizes.full()
    if args.records:
        sizes = dataclasses.replace(sizes, records=args.records)
    out = args.out
    if out is None and not args.quick and not args.only and not args.records:
        out = ROOT / "docs" / "benchmarks.md"
    args.load_before = _load()
    workdir = Path(tempfile.mkdtemp(prefix="warmstart-bench-", dir=args.workdir))
    try:
        reports = run(names, sizes, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = render(reports, args)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        kept = kept_block(out.read_text()) if out.exists() else ""
        if kept:
            text = text.rstrip() + "\n\n" + kept + "\n"
        out.write_text(text)
        print(f"[bench] wrote {out}", file=sys.stderr)
    if args.json:
        raw: dict[str, Any] = {
            "sizes": dataclasses.asdict(sizes),
            "machine": machine(),
            "versions": versions(),
            "reports": [
                {
                    "title": r.title,
                    "checks": [dataclasses.asdict(c) for c in r.checks],
                    "tables": [dataclasses.asdict(t) for t in r.tables],
                    "raw": r.raw,
                }
                for r in reports
            ],
        }
        args.json.write_text(json.dumps(raw, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
