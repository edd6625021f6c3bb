"""Fresh-process entry point: ``python -m benchmarks.child OP JSON-ARGS``.

Prints one JSON line. Restores are timed from opening the store (or file) until
the dict is rebuilt; imports happen before the clock starts (import time is
measured on its own).

Ops:
    restore: {"method", "path", "kind", "entries", "freeze_gc", "generation", "check"}
    inmemory: {"kind", "shape", "n"}: the RSS of the same dict built in memory
    profile-restore: {"path"}: each stage of a restore, timed (benchmarks.hotpaths)
"""

from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import generate_data
from benchmarks._common import current_rss, peak_rss
from benchmarks.peers import METHODS, warmstart_load


def _check(method: str, kind: str, restored: dict[str, Any]) -> bool:
    """Spot-check restored values against the generator (full saves only)."""
    probe = [0, len(restored) // 2, len(restored) - 1]
    if kind == "records":
        for i in probe:
            got = restored[generate_data.key(i)]
            want = generate_data.record(i)
            if METHODS[method].structs:
                ok = got == want
            else:
                ok = got == generate_data.as_dicts({"x": want})["x"]
            if not ok:
                return False
        return True
    blobs = generate_data.make_blobs(1)
    got = restored["b0"]
    return (got.data if METHODS[method].structs else got) == blobs["b0"]


def restore(args: dict[str, Any]) -> dict[str, Any]:
    method, path, kind = args["method"], Path(args["path"]), args["kind"]
    # Imports and the first touch of the modules happen before the clock.
    load = METHODS[method].load
    if method == "warmstart":
        import warmstart  # noqa: F401

        def load(path: Path, kind: str) -> dict[str, Any]:
            return warmstart_load(
                path,
                kind,
                freeze_gc=args.get("freeze_gc", False),
                generation=args.get("generation"),
            )
    elif method == "pickle-zstd":
        import zstandard  # noqa: F401
    elif method == "diskcache":
        import diskcache  # noqa: F401
    elif method == "sqlitedict":
        import sqlitedict  # noqa: F401
    rss_before = current_rss()
    started, cpu = time.perf_counter(), time.process_time()
    restored = load(path, kind)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    rss_after = current_rss()
    peak = peak_rss()
    # The collector's bill for what was built: the next full collection.
    started = time.perf_counter()
    gc.collect()
    gc_seconds = time.perf_counter() - started
    entries = len(restored)
    ok = entries == args["entries"] if args.get("entries", -1) >= 0 else True
    if ok and args.get("check"):
        ok = _check(method, kind, restored)
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "entries": entries,
        "ok": ok,
        "rss_before": rss_before,
        "rss_after": rss_after,
        "peak_rss": peak,
        "gc_seconds": gc_seconds,
    }


def inmemory(args: dict[str, Any]) -> dict[str, Any]:
    kind, shape, n = args["kind"], args["shape"], args["n"]
    import warmstart  # noqa: F401 - same imports as a warmstart restore

    rss_before = current_rss()
    if kind == "records":
        data: Any = (
            generate_data.make_record_dicts(n)
            if shape == "plain"
            else generate_data.make_records(n)
        )
    else:
        data = generate_data.make_blobs(n)
        if shape == "structs":
            data = generate_data.as_blobs(data)
    gc.collect()
    rss_after = current_rss()
    return {
        "entries": len(data),
        "rss_before": rss_before,
        "rss_after": rss_after,
        "peak_rss": peak_rss(),
    }


def profile_restore(args: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.hotpaths import restore_stages

    return restore_stages(args["path"])


OPS = {"restore": restore, "inmemory": inmemory, "profile-restore": profile_restore}


def main() -> None:
    op, raw = sys.argv[1], sys.argv[2]
    print(json.dumps(OPS[op](json.loads(raw))))


if __name__ == "__main__":
    main()
