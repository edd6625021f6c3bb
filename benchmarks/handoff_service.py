"""The service and the successor of ``benchmarks.handoff`` (issue 18), one process each.

``python -m benchmarks.handoff_service serve STORE '{json options}'``: a
service holding ``entries`` cache entries in a ``TrackedDict`` and writing
``rate`` entries a second from a writer thread, as request handlers would on
cache misses (key ``k<seq % entries>``, value ``Entry(seq, at, payload)``). It
checkpoints every ``interval`` seconds and, with ``handoff``, answers its
successors. It prints JSON lines: ``booted``, and ``checkpoint`` (with the
wall time and the writes so far) each time a checkpoint starts. Commands
on stdin: ``seq_at T`` (writes made up to wall time T), ``cpu`` (CPU seconds
so far), ``exit``.

``python -m benchmarks.handoff_service probe STORE '{json options}'``: a
successor. It boots (with ``handoff`` seconds, or without), restores
eagerly, and prints when it was ready and the newest write it restored, then
leaves without writing anything.
"""

from __future__ import annotations

import bisect
import json
import os
import sys
import threading
import time
from typing import Any

import msgspec

import warmstart

NAMESPACE = "bench-handoff"


class Entry(msgspec.Struct, frozen=True):
    seq: int
    at: float
    payload: str


ENTRIES = warmstart.Contract("entry", Entry, key=str)


@warmstart.warm(items=warmstart.state(ENTRIES, lock="lock"))
class Cache:
    def __init__(self) -> None:
        self.items: warmstart.TrackedDict[str, Entry] = warmstart.TrackedDict()
        self.lock = threading.Lock()


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


class Writer:
    """Writes ``rate`` entries a second, in 100 small batches, until stopped."""

    def __init__(self, cache: Cache, entries: int, rate: float, start: int) -> None:
        self.cache = cache
        self.entries = entries
        self.rate = rate
        self.seq = start
        self.times: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        tick = 0.01
        per_tick = self.rate * tick
        owed = 0.0
        next_at = time.monotonic()
        while not self.stop.is_set():
            owed += per_tick
            batch = int(owed)
            owed -= batch
            with self.cache.lock:
                for _ in range(batch):
                    self.seq += 1
                    now = time.time()
                    self.cache.items[f"k{self.seq % self.entries}"] = Entry(self.seq, now, "x" * 64)
                    self.times.append(now)
            next_at += tick
            self.stop.wait(max(0.0, next_at - time.monotonic()))

    def seq_at(self, wall: float) -> int:
        """How many writes were made by wall time ``wall`` (plus the seeded ones)."""
        with self.cache.lock:
            return bisect.bisect_right(self.times, wall) + (self.seq - len(self.times))


def serve(store: str, options: dict[str, Any]) -> None:
    writer: list[Writer] = []

    def watermark() -> int:
        seq = writer[0].seq if writer else 0
        emit("checkpoint", at=time.time(), seq=seq)
        return seq

    boot = warmstart.boot(
        store,
        namespace=NAMESPACE,
        interval=options.get("interval"),
        handoff=options.get("handoff"),
        heartbeat=options.get("heartbeat", 10.0),
        remote=options.get("remote"),
        watermark=watermark,
        signals=False,
        store_options={"sync": False},
    )
    entries = int(options["entries"])
    with boot:
        cache = Cache()
        boot.wait_ready()
        if not cache.items:  # the first start: a warm cache to begin with
            with cache.lock:
                for i in range(entries):
                    cache.items[f"k{i}"] = Entry(0, time.time(), "x" * 64)
        writer.append(Writer(cache, entries, float(options.get("rate", 0)), 0))
        if writer[0].rate > 0:  # an idle service runs no writer thread
            writer[0].thread.start()
        emit("booted", pid=os.getpid(), status=boot.report.status, entries=len(cache.items))
        for line in sys.stdin:
            words = line.split()
            if words[:1] == ["seq_at"]:
                emit("seq_at", seq=writer[0].seq_at(float(words[1])))
            elif words[:1] == ["cpu"]:
                emit("cpu", seconds=time.process_time())
            elif words[:1] == ["exit"]:
                break
        writer[0].stop.set()
        if writer[0].thread.is_alive():
            writer[0].thread.join()
    emit("bye")


def probe(store: str, options: dict[str, Any]) -> None:
    started = time.perf_counter()
    boot = warmstart.boot(
        store,
        namespace=NAMESPACE,
        handoff=options.get("handoff"),
        remote=options.get("remote"),
        progressive=False,
        checkpoint_on_exit=False,
        signals=False,
        heartbeat=None,
        store_options={"sync": False},
    )
    with boot:
        cache = Cache()
    ready_at = time.time()
    seconds = time.perf_counter() - started
    newest = max(cache.items.values(), key=lambda e: e.seq, default=None)
    handoff = boot.handoff_report
    pull = boot.remote_outcomes.get("pull")
    boot.close()
    emit(
        "probe",
        ready_at=ready_at,
        boot_seconds=seconds,
        status=boot.report.status,
        generation=boot.report.generation,
        entries=len(cache.items),
        newest_seq=None if newest is None else newest.seq,
        newest_at=None if newest is None else newest.at,
        handoff_status=None if handoff is None else handoff.status,
        handoff_seconds=None if handoff is None else handoff.seconds,
        pull=None if pull is None else pull.status,
    )


if __name__ == "__main__":
    mode, path, raw = sys.argv[1:4]
    {"serve": serve, "probe": probe}[mode](path, json.loads(raw))
