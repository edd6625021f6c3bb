"""A small service, started cold, checkpointed at shutdown, started again warm.

The service is a product catalog in front of a slow source of truth (a SQLite
database where every query costs an extra millisecond, as a remote database
would), with an LRU cache of products. It serves a skewed (Zipf) request
stream. The demo runs the service twice, each time in a fresh process, and
prints both runs side by side: what a restart costs without warm state, and
what it costs with it.

Run it with ``make demo``.
"""

from __future__ import annotations

import json
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cachetools
import msgspec

import warmstart

PRODUCTS = 200_000
REQUESTS = 10_000  # the window measured right after each start
LIFETIME = 60_000  # requests the first process serves before it shuts down
QUERY_COST = 0.001  # seconds added to every database query
ZIPF_S = 1.1


class Product(msgspec.Struct, frozen=True):
    id: int
    name: str
    price: float
    stock: int


PRODUCTS_V1 = warmstart.Contract("product", Product, key=int, version=1)


@warmstart.warm(products=PRODUCTS_V1)
class Catalog:
    """Serves products; a cache miss goes to the database."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.products: cachetools.LRUCache[int, Product] = cachetools.LRUCache(maxsize=50_000)
        self.hits = 0
        self.queries = 0

    def get(self, product_id: int) -> Product:
        try:
            product = self.products[product_id]
        except KeyError:
            pass
        else:
            self.hits += 1
            return product
        self.queries += 1
        time.sleep(QUERY_COST)
        row = self.db.execute(
            "SELECT id, name, price, stock FROM products WHERE id = ?", (product_id,)
        ).fetchone()
        product = Product(*row)
        self.products[product_id] = product
        return product


def make_database(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, price REAL, stock INT)")
    rng = random.Random(1)
    db.executemany(
        "INSERT INTO products VALUES (?, ?, ?, ?)",
        (
            (i, f"product-{i}", round(rng.uniform(1, 500), 2), rng.randint(0, 100))
            for i in range(PRODUCTS)
        ),
    )
    db.commit()
    db.close()


def request_stream(seed: int, count: int) -> list[int]:
    """A Zipf-distributed stream of product ids: a few are hot, most are cold."""
    weights = [1 / (rank + 1) ** ZIPF_S for rank in range(PRODUCTS)]
    ids = list(range(PRODUCTS))
    random.Random(0).shuffle(ids)  # popularity is the catalog's: the same in both runs
    return random.Random(seed).choices(ids, weights=weights, k=count)


def serve(workdir: Path, phase: str) -> None:
    """One life of the service: boot, serve the stream, shut down (checkpoint)."""
    db = sqlite3.connect(workdir / "catalog.db")
    started = time.perf_counter()
    with warmstart.boot(workdir / "warm", namespace="catalog", signals=False) as boot:
        catalog = Catalog(db)
        ready = time.perf_counter() - started
        latencies = []
        stream = request_stream(seed=2 if phase == "cold" else 3, count=REQUESTS)
        for product_id in stream:
            t = time.perf_counter()
            catalog.get(product_id)
            latencies.append(time.perf_counter() - t)
        hits, queries = catalog.hits, catalog.queries
        if phase == "cold":
            # The rest of the first process's life: its cache warms up.
            for product_id in request_stream(seed=4, count=LIFETIME - REQUESTS):
                catalog.get(product_id)
        report = boot.report
    quantiles = statistics.quantiles(latencies, n=100)
    print(
        json.dumps(
            {
                "status": report.status,
                "generation": report.generation,
                "restored": report.restored,
                "ready_ms": ready * 1000,
                "restore_ms": (report.time_to_warm or 0) * 1000,
                "hit_ratio": hits / REQUESTS,
                "queries": queries,
                "p50_ms": quantiles[49] * 1000,
                "p90_ms": quantiles[89] * 1000,
                "p99_ms": quantiles[98] * 1000,
                "serve_s": sum(latencies),
                "checkpoint_ms": boot.metrics.get("last_checkpoint_seconds") * 1000,
                "cached": len(catalog.products),
            }
        )
    )


def run_phase(workdir: Path, phase: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "serve", str(workdir), phase],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="warmstart-demo-"))
    print(
        f"catalog of {PRODUCTS:,} products, {QUERY_COST * 1000:.0f} ms per database query, "
        f"Zipf requests; each run is measured over its first {REQUESTS:,} requests"
    )
    make_database(workdir / "catalog.db")
    print(f"run 1: the service starts cold, serves {LIFETIME:,} requests, checkpoints at shutdown")
    cold = run_phase(workdir, "cold")
    print("run 2: a new process starts warm from that checkpoint and serves")
    warm = run_phase(workdir, "warm")
    rows = [
        ("boot", "status", lambda r: str(r["status"])),
        ("entries restored", "restored", lambda r: f"{r['restored']:,}"),
        ("time to ready", "ready_ms", lambda r: f"{r['ready_ms']:.1f} ms"),
        ("restore, total", "restore_ms", lambda r: f"{r['restore_ms']:.1f} ms"),
        ("hit ratio", "hit_ratio", lambda r: f"{r['hit_ratio']:.1%}"),
        ("database queries", "queries", lambda r: f"{r['queries']:,}"),
        ("p50 latency", "p50_ms", lambda r: f"{r['p50_ms']:.3f} ms"),
        ("p90 latency", "p90_ms", lambda r: f"{r['p90_ms']:.3f} ms"),
        ("p99 latency", "p99_ms", lambda r: f"{r['p99_ms']:.3f} ms"),
        ("time serving", "serve_s", lambda r: f"{r['serve_s']:.2f} s"),
        ("checkpoint at shutdown", "checkpoint_ms", lambda r: f"{r['checkpoint_ms']:.1f} ms"),
    ]
    window = f"first {REQUESTS:,} requests"
    print(f"\n{window:<28}{'cold start':>16}{'warm start':>16}")
    for label, _, fmt in rows:
        print(f"{label:<28}{fmt(cold):>16}{fmt(warm):>16}")
    saved = cold["queries"] - warm["queries"]
    print(
        f"\nwarm start saved {saved:,} database queries "
        f"({saved / max(cold['queries'], 1):.0%}) and {cold['serve_s'] - warm['serve_s']:.2f} s "
        "of serving time on the first requests after the restart."
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(Path(sys.argv[2]), sys.argv[3])
    else:
        main()
