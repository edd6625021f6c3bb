"""Four gunicorn workers after a restart: what each gets back, and the hit ratio it serves.

The service (``benchmarks.workers_service``) runs under real gunicorn with 4
gthread workers and the warmstart hooks; each worker holds an LRU cache of
``capacity`` rows in front of a source. Keys follow a Zipf law (s = 1) over
``keys`` keys, the hottest first. The load generator keeps one keep-alive
connection per worker (it asks each connection which worker serves it), so
it decides which worker serves which request:

- **balanced**: request i goes to worker i mod 4; every worker sees the
  whole key space;
- **sticky**: a key always goes to one worker (key ranges: rank mod 4, so
  each range is equally hot), before and after the restart: session
  affinity to a worker's identity;
- **sticky, moved**: sticky, but after the restart each range goes to the
  next worker, as when keep-alive connections pinned to ranges reconnect
  and land on other workers (gunicorn and uvicorn share one listening
  socket: a connection lands where the kernel puts it).

Each strategy runs the same requests: ``warmup`` requests, SIGTERM (every
worker takes its shutdown checkpoint), start again, then the first
``measure`` requests are counted. Strategies: **cold** (no warmstart),
**last writer wins** (one shared namespace: every worker restores the last
checkpoint written), **own slot** (each worker its slot's namespace),
**shared pool** (its slot, then the union of all slots' newest state, most
recent first, up to its capacity) and **pool, own first**
(``Pool(prefer_own=True)``: the others only fill the room left).

Reported per traffic and strategy: the hit ratio of the first ``measure``
requests after the restart (all workers; and the worst worker), the fraction
of the pool's hot keys back in each worker (the pool's hot keys: the
``capacity`` most requested keys among those the 4 caches held at shutdown,
what one cache would hold if it could choose), the fraction of its own
traffic's hot keys back in each worker (the ``capacity`` hottest keys of what
it serves after the restart), and the restore time. The steady hit ratio
(the last quarter of the warm-up) is the reference.

Run: ``python -m benchmarks.workers [--quick] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import dataclasses
import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks._common import ROOT, Check, Report, Table, finish, machine, median, versions

WORKERS = 4
ZIPF_S = 1.0
EARLY = 1_000  # also reported: the hit ratio of the very first requests
TRAFFIC = ("balanced", "sticky", "sticky, moved")
STRATEGIES = (
    ("cold", "none"),
    ("last writer wins", "shared"),
    ("own slot", "slot"),
    ("shared pool", "pool"),
    ("pool, own first", "pool-own"),
)


@dataclasses.dataclass(frozen=True)
class Sizes:
    keys: int
    capacity: int
    warmup: int
    measure: int
    cost_entries: int = 100_000  # the pool's cost at boot: entries per worker

    @classmethod
    def full(cls) -> Sizes:
        return cls(keys=20_000, capacity=2_000, warmup=40_000, measure=10_000)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(keys=2_000, capacity=200, warmup=4_000, measure=1_000, cost_entries=10_000)


# -- the requests -------------------------------------------------------------------


def zipf_ranks(keys: int, count: int, seed: int) -> list[int]:
    """``count`` key ranks drawn from Zipf(s) over ``keys`` ranks (0 is the hottest)."""
    cumulative = list(itertools.accumulate(1.0 / (r + 1) ** ZIPF_S for r in range(keys)))
    total = cumulative[-1]
    rng = random.Random(seed)
    return [bisect.bisect_left(cumulative, rng.random() * total) for _ in range(count)]


def route(traffic: str, after: bool, rank: int, i: int) -> int:
    """The worker that serves request ``i`` (of key ``rank``)."""
    if traffic == "balanced":
        return i % WORKERS
    home = rank % WORKERS
    return (home + 1) % WORKERS if traffic == "sticky, moved" and after else home


def hottest_served(traffic: str, worker: int, keys: int, capacity: int) -> set[str]:
    """The ``capacity`` hottest keys ``worker`` serves after the restart."""
    ranks = (
        range(keys)
        if traffic == "balanced"
        else (r for r in range(keys) if route(traffic, True, r, 0) == worker)
    )
    return {f"k{r}" for r in itertools.islice(ranks, capacity)}


# -- the client ---------------------------------------------------------------------


class Conn:
    """One keep-alive HTTP/1.1 connection, for GETs with a Content-Length answer."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def get(self, path: str) -> bytes:
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: b\r\n\r\n".encode())
        while b"\r\n\r\n" not in self.buf:
            self._read()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        while len(self.buf) < length:
            self._read()
        body, self.buf = self.buf[:length], self.buf[length:]
        return body

    def _read(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            msg = "the server closed the connection"
            raise ConnectionError(msg)
        self.buf += chunk

    def close(self) -> None:
        self.sock.close()


def connect_all(port: int, timeout: float = 60.0) -> dict[int, Conn]:
    """One connection per worker index (the kernel spreads new connections over them).

    The spare connections stay open until every worker is reached: a worker
    busy with one is less likely to accept the next, so the others get theirs.
    """
    found: dict[int, Conn] = {}
    spare: list[Conn] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < WORKERS:
            if time.monotonic() > deadline:
                msg = f"reached workers {sorted(found)} only"
                raise RuntimeError(msg)
            conn = Conn(port)
            index = json.loads(conn.get("/whoami"))["index"]
            if index in found:
                spare.append(conn)
                if len(spare) % 50 == 0:
                    time.sleep(0.2)  # a worker descheduled on a loaded machine: let it run
            else:
                found[index] = conn
    finally:
        for conn in spare:
            conn.close()
    return found


def run_requests(
    conns: dict[int, Conn], ranks: list[int], traffic: str, *, after: bool
) -> dict[int, list[bool]]:
    """Send the requests, each worker's in order (one thread per worker); hits per worker.

    A worker's cache depends only on the requests it serves, in their order,
    so the workers' shares run side by side.
    """
    plan: dict[int, list[str]] = {w: [] for w in conns}
    for i, rank in enumerate(ranks):
        plan[route(traffic, after, rank, i)].append(f"/g/k{rank}")
    hits: dict[int, list[bool]] = {}

    def drive(worker: int) -> None:
        conn = conns[worker]
        hits[worker] = [conn.get(path) == b"1" for path in plan[worker]]

    threads = [threading.Thread(target=drive, args=(w,)) for w in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return hits


# -- the server ------------------------------------------------------------------------


@contextlib.contextmanager
def service(workdir: Path, mode: str, capacity: int, timeout: float = 180.0) -> Iterator[int]:
    """gunicorn with the service until SIGTERM; yields its port once every worker is restored."""
    report = workdir / "report"
    report.mkdir(exist_ok=True)
    for old in report.glob("restored-*.json"):
        old.unlink()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARMSTART_")}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        WARMSTART_DIR=str(workdir / "warm"),
        XDG_RUNTIME_DIR=str(workdir),
        BENCH_MODE=mode,
        BENCH_CAPACITY=str(capacity),
        BENCH_REPORT=str(report),
    )
    argv = [
        str(Path(sys.executable).parent / "gunicorn"),
        "-c",
        "python:benchmarks.workers_service",
        "--bind",
        f"127.0.0.1:{port}",
        "benchmarks.workers_service:app",
    ]
    log = (workdir / "gunicorn.log").open("ab")
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + timeout
        while len(list(report.glob("restored-*.json"))) < WORKERS:
            if proc.poll() is not None or time.monotonic() > deadline:
                msg = f"gunicorn did not start ({proc.poll()}): see {workdir / 'gunicorn.log'}"
                raise RuntimeError(msg)
            time.sleep(0.1)
        yield port
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        log.close()


def dumps(workdir: Path, kind: str) -> dict[int, dict[str, Any]]:
    return {
        int(p.stem.split("-")[1]): json.loads(p.read_text())
        for p in (workdir / "report").glob(f"{kind}-*.json")
    }


# -- one scenario -------------------------------------------------------------------------


def scenario(
    traffic: str, mode: str, sizes: Sizes, workdir: Path, warm_ranks: list[int], ranks: list[int]
) -> dict[str, Any]:
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    steady = float("nan")
    if mode != "none":
        with service(workdir, mode, sizes.capacity) as port:
            conns = connect_all(port)
            hits = run_requests(conns, warm_ranks, traffic, after=False)
            for conn in conns.values():
                conn.close()
        tail = [h for seq in hits.values() for h in seq[len(seq) * 3 // 4 :]]
        steady = sum(tail) / len(tail)
    held = dumps(workdir, "exit")
    union = set().union(*(set(d["keys"]) for d in held.values())) if held else set()
    # The pool's hot keys: the `capacity` most requested of the keys the caches held.
    pool = set(sorted(union, key=lambda k: int(k[1:]))[: sizes.capacity])
    with service(workdir, mode, sizes.capacity) as port:
        restored = dumps(workdir, "restored")
        conns = connect_all(port)
        hits = run_requests(conns, ranks, traffic, after=True)
        for conn in conns.values():
            conn.close()
    per_worker = {w: sum(seq) / len(seq) for w, seq in hits.items() if seq}
    # The first EARLY requests: each worker's share of them is a prefix of its own.
    early = min(EARLY, len(ranks))
    shares = [route(traffic, True, rank, i) for i, rank in enumerate(ranks[:early])]
    early_hits = sum(sum(hits[w][: shares.count(w)]) for w in hits)
    pool_back = [len(set(d["keys"]) & pool) / len(pool) if pool else 0.0 for d in restored.values()]
    own_back = [
        len(set(restored[w]["keys"]) & hottest_served(traffic, w, sizes.keys, sizes.capacity))
        / sizes.capacity
        for w in restored
    ]
    return {
        "traffic": traffic,
        "mode": mode,
        "hit_ratio": sum(map(sum, hits.values())) / len(ranks),
        "early_hit_ratio": early_hits / early,
        "worst_worker": min(per_worker.values()),
        "per_worker": per_worker,
        "steady": steady,
        "pool_keys": len(union),
        "pool_back": pool_back,
        "own_back": own_back,
        "restore_seconds": [d.get("seconds") or 0.0 for d in restored.values()],
        "restored": [d.get("restored", 0) for d in restored.values()],
        "pooled": [d.get("pooled", 0) for d in restored.values()],
    }


# -- what the pool costs at boot ------------------------------------------------------


def pool_cost(entries: int, workdir: Path, repeats: int = 3) -> list[list[Any]]:
    """Seconds to boot one worker: its own slot alone, and with the pool's merge.

    Four slots of ``entries`` distinct keys each (the pool's worst case: no
    overlap), an LRU of ``entries`` with a lock, eager restores; in this
    process, the store in the page cache. The merge reads the three peers'
    sections whole and rebuilds the cache in the merged order.
    """
    import cachetools
    import msgspec

    import warmstart

    class Row(msgspec.Struct, frozen=True):
        key: str
        value: int

    contract = warmstart.Contract("row", Row, key=str)

    @warmstart.warm(rows=warmstart.state(contract, lock="lock"))
    class Cache:
        def __init__(self) -> None:
            self.lock = threading.RLock()
            self.rows = cachetools.LRUCache(maxsize=entries)

    store = workdir / "cost"
    shutil.rmtree(store, ignore_errors=True)
    with warmstart.Store(store) as s:
        for w in range(WORKERS):
            rows = {f"w{w}-{i}": Row(f"w{w}-{i}", i) for i in range(entries)}
            s.save(f"cost/worker-{w}", {"Cache.rows": (contract, rows)})
    rows_out: list[list[Any]] = []
    for progressive in (False, True):
        for label, pool in (("own slot", None), ("shared pool (3 peers)", True)):
            ready, warm = [], []
            for _ in range(repeats):
                with warmstart.boot(
                    store,
                    namespace="cost/worker-0",
                    pool=pool,
                    progressive=progressive,
                    signals=False,
                    checkpoint_on_exit=False,
                ) as b:
                    cache = Cache()
                b.wait_ready(120)
                b.close()
                ready.append(b.report.time_to_ready or 0.0)
                warm.append(b.report.time_to_warm or 0.0)
            pooled = b.report.sections["Cache.rows"].pooled
            mode = "progressive" if progressive else "eager"
            rows_out.append([label, mode, len(cache.rows), pooled, median(ready), median(warm)])
    return rows_out


NOTES = (
    (
        "Run alone: `python -m benchmarks.workers` (about 7 minutes; `--quick`: a smoke run). "
        "Real gunicorn with the warmstart hooks (`benchmarks/workers_service.py`); the load "
        "generator keeps one keep-alive connection per worker (it asks each connection which "
        "worker serves it), so it decides which worker serves which request."
    ),
    (
        "Traffic. Balanced: request i to worker i mod 4. Sticky: a key always to one worker, "
        "before and after the restart (affinity to a worker's identity; key ranges by rank mod "
        "4, equally hot). Sticky, moved: each range goes to the next worker after the restart, "
        "as keep-alive connections pinned to ranges do when they reconnect and land on other "
        "workers (gunicorn and uvicorn workers share one listening socket)."
    ),
    (
        "Every strategy serves the same requests; the restart is SIGTERM (each worker's "
        "shutdown checkpoint in `worker_exit`) and start. Strategies: cold (no warmstart); last "
        "writer wins (one namespace for all workers); own slot; shared pool (own slot, then the "
        "union of every slot's newest state, most recent first, up to the capacity); pool, own "
        "first (`Pool(prefer_own=True)`: the others only fill the room left). The hit ratios do "
        "not depend on the machine's load; the restore times do."
    ),
)


def bench_workers(
    sizes: Sizes,
    workdir: Path,
    traffics: tuple[str, ...] = TRAFFIC,
    strategies: tuple[tuple[str, str], ...] = STRATEGIES,
) -> Report:
    """Run every traffic and strategy, and the pool's cost at boot; the report."""
    warm_ranks = zipf_ranks(sizes.keys, sizes.warmup, seed=1)
    ranks = zipf_ranks(sizes.keys, sizes.measure, seed=2)
    results: list[dict[str, Any]] = []
    for traffic in traffics:
        for label, mode in strategies:
            started = time.perf_counter()
            result = scenario(traffic, mode, sizes, workdir / "run", warm_ranks, ranks)
            result["label"] = label
            result["wall"] = time.perf_counter() - started
            results.append(result)
            print(f"  {traffic:14} {label:18} {result['hit_ratio']:.1%} ({result['wall']:.0f} s)")
    cost = pool_cost(sizes.cost_entries, workdir)
    return report_of({"sizes": dataclasses.asdict(sizes), "results": results, "cost": cost})


def report_of(raw: dict[str, Any]) -> Report:
    """The report of a run, from its raw figures (``--json`` keeps them)."""
    sizes = Sizes(**raw["sizes"])
    results, cost = raw["results"], raw["cost"]
    report = Report(title="Several workers after a restart", raw=raw, notes=list(NOTES))
    table = Table(
        title=(
            f"gunicorn, {WORKERS} gthread workers, LRU of {sizes.capacity:,} rows each, "
            f"Zipf (s = {ZIPF_S:g}) over {sizes.keys:,} keys; {sizes.warmup:,} requests, "
            f"restart (SIGTERM, start), then the first {sizes.measure:,} counted"
        ),
        columns=[
            "traffic",
            "strategy",
            "hit ratio",
            f"first {EARLY:,}",
            "worst worker",
            "pool's hot keys back (each)",
            "its hot keys back (each)",
            "restore s",
            "steady hit ratio",
        ],
    )
    for result in results:
        pool_back, own_back, mode = result["pool_back"], result["own_back"], result["mode"]
        table.rows.append(
            [
                result["traffic"],
                result["label"],
                f"{result['hit_ratio']:.1%}",
                f"{result['early_hit_ratio']:.1%}",
                f"{result['worst_worker']:.1%}",
                f"{median(pool_back):.0%} ({min(pool_back):.0%}-{max(pool_back):.0%})"
                if mode != "none"
                else "-",
                f"{median(own_back):.0%} ({min(own_back):.0%}-{max(own_back):.0%})",
                median(result["restore_seconds"]) if mode != "none" else float("nan"),
                f"{result['steady']:.1%}" if mode != "none" else "-",
            ]
        )
    table.note = (
        "Hit ratio: hits over the first requests after the restart, all workers (and over "
        f"the first {EARLY:,} of them); worst worker: the lowest of the four. The pool's hot "
        "keys: the capacity most requested keys among those the four caches held at "
        "shutdown. Its hot keys: the capacity hottest keys of what that worker serves after "
        "the restart. Each: the median worker (lowest-highest). Restore s: median over the "
        "workers of the boot's time to warm (restore and merge)."
    )
    report.tables.append(table)
    report.tables.append(
        Table(
            title=f"What the pool costs at boot: {WORKERS} slots of {sizes.cost_entries:,} rows",
            columns=["restore", "mode", "entries after", "from the pool", "ready s", "warm s"],
            rows=[list(row) for row in cost],
            note=(
                "One worker's boot in one process (median of 3), an LRU with a lock; ready: "
                "until the object is returned, warm: until the background work is done too. "
                "The four slots hold distinct keys, the pool's worst case: it reads three "
                "sections whole, ranks their entries with its own and rebuilds the cache (after "
                "a progressive restore, in the background: time to ready does not change)."
            ),
        )
    )
    by = {(r["traffic"], r["mode"]): r for r in results}
    named = (("pool", "shared pool"), ("slot", "own slot"), ("shared", "last writer"))
    for traffic in dict.fromkeys(r["traffic"] for r in results):
        for mode, label in named:
            if (traffic, mode) in by:
                report.checks.append(
                    Check(
                        name=f"{traffic}: hit ratio of the first requests after a restart, {label}",
                        value=by[traffic, mode]["hit_ratio"],
                        target="reported",
                        passed=None,
                        detail=f"steady {by[traffic, mode]['steady']:.1%}",
                    )
                )
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    args = parser.parse_args()
    sizes = Sizes.quick() if args.quick else Sizes.full()
    print(json.dumps({"machine": machine(), "versions": versions()}))
    with tempfile.TemporaryDirectory(prefix="ws-workers-") as tmp:
        report = bench_workers(sizes, Path(tmp))
    return finish(report, args.json)


if __name__ == "__main__":
    sys.exit(main())
