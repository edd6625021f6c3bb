"""State transfer: export and import throughput, and an incremental export.

Per repeat: a 1,000,000-entry generation (the benchmark records, in a
``TrackedDict``) is saved, exported to an archive file, imported into an
empty store (MB/s over the archive's bytes); then 1% of entries change (half
updates, a quarter inserts, a quarter deletes), a delta generation is saved,
and ``export(..., since=previous)`` ships only the chunks the target lacks,
which the target imports on top of the generation it holds.

Target (issue "Operations"): the incremental export is at most 3% of a full
export's bytes.

Run: ``python -m benchmarks.transfer [--quick]``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import warmstart
from benchmarks._common import Check, Report, Table, fmt, median, mib, print_report
from benchmarks.generate_data import RECORDS, change_some, make_records

NAMESPACE = "bench"
SECTION = "records"
FRACTION = 0.01


def _one(data: dict[str, Any], workdir: Path, seed: int) -> dict[str, float]:
    tracked = warmstart.TrackedDict(data)
    out: dict[str, float] = {}
    with (
        warmstart.Store(workdir / "source") as source,
        warmstart.Store(workdir / "target") as target,
    ):
        first = source.save(NAMESPACE, {SECTION: (RECORDS, tracked)})
        archive = workdir / "full.wsa"
        started = time.perf_counter()
        export = warmstart.transfer.export(source, NAMESPACE, archive)
        out["export_s"] = time.perf_counter() - started
        out["export_bytes"] = archive.stat().st_size
        started = time.perf_counter()
        warmstart.transfer.import_archive(target, archive)
        out["import_s"] = time.perf_counter() - started
        del export
        change_some(tracked, FRACTION, seed=seed, next_id=len(data) + 1)
        source.save(NAMESPACE, {SECTION: (RECORDS, tracked)})
        delta_archive = workdir / "delta.wsa"
        started = time.perf_counter()
        warmstart.transfer.export(source, NAMESPACE, delta_archive, since=first)
        out["delta_export_s"] = time.perf_counter() - started
        out["delta_export_bytes"] = delta_archive.stat().st_size
        started = time.perf_counter()
        warmstart.transfer.import_archive(target, delta_archive)
        out["delta_import_s"] = time.perf_counter() - started
        # Not timed: the target now holds the source's head, entry for entry.
        with target.load(NAMESPACE) as snapshot:
            if snapshot.section(SECTION, RECORDS) != dict(tracked):
                msg = "the incremental import did not reproduce the source's state"
                raise RuntimeError(msg)
    return out


def bench_transfer(n: int, repeats: int, workdir: Path) -> Report:
    """Export/import throughput and the incremental export (median of ``repeats``)."""
    data = make_records(n)
    report = Report(title=f"Transfer: {n:,} entries")
    runs = []
    for r in range(repeats):
        scratch = workdir / f"transfer-{r}"
        runs.append(_one(data, scratch, seed=r))
        shutil.rmtree(scratch, ignore_errors=True)
    m = {k: median([run[k] for run in runs]) for k in runs[0]}
    share = m["delta_export_bytes"] / m["export_bytes"]
    report.tables.append(
        Table(
            title=f"Export and import of a {n:,}-entry generation, then a {FRACTION:.0%} change",
            columns=[
                "archive MB",
                "export s",
                "export MB/s",
                "import s",
                "import MB/s",
                "1% export kB",
                "1% export s",
                "1% import s",
                "1% of full bytes",
            ],
            rows=[
                [
                    mib(m["export_bytes"]),
                    m["export_s"],
                    mib(m["export_bytes"]) / m["export_s"],
                    m["import_s"],
                    mib(m["export_bytes"]) / m["import_s"],
                    m["delta_export_bytes"] / 1024,
                    m["delta_export_s"],
                    m["delta_import_s"],
                    f"{share:.2%}",
                ]
            ],
            note=(
                f"Median of {repeats} runs. Export writes an fsynced archive; import verifies "
                "every chunk and commits durably (sync=True). MB/s over archive bytes."
            ),
        )
    )
    report.checks.append(
        Check(
            "bytes of a 1% incremental export / full export",
            share,
            "<= 3%",
            share <= 0.03,
            f"{fmt(m['delta_export_bytes'] / 1024)} kB of {fmt(mib(m['export_bytes']))} MB",
        )
    )
    report.raw["transfer"] = runs
    return report


def main(argv: list[str]) -> None:
    quick = "--quick" in argv
    with tempfile.TemporaryDirectory(prefix="warmstart-bench-transfer-") as tmp:
        report = bench_transfer(100_000 if quick else 1_000_000, 1 if quick else 3, Path(tmp))
    print_report(report)


if __name__ == "__main__":
    main(sys.argv[1:])
