"""The service of ``benchmarks.workers``: a cached source under gunicorn, 4 gthread workers.

Used as ``gunicorn -c python:benchmarks.workers_service benchmarks.workers_service:app``
(this module is both the configuration and the application). Settings come
from the environment: ``WARMSTART_DIR``, ``BENCH_MODE`` (``slot``, ``pool``,
``pool-own``, ``shared`` or ``none``), ``BENCH_CAPACITY`` (entries per
worker's LRU cache) and ``BENCH_REPORT`` (a folder).

Each worker knows its index (its warm slot; in ``shared`` and ``none``
modes, a slot of a service of its own, only for the benchmark's routing),
answers ``/whoami`` with it and ``/g/<key>`` with ``1`` (cache hit) or ``0``
(miss: read from the source and cached), and writes the keys its cache
holds into the report folder once restored (``restored-<i>.json``, with the
restore's figures) and when it exits (``exit-<i>.json``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import cachetools
import msgspec

import warmstart
from warmstart.integrations import gunicorn as warm
from warmstart.integrations import worker_boot
from warmstart.workers import Pool, claim_slot

MODE = os.environ.get("BENCH_MODE", "pool")
CAPACITY = int(os.environ.get("BENCH_CAPACITY", "2000"))
REPORT = Path(os.environ.get("BENCH_REPORT", "."))


class Row(msgspec.Struct, frozen=True):
    key: str
    value: int


ROWS = warmstart.Contract("row", Row, key=str)


@warmstart.warm(rows=warmstart.state(ROWS, lock="lock"))
class Catalog:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.rows: cachetools.LRUCache[str, Row] = cachetools.LRUCache(maxsize=CAPACITY)

    def get(self, key: str) -> bool:
        with self.lock:
            if self.rows.get(key) is not None:
                return True
            self.rows[key] = Row(key, len(key))  # the source: free, only hits are counted
            return False

    def keys(self) -> list[str]:
        with self.lock:
            return list(self.rows)


# -- gunicorn configuration -----------------------------------------------------------

worker_class = "gthread"
threads = 2
keepalive = 600
workers = 4
graceful_timeout = 60
timeout = 120

if MODE != "none":
    warm.configure(
        namespace="bench",
        mode="pool" if MODE.startswith("pool") else MODE,
        pool=Pool(prefer_own=True) if MODE == "pool-own" else None,
        interval=3600,  # only the shutdown checkpoint: the runs are short
        progressive=False,
        signals=False,
    )

INDEX: dict[str, int] = {}


def post_fork(server: Any, worker: Any) -> None:
    if MODE in ("shared", "none"):
        INDEX["i"] = claim_slot(os.environ["WARMSTART_DIR"], "bench-id", workers=4, wait=30).index
    if MODE != "none":
        warm.post_fork(server, worker)
        service = worker_boot()
        if service is not None and service.slot is not None:
            INDEX["i"] = service.slot.index


def _dump(name: str, extra: dict[str, Any]) -> None:
    path = REPORT / f"{name}-{INDEX['i']}.json"
    partial = path.with_suffix(".part")
    partial.write_text(json.dumps({"pid": os.getpid(), "keys": catalog.keys(), **extra}))
    partial.replace(path)  # whole or absent: the benchmark polls for it


def post_worker_init(worker: Any) -> None:
    extra: dict[str, Any] = {}
    if MODE != "none":
        warm.post_worker_init(worker)
        service = worker_boot()
        boot = service.boot if service is not None else None
        if boot is not None:
            boot.wait_ready(60)
            report = boot.report
            extra = {
                "status": report.status,
                "restored": report.restored,
                "pooled": sum(s.pooled for s in report.sections.values()),
                "seconds": report.time_to_warm or report.time_to_ready,
            }
    _dump("restored", extra)


def worker_exit(server: Any, worker: Any) -> None:
    if "i" in INDEX:
        _dump("exit", {})
    if MODE != "none":
        warm.worker_exit(server, worker)


# -- the application ---------------------------------------------------------------------

catalog = Catalog()
HIT = [("Content-Type", "text/plain"), ("Content-Length", "1")]


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    path: str = environ["PATH_INFO"]
    if path.startswith("/g/"):
        start_response("200 OK", HIT)
        return [b"1" if catalog.get(path[3:]) else b"0"]
    body = json.dumps({"pid": os.getpid(), "index": INDEX.get("i"), "time": time.time()}).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    start_response("200 OK", headers)
    return [body]
