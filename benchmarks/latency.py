"""A service's tail latency while warmstart checkpoints it every 2 s, against none.

The service (``benchmarks.latency_service``) runs under real uvicorn in its own
process on a loopback port, pinned to one core; this process is the load
generator, pinned to the other. The service holds a ``cachetools.LRUCache``
of ``records`` small records in front of a source of truth that costs 1 ms
per miss, and boots warm from a checkpoint prepared here (the same generation
for every run).

The load is open-loop: request send times are drawn up front as Poisson
arrivals at a fixed rate, and each request is timed from its *intended* send
time, so a server stall delays every request due during it (no coordinated
omission). Requests go over a pool of keep-alive HTTP/1.1 connections that
grows when all are busy. Keys follow a Zipf law (s = 1) over ``2 x records``
ids, the hottest first, so the cache mostly hits and keeps changing a
little: misses insert and evict, and 1% of requests reload their record
(a write). The rate is a sixth of the capacity measured first (a closed loop
of 32 connections against the service without checkpoints; see
``RATE_DIVISOR``), unless given.

Each configuration (checkpoint interval none or 2 s; with 2 s, the cache as
the service declares it, which the boot tracks when it is attached, so each
periodic checkpoint is a delta of what changed, or declared
``state(track=False)``, so each is a diff of every entry or a full save,
whichever the store measured cheaper) is booted, warmed up under load, then
measured for the window; configurations are interleaved over the rounds.
Reported: p50/p99/p99.9 and max over the window, the worst and the median of
the per-second p99s, the load generator's own send lag, the checkpoints that
ran in the window (seconds, CPU, longest stretch without a yield), and the
collector's passes in the service during the window.

Run: ``python -m benchmarks.latency [--quick] [--rate R] [--seconds S]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import warmstart
from benchmarks._common import ROOT, Report, Table, finish, machine, median, versions
from benchmarks.generate_data import RECORDS, make_records
from benchmarks.latency_service import NAMESPACE, SECTION
from benchmarks.probe import percentile

SIZES = (50_000, 1_000_000)
#: (label, checkpoint interval in seconds or None, tracking: "default" (the
#: boot's choice: tracked when attached, with an interval), "off", "explicit")
CONFIGS = (
    ("none", None, "default"),
    ("2 s", 2.0, "default"),
    ("2 s, untracked", 2.0, "off"),
)
ZIPF_S = 1.0
REFRESH = 0.01  # share of requests that reload their record (a write)
SERVER_CPU, CLIENT_CPU = 0, 1
#: The default rate is the measured capacity over this. A closed loop of 32
#: connections batches work in both event loops; an open loop at a third of
#: that capacity already saturated the load generator on the shared 2-core
#: machine (its send lag p99 12 ms, p99 16 ms without any checkpoint).
RATE_DIVISOR = 6


# -- the prepared checkpoint and the server -------------------------------------


def prepare_store(path: Path, n: int) -> None:
    """One warm generation of ``n`` records, the hottest (k0) saved last (most recent)."""
    records = make_records(n)
    ordered = {k: records[k] for k in reversed(list(records))}
    with warmstart.Store(path) as store:
        store.save(NAMESPACE, {SECTION: (RECORDS, ordered)}, mode="full")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(settings: dict[str, Any], timeout: float = 180.0) -> Iterator[dict[str, Any]]:
    """Run the service until it is warm and ready; yield its settings (with the port)."""
    settings = {**settings, "port": _free_port(), "cpu": SERVER_CPU}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.latency_service", json.dumps(settings)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                msg = (
                    f"the service exited ({proc.returncode}):\n{proc.stderr and proc.stderr.read()}"
                )
                raise RuntimeError(msg)
            try:
                stats = asyncio.run(get_json(settings["port"], "/stats"))
                if stats["ready"] and stats["size"] >= settings["records"]:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                msg = "the service did not become ready"
                raise RuntimeError(msg)
            time.sleep(0.2)
        settings["boot_status"] = stats["status"]
        yield settings
    finally:
        proc.terminate()  # uvicorn: a graceful shutdown, the lifespan checkpoints
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


# -- HTTP/1.1 over raw streams (the client must cost far less than the server) ---


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def get(self, path: str) -> tuple[int, bytes]:
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = await self.reader.readexactly(length) if length else b""
        return status, body

    def close(self) -> None:
        self.writer.close()


async def get_json(port: int, path: str) -> Any:
    conn = await Connection.open(port)
    try:
        status, body = await conn.get(path)
    finally:
        conn.close()
    if status != 200:
        msg = f"GET {path}: {status}"
        raise OSError(msg)
    return json.loads(body)


class Pool:
    """Idle keep-alive connections; a new one is opened when all are busy."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: deque[Connection] = deque()
        self.opened = 0

    async def fill(self, n: int) -> None:
        for _ in range(n):
            self.idle.append(await Connection.open(self.port))
            self.opened += 1

    async def get(self, path: str) -> int:
        conn = self.idle.pop() if self.idle else None
        if conn is None:
            conn = await Connection.open(self.port)
            self.opened += 1
        try:
            status, _ = await conn.get(path)
        except BaseException:
            conn.close()
            raise
        self.idle.append(conn)
        return status

    def close(self) -> None:
        while self.idle:
            self.idle.popleft().close()


