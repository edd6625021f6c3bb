"""Hostile input: what the issue 17 attacks cost in memory, before and now.

``python -m benchmarks.hostile`` builds each hostile input in this process
and brings it in from a fresh one (``python -m benchmarks.hostile OP JSON``),
whose peak RSS over its resident size before the call (``VmHWM``) is the
figure, as the issue measured it:

* the issue's archive: one chunk of millions of empty maps in a few MB. The
  "before" row decodes its payload as 0.1's load did (decompress, then one
  typed decode, no check); the import that refuses it, and the load of the
  same chunk under a manifest that understates its entries, are "now";
* a chunk that holds the entries its manifest records, each a few thousand
  empty maps: under the count limit, so the memory bound refuses it
  (what decoding it would have built is the budget's estimate, not measured);
* a sparse 768 MiB file in the head slot of a ``file://`` remote: "before"
  reads it whole, as 0.1's pull did; "now" pulls;
* a legitimate pull of 36 MB of chunks (batches of about 8 MiB).

``--quick`` shrinks every input (a smoke run). The forged records come from
``tests/forge.py``, the test suite's forger: one forger, not two.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

import warmstart
from benchmarks._common import ROOT, Check, Report, Table, current_rss, finish, mib, peak_rss

MiB = 1 << 20


class Doc(msgspec.Struct):
    """A value that may hold anything: the most amplifying contract there is."""

    body: Any = None


class Blob(msgspec.Struct):
    data: bytes


DOCS = warmstart.Contract("doc", Doc, key=int)
BLOBS = warmstart.Contract("blob", Blob, key=str)


def _forge() -> Any:
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import forge

    return forge


# -- building the inputs (in the benchmark process) ------------------------------


def _planted_archive(workdir: Path, raw: bytes, entries: int, name: str) -> Path:
    """An unkeyed archive of one generation whose only chunk is ``raw``, claiming ``entries``."""
    from warmstart.codec import Codec
    from warmstart.manifest import decode_manifest
    from warmstart.transfer import export

    forge = _forge()
    genuine = workdir / "genuine.wsa"
    if not genuine.exists():
        with warmstart.Store(workdir / "genuine", sync=False) as source:
            source.save("svc", {"s": (DOCS, {})})
            export(source, "svc", genuine)
    header = forge.header_of(genuine.read_bytes())
    manifest = decode_manifest(Codec(), header["manifest"])
    ref, frame = forge.chunk(raw, entries)
    path = workdir / f"{name}.wsa"
    path.write_bytes(forge.archive(forge.with_section(manifest, "s", [ref], entries), [frame]))
    return path


def _blobs(n: int, size: int) -> dict[str, Blob]:
    return {f"k{i}": Blob(os.urandom(size)) for i in range(n)}


def _pushed(workdir: Path, data: dict[str, Blob], name: str) -> Path:
    from warmstart.remote import FileRemote, push

    remote = workdir / name
    with warmstart.Store(workdir / f"{name}-source", sync=False) as store:
        store.save("svc", {"blobs": (BLOBS, data)})
        push(store, FileRemote(remote, fsync=False), "svc")
    return remote


# -- the measured calls (in a fresh process each) ---------------------------------


def _outcome(call: Any, *, trace: bool) -> dict[str, Any]:
    """Run ``call``: its peak RSS over the resident size before it (or, with ``trace``,
    the peak ``tracemalloc`` traced), its time and its outcome."""
    import tracemalloc

    before = current_rss()
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    try:
        result = call()
        outcome = "accepted" if result is None else str(result)
    except warmstart.WarmstartError as exc:
        outcome = f"{type(exc).__name__}: {str(exc)[:120]}"
    except Exception as exc:
        outcome = f"FOREIGN {type(exc).__name__}: {str(exc)[:120]}"  # a finding
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] if trace else max(0, peak_rss() - before)
    return {"peak": peak, "seconds": seconds, "outcome": outcome}


def _decode_unbounded(path: str) -> None:
    """What 0.1's load did with the chunk: decompress, decode typed, check nothing."""
    from warmstart.codec import Codec

    frame = _forge().chunks_of(Path(path).read_bytes())[0]
    payload = Codec().decode(frame)
    decoder = msgspec.msgpack.Decoder(tuple[int, list[int], list[Doc], list[Any], list[float]])
    decoded = decoder.decode(payload)
    return f"decoded {len(decoded[1]):,} entries"  # type: ignore[return-value]


