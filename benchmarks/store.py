"""Store: save, fresh-process restore, disk and memory, against pickle and peers.

Two workloads: small records (msgspec Structs for warmstart, plain dicts for
the others) and 1 KiB byte values. Saves run in this process, durably (fsync,
or each store's own commit). Every restore runs in a fresh process
(``benchmarks.child``) and is timed until the dict is rebuilt; its peak RSS is
that process's ``ru_maxrss``. Files are restored warm from the page cache, as
after a service restart on the same host.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from benchmarks._common import (
    Check,
    Report,
    Table,
    dir_bytes,
    frozen_inputs,
    median,
    mib,
    run_child,
    timed,
)
from benchmarks.generate_data import as_blobs, as_dicts, make_blobs, make_records
from benchmarks.peers import METHODS, available

#: Restore variants: (row label, method, extra child args).
RESTORES = (
    ("warmstart: snapshot.read (GC paused in decode)", "warmstart", {"freeze_gc": False}),
    ("warmstart: snapshot.read(freeze_gc=True)", "warmstart", {"freeze_gc": True}),
)


def _save_all(
    kind: str,
    structs: dict[str, Any],
    plain: dict[str, Any],
    methods: list[str],
    repeats: int,
    slow_repeats: int,
    workdir: Path,
) -> tuple[dict[str, list[float]], dict[str, int], dict[str, Path]]:
    saves: dict[str, list[float]] = {}
    disk: dict[str, int] = {}
    last: dict[str, Path] = {}
    with frozen_inputs():
        for r in range(repeats):
            for name in methods:
                method = METHODS[name]
                if method.slow and r >= slow_repeats:
                    continue
                path = workdir / f"{kind}-{name}-{r}"
                data = structs if method.structs else plain
                seconds, _ = timed(lambda: method.save(path, data, kind))  # noqa: B023
                saves.setdefault(name, []).append(seconds)
                disk[name] = dir_bytes(path)
                if name in last:
                    shutil.rmtree(last[name], ignore_errors=True)
                last[name] = path
    return saves, disk, last


def _restore_all(
    kind: str,
    n: int,
    methods: list[str],
    paths: dict[str, Path],
    repeats: int,
    slow_repeats: int,
) -> dict[str, list[dict[str, Any]]]:
    variants: list[tuple[str, str, dict[str, Any]]] = []
    for name in methods:
        if name == "warmstart":
            variants.extend(RESTORES)
        else:
            variants.append((METHODS[name].label, name, {}))
    out: dict[str, list[dict[str, Any]]] = {}
    for r in range(repeats):
        for label, name, extra in variants:
            if METHODS[name].slow and r >= slow_repeats:
                continue
            got = run_child(
                "restore",
                method=name,
                path=str(paths[name]),
                kind=kind,
                entries=n,
                check=r == 0,
                **extra,
            )
            if not got["ok"]:
                msg = f"restore of {kind} by {label} did not give back the saved dict"
                raise RuntimeError(msg)
            out.setdefault(label, []).append(got)
    return out


def _workload(
    kind: str, n: int, methods: list[str], repeats: int, slow_repeats: int, workdir: Path
) -> tuple[Table, dict[str, Any]]:
    if kind == "records":
        structs = make_records(n)
        plain = as_dicts(structs)
        title = f"Store: {n:,} small records (6 fields)"
    else:
        plain = make_blobs(n)
        structs = as_blobs(plain)
        title = f"Store: {n:,} values of 1 KiB bytes"
    saves, disk, paths = _save_all(kind, structs, plain, methods, repeats, slow_repeats, workdir)
    del structs, plain
    restores = _restore_all(kind, n, methods, paths, repeats, slow_repeats)
    memory = {
        shape: run_child("inmemory", kind=kind, shape=shape, n=n) for shape in ("structs", "plain")
    }
    for path in paths.values():
        shutil.rmtree(path, ignore_errors=True)

    rows: list[list[Any]] = []
    restore_s: dict[str, float] = {}
    peak: dict[str, float] = {}
    for name in methods:
        labels = [v[0] for v in RESTORES] if name == "warmstart" else [METHODS[name].label]
        for i, label in enumerate(labels):
            got = restores[label]
            restore_s[label] = median([g["seconds"] for g in got])
            peak[label] = median([g["peak_rss"] for g in got])
            rows.append(
                [
                    label,
                    median(saves[name]) if i == 0 else "",
                    restore_s[label],
                    mib(disk[name]) if i == 0 else "",
                    mib(peak[label]),
                    mib(median([g["rss_after"] - g["rss_before"] for g in got])),
                    1000 * median([g["gc_seconds"] for g in got]),
                    f"{len(saves[name])}/{len(got)}",
                ]
            )
    for shape, label in (("structs", "dict of Structs"), ("plain", "dict of dicts/bytes")):
        got = memory[shape]
        rows.append(
            [
                f"in memory: {label}, built directly",
                "",
                "",
                "",
                mib(got["rss_after"]),
                mib(got["rss_after"] - got["rss_before"]),
                "",
                "1",
            ]
        )
    table = Table(
        title,
        [
            "path",
            "save s",
            "restore s (fresh process)",
            "disk MiB",
            "peak RSS MiB",
            "RSS growth MiB",
            "next gc.collect() ms",
            "runs save/restore",
        ],
        rows,
    )
    raw = {
        "saves": saves,
        "disk": disk,
        "restores": restores,
        "memory": memory,
        "restore_median": restore_s,
        "peak_median": peak,
        "save_median": {k: median(v) for k, v in saves.items()},
    }
    return table, raw


def bench_store(
    n_records: int,
    n_blobs: int,
    repeats: int,
    workdir: Path,
    *,
    methods: list[str] | None = None,
    slow_repeats: int = 1,
) -> Report:
    wanted = methods or list(METHODS)
    methods = [m for m in wanted if available(m)]
    report = Report("Store")
    missing = sorted(set(wanted) - set(methods))
    if missing:
        report.notes.append(f"Not measured (not installed): {', '.join(missing)}.")
    for kind, n in (("records", n_records), ("blobs", n_blobs)):
        table, raw = _workload(kind, n, methods, repeats, slow_repeats, workdir)
        report.tables.append(table)
        report.raw[kind] = raw
    rec = report.raw["records"]
    save, restore, peak = rec["save_median"], rec["restore_median"], rec["peak_median"]
    read_label, freeze_label = RESTORES[0][0], RESTORES[1][0]
    scale = f" ({n_records:,} records)"
    if "pickle" in save:
        x = save["pickle"] / save["warmstart"]
        report.checks.append(
            Check("full save speed-up vs pickle+fsync" + scale, x, ">= 3x", x >= 3)
        )
        for label in (read_label, freeze_label):
            x = restore[METHODS["pickle"].label] / restore[label]
            report.checks.append(
                Check(f"restore speed-up vs pickle.load, {label}" + scale, x, ">= 2x", x >= 2)
            )
    if "diskcache" in save:
        x = save["diskcache"] / save["warmstart"]
        report.checks.append(Check("full save speed-up vs diskcache" + scale, x, ">= 10x", x >= 10))
        for label in (read_label, freeze_label):
            x = restore[METHODS["diskcache"].label] / restore[label]
            report.checks.append(
                Check(f"restore speed-up vs diskcache, {label}" + scale, x, ">= 10x", x >= 10)
            )
    inmem = rec["memory"]["structs"]
    for label in (read_label, freeze_label):
        x = peak[label] / inmem["rss_after"]
        got = rec["restores"][label][0]
        net = (got["peak_rss"] - got["rss_before"]) / (inmem["rss_after"] - inmem["rss_before"])
        report.checks.append(
            Check(
                f"restore peak RSS / RSS of the dict built in memory, {label}" + scale,
                x,
                "<= 1.5x",
                x <= 1.5,
                detail=f"net of the interpreter and imports: {net:.2f}x",
            )
        )
    return report