# -- the load --------------------------------------------------------------------


def zipf_paths(n_ids: int, count: int, seed: int) -> list[str]:
    """``count`` request paths: Zipf(s) over ``n_ids`` ids (id 0 hottest), 1% reloads."""
    weights = itertools.accumulate(1.0 / (r + 1) ** ZIPF_S for r in range(n_ids))
    rng = random.Random(seed)
    ids = rng.choices(range(n_ids), cum_weights=list(weights), k=count)
    return [f"/item/{i}?refresh=1" if rng.random() < REFRESH else f"/item/{i}" for i in ids]


@dataclasses.dataclass
class Samples:
    intended: list[float]  # seconds from the start of the load
    latency: list[float]  # seconds from the intended send time to the full answer
    send_lag: list[float]  # seconds from the intended to the actual send time
    errors: Counter[str]
    connections: int
    start: float = 0.0  # time.monotonic() at offset 0 (the service's clock too)


async def open_loop(port: int, rate: float, seconds: float, paths: list[str], seed: int) -> Samples:
    """Poisson arrivals at ``rate`` for ``seconds``; every request timed from its intended time.

    Times are ``time.monotonic()``, not ``loop.time()`` (uvloop's is cached per
    iteration, in whole milliseconds), and the same clock as the service's.
    """
    loop = asyncio.get_running_loop()
    clock = time.monotonic
    rng = random.Random(seed)
    pool = Pool(port)
    await pool.fill(32)
    intended_at: list[float] = []
    t = 0.0
    while True:
        t += rng.expovariate(rate)
        if t >= seconds:
            break
        intended_at.append(t)
    out = Samples([], [], [], Counter(), 0)
    pending: set[asyncio.Task[None]] = set()

    async def one(due: float, path: str) -> None:
        out.send_lag.append(clock() - due)
        try:
            status = await pool.get(path)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            out.errors[type(exc).__name__] += 1
            return
        if status != 200:
            out.errors[f"HTTP {status}"] += 1
            return
        out.latency.append(clock() - due)
        out.intended.append(due - start)

    start = out.start = clock() + 0.05
    for offset, path in zip(intended_at, itertools.cycle(paths)):
        due = start + offset
        wait = due - clock()
        if wait > 0:
            await asyncio.sleep(wait)
        task = loop.create_task(one(due, path))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending, timeout=60)
    out.connections = pool.opened
    pool.close()
    return out


async def closed_loop(port: int, clients: int, seconds: float, paths: list[str]) -> float:
    """Requests per second that ``clients`` back-to-back connections get through."""
    loop = asyncio.get_running_loop()
    done = 0
    stop = loop.time() + seconds
    source = itertools.cycle(paths)

    async def client() -> None:
        nonlocal done
        conn = await Connection.open(port)
        try:
            while loop.time() < stop:
                await conn.get(next(source))
                done += 1
        finally:
            conn.close()

    started = loop.time()
    await asyncio.gather(*(client() for _ in range(clients)))
    return done / (loop.time() - started)


def _run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - no uvloop on this platform
        return asyncio.run(coro)
    return uvloop.run(coro)


# -- one configuration -------------------------------------------------------------


def summarize(samples: Samples, window: tuple[float, float]) -> dict[str, Any]:
    """Latency figures of the requests due in ``window`` (seconds from the load's start)."""
    lo, hi = window
    chosen = [(t, x) for t, x in zip(samples.intended, samples.latency) if lo <= t < hi]
    ordered = sorted(x for _, x in chosen)
    per_second: dict[int, list[float]] = {}
    for t, x in chosen:
        per_second.setdefault(int(t - lo), []).append(x)
    p99s = [percentile(sorted(v), 99) for _, v in sorted(per_second.items())]
    return {
        "requests": len(ordered),
        "p50": percentile(ordered, 50),
        "p99": percentile(ordered, 99),
        "p999": percentile(ordered, 99.9),
        "max": ordered[-1] if ordered else math.nan,
        "worst_second_p99": max(p99s, default=math.nan),
        "median_second_p99": median(p99s),
        "per_second_p99": p99s,
        "send_lag_p99": percentile(sorted(samples.send_lag), 99),
        "errors": dict(samples.errors),
        "connections": samples.connections,
    }


