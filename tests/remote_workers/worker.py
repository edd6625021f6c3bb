"""Child processes of the remote tests, run as ``python worker.py MODE ...``.

Modes (JSON lines on stdout):

* ``race STORE KIND ARG NAMESPACE WORKER ROUNDS START``: say it is ready, wait
  for the file START (a barrier, so every worker pushes at once), then per round save this
  worker's state for that round (its watermark names worker and round) and
  push it once; report each push's outcome. Conflicts are expected.
* ``push-kill STORE KIND ARG NAMESPACE KILL_AT``: push the store's head and
  SIGKILL this process once KILL_AT chunks have been uploaded.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import warmstart
from conftest import RECORDS, make_records
from remote_workers.servers import open_backend
from warmstart.remote import RemoteConflictError, push

RACE_ENTRIES = 400


def race_state(worker: int, round_: int) -> dict[str, object]:
    return make_records(RACE_ENTRIES, prefix=f"w{worker}-", salt=1000 * worker + round_)


def race(
    store_path: str, kind: str, arg: str, namespace: str, worker: int, rounds: int, start: str
) -> None:
    remote = open_backend(kind, arg)
    with warmstart.Store(store_path, sync=False) as store:
        print(json.dumps({"status": "ready"}), flush=True)
        deadline = time.monotonic() + 30
        while not Path(start).exists() and time.monotonic() < deadline:
            time.sleep(0.002)
        for round_ in range(rounds):
            store.save(
                namespace,
                {"records": (RECORDS, race_state(worker, round_))},
                watermark={"worker": worker, "round": round_},
            )
            try:
                report = push(store, remote, namespace)
            except RemoteConflictError:
                print(json.dumps({"round": round_, "status": "conflict"}), flush=True)
                continue
            print(
                json.dumps(
                    {"round": round_, "status": report.status, "generation": report.generation}
                ),
                flush=True,
            )
    remote.close()


def push_kill(store_path: str, kind: str, arg: str, namespace: str, kill_at: int) -> None:
    uploaded = 0

    def progress(p: object) -> None:
        nonlocal uploaded
        if getattr(p, "rate", 0.0) > 0:  # a chunk moved (the first report counts skips)
            uploaded += 1
            if uploaded >= kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    with warmstart.Store(store_path, sync=False) as store:
        push(store, open_backend(kind, arg), namespace, progress=progress)
    print(json.dumps({"status": "finished"}), flush=True)


def main(argv: list[str]) -> None:
    mode, *args = argv
    if mode == "race":
        store_path, kind, arg, namespace, worker, rounds, start = args
        race(store_path, kind, arg, namespace, int(worker), int(rounds), start)
    elif mode == "push-kill":
        store_path, kind, arg, namespace, kill_at = args
        push_kill(store_path, kind, arg, namespace, int(kill_at))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
