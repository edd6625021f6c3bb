"""A key-value service for the end-to-end tests, driven over stdin and stdout.

Run as ``python kv_service.py STORE [options]``. It boots from STORE (signal
handlers armed), builds one ``Catalog`` and prints a ``booted`` JSON line with
the boot report and the items it came back with. Then it answers commands,
one per stdin line, with one JSON line each:

* ``put KEY VALUE [KEY VALUE ...]``: write items;
* ``checkpoint``: checkpoint now;
* ``stats``: the boot's checkpoint counters;
* ``block``: from now on the watermark callable blocks, so no checkpoint can
  finish (the deadline tests);
* ``exit``: leave the ``with`` block normally (checkpoint at exit).

Options: ``--interval S`` periodic checkpoints; ``--deadline S``; ``--handler
MODE`` installs a SIGTERM handler before the boot (``exit7``: print and exit
with status 7); ``--startup-only`` boots with ``checkpoint_on_exit=False`` and
returns from ``main`` after the commands (the atexit checkpoint).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
import warnings
from typing import Any

import msgspec

import warmstart
from _common import boot_fields, emit

NAMESPACE = "kv"


class Item(msgspec.Struct):
    """One value of the service."""

    value: str
    written: int


ITEMS = warmstart.Contract("item", Item, key=str)


@warmstart.warm(items=ITEMS)
class Catalog:
    """Items in a TrackedDict, checkpointed as deltas."""

    def __init__(self) -> None:
        self.items: warmstart.TrackedDict[str, Item] = warmstart.TrackedDict()
        self.writes = 0

    def put(self, key: str, value: str) -> None:
        self.writes += 1
        self.items[key] = Item(value, self.writes)


BLOCKED = threading.Event()


def watermark() -> int:
    while BLOCKED.is_set():  # a checkpoint that cannot finish
        time.sleep(0.05)
    return 0


def exit7(signum: int, frame: Any) -> None:
    emit("handler", signal=signum)
    sys.exit(7)


def serve(catalog: Catalog, boot: warmstart.Boot) -> None:
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        match words:
            case ["put", *pairs]:
                for key, value in zip(pairs[::2], pairs[1::2]):
                    catalog.put(key, value)
                emit("put", count=len(pairs) // 2)
            case ["checkpoint"]:
                emit("checkpoint", generation=boot.checkpoint().generation)
            case ["stats"]:
                emit(
                    "stats",
                    checkpoints=boot.metrics.get("checkpoints_total"),
                    generation=boot.metrics.get("last_checkpoint_generation"),
                )
            case ["block"]:
                BLOCKED.set()
                emit("block")
            case ["exit"]:
                return
            case _:
                emit("error", line=line)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("--interval", type=float, default=None)
    parser.add_argument("--deadline", type=float, default=20.0)
    parser.add_argument("--handler", choices=["exit7"], default=None)
    parser.add_argument("--startup-only", action="store_true")
    args = parser.parse_args()
    if args.handler == "exit7":
        signal.signal(signal.SIGTERM, exit7)
    boot = warmstart.boot(
        args.store,
        namespace=NAMESPACE,
        interval=args.interval,
        deadline=args.deadline,
        watermark=watermark,
        checkpoint_on_exit=not args.startup_only,
    )
    warnings.simplefilter("always")  # report every warning, once per boot
    with warnings.catch_warnings(record=True) as caught, boot:
        catalog = Catalog()
        boot.wait_ready()
        emit(
            "booted",
            items={k: v.value for k, v in catalog.items.items()},
            warnings=[f"{w.category.__name__}: {w.message}" for w in caught],
            **boot_fields(boot),
        )
        if not args.startup_only:
            serve(catalog, boot)
    if args.startup_only:
        serve(catalog, boot)  # the boot stays armed: atexit saves
    emit("bye")


if __name__ == "__main__":
    main()