def _import(path: str, store: str) -> None:
    from warmstart.transfer import import_archive

    with warmstart.Store(store, sync=False) as target:
        import_archive(target, path)


def _load(store: str) -> None:
    with warmstart.Store(store, sync=False) as target, target.load("svc") as snapshot:
        snapshot.section("s", DOCS)


def _read_whole(path: str) -> None:
    return f"read {len(Path(path).read_bytes()):,} bytes"  # type: ignore[return-value]


def _pull(remote: str, store: str) -> None:
    from warmstart.remote import FileRemote, pull

    with warmstart.Store(store, sync=False) as target:
        report = pull(target, FileRemote(remote, fsync=False), "svc")
    return f"{report.status}, {report.bytes_fetched:,} bytes fetched"  # type: ignore[return-value]


OPS: dict[str, Any] = {
    "decode_unbounded": lambda a: _decode_unbounded(a["path"]),
    "import": lambda a: _import(a["path"], a["store"]),
    "load": lambda a: _load(a["store"]),
    "read_whole": lambda a: _read_whole(a["path"]),
    "pull": lambda a: _pull(a["remote"], a["store"]),
}


def _child(op: str, **kwargs: Any) -> dict[str, Any]:
    """``op`` in a fresh process for its RSS, then in another for what it traced.

    Apart, since tracing costs memory of its own (it tripled the RSS of the
    unbounded decode); the traced run works on a store of its own.
    """
    from benchmarks._common import run_module

    untraced = run_module("benchmarks.hostile", op, **kwargs, trace=False)
    if "store" in kwargs:
        kwargs["store"] += "-traced"
    traced = run_module("benchmarks.hostile", op, **kwargs, trace=True)
    return {**untraced, "traced": traced["peak"]}


# -- the benchmark ----------------------------------------------------------------


def _shown(result: dict[str, Any], workdir: Path) -> str:
    """An outcome for the table: no temporary paths, cut after its first clause."""
    text = str(result["outcome"]).replace(f"{workdir}/", "")
    return text if len(text) <= 90 else text[:87] + "..."


