"""Delta: a checkpoint after 1% of a million entries changed, against a full save.

Three ways a delta finds what changed: a tracked mapping (``TrackedDict``)
records its writes; an untracked dict saved with ``mode="delta"`` is diffed
against fingerprints of the previous save, by identity for frozen Structs and
by xxh3 of the encoded bytes for mutable ones. Each is timed against a full
save of the same dict (into a store that keeps no fingerprints), interleaved.
The diffs are measured as diffs (``forced_diff``); a store itself saves a
section in full once its diff measured dearer than a full save, and the save
it chooses is timed once more at the end.
Then a restore of a base plus 16 deltas against the compacted base, in fresh
processes, and what change tracking keeps in memory.
"""

from __future__ import annotations

import collections
import operator
import shutil
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import msgspec

import warmstart
from benchmarks._common import (
    Check,
    Report,
    Table,
    forced_diff,
    frozen_inputs,
    median,
    mib,
    run_child,
    timed,
    timed_cpu,
)
from benchmarks.generate_data import FROZEN_RECORDS, RECORDS, change_some, make_records
from benchmarks.peers import NAMESPACE, SECTION
from warmstart.delta import Fingerprints, change_log
from warmstart.manifest import encode_manifest

FRACTION = 0.01
CHAIN = 16
DEFAULT_POLICY = warmstart.CompactionPolicy()
#: Chain lengths whose restore is measured (CHAIN is the target's).
CHAIN_POINTS = (4, 8, CHAIN)


def written_bytes(store: warmstart.Store, generation: int) -> tuple[int, int]:
    """(bytes of the frames a generation added, entries in them), manifest included."""
    manifest = store.manifest(NAMESPACE, generation)
    section = manifest.section(SECTION)
    assert section is not None
    if manifest.kind == "full":
        refs = section.base
    else:
        refs = tuple(c for c in section.deltas if c.sequence == generation)
    frames = sum(c.stored_bytes for c in refs)
    return frames + len(encode_manifest(store.codec, manifest)), sum(c.entries for c in refs)


def _scenario(
    name: str,
    n: int,
    repeats: int,
    workdir: Path,
    *,
    tracked: bool,
    frozen: bool,
) -> dict[str, Any]:
    """Time ``repeats`` delta saves after 1% changes, each beside a full save."""
    contract = FROZEN_RECORDS if frozen else RECORDS
    data: Any = make_records(n, frozen=frozen)
    if tracked:
        data = warmstart.TrackedDict(data)
    out: dict[str, Any] = {k: [] for k in ("delta", "full", "delta_cpu", "full_cpu", "floor")}
    out.update(delta_bytes=[], full_bytes=[])
    sections = {SECTION: (contract, data)}
    # A tracked mapping follows one store: the full saves beside it read the
    # same entries through its plain dict.
    full_sections = {SECTION: (contract, data._data if tracked else data)}
    with (
        frozen_inputs(),
        warmstart.Store(workdir / f"delta-{name}") as store,
        warmstart.Store(workdir / f"full-{name}") as full_store,
    ):
        mode = "auto" if tracked else "delta"
        # The first save writes a base (and, for mode="delta", the fingerprints).
        with forced_diff():
            seconds, _ = timed(lambda: store.save(NAMESPACE, sections, mode=mode))
        out["first"] = seconds
        next_id = n
        for r in range(repeats):
            updates, inserts, deletes = change_some(
                data,
                FRACTION,
                seed=r + 1,
                next_id=next_id,
                frozen=frozen,
                in_place=not (frozen or tracked),
            )
            next_id += inserts
            with forced_diff():
                seconds, cpu, generation = timed_cpu(
                    lambda: store.save(NAMESPACE, sections, mode=mode)
                )
            size, entries = written_bytes(store, generation)
            if (
                store.manifest(NAMESPACE, generation).kind != "delta"
                or entries != updates + inserts
            ):
                msg = f"{name}: expected a delta of {updates + inserts} upserts, got {entries}"
                raise RuntimeError(msg)
            out["delta"].append(seconds)
            out["delta_cpu"].append(cpu)
            out["delta_bytes"].append(size)
            seconds, cpu, generation = timed_cpu(
                lambda: full_store.save(NAMESPACE, full_sections, mode="full")
            )
            out["full"].append(seconds)
            out["full_cpu"].append(cpu)
            out["full_bytes"].append(written_bytes(full_store, generation)[0])
            if not tracked:
                out["floor"].append(timed(lambda: _diff_floor(data, frozen=frozen))[0])
        out["changed"] = updates + inserts + deletes
        # What the store itself chooses now that it measured both ways.
        change_some(
            data,
            FRACTION,
            seed=repeats + 1,
            next_id=next_id,
            frozen=frozen,
            in_place=not (frozen or tracked),
        )
        seconds, _, generation = timed_cpu(lambda: store.save(NAMESPACE, sections, mode=mode))
        out["chosen"] = store.manifest(NAMESPACE, generation).kind
        out["chosen_seconds"] = seconds
        out["chosen_full"], _, _ = timed_cpu(
            lambda: full_store.save(NAMESPACE, full_sections, mode="full")
        )
        _PREVIOUS.clear()
    for sub in ("delta", "full"):
        shutil.rmtree(workdir / f"{sub}-{name}", ignore_errors=True)
    return out


