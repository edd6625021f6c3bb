"""Hand-off in a rolling deploy (issue 18): how fresh is the state a successor restores?

A service (``benchmarks.handoff_service serve``) holds a warm cache and keeps
writing to it, checkpointing every ``interval`` seconds (30 in the full run).
Successors (``... probe``) start at several points of the interval, as a
rolling deploy would start them whenever it gets there, once without
hand-off and once with ``handoff=2.0``, and report the newest write they
restored. For each: the **age** of the restored state (ready time minus the
time of the newest write it holds) and the **writes missed** (writes the
service made before the successor was ready that it does not hold).

Two layouts: two processes on one host sharing a store; and two hosts,
simulated by two stores sharing a real ``redis-server`` on loopback (each
successor starts on an empty store and pulls). Also measured: what hand-off
costs a boot with nobody to ask, and what a listening service costs idle.

``python -m benchmarks.handoff [--quick]``
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks._common import ROOT, Check, Report, Table, finish, median

HANDOFF = 2.0


class Service:
    """The serving process, spoken to over stdin/stdout JSON lines."""

    def __init__(self, store: Path, options: dict[str, Any]) -> None:
        self.proc = _popen("serve", store, options, stdin=subprocess.PIPE)
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.lines.put(json.loads(line))
        self.lines.put(None)

    def read(self, event: str, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            message = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if message is None:
                msg = f"the service ended before {event!r}"
                raise RuntimeError(msg)
            if message["event"] == event:
                return message

    def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read(command.split(maxsplit=1)[0])

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("exit\n")
            self.proc.stdin.flush()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


def _popen(mode: str, store: Path, options: dict[str, Any], **kwargs: Any) -> Any:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.handoff_service", mode, str(store), json.dumps(options)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
        **kwargs,
    )


def _probe(store: Path, options: dict[str, Any]) -> dict[str, Any]:
    proc = _popen("probe", store, options)
    out, _ = proc.communicate(timeout=120)
    if proc.returncode != 0:
        msg = f"probe failed ({proc.returncode})"
        raise RuntimeError(msg)
    return next(
        json.loads(line) for line in out.splitlines() if line.startswith('{"event": "probe"')
    )


def _measure(service: Service, store: Path, options: dict[str, Any]) -> dict[str, Any]:
    """One successor: its restore, and what it missed of the service's writes."""
    probe = _probe(store, options)
    written = service.ask(f"seq_at {probe['ready_at']}")["seq"]
    newest = probe["newest_seq"] or 0
    probe["missed"] = max(0, written - newest)
    probe["age"] = probe["ready_at"] - (probe["newest_at"] or probe["ready_at"])
    return probe


def _wait_until(wall: float) -> None:
    time.sleep(max(0.0, wall - time.time()))


def run_layout(
    name: str,
    workdir: Path,
    *,
    interval: float,
    phases: tuple[float, ...],
    entries: int,
    rate: float,
    remote: str | None,
) -> list[dict[str, Any]]:
    """The service under load, then successors at ``phases`` seconds after a periodic
    checkpoint: one interval without hand-off, the next one with it."""
    home = workdir / name / "service"
    service = Service(
        home,
        {
            "interval": interval,
            "handoff": HANDOFF,
            "entries": entries,
            "rate": rate,
            "remote": remote,
        },
    )
    results: list[dict[str, Any]] = []
    try:
        service.read("booted")
        for handoff in (None, HANDOFF):
            tick = service.read("checkpoint")["at"]  # a periodic checkpoint starts
            for i, phase in enumerate(phases):
                _wait_until(tick + phase)
                # One host: the service's own store; two hosts: an empty store each time.
                store = home if remote is None else workdir / name / f"host-{handoff}-{i}"
                options = {"handoff": handoff, "remote": remote}
                probe = _measure(service, store, options)
                probe.update(layout=name, handoff=handoff, phase=phase)
                results.append(probe)
                if handoff is not None:
                    service.read("checkpoint")  # the hand-off checkpoint it answered with
    finally:
        service.stop()
    return results


def idle_cost(workdir: Path, seconds: float) -> list[list[Any]]:
    """CPU a service spends while idle: plain, with reader records, with hand-off too."""
    rows = []
    for label, options in (
        ("no records, no hand-off", {"heartbeat": None}),
        ("reader records (heartbeat 10 s)", {}),
        ("records + hand-off listener", {"handoff": HANDOFF}),
    ):
        service = Service(workdir / f"idle-{len(rows)}", {"entries": 1000, "rate": 0, **options})
        try:
            service.read("booted")
            time.sleep(min(1.0, seconds))  # past the start-up work
            before = service.ask("cpu")["seconds"]
            time.sleep(seconds)
            after = service.ask("cpu")["seconds"]
        finally:
            service.stop()
        rows.append([label, 1000 * (after - before) / seconds * 60])
    return rows