def run_config(
    store: Path,
    n: int,
    interval: float | None,
    track: str,
    rate: float,
    warmup: float,
    seconds: float,
    seed: int,
    workdir: Path,
) -> dict[str, Any]:
    copy = workdir / f"run-{n}-{interval}-{track}-{seed}"
    shutil.copytree(store, copy)
    settings = {"store": str(copy), "records": n, "interval": interval, "track": track}
    paths = zipf_paths(2 * n, int(rate * (warmup + seconds) * 1.2) + 100, seed)
    try:
        with server(settings) as running:
            port = running["port"]
            before = _run(get_json(port, "/stats"))
            samples = _run(open_loop(port, rate, warmup + seconds, paths, seed))
            after = _run(get_json(port, "/stats"))
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    got = summarize(samples, (warmup, warmup + seconds))
    # Checkpoints that ended in the window (both processes read time.monotonic).
    window_start = samples.start + warmup
    window_end = window_start + seconds
    in_window = [c for c in after["checkpoints"] if window_start <= c[0] < window_end]
    older = [g for g in after["gc"]["older"] if window_start <= g[0] < window_end]
    gen2 = [g[2] for g in older if g[1] == 2]
    got.update(
        boot=running["boot_status"],
        tracked=after["tracked"],
        checkpoints=len(in_window),
        checkpoint_seconds=[c[1] for c in in_window],
        checkpoint_cpu=[c[3] for c in in_window],
        checkpoint_longest=[c[4] for c in in_window],
        checkpoint_collection=[c[5] for c in in_window],
        checkpoint_kinds=[c[2] for c in in_window],
        gen2=len(gen2),
        gen2_pause=sum(gen2),
        gen1=sum(1 for g in older if g[1] == 1),
        hit_ratio=(after["hits"] - before["hits"])
        / max(1, after["hits"] + after["misses"] - before["hits"] - before["misses"]),
    )
    return got


def measure_capacity(store: Path, n: int, seconds: float, workdir: Path) -> float:
    copy = workdir / "capacity"
    shutil.copytree(store, copy)
    settings = {"store": str(copy), "records": n, "interval": None, "track": "default"}
    try:
        with server(settings) as running:
            paths = zipf_paths(2 * n, 50_000, seed=99)
            _run(closed_loop(running["port"], 32, 1.0, paths))  # warm up
            return float(_run(closed_loop(running["port"], 32, seconds, paths)))
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def _ms(x: float) -> float:
    return 1000 * x


