"""The service that ``benchmarks.latency`` measures, run under real uvicorn.

    python -m benchmarks.latency_service '{"port": 8731, "store": "/tmp/s", "records": 50000,
                                           "interval": 2.0, "track": "default", "cpu": 0}'

A Starlette app holding a ``cachetools.LRUCache`` (maxsize ``records``) of
small records (``benchmarks.generate_data.Record``) in front of a "source of
truth" that costs ``miss_ms`` (1 ms) per miss: a ``time.sleep`` in the
threadpool, as a blocking database driver would. The cache is a ``@warm``
attribute guarded by ``state(contract, lock="lock")``: requests read and
write it under that lock, and a checkpoint holds it for each slice it reads.
With an interval the boot tracks the cache when it is attached (``track``:
``"default"``); ``"off"`` declares it ``state(track=False)`` (each periodic
checkpoint diffs it, or saves it in full); ``"explicit"`` calls
``warmstart.track`` in ``__init__``.
The app is booted with ``warmstart.boot(store, interval=...)`` in its lifespan
(warm from the checkpoint the driver prepared), so with an interval the
periodic checkpoints run in the boot's thread beside the event loop.

Routes: ``GET /item/{i}`` (the record ``k{i}``; ``?refresh=1`` reloads it from
the source and writes it, a change), ``GET /stats`` (readiness, cache size,
hits and misses, each checkpoint's end time, seconds, CPU and longest
hold from the ``warmstart.boot`` log, and the collector's passes).
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import sys
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import cachetools
import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import warmstart
from benchmarks.generate_data import RECORDS, Record, key, record

NAMESPACE = "latency"
SECTION = "items"

_ENCODE = msgspec.json.Encoder().encode


class _Items:
    """The cached records; ``lock`` guards the cache (an LRU read moves the key)."""

    def __init__(self, maxsize: int, *, tracked: bool) -> None:
        self.lock = threading.Lock()
        self.cache: cachetools.LRUCache[str, Record] = cachetools.LRUCache(maxsize=maxsize)
        if tracked:
            warmstart.track(self.cache)
        self.hits = 0
        self.misses = 0


#: The cache as a service declares it: a boot with an interval tracks it when
#: it is attached.
Items = warmstart.warm(cache=warmstart.state(RECORDS, section=SECTION, lock="lock"))(
    type("Items", (_Items,), {})
)
#: The same, declared untracked (state(track=False)): each periodic
#: checkpoint diffs it, or saves it in full once that costs less.
UntrackedItems = warmstart.warm(
    cache=warmstart.state(RECORDS, section=SECTION, lock="lock", track=False)
)(type("UntrackedItems", (_Items,), {}))


class Collections:
    """Collector passes in the service: young pause in total; each older pass with its time."""

    def __init__(self) -> None:
        self.young_pause = 0.0
        self.young = 0
        #: (monotonic end time, generation, pause seconds) of generation 1 and 2 passes.
        self.older: list[tuple[float, int, float]] = []
        self._started = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        if info["generation"] == 0:
            self.young += 1
            self.young_pause += pause
        else:
            self.older.append((time.monotonic(), info["generation"], pause))


class Source:
    """The source of truth: ``cost`` seconds of blocking I/O per read."""

    def __init__(self, cost: float) -> None:
        self.cost = cost
        self.reads = 0

    def read(self, i: int) -> Record:
        time.sleep(self.cost)
        self.reads += 1
        return record(i, salt=self.reads)  # type: ignore[no-any-return]


class CheckpointLog(logging.Handler):
    """Each checkpoint the boot logs: (monotonic end time, seconds, why, CPU s, longest hold s,
    longest collection s)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.checkpoints: list[tuple[float, float, str, float, float, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        seconds = getattr(record, "seconds", None)
        if seconds is not None and "checkpoint of" in str(record.msg):
            why = str(record.args[0]) if isinstance(record.args, tuple) and record.args else "?"
            cpu = float(getattr(record, "cpu_seconds", 0.0))
            longest = float(getattr(record, "longest_hold_seconds", 0.0))
            collection = float(getattr(record, "longest_collection_seconds", 0.0))
            self.checkpoints.append(
                (time.monotonic(), float(seconds), why, cpu, longest, collection)
            )


def build_app(settings: dict[str, Any]) -> Starlette:
    source = Source(settings.get("miss_ms", 1.0) / 1000)
    interval = settings.get("interval")
    checkpoints = CheckpointLog()
    collections = Collections()
    logger = logging.getLogger("warmstart.boot")
    logger.addHandler(checkpoints)
    logger.setLevel(logging.INFO)
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with warmstart.boot(
            settings["store"], namespace=NAMESPACE, interval=interval, signals=False
        ) as boot:
            # track: "default" (the boot's choice: tracked with an interval), "off", "explicit".
            how = settings.get("track", "default")
            cls = UntrackedItems if how == "off" else Items
            state["items"] = cls(settings["records"], tracked=how == "explicit")
            state["boot"] = boot
            yield

    async def item(request: Request) -> Response:
        items: Items = state["items"]
        i = int(request.path_params["i"])
        k = key(i)
        value = None
        if "refresh" not in request.query_params:
            with items.lock:
                value = items.cache.get(k)
        if value is None:
            items.misses += 1
            value = await run_in_threadpool(source.read, i)
            with items.lock:
                items.cache[k] = value
        else:
            items.hits += 1
        return Response(_ENCODE(value), media_type="application/json")

    async def stats(_request: Request) -> Response:
        items: Items = state["items"]
        boot = state["boot"]
        with items.lock:
            size = len(items.cache)
        return JSONResponse(
            {
                "ready": boot.ready.is_set(),
                "status": boot.report.status,
                "size": size,
                "hits": items.hits,
                "misses": items.misses,
                "now": time.monotonic(),
                "checkpoints": checkpoints.checkpoints,
                "tracked": warmstart.delta.is_tracked(items.cache),
                "gc": {
                    "young": collections.young,
                    "young_pause": collections.young_pause,
                    "older": collections.older,
                },
                "pid": os.getpid(),
            }
        )

    return Starlette(
        routes=[Route("/item/{i:int}", item), Route("/stats", stats)], lifespan=lifespan
    )


def main(argv: list[str]) -> None:
    settings = json.loads(argv[0])
    cpu = settings.get("cpu")
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cpu})  # threads started from now on inherit it
    config = uvicorn.Config(
        build_app(settings),
        host="127.0.0.1",
        port=settings["port"],
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="on",
        backlog=4096,
        timeout_graceful_shutdown=5,
        timeout_keep_alive=600,  # the load generator keeps a pool of idle connections
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main(sys.argv[1:])