def no_listener(workdir: Path) -> dict[str, float]:
    """A boot with hand-off and nobody to ask: the extra seconds it waits."""
    store = workdir / "alone"
    first = _probe(store, {"handoff": HANDOFF})
    return {"handoff_seconds": first["handoff_seconds"], "boot_seconds": first["boot_seconds"]}


@contextmanager
def _redis(workdir: Path) -> Iterator[str]:
    from benchmarks.remote import redis_server

    with redis_server(workdir) as url:
        yield url


#: interval (s), successor start phases (s after a periodic checkpoint), cache entries,
#: writes per second, idle window (s), and whether the two-host layout runs.
PRESETS: dict[str, dict[str, Any]] = {
    "full": {
        "interval": 30.0,
        "phases": (3.0, 9.0, 15.0, 21.0, 27.0),
        "entries": 100_000,
        "rate": 1000.0,
    },
    "quick": {"interval": 3.0, "phases": (0.5, 1.5, 2.5), "entries": 5_000, "rate": 200.0},
    "tiny": {"interval": 1.0, "phases": (0.5,), "entries": 1_000, "rate": 100.0},
}
#: Seconds each idle service is watched (none at the toy size).
_IDLE = {"full": 20.0, "quick": 2.0, "tiny": 0.0}


def bench_handoff(preset: str, workdir: Path, *, two_hosts: bool = True) -> Report:
    sizes = PRESETS[preset]
    interval, phases, entries, rate = (sizes[k] for k in ("interval", "phases", "entries", "rate"))
    results = run_layout("one host", workdir, remote=None, **sizes)
    layouts = ["one host"]
    if two_hosts:
        layouts.append("two hosts (Redis)")
        with _redis(workdir) as url:
            results += run_layout(layouts[1], workdir, remote=f"{url}?prefix=bench:", **sizes)
    idle = _IDLE[preset]
    report = Report("Hand-off in a rolling deploy")
    rows = []
    for layout in layouts:
        for handoff in (None, HANDOFF):
            runs = [r for r in results if r["layout"] == layout and r["handoff"] == handoff]
            ages = [r["age"] for r in runs]
            missed = [r["missed"] for r in runs]
            rows.append(
                [
                    layout,
                    "no" if handoff is None else f"handoff={handoff:g}",
                    median(ages),
                    max(ages),
                    int(median(missed)),
                    max(missed),
                    median([r["handoff_seconds"] or 0.0 for r in runs]),
                    median([r["boot_seconds"] for r in runs]),
                ]
            )
    report.tables.append(
        Table(
            f"Successor started {', '.join(f'{p:g}' for p in phases)} s after a periodic "
            f"checkpoint (interval {interval:g} s), service writing {rate:g} entries/s "
            f"into {entries:,} (median and max of {len(phases)})",
            [
                "layout",
                "hand-off",
                "state age (s)",
                "max age (s)",
                "writes missed",
                "max missed",
                "hand-off wait (s)",
                "boot to ready (s)",
            ],
            rows,
            note=(
                "State age: ready time minus the time of the newest write restored. Writes "
                "missed: writes the service made before the successor was ready that the "
                "successor does not hold. Two hosts: two stores and one redis-server on "
                "loopback; each successor starts on an empty store and pulls."
            ),
        )
    )
    alone = no_listener(workdir)
    idle_rows = idle_cost(workdir, idle) if idle else []
    report.tables.append(
        Table(
            "What hand-off costs when nobody asks",
            ["case", "value"],
            [
                [
                    "boot with handoff=2 and nobody to ask: hand-off wait (ms)",
                    1000 * alone["handoff_seconds"],
                ],
                *[[f"idle service, {label}: CPU ms per minute", ms] for label, ms in idle_rows],
            ],
        )
    )
    for layout in layouts:
        runs = [r for r in results if r["layout"] == layout]
        age = median([r["age"] for r in runs if r["handoff"] is not None])
        report.checks.append(
            Check(
                f"{layout}: median age of the state restored with hand-off", age, "< 2 s", age < 2.0
            )
        )
        missed = [
            median([r["missed"] for r in runs if (r["handoff"] is None) is off])
            for off in (False, True)
        ]
        ratio = missed[0] / missed[1] if missed[1] else float("nan")
        report.checks.append(
            Check(
                f"{layout}: writes missed, with hand-off / without (medians)",
                ratio,
                "< 10%",
                ratio < 0.1,
            )
        )
    report.checks.append(
        Check(
            "hand-off wait with nobody to ask",
            alone["handoff_seconds"],
            "< 0.05 s",
            alone["handoff_seconds"] < 0.05,
        )
    )
    report.raw["runs"] = results
    report.raw["idle"] = idle_rows
    report.raw["alone"] = alone
    return report


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.handoff", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="interval 3 s, 5,000 entries")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="warmstart-handoff-"))
    try:
        report = bench_handoff("quick" if args.quick else "full", workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return finish(report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