_PREVIOUS: dict[str, list[Any]] = {}


def _diff_floor(data: dict[str, Any], *, frozen: bool) -> None:
    """The passes over every entry that any diff of this kind has to make.

    Hash: list the values and encode all of them in one msgpack call, cheaper
    than the entry-by-entry encoding a per-entry hash needs. Identity: list
    keys and values and compare each value with the previous list's, in C.
    """
    if not frozen:
        _ENCODER.encode(list(data.values()))
        return
    keys, values = list(data), list(data.values())
    previous = _PREVIOUS.get("values", values)
    collections.deque(map(operator.is_not, values, previous), maxlen=0)
    _PREVIOUS["keys"], _PREVIOUS["values"] = keys, values


_ENCODER = msgspec.msgpack.Encoder()


def _tracking_memory(n: int) -> dict[str, float]:
    """Bytes per entry that change tracking keeps, measured with tracemalloc."""
    out: dict[str, float] = {}
    for label, frozen in (("hash", False), ("identity", True)):
        data = make_records(n, frozen=frozen)
        contract = FROZEN_RECORDS if frozen else RECORDS
        tracemalloc.start()
        # The read's lists are kept by the prints (not copied): count them.
        keys, values = list(data), list(data.values())
        prints = Fingerprints.of(keys, values, contract.encode_value, by_identity=frozen)
        del values  # a hash diff keeps the keys and the hashes, not the values list
        size, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out[label] = size / n
        del prints, data, keys
    # A tracked dict keeps nothing per entry; its log holds the changed keys.
    data = warmstart.TrackedDict(make_records(n))
    data.mark_clean()
    change_some(data, FRACTION, seed=99, next_id=n)
    log = change_log(data)
    assert log is not None
    keys_only = sys.getsizeof(log.dirty) + sys.getsizeof(log.deletes)
    keys_only += sys.getsizeof(log.inserted)
    keys_only += sum(sys.getsizeof(k) for k in log.deletes)  # deleted keys live on in the log
    out["tracked"] = keys_only / n
    out["tracked_per_change"] = keys_only / max(len(log.dirty) + len(log.deletes), 1)
    # The index: the keys at the last base, as one list (the keys are the mapping's).
    out["tracked_index"] = sys.getsizeof(log.index) / n
    out["tracked_wrapper"] = sys.getsizeof(data) / n
    return out


