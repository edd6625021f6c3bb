"""Remote tier: push and pull a 1,000,000-entry generation through a local Redis.

``python -m benchmarks.remote`` starts its own ``redis-server`` on a free
loopback port (or uses ``--redis URL``), then per repeat, each into a fresh
key prefix:

* a full push of the generation from a local store, and a pull of it into an
  empty store (MB/s over the chunk frames moved);
* a 1% change (half updates, a quarter inserts, a quarter deletes) on the
  ``TrackedDict``, a delta save, and the incremental push: bytes and seconds,
  against the full push; then the incremental pull into the store that holds
  the previous generation.

Prints a markdown table. ``--file`` adds the same rows for a ``file://``
remote on local disk. Absolute numbers drift 10-35% between runs on shared
machines; the ratios hold.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import warmstart
from benchmarks._common import Check, Report, Table, fmt, machine, median, mib, versions
from benchmarks.generate_data import RECORDS, change_some, make_records
from warmstart.remote import pull, push

NAMESPACE = "bench/remote"
SECTION = "records"
FRACTION = 0.01


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """A throwaway redis-server on loopback (no persistence, no eviction)."""
    binary = shutil.which("redis-server")
    if binary is None:
        msg = "redis-server not found: run .ci/ensure-redis, or pass --redis URL"
        raise SystemExit(msg)
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--maxmemory-policy", "noeviction", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), 1) as s,
            ):
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    break
            if time.monotonic() > deadline:
                msg = "redis-server did not start"
                raise SystemExit(msg)
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def _one(url: str, data: Any, workdir: Path, seed: int) -> dict[str, float]:
    """One repeat: full push, full pull, 1% change, incremental push and pull."""
    tracked = warmstart.TrackedDict(data)
    out: dict[str, float] = {}
    with (
        warmstart.Store(workdir / "source", sync=False) as source,
        warmstart.Store(workdir / "target", sync=False) as target,
    ):
        source.save(NAMESPACE, {SECTION: (RECORDS, tracked)})
        started = time.perf_counter()
        full = push(source, url, NAMESPACE)
        out["push_s"] = time.perf_counter() - started
        out["push_bytes"] = full.bytes_shipped
        started = time.perf_counter()
        pulled = pull(target, url, NAMESPACE)
        out["pull_s"] = time.perf_counter() - started
        out["pull_bytes"] = pulled.bytes_fetched
        change_some(tracked, FRACTION, seed=seed, next_id=len(data) + 1)
        source.save(NAMESPACE, {SECTION: (RECORDS, tracked)})
        assert source.manifest(NAMESPACE).kind == "delta"
        started = time.perf_counter()
        delta = push(source, url, NAMESPACE)
        out["delta_push_s"] = time.perf_counter() - started
        out["delta_push_bytes"] = delta.bytes_shipped
        out["delta_chunks"] = delta.chunks_shipped
        started = time.perf_counter()
        again = pull(target, url, NAMESPACE)
        out["delta_pull_s"] = time.perf_counter() - started
        out["delta_pull_bytes"] = again.bytes_fetched
        # Not timed: the target holds exactly the source's generation.
        assert target.manifest(NAMESPACE).digests() == source.manifest(NAMESPACE).digests()
        with target.load(NAMESPACE) as snapshot:
            assert len(snapshot.section(SECTION, RECORDS)) == len(tracked)
    return out


def bench_remote(n: int, repeats: int, workdir: Path, urls: dict[str, str]) -> Report:
    """Push/pull throughput and the incremental push, per remote URL (median of repeats)."""
    data = make_records(n)
    report = Report(title=f"Remote tier: {n:,} entries")
    table = Table(
        title=f"Push and pull of a {n:,}-entry generation, then a {FRACTION:.0%} change",
        columns=[
            "remote",
            "full push s",
            "push MB/s",
            "full pull s",
            "pull MB/s",
            "generation MB",
            "1% push kB",
            "1% push s",
            "1% of full bytes",
            "1% pull s",
        ],
        note="MB/s counts chunk frames moved (compressed, as stored). Median of "
        f"{repeats} runs, each into a fresh key prefix.",
    )
    for name, base in urls.items():
        runs = []
        for r in range(repeats):
            scratch = workdir / f"{name}-{r}"
            url = base.replace("{prefix}", f"bench-{uuid.uuid4().hex[:8]}:")
            runs.append(_one(url, data, scratch, seed=r))
            shutil.rmtree(scratch, ignore_errors=True)
        m = {k: median([run[k] for run in runs]) for k in runs[0]}
        share = m["delta_push_bytes"] / m["push_bytes"]
        table.rows.append(
            [
                name,
                m["push_s"],
                mib(m["push_bytes"]) / m["push_s"],
                m["pull_s"],
                mib(m["pull_bytes"]) / m["pull_s"],
                mib(m["push_bytes"]),
                m["delta_push_bytes"] / 1024,
                m["delta_push_s"],
                f"{share:.2%}",
                m["delta_pull_s"],
            ]
        )
        report.raw[name] = runs
        report.checks.append(
            Check(
                f"{name}: bytes of a 1% incremental push / full push",
                share,
                "<= 3%",
                share <= 0.03,
                f"{fmt(m['delta_push_bytes'] / 1024)} kB of {fmt(mib(m['push_bytes']))} MB",
            )
        )
    report.tables.append(table)
    return report


def markdown(report: Report) -> str:
    box, vers = machine(), versions()
    lines = [
        f"## {report.title}",
        "",
        (
            f"Machine: {box['cpu']}, {box['cores']} cores, {box['ram']} RAM, {box['os']}; "
            f"Python {vers['python']}, warmstart {vers['warmstart']}."
        ),
        "",
    ]
    for table in report.tables:
        lines += [f"### {table.title}", ""]
        lines.append("| " + " | ".join(table.columns) + " |")
        lines.append("|" + "---|" * len(table.columns))
        lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in table.rows]
        lines += ["", table.note, ""]
    for check in report.checks:
        lines.append(f"- {check.name}: {100 * check.value:.2f}% ({check.detail}), target "
                     f"{check.target}: {check.verdict}")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.remote", description=__doc__)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--redis", metavar="URL", help="use this Redis instead of starting one")
    parser.add_argument("--file", action="store_true", help="also measure a file:// remote")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ws-bench-remote-") as tmp:
        workdir = Path(tmp)
        with contextlib.ExitStack() as stack:
            redis = args.redis or stack.enter_context(redis_server(workdir))
            urls = {"redis (loopback)": f"{redis}?prefix={{prefix}}"}
            if args.file:
                urls["file:// (local disk)"] = (workdir / "files").as_uri() + "/{prefix}"
            report = bench_remote(args.entries, args.repeats, workdir, urls)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
