"""Child processes of the reliability tests, run as ``python _workers.py MODE ...``.

Every generation these workers save is self-describing: each value carries the
counter of the generation that wrote it, the watermark is that counter, and the
content of generation ``n`` is a pure function of ``n`` (and of the writer, for
the concurrency workers). A reader can therefore tell, from the snapshot alone,
whether it holds exactly one committed generation or a mix of several.

Modes (each prints JSON lines on stdout):

* ``crash STORE SIDE [MAX_SAVES]``: load the namespace and report what it holds
  (then log it as committed), then save generations in a loop, logging to the
  side file (fsynced) the counter it is about to commit and then the one it
  committed. The parent kills it with SIGKILL at a random moment.
* ``build STORE GENERATIONS``: save that many generations (the corruption base).
* ``probe STORE...``: for each (possibly damaged) store, load, read every
  section, check the content, run verify, then try a save; report the outcome.
* ``concurrency STORE WORKER SECONDS``: save and load its own namespace, the
  others' and a shared one until the deadline; check every read.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec

import warmstart

NAMESPACE = "crash"
#: Keys the tracked (delta-saved) section cycles through.
TRACKED_KEYS = 300


class Item(msgspec.Struct):
    """One value; ``gen`` is the counter of the generation that wrote it."""

    gen: int
    index: int
    payload: str


ITEMS = warmstart.Contract("item", Item, key=str)


def _payload(counter: int, index: int) -> str:
    # Hash text compresses poorly, so the store is mostly live chunk bytes.
    seed = f"{counter}:{index}".encode()
    return f"{counter}:{index}:" + hashlib.blake2b(seed, digest_size=16).hexdigest()


def full_a(counter: int) -> dict[str, Item]:
    """A section whose size changes with the counter; every value carries it."""
    return {f"a{i}": Item(counter, i, _payload(counter, i)) for i in range(400 + counter % 97)}


def full_b(counter: int) -> dict[str, Item]:
    """A section whose keys change with the counter."""
    return {f"b{counter}-{i}": Item(counter, i, _payload(counter, -i)) for i in range(60)}


def tracked_step(state: Any, counter: int, writer: int = 0) -> None:
    """Generation ``counter``'s change to the tracked section: 5 upserts, 1 delete.

    A rewritten key is removed first, so it moves to the end, as delta replay
    does: the expected order is then the stored order.
    """
    for j in range(5):
        key = f"t{(counter * 7 + j * 61 + writer * 13) % TRACKED_KEYS}"
        state.pop(key, None)
        state[key] = Item(counter, j, _payload(counter, j + writer))
    state.pop(f"t{(counter * 13 + 29 + writer) % TRACKED_KEYS}", None)


def tracked_expected(counter: int, writer: int = 0) -> dict[str, Item]:
    """The tracked section as generation ``counter`` holds it."""
    state: dict[str, Item] = {}
    for step in range(1, counter + 1):
        tracked_step(state, step, writer)
    return state


def sections(counter: int, tracked: Any) -> dict[str, Any]:
    return {
        "full_a": (ITEMS, full_a(counter)),
        "tracked": (ITEMS, tracked),
        "full_b": (ITEMS, full_b(counter)),
    }


def check_snapshot(snapshot: warmstart.store.Snapshot, writer: int | None = None) -> list[str]:
    """Every way the snapshot differs from the generation its watermark names.

    The watermark is the counter, or ``[writer, counter]`` when several
    processes write; ``writer`` is the one expected, when known.
    """
    mark = snapshot.watermark
    who, counter = mark if isinstance(mark, list) else (0, mark)
    problems: list[str] = []
    if writer is not None and who != writer:
        problems.append(f"written by {who}, expected {writer}")
    if snapshot.sections != ("full_a", "tracked", "full_b"):
        problems.append(f"sections {snapshot.sections}")
    expected: dict[str, Callable[[], dict[str, Item]]] = {
        "full_a": lambda: full_a(counter),
        "tracked": lambda: tracked_expected(counter, who),
        "full_b": lambda: full_b(counter),
    }
    for name, build in expected.items():
        got = snapshot.section(name, ITEMS)
        want = build()
        if list(got.items()) != list(want.items()):
            gens = sorted({v.gen for v in got.values()})
            problems.append(
                f"{name}: {len(got)} entries from generations {gens[:5]}, expected "
                f"{len(want)} of generation {counter}"
            )
    if snapshot.manifest.tags.get("counter") != str(counter):
        problems.append(f"tags {snapshot.manifest.tags}")
    return problems


def emit(record: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def _log(side: Any, line: str) -> None:
    side.write(line + "\n")
    side.flush()
    os.fsync(side.fileno())


# -- crash ----------------------------------------------------------------------


def crash(store_path: str, side_path: str, max_saves: int = -1) -> None:
    with warmstart.Store(store_path, keep=3) as store:
        report: dict[str, Any] = {"pid": os.getpid()}
        tracked: warmstart.TrackedDict[str, Item] = warmstart.TrackedDict()
        counter = 0
        try:
            with store.load(NAMESPACE) as snapshot:
                counter = snapshot.watermark
                report.update(
                    generation=snapshot.generation,
                    counter=counter,
                    fallback=list(snapshot.fallback),
                    problems=check_snapshot(snapshot),
                )
                tracked = warmstart.TrackedDict(snapshot.section("tracked", ITEMS))
                store.mark_baseline(NAMESPACE, "tracked", tracked, snapshot.generation)
        except warmstart.CheckpointNotFoundError:
            report.update(generation=None, counter=0)
        except Exception as exc:  # reported, the parent fails the test
            report.update(error=f"{type(exc).__name__}: {exc}")
            emit(report)
            return
        verify = store.verify()
        report.update(verify=[str(p) for p in verify.problems], orphans=verify.orphans)
        emit(report)
        saves = 0
        with Path(side_path).open("a") as side:
            # What was loaded is committed, whether or not its writer lived to
            # log it; logged after the report, so the parent has checked it.
            _log(side, f"loaded {counter} {report['generation'] or 0}")
            while saves != max_saves:
                counter += 1
                tracked_step(tracked, counter)
                _log(side, f"begin {counter}")
                generation = store.save(
                    NAMESPACE,
                    sections(counter, tracked),
                    watermark=counter,
                    tags={"counter": str(counter)},
                )
                _log(side, f"commit {counter} {generation}")
                saves += 1
        emit({"saved": saves, "counter": counter})


# -- corruption -------------------------------------------------------------------


def build(store_path: str, generations: int, secret: bytes | None = None) -> None:
    with warmstart.Store(store_path, keep=3, sync=False, secret=secret) as store:
        tracked: warmstart.TrackedDict[str, Item] = warmstart.TrackedDict()
        for counter in range(1, generations + 1):
            tracked_step(tracked, counter)
            store.save(
                NAMESPACE,
                sections(counter, tracked),
                watermark=counter,
                tags={"counter": str(counter)},
            )
    emit({"built": generations})


def probe(store_path: str) -> None:
    """Load a damaged store the way a booting service would, then save into it."""
    record: dict[str, Any] = {"store": store_path, "step": "load"}
    try:
        store = warmstart.Store(store_path, keep=3, sync=False)
    except warmstart.WarmstartError as exc:
        emit({**record, "outcome": "clean_error", "error": f"{type(exc).__name__}: {exc}"})
        return
    except Exception as exc:
        emit({**record, "outcome": "unclean_error", "error": f"{type(exc).__name__}: {exc}"})
        return
    with store:
        try:
            with store.load(NAMESPACE) as snapshot:
                problems = check_snapshot(snapshot)
                record.update(generation=snapshot.generation, fallback=list(snapshot.fallback))
            report = store.verify()
            record.update(verify=[str(p) for p in report.problems][:3])
            if problems:
                record.update(outcome="wrong_data", problems=problems)
            elif snapshot.fallback:
                record.update(outcome="fell_back")
            elif report.problems:
                record.update(outcome="detected_by_verify")
            else:
                record.update(outcome="no_effect")
        except warmstart.WarmstartError as exc:
            record.update(outcome="clean_error", error=f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            record.update(outcome="unclean_error", error=f"{type(exc).__name__}: {exc}")
        emit(record)
        saved: dict[str, Any] = {"store": store_path, "step": "save"}
        try:
            tracked: warmstart.TrackedDict[str, Item] = warmstart.TrackedDict(tracked_expected(99))
            store.save(NAMESPACE, sections(99, tracked), watermark=99, tags={"counter": "99"})
            with store.load(NAMESPACE) as snapshot:
                problems = check_snapshot(snapshot)
            saved.update(outcome="wrong_data" if problems else "saved", problems=problems)
        except warmstart.WarmstartError as exc:
            saved.update(outcome="clean_error", error=f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            saved.update(outcome="unclean_error", error=f"{type(exc).__name__}: {exc}")
        emit(saved)


# -- concurrency ------------------------------------------------------------------


def concurrency(store_path: str, worker: int, seconds: float, workers: int) -> None:
    """Save and read until the deadline; report every inconsistency seen."""
    rng = random.Random(worker)
    own = f"own-{worker}"
    problems: list[str] = []
    shared_gens: list[int] = []
    seen: dict[str, int] = {}
    own_tracked: warmstart.TrackedDict[str, Item] = warmstart.TrackedDict()
    shared_tracked: warmstart.TrackedDict[str, Item] = warmstart.TrackedDict()
    counter = 0
    last_own = 0
    loads = 0

    def read(namespace: str, writer: int | None) -> None:
        nonlocal loads
        try:
            snapshot = store.load(namespace)
        except warmstart.CheckpointNotFoundError:
            return  # not written yet
        with snapshot:
            loads += 1
            found = check_snapshot(snapshot, writer=writer)
            problems.extend(f"{namespace} g{snapshot.generation}: {p}" for p in found)
            if snapshot.fallback:
                problems.append(f"{namespace}: fell back {snapshot.fallback}")
            if snapshot.generation < seen.get(namespace, 0):
                problems.append(
                    f"{namespace}: generation went back from {seen[namespace]} "
                    f"to {snapshot.generation}"
                )
            seen[namespace] = snapshot.generation
            if namespace == own and snapshot.generation != last_own:
                problems.append(f"{own}: head {snapshot.generation}, committed {last_own}")

    deadline = time.monotonic() + seconds
    with warmstart.Store(store_path, keep=3) as store:
        while time.monotonic() < deadline:
            counter += 1
            mark = [worker, counter]
            tags = {"counter": str(counter)}
            tracked_step(own_tracked, counter, worker)
            last_own = store.save(own, sections(counter, own_tracked), watermark=mark, tags=tags)
            read(own, worker)
            tracked_step(shared_tracked, counter, worker)
            shared_gens.append(
                store.save("shared", sections(counter, shared_tracked), watermark=mark, tags=tags)
            )
            read("shared", None)
            other = rng.randrange(workers)
            read(f"own-{other}", other)
        emit(
            {
                "worker": worker,
                "saves": 2 * counter,
                "loads": loads,
                "last_own": last_own,
                "counter": counter,
                "shared": shared_gens,
                "problems": problems[:20],
                "problem_count": len(problems),
            }
        )


def main(argv: list[str]) -> None:
    mode, *args = argv
    if mode == "crash":
        crash(args[0], args[1], int(args[2]) if len(args) > 2 else -1)
    elif mode == "build":
        build(args[0], int(args[1]))
    elif mode == "probe":
        for path in args:
            probe(path)
    elif mode == "concurrency":
        concurrency(args[0], int(args[1]), float(args[2]), int(args[3]))
    else:
        msg = f"unknown mode {mode!r}"
        raise SystemExit(msg)


if __name__ == "__main__":
    main(sys.argv[1:])