def _chain_restore(n: int, repeats: int, workdir: Path) -> dict[str, Any]:
    """Restore a base + k deltas (k in CHAIN_POINTS) and the compacted base, fresh processes."""
    data = warmstart.TrackedDict(make_records(n))
    chained, compacted = workdir / "chain", workdir / "compacted"
    sections = {SECTION: (RECORDS, data)}
    sizes: dict[int, int] = {}  # generation -> entries
    with frozen_inputs():
        # Every generation kept, so base + k deltas can be read for each k.
        # The chain is measured whatever the default compaction would do.
        unbounded = warmstart.CompactionPolicy(max_deltas=CHAIN + 1, max_ratio=1.0)
        with warmstart.Store(chained, keep=CHAIN + 2, compaction=unbounded) as store:
            base = store.save(NAMESPACE, sections)
            next_id = n
            for r in range(CHAIN):
                _, inserts, _ = change_some(data, FRACTION, seed=100 + r, next_id=next_id)
                next_id += inserts
                sizes[store.save(NAMESPACE, sections)] = len(data)
            head = store.manifest(NAMESPACE)
            if head.delta_chain != CHAIN:
                msg = f"expected a chain of {CHAIN} deltas, got {head.delta_chain}"
                raise RuntimeError(msg)
        with warmstart.Store(compacted) as store:
            store.save(NAMESPACE, sections, mode="full")
    del data, sections
    points = [(f"base + {k} deltas", chained, base + k) for k in CHAIN_POINTS]
    points.append(("compacted base", compacted, None))
    times: dict[str, list[float]] = {}
    for label, _, _ in points:
        times[label], times[f"{label} cpu"] = [], []
    for _ in range(repeats):
        for label, path, generation in points:
            entries = sizes[generation if generation is not None else base + CHAIN]
            got = run_child(
                "restore",
                method="warmstart",
                path=str(path),
                kind="records",
                entries=entries,
                generation=generation,
            )
            if not got["ok"]:
                msg = f"restore of {label} gave {got['entries']} entries, not {entries}"
                raise RuntimeError(msg)
            times[label].append(got["seconds"])
            times[f"{label} cpu"].append(got["cpu_seconds"])
    shutil.rmtree(chained, ignore_errors=True)
    shutil.rmtree(compacted, ignore_errors=True)
    return times


SCENARIOS = (
    ("tracked", "tracked (TrackedDict)", True, False),
    ("hash", "hash diff, mutable Structs (xxh3)", False, False),
    ("identity", "hash diff, frozen Structs (identity)", False, True),
)


LABELS = {s[0]: s[1] for s in SCENARIOS}


