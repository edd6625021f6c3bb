"""Where the time goes: save, restore and the hash-diff delta path, stage by stage.

Each stage of the hot paths is run on its own, serially, and timed (CPU and
wall); the real operation is timed beside it. Stages that overlap in the real
thing (compression runs in a worker thread while the next chunk is encoded)
are marked so. ``python -m benchmarks.hotpaths --cprofile`` also prints the
cProfile top functions of each path.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import warmstart
from benchmarks._common import Report, Table, forced_diff, median, run_child
from benchmarks.generate_data import FROZEN_RECORDS, RECORDS, change_some, make_records
from benchmarks.peers import NAMESPACE, SECTION
from warmstart._sliced import read_all, read_keys
from warmstart.codec import Codec, digest
from warmstart.delta._fingerprints import Fingerprints, _align
from warmstart.store._chunks import _payloads


def _clock(fn: Callable[[], Any], repeats: int = 3) -> tuple[float, float, Any]:
    """Median (wall, CPU) seconds of ``fn`` and its last result."""
    walls, cpus = [], []
    result = None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return median(walls), median(cpus), result


def _rows(stages: list[tuple[str, float, float]], total: float) -> list[list[Any]]:
    return [[name, wall, cpu, f"{100 * wall / total:.0f}%"] for name, wall, cpu in stages]


COLUMNS = ["stage", "wall s", "CPU s", "share of the real operation"]


def profile_save(n: int, workdir: Path, show: bool) -> Table:
    data = make_records(n)
    codec = Codec(level=1)
    gc.collect()
    gc.freeze()
    try:
        stages = []
        wall, cpu, (_, (keys, values, _)) = _clock(lambda: read_all(data, None))
        stages.append(("_sliced.read_all (keys and values, a slice at a time)", wall, cpu))
        wall, cpu, payloads = _clock(lambda: list(_payloads(RECORDS, keys, values, (), 0, ())))
        stages.append(("_payloads: list, check and encode_entries (msgpack) per chunk", wall, cpu))
        wall, cpu, frames = _clock(lambda: [codec.encode(p) for _, p in payloads])
        stages.append(("Codec.encode per chunk (zstd 1) [worker thread]", wall, cpu))
        wall, cpu, _ = _clock(lambda: [digest(f) for f in frames])
        stages.append(("xxh3-128 digest per frame", wall, cpu))

        def save() -> None:
            path = Path(tempfile.mkdtemp(dir=workdir))
            with warmstart.Store(path) as store:
                store.save(NAMESPACE, {SECTION: (RECORDS, data)}, mode="full")
            shutil.rmtree(path)

        total, total_cpu, _ = _clock(save)
        if show:
            _cprofile("full save", save)
    finally:
        gc.unfreeze()
    rows = _rows(stages, total)
    rows.append(
        ["Store.save, full (LMDB write, fsync, manifest included)", total, total_cpu, "100%"]
    )
    return Table(
        f"Profile: full save of {n:,} records",
        COLUMNS,
        rows,
        note=(
            "Stages run serially here; in Store.save the compression of chunk i runs in a "
            "worker thread while chunk i+1 is encoded, so the save is bound by the larger "
            "of the two plus the LMDB commit (write + fsync)."
        ),
    )


def profile_restore(n: int, workdir: Path) -> Table:
    path = workdir / "profile-restore"
    with warmstart.Store(path) as store:
        store.save(NAMESPACE, {SECTION: (RECORDS, make_records(n))}, mode="full")
    got = run_child("profile-restore", path=str(path))
    shutil.rmtree(path, ignore_errors=True)
    total = got["total"]
    stages = [(name, wall, cpu) for name, wall, cpu in got["stages"]]
    rows = _rows(stages, total)
    rows.append(
        ["snapshot.read, GC paused (fresh process, store opened)", total, got["total_cpu"], "100%"]
    )
    rows.append(["next gc.collect() after the restore (not in the read)", got["gc"], got["gc"], ""])
    return Table(
        f"Profile: restore of {n:,} records (fresh process)",
        COLUMNS,
        rows,
        note="Stages run serially in a fresh process, each with the collector paused as in read.",
    )


def restore_stages(path: str) -> dict[str, Any]:
    """Child side of profile_restore: time each stage of a restore."""
    stages: list[tuple[str, float, float]] = []

    def stage(name: str, fn: Callable[[], Any]) -> Any:
        gc.disable()
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        stages.append((name, time.perf_counter() - wall, time.process_time() - cpu))
        gc.enable()
        return result

    store = stage("Store open", lambda: warmstart.Store(path))
    snap = stage("Store.load (manifest, xxh3 of every chunk)", lambda: store.load(NAMESPACE))
    section = snap.section_manifest(SECTION)
    codec = store.codec
    txn = snap._txn
    frames = stage(
        "LMDB get of every frame (zero-copy)",
        lambda: [snap._frame_of(txn, ref) for ref in section.chunks],
    )
    stage("xxh3-128 again (Codec.decode verifies)", lambda: [digest(f) for f in frames])
    payloads = stage(
        "Codec.decode: header, digest, zstd decompress",
        lambda: [codec.decode(f, digest=r.digest) for f, r in zip(frames, section.chunks)],
    )
    decoded = stage(
        "Contract.decode_entries (typed msgpack -> Structs)",
        lambda: [RECORDS.decode_entries(p, section.schema) for p in payloads],
    )

    def build() -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for d in decoded:
            out.update(dict(zip(d.keys, d.values)))
        return out

    entries = stage("dict build (update per chunk)", build)
    del entries
    decoded.clear()
    payloads.clear()
    frames.clear()
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    restored = snap.read(SECTION, RECORDS)
    total, total_cpu = time.perf_counter() - wall, time.process_time() - cpu
    wall = time.perf_counter()
    gc.collect()
    gc_seconds = time.perf_counter() - wall
    snap.close()
    store.close()
    return {
        "stages": stages,
        "total": total,
        "total_cpu": total_cpu,
        "gc": gc_seconds,
        "entries": len(restored.entries),
    }


def profile_delta(n: int, workdir: Path, show: bool, *, frozen: bool) -> Table:
    contract = FROZEN_RECORDS if frozen else RECORDS
    data = make_records(n, frozen=frozen)
    gc.collect()
    gc.freeze()
    path = workdir / f"profile-delta-{frozen}"
    try:
        with warmstart.Store(path) as store, forced_diff():
            store.save(NAMESPACE, {SECTION: (contract, data)}, mode="delta")
            prints = Fingerprints.of(
                *read_all(data, None)[1][:2], contract.encode_value, by_identity=frozen
            )
            change_some(data, 0.01, seed=1, next_id=n, frozen=frozen, in_place=not frozen)
            stages = []
            wall, cpu, (_, (keys, values, _)) = _clock(lambda: read_all(data, None))
            stages.append(("_sliced.read_all (list keys, values, a slice at a time)", wall, cpu))
            wall, cpu, _ = _clock(lambda: prints._print_all(values, contract.encode_value))
            what = "list of values" if frozen else "Contract.encode_value + xxh3-64 per entry"
            stages.append((f"Fingerprints: prints of every entry ({what})", wall, cpu))
            wall, cpu, _ = _clock(lambda: _align(keys, prints._keys))
            stages.append(("Fingerprints: line keys up with the last read (_align)", wall, cpu))
            wall, cpu, changes = _clock(
                lambda: Fingerprints.diff(_copy(prints), keys, values, contract.encode_value)
            )
            stages.append(("Fingerprints.diff in all (the two above included)", wall, cpu))
            wall, cpu, _ = _clock(lambda: read_keys(data, changes.upserts, None))
            stages.append(("_sliced.read_keys of the upserts", wall, cpu))
            generation = 0

            def save() -> None:
                nonlocal generation
                generation = store.save(NAMESPACE, {SECTION: (contract, data)}, mode="delta")

            total, total_cpu, _ = _clock(save, repeats=1)
            if store.manifest(NAMESPACE, generation).kind != "delta":
                msg = "expected a delta save"
                raise RuntimeError(msg)
            if show:
                change_some(data, 0.01, seed=2, next_id=2 * n, frozen=frozen, in_place=not frozen)
                _cprofile(f"hash-diff delta save ({'identity' if frozen else 'xxh3'})", save)
    finally:
        gc.unfreeze()
        shutil.rmtree(path, ignore_errors=True)
    rows = _rows(stages, total)
    rows.append(
        ["Store.save(mode='delta') (commit, fsync, update included)", total, total_cpu, "100%"]
    )
    kind = "frozen Structs, identity" if frozen else "mutable Structs, xxh3"
    return Table(
        f"Profile: hash-diff delta save, {n:,} records, 1% changed ({kind})", COLUMNS, rows
    )


def _copy(prints: Fingerprints) -> Fingerprints:
    clone = Fingerprints(prints.by_identity)
    clone._keys, clone._prints = prints._keys, prints._prints
    return clone


def _cprofile(title: str, fn: Callable[[], Any]) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    fn()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
    print(f"== cProfile: {title} (main thread only) ==\n{out.getvalue()}")


def bench_profile(n: int, workdir: Path, *, show: bool = False) -> Report:
    report = Report("Where the time goes")
    report.tables.append(profile_save(n, workdir, show))
    report.tables.append(profile_restore(n, workdir))
    report.tables.append(profile_delta(n, workdir, show, frozen=True))
    report.tables.append(profile_delta(n, workdir, show, frozen=False))
    return report


def main() -> None:
    from benchmarks._common import fmt

    parser = argparse.ArgumentParser(prog="python -m benchmarks.hotpaths", description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--cprofile", action="store_true", help="also print cProfile tops")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="warmstart-profile-"))
    try:
        report = bench_profile(args.records, workdir, show=args.cprofile)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for table in report.tables:
        print(f"\n{table.title}")
        for row in table.rows:
            print("  " + " | ".join(fmt(v) for v in row))


if __name__ == "__main__":
    main()
