"""A service for the rolling-deploy tests (issue 18), driven over stdin and stdout.

``python rollout_service.py STORE [options]`` boots (signal handlers armed),
builds one ``Catalog`` and prints a ``booted`` JSON line: the boot report,
the hand-off report and the items it came back with. Then it answers
commands, one per stdin line, with one JSON line each:

* ``put KEY VALUE [KEY VALUE ...]``: write items;
* ``items``: the items it holds now;
* ``stats``: hand-off counters and the last checkpoint;
* ``slow S``: the next checkpoint takes S seconds more (its watermark waits),
  and says ``checkpointing`` when it starts;
* ``hold`` / ``release``: the next checkpoint says ``checkpointing`` and waits
  until ``release``;
* ``checkpoint``: checkpoint now;
* ``exit``: leave the ``with`` block (checkpoint at exit).

Releases (``--release``): ``v1`` stores ``Item(value)``; ``v2`` renamed the
field to ``text`` (release 1 cannot read it) and reads v1 through an
upgrader; ``v2auto`` is v2 with ``write_version="auto"`` (it writes v1 while a
v1 reader lives). Options: ``--handoff S``, ``--interval S``, ``--heartbeat S``
(``0``: none), ``--remote URL``, ``--namespace NS``.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import msgspec

import warmstart

sys.path.insert(0, str(Path(__file__).parent))
from _common import boot_fields, emit


class ItemV1(msgspec.Struct, frozen=True):
    """Release 1."""

    value: str


class ItemV2(msgspec.Struct, frozen=True):
    """Release 2: ``value`` renamed to ``text``."""

    text: str
    note: str = ""


def v1_to_v2(old: dict[str, Any]) -> dict[str, Any]:
    return {"text": old["value"], "note": "upgraded"}


V1 = warmstart.Contract("item", ItemV1, key=str, version=1)
V2 = warmstart.Contract("item", ItemV2, key=str, version=2, upgraders={1: v1_to_v2})
V2_AUTO = warmstart.Contract(
    "item",
    ItemV2,
    key=str,
    version=2,
    upgraders={1: v1_to_v2},
    write_version="auto",
    write_type=ItemV1,
    downgrader=lambda item: ItemV1(item.text),
)
RELEASES = {"v1": V1, "v2": V2, "v2auto": V2_AUTO}
SLOW = [0.0]
HOLD = threading.Event()  # set: the next checkpoint waits for RELEASE
RELEASE = threading.Event()


def watermark() -> int:
    """Called by every checkpoint: ``slow S`` or ``hold`` makes the next one wait."""
    delay, SLOW[0] = SLOW[0], 0.0
    if delay:
        emit("checkpointing", delay=delay)
        time.sleep(delay)
    if HOLD.is_set():
        HOLD.clear()
        emit("checkpointing", delay=None)
        RELEASE.wait(60)
    return 0


def make_catalog(contract: warmstart.Contract[Any]) -> Any:
    @warmstart.warm(items=warmstart.state(contract, lock="lock"))
    class Catalog:
        def __init__(self) -> None:
            self.items: warmstart.TrackedDict[str, Any] = warmstart.TrackedDict()
            self.lock = threading.Lock()

    return Catalog()


def value_of(item: Any) -> str:
    return item.value if isinstance(item, ItemV1) else item.text


def serve(catalog: Any, boot: warmstart.Boot, release: str) -> None:
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        match words:
            case ["put", *pairs]:
                for key, value in zip(pairs[::2], pairs[1::2]):
                    item = ItemV1(value) if release == "v1" else ItemV2(value)
                    with catalog.lock:
                        catalog.items[key] = item
                emit("put", count=len(pairs) // 2)
            case ["items"]:
                with catalog.lock:
                    emit("items", items={k: value_of(v) for k, v in catalog.items.items()})
            case ["stats"]:
                metrics = boot.metrics
                emit(
                    "stats",
                    requests=metrics.get("handoff_requests_total"),
                    handoff_checkpoints=metrics.get("handoff_checkpoints_total"),
                    checkpoints=metrics.get("checkpoints_total"),
                    generation=metrics.get("last_checkpoint_generation"),
                )
            case ["slow", seconds]:
                SLOW[0] = float(seconds)
                emit("slow", seconds=SLOW[0])
            case ["hold"]:
                RELEASE.clear()
                HOLD.set()
                emit("hold")
            case ["release"]:
                RELEASE.set()
                emit("release")
            case ["checkpoint"]:
                report = boot.checkpoint()
                emit("checkpoint", status=report.status, generation=report.generation)
            case ["exit"]:
                return
            case _:
                emit("error", line=line)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("--release", choices=sorted(RELEASES), default="v1")
    parser.add_argument("--namespace", default="catalog")
    parser.add_argument("--handoff", type=float, default=None)
    parser.add_argument("--interval", type=float, default=None)
    parser.add_argument("--heartbeat", type=float, default=10.0)
    parser.add_argument("--remote", default=None)
    args = parser.parse_args()
    boot = warmstart.boot(
        args.store,
        namespace=args.namespace,
        handoff=args.handoff,
        interval=args.interval,
        heartbeat=args.heartbeat or None,
        remote=args.remote,
        remote_deadline=5.0,
        watermark=watermark,
    )
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught, boot:
        catalog = make_catalog(RELEASES[args.release])
        boot.wait_ready()
        handoff = boot.handoff_report
        emit(
            "booted",
            release=args.release,
            items={k: value_of(v) for k, v in catalog.items.items()},
            handoff=None if handoff is None else msgspec.to_builtins(handoff),
            pull=getattr(boot.remote_outcomes.get("pull"), "status", None),
            warnings=[f"{w.category.__name__}: {w.message}" for w in caught],
            **boot_fields(boot),
        )
        serve(catalog, boot, args.release)
    emit("bye")


if __name__ == "__main__":
    main()