def bench_hostile(quick: bool, workdir: Path) -> Report:
    """Every case in a fresh process; a table of peaks, and checks against the bounds."""
    from warmstart import _budget

    workdir.mkdir(parents=True, exist_ok=True)
    maps = 1_100_000 if quick else 2_500_000  # the issue's: 2.5M; quick: past 2**20 too
    raw = _forge().payload([0] * maps, [{}] * maps)  # 2 bytes an entry: compresses to ~1 kB
    claims = _planted_archive(workdir, raw, maps, "claims")
    lies = _planted_archive(workdir, raw, 1000, "lies")
    _child("import", path=str(lies), store=str(workdir / "lies-target"))  # and -traced
    per_entry = 500 if quick else 8_000  # a legal count; full: 8M maps, past the bound
    spread_raw = _forge().payload(list(range(1000)), [{"body": [{}] * per_entry}] * 1000)
    spread = _planted_archive(workdir, spread_raw, 1000, "spread")
    _child("import", path=str(spread), store=str(workdir / "spread-target"))  # and -traced
    slot_size = (64 if quick else 768) * MiB
    remote = _pushed(workdir, _blobs(3, 100), "remote-head")
    slot = max((remote / "svc" / "@ws" / "head").iterdir())
    with slot.open("r+b") as f:
        f.truncate(slot_size)  # sparse: no disk used
    legit = _pushed(workdir, _blobs(6_000 if quick else 60_000, 600), "remote-legit")

    rows: list[tuple[str, str, str, dict[str, Any]]] = [
        (
            "issue's archive",
            f"{claims.stat().st_size:,}-byte archive, {maps:,} empty maps",
            "0.1: decoded at load",
            _child("decode_unbounded", path=str(claims)),
        ),
        (
            "issue's archive",
            "its manifest claims them",
            "import",
            _child("import", path=str(claims), store=str(workdir / "claims-target")),
        ),
        (
            "issue's archive",
            "its manifest claims 1,000",
            "load",
            _child("load", store=str(workdir / "lies-target")),
        ),
        (
            "counts that agree",
            f"{mib(len(spread_raw)):.1f} MiB payload, 1,000 entries of {per_entry:,} empty maps",
            "load",
            _child("load", store=str(workdir / "spread-target")),
        ),
        (
            "remote head slot",
            f"sparse {mib(slot_size):,.0f} MiB file",
            "0.1: read whole",
            _child("read_whole", path=str(slot)),
        ),
        (
            "remote head slot",
            f"sparse {mib(slot_size):,.0f} MiB file",
            "pull",
            _child("pull", remote=str(remote), store=str(workdir / "head-target")),
        ),
        (
            "legitimate pull",
            "70 chunks" if not quick else "7 chunks",
            "pull",
            _child("pull", remote=str(legit), store=str(workdir / "legit-target")),
        ),
    ]
    table = Table(
        title="Hostile input: peak memory of one fresh process, before and now",
        columns=[
            "input",
            "what",
            "done",
            "peak RSS (MiB)",
            "peak traced (MiB)",
            "seconds",
            "outcome",
        ],
        rows=[
            [i, w, d, mib(r["peak"]), mib(r["traced"]), r["seconds"], _shown(r, workdir)]
            for i, w, d, r in rows
        ],
        note=(
            f"Peak RSS over the resident size before the call (`VmHWM`; it includes the "
            f"pages of the LMDB map a pull writes), and the peak `tracemalloc` traced "
            f"(Python's allocations only) in another fresh process. Bounds: a chunk's "
            f"decoded objects {mib(_budget.MAX_DECODED):.0f} MiB "
            f"(`_budget.MAX_DECODED`) on top of its decompressed payload (at most 64 MiB); "
            "a remote head 4 MiB; a pull about one 8 MiB batch. The refusal of the 'counts "
            "that agree' chunk says how much it had counted when it passed the bound (the "
            "budget's estimates are 1.0-2.6x what decoding takes)."
        ),
    )
    peaks = {d + " " + i: r["peak"] for i, _, d, r in rows}
    traced = {d + " " + i: r["traced"] for i, _, d, r in rows}
    hostile = [rows[1], rows[2], rows[5]] + ([] if quick else [rows[3]])
    refused = all(r["outcome"].split(":")[0].endswith("Error") for *_, r in hostile)
    checks = [
        Check("hostile inputs refused with WarmstartError", float(refused), "1", refused),
        Check(
            "issue's archive, peak at import (MiB)",
            mib(peaks["import issue's archive"]),
            "< 16 MiB",
            peaks["import issue's archive"] < 16 * MiB,
        ),
        Check(
            "issue's archive, peak at load (MiB)",
            mib(peaks["load issue's archive"]),
            "< payload + 16 MiB",
            peaks["load issue's archive"] < len(raw) + 16 * MiB,
        ),
        Check(
            "oversized remote head, peak at pull (MiB)",
            mib(peaks["pull remote head slot"]),
            "< 16 MiB",
            peaks["pull remote head slot"] < 16 * MiB,
        ),
        Check(
            "legitimate pull, peak traced (MiB)",
            mib(traced["pull legitimate pull"]),
            "< 20 MiB",
            traced["pull legitimate pull"] < 20 * MiB,
        ),
    ]
    raw_rows = [{"input": i, "what": w, "done": d, **r} for i, w, d, r in rows]
    return Report(
        title="Hostile input (issue 17)", tables=[table], checks=checks, raw={"rows": raw_rows}
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in OPS:  # a fresh child: one measured call
        given = json.loads(args[1])
        trace = given.pop("trace", False)
        print(json.dumps(_outcome(lambda: OPS[args[0]](given), trace=trace)))
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hostile", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small inputs: a smoke run")
    parser.add_argument("--workdir", type=Path, help="where inputs and stores are written")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parsed = parser.parse_args(args)
    import tempfile

    with tempfile.TemporaryDirectory(dir=parsed.workdir) as tmp:
        return finish(bench_hostile(parsed.quick, Path(tmp)), parsed.json)


if __name__ == "__main__":
    sys.exit(main())
