"""A service for the lifecycle tests: forks, signals at start-up and during a restore.

Usage: lifecycle_service.py STORE MODE [N]. Prints JSON lines (``_common.emit``).

- ``seed N``: save N records under ``Catalog.rows`` (contract v1).
- ``preload``: boot in the parent, build the service (warm), fork two workers
  that each add their own keys and exit (their exit checkpoints save), then
  checkpoint in the parent: it changed nothing since its restore.
- ``startup``: open a boot, say so, and sleep as if connecting to a database
  (the test sends SIGTERM there), then build the service.
- ``restore``: build the service with a contract v2 whose upgrader is slow
  (the test sends SIGTERM while the restore runs on the main thread).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import msgspec

import warmstart

sys.path.insert(0, str(Path(__file__).parent))
from _common import emit

NS = "svc"


class Row(msgspec.Struct):
    name: str
    n: int = 0


class RowV2(msgspec.Struct):
    name: str
    n: int = 0
    slow: bool = True


def _slow_upgrade(old: dict[str, object]) -> dict[str, object]:
    time.sleep(0.002)
    return {**old, "slow": True}


ROWS = warmstart.Contract("row", Row)
ROWS_V2 = warmstart.Contract("row", RowV2, version=2, upgraders={1: _slow_upgrade})


@warmstart.warm(rows=ROWS)
class Catalog:
    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}


@warmstart.warm(rows=warmstart.state(ROWS_V2, section="Catalog.rows"))
class CatalogV2:
    def __init__(self) -> None:
        self.rows: dict[str, RowV2] = {}


def seed(store: str, n: int) -> None:
    with warmstart.Store(store) as s:
        s.save(NS, {"Catalog.rows": (ROWS, {f"k{i}": Row(f"n{i}", i) for i in range(n)})})
    emit("seeded", n=n)


def preload(store: str) -> None:
    # gunicorn's preload_app: the app, and its boot, are made in the master.
    with warmstart.boot(store, namespace=NS, checkpoint_on_exit=False, interval=0.05) as b:
        service = Catalog()
    emit("master", status=b.report.status, rows=len(service.rows))
    children = []
    for worker in range(2):
        pid = os.fork()
        if pid == 0:
            service.rows[f"w{worker}"] = Row(f"worker {worker}", worker)
            deadline = time.monotonic() + 10
            while b.metrics.get("checkpoints_total") < 1 and time.monotonic() < deadline:
                time.sleep(0.01)  # its own periodic thread, started again after fork
            emit("worker", worker=worker, periodic=b.metrics.get("checkpoints_total"))
            sys.exit(0)  # the exit checkpoint (atexit) of this worker's copy
        children.append(pid)
        os.waitpid(pid, 0)  # one after the other: the second worker writes last
    report = b.checkpoint()
    emit("master-checkpoint", status=report.status, error=report.error)
    b.close()


def startup(store: str) -> None:
    with warmstart.boot(store, namespace=NS) as b:
        emit("opened", status=b.report.status)
        time.sleep(30)  # connecting to a database; SIGTERM arrives here
        Catalog()


def restore(store: str) -> None:
    with warmstart.boot(store, namespace=NS, progressive=False) as b:
        emit("opened", status=b.report.status)
        CatalogV2()  # slow: SIGTERM arrives during this restore
    emit("restored")


if __name__ == "__main__":
    path, mode = sys.argv[1], sys.argv[2]
    if mode == "seed":
        seed(path, int(sys.argv[3]))
    else:
        {"preload": preload, "startup": startup, "restore": restore}[mode](path)