def bench_delta(n: int, repeats: int, workdir: Path) -> Report:
    report = Report("Delta")
    rows = []
    results: dict[str, dict[str, Any]] = {}
    for name, label, tracked, frozen in SCENARIOS:
        got = _scenario(name, n, repeats, workdir, tracked=tracked, frozen=frozen)
        results[name] = got
        delta, full = median(got["delta"]), median(got["full"])
        dbytes, fbytes = median(got["delta_bytes"]), median(got["full_bytes"])
        rows.append(
            [
                label,
                got["first"],
                delta,
                full,
                delta / full,
                median(got["delta_cpu"]) / median(got["full_cpu"]),
                mib(dbytes),
                mib(fbytes),
                dbytes / fbytes,
            ]
        )
        results[name]["ratio"] = delta / full
        results[name]["bytes_ratio"] = dbytes / fbytes
        floor = median(got["floor"]) if got["floor"] else None
        rows[-1].append(floor / full if floor is not None else "-")
        chosen_ratio = got["chosen_seconds"] / got["chosen_full"]
        results[name]["chosen_ratio"] = chosen_ratio
        rows[-1].append(f"{got['chosen']}, {chosen_ratio:.2f}")
    report.tables.append(
        Table(
            f"Delta: {n:,} records, {FRACTION:.0%} changed "
            f"(half updates, a quarter inserts, a quarter deletes), median of {repeats}",
            [
                "change tracking",
                "first save s",
                "delta save s",
                "full save s",
                "time ratio",
                "CPU ratio",
                "delta MiB",
                "full MiB",
                "bytes ratio",
                "floor / full save",
                "store's choice, time / full save",
            ],
            rows,
            note=(
                "First save: the base (with fingerprints for mode='delta'). Full save: the same "
                "dict into a store that keeps no fingerprints. Bytes: frames written plus the "
                "manifest. Mutable records are changed in place (only a hash diff sees that); "
                "frozen and tracked ones are replaced. CPU ratio: process CPU time, all threads "
                "(the full save compresses in a second thread); less sensitive than wall time "
                "to other processes on the machine, not immune (cache contention, steal time "
                "on a VM). The targets are on wall time. Floor: the passes over every entry "
                "that any diff of the kind must make, timed alone beside the saves - for the "
                "hash diff, listing the values and encoding all of them in one msgpack call; "
                "for identity, listing keys and values and one identity compare of every value "
                "in C. A hash diff cannot cost less than its floor. Store's choice: the kind "
                "of the next save once the store has measured a diff and a full save of the "
                "section (an untracked section whose diff costs more CPU than a full save is "
                "saved in full), timed once beside a full save."
            ),
        )
    )
    tracked = results["tracked"]
    report.checks.append(
        Check(
            "tracked delta save time / full save",
            tracked["ratio"],
            "<= 5%",
            tracked["ratio"] <= 0.05,
        )
    )
    report.checks.append(
        Check(
            "tracked delta bytes written / full save",
            tracked["bytes_ratio"],
            "<= 3%",
            tracked["bytes_ratio"] <= 0.03,
        )
    )
    for name in ("hash", "identity"):
        x = results[name]["ratio"]
        report.checks.append(
            Check(
                f"{LABELS[name]}: delta save time / full save",
                x,
                "<= 40%",
                x <= 0.40,
            )
        )
        x = results[name]["chosen_ratio"]
        report.checks.append(
            Check(
                f"{LABELS[name]}: the store's choice (by measured cost), time / full save",
                x,
                "<= 1.2 (noise)",
                x <= 1.2,
            )
        )

    # Fresh-process restores vary more (first touch of memory on a VM): more samples.
    chain_repeats = repeats + 2 if repeats >= 5 else repeats
    chain = _chain_restore(n, chain_repeats, workdir)
    compacted = median(chain["compacted base"])
    compacted_cpu = median(chain["compacted base cpu"])
    rows = [
        [
            label,
            median(chain[label]),
            median(chain[label]) / compacted,
            median(chain[f"{label} cpu"]) / compacted_cpu,
        ]
        for label in chain
        if not label.endswith(" cpu")
    ]
    report.tables.append(
        Table(
            f"Restore of a base + deltas of {FRACTION:.0%} each (fresh process), "
            f"median of {chain_repeats}",
            ["store", "restore s", "vs compacted base", "CPU vs compacted base"],
            rows,
            note=(
                f"The chain is built with compaction off. The default CompactionPolicy "
                f"(max_deltas={DEFAULT_POLICY.max_deltas}, max_ratio={DEFAULT_POLICY.max_ratio}) "
                "writes a fresh base once the deltas' bytes reach that fraction of the base's: "
                "with 1% deltas (0.9% of the base each), after the twelfth."
            ),
        )
    )
    x = median(chain[f"base + {CHAIN} deltas"]) / compacted
    report.checks.append(
        Check(f"restore base + {CHAIN} deltas / compacted base", x, "<= 1.3x", x <= 1.3)
    )

    memory = _tracking_memory(n)
    report.tables.append(
        Table(
            "Memory kept for change tracking",
            ["mode", "bytes per entry"],
            [
                ["hash diff, mutable Structs: key -> xxh3-64 int", memory["hash"]],
                ["hash diff, frozen Structs: key -> value reference", memory["identity"]],
                [
                    (
                        f"tracked: change log after {FRACTION:.0%} changed, per entry "
                        f"({memory['tracked_per_change']:.0f} bytes per changed key)"
                    ),
                    memory["tracked"],
                ],
                [
                    "tracked: the index of keys the log folds changes into (one list)",
                    memory["tracked_index"],
                ],
            ],
            note=(
                "Fingerprints: tracemalloc of Fingerprints.of over every entry. Tracked: "
                "sys.getsizeof of the change log (keys are shared with the mapping, deleted "
                "ones are kept alive by the log); it is emptied at every checkpoint. The "
                "index (issue 15) lets a base read the mapping a slice at a time without "
                "listing it; the changes since the last base are kept with it."
            ),
        )
    )
    for mode in ("hash", "identity", "tracked"):
        report.checks.append(
            Check(f"change-tracking memory, {mode}, bytes/entry", memory[mode], "reported", None)
        )
    report.raw = {"scenarios": results, "chain": chain, "memory": memory}
    return report