def bench_latency(
    sizes: tuple[int, ...],
    rounds: int,
    warmup: float,
    seconds: float,
    workdir: Path,
    *,
    rate: float | None = None,
    configs: tuple[tuple[str, float | None, str], ...] = CONFIGS,
) -> Report:
    report = Report("Service tail latency")
    stores = {}
    for n in sizes:
        stores[n] = workdir / f"prepared-{n}"
        prepare_store(stores[n], n)
    capacity = None
    if rate is None:
        capacity = measure_capacity(stores[sizes[0]], sizes[0], 5.0, workdir)
        rate = round(capacity / RATE_DIVISOR, -1)
        print(f"[latency] capacity {capacity:.0f} req/s; rate {rate:.0f} req/s", flush=True)
    results: dict[str, list[dict[str, Any]]] = {}
    for r in range(rounds):
        for n in sizes:
            for label, interval, track in configs:
                got = run_config(
                    stores[n], n, interval, track, rate, warmup, seconds, 1000 + r, workdir
                )
                results.setdefault(f"{n} {label}", []).append(got)
                print(
                    f"[latency] round {r + 1} {n:,} interval {label}: p50 {_ms(got['p50']):.1f} "
                    f"p99 {_ms(got['p99']):.1f} p99.9 {_ms(got['p999']):.1f} max "
                    f"{_ms(got['max']):.0f} worst 1-s p99 {_ms(got['worst_second_p99']):.0f} ms; "
                    f"{got['checkpoints']} checkpoints "
                    f"{[round(s, 3) for s in got['checkpoint_seconds']]} s, CPU "
                    f"{[round(_ms(s), 1) for s in got['checkpoint_cpu']]} ms, longest hold "
                    f"{[round(_ms(s), 2) for s in got['checkpoint_longest']]} ms (collection "
                    f"{[round(_ms(s), 2) for s in got['checkpoint_collection']]} ms); "
                    f"gen-2 GCs {got['gen2']} ({_ms(got['gen2_pause']):.0f} ms); "
                    f"tracked {got['tracked']}; "
                    f"hits {got['hit_ratio']:.1%}; send lag p99 {_ms(got['send_lag_p99']):.1f} ms; "
                    f"errors {got['errors']}; {got['connections']} connections",
                    flush=True,
                )
    rows = []
    for n in sizes:
        for label, _, _ in configs:
            runs = results[f"{n} {label}"]
            ckpt = [s for run in runs for s in run["checkpoint_seconds"]]
            cpu = [s for run in runs for s in run["checkpoint_cpu"]]
            longest = [s for run in runs for s in run["checkpoint_longest"]]
            collection = [s for run in runs for s in run["checkpoint_collection"]]
            rows.append(
                [
                    n,
                    label,
                    _ms(median([x["p50"] for x in runs])),
                    _ms(median([x["p99"] for x in runs])),
                    _ms(median([x["p999"] for x in runs])),
                    _ms(median([x["max"] for x in runs])),
                    _ms(median([x["worst_second_p99"] for x in runs])),
                    _ms(median([x["median_second_p99"] for x in runs])),
                    median([float(x["checkpoints"]) for x in runs]),
                    _ms(median(ckpt)) if ckpt else "-",
                    _ms(median(cpu)) if cpu else "-",
                    _ms(max(longest)) if longest else "-",
                    _ms(max(collection)) if collection else "-",
                    median([float(x["gen2"]) for x in runs]),
                    _ms(median([x["gen2_pause"] for x in runs])),
                    f"{median([x['hit_ratio'] for x in runs]):.1%}",
                    _ms(median([x["send_lag_p99"] for x in runs])),
                    sum(sum(x["errors"].values()) for x in runs),
                ]
            )
    report.tables.append(
        Table(
            f"GET latency under an open-loop Poisson load of {rate:.0f} req/s, "
            f"{seconds:.0f} s window after {warmup:.0f} s of warm-up, median of {rounds} runs",
            [
                "entries",
                "checkpoint interval",
                "p50 ms",
                "p99 ms",
                "p99.9 ms",
                "max ms",
                "worst 1-s p99 ms",
                "median 1-s p99 ms",
                "checkpoints in window",
                "checkpoint ms (median)",
                "checkpoint CPU ms (median)",
                "longest hold ms (max)",
                "longest collection ms (max)",
                "gen-2 GCs in window",
                "gen-2 pause ms",
                "hit ratio",
                "client send lag p99 ms",
                "errors",
            ],
            rows,
            note=(
                "Latency from each request's intended send time to its full answer. 1-s p99: "
                "the p99 of the requests due in each second of the window; worst and median "
                "over the seconds. Checkpoint ms: seconds the boot logged per periodic "
                "checkpoint that ended in the window; CPU: its thread's CPU time (about its GIL "
                "time); longest hold: the longest stretch of that CPU between two yields, the "
                "worst of the window (CheckpointReport.longest_hold_seconds); longest "
                "collection: the longest garbage collection the checkpoint's thread ran, "
                "part of a hold (a young collection walks the service's new objects, "
                "whichever thread's allocation triggers it). Gen-2: full "
                "collections in the service during the window, and their pause. Client send "
                "lag: how late the load generator sent (its own delay, included in the "
                "latencies)."
            ),
        )
    )
    report.raw = {"rate": rate, "capacity": capacity, "results": results}
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.latency", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="50,000 entries, short windows")
    parser.add_argument("--sizes", help="comma-separated entry counts (default 50000,1000000)")
    parser.add_argument("--rate", type=float, help="requests per second (default: capacity / 6)")
    parser.add_argument("--seconds", type=float, help="measured window per run (default 25)")
    parser.add_argument("--warmup", type=float, help="load before the window (default 6)")
    parser.add_argument("--rounds", type=int, help="runs per configuration (default 3)")
    parser.add_argument(
        "--configs", help=f"comma-separated subset of {[c[0] for c in CONFIGS]} (default all)"
    )
    parser.add_argument("--json", type=Path, help="also write every raw measurement here")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    sizes = (50_000,) if args.quick else SIZES
    if args.sizes:
        sizes = tuple(int(s) for s in args.sizes.split(","))
    seconds = args.seconds or (8.0 if args.quick else 25.0)
    warmup = args.warmup or (5.0 if args.quick else 6.0)
    rounds = args.rounds or (1 if args.quick else 3)
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {CLIENT_CPU})
    print(f"[latency] {machine()} {versions()}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="warmstart-latency-", dir=args.workdir))
    try:
        configs = CONFIGS
        if args.configs:
            wanted = [c.strip() for c in args.configs.split(",")]
            configs = tuple(c for c in CONFIGS if c[0] in wanted)
        report = bench_latency(
            sizes, rounds, warmup, seconds, workdir, rate=args.rate, configs=configs
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return finish(report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
