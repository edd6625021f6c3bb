"""Crash safety: a process saving in a loop is killed with SIGKILL at random moments.

After every kill a fresh process loads the namespace. It must get exactly one
generation that had committed: the last one the writer reported committed, or
the one it was committing when it died (its commit may have landed before the
kill). Never a mix of two, never an error, never a fallback; and the store keeps
accepting saves. Generations are self-describing (see ``_workers.py``), so the
loading process checks every entry of every section against the generation its
watermark names.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import killed_env

WORKERS = Path(__file__).with_name("_workers.py")
#: Longest wait between the child's ready report and the kill; a save takes
#: about 30-80 ms here, so kills land before, inside and between commits.
MAX_DELAY = 0.35
#: Every this many kills, one is sent without waiting for the child to be
#: ready, so it may land while the store is being opened or loaded.
EARLY_EVERY = 5


@dataclasses.dataclass
class SideLog:
    """What the writers reported through the side file."""

    committed: int = 0
    generation: int = 0
    in_flight: int | None = None

    @classmethod
    def read(cls, path: Path) -> SideLog:
        log = cls()
        if not path.exists():
            return log
        for line in path.read_text().splitlines():
            match line.split():
                case ["begin", counter]:
                    log.in_flight = int(counter)
                case ["commit" | "loaded", counter, generation]:
                    log.committed, log.generation = int(counter), int(generation)
                    log.in_flight = None
                case _:
                    msg = f"malformed side-file line {line!r}"
                    raise AssertionError(msg)
        return log


@dataclasses.dataclass
class Campaign:
    """Counts of one crash campaign, for the assertion messages and the docs."""

    kills: int = 0
    early_kills: int = 0
    checked_loads: int = 0
    killed_mid_save: int = 0
    in_flight_committed: int = 0
    commits: int = 0
    seconds: float = 0.0


def check_report(report: dict[str, Any], before: SideLog, campaign: Campaign) -> None:
    """The loading process got exactly one committed generation, whole."""
    context = f"report {report} against side log {before}"
    assert "error" not in report, context
    assert report.get("problems", []) == [], context
    assert report.get("fallback", []) == [], context
    assert report["verify"] == [], context
    assert report["orphans"] == 0, context
    got = (report["counter"], report["generation"] or 0)
    last = (before.committed, before.generation)
    if got != last:
        assert before.in_flight is not None, context
        assert got == (before.in_flight, before.generation + 1), context
        campaign.in_flight_committed += 1
    campaign.checked_loads += 1


def spawn(
    store: Path, side: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKERS), "crash", str(store), str(side), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def read_line(child: subprocess.Popen[str], timeout: float = 60) -> str:
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], timeout)
    return child.stdout.readline() if ready else ""


def run_campaign(tmp_path: Path, kills: int, seed: int) -> Campaign:
    rng = random.Random(seed)
    store, side = tmp_path / "store", tmp_path / "side.log"
    campaign = Campaign()
    started = time.monotonic()
    for number in range(kills):
        before = SideLog.read(side)
        early = number % EARLY_EVERY == EARLY_EVERY - 1
        with spawn(store, side, env=killed_env()) as child:
            try:
                line = "" if early else read_line(child)
                time.sleep(rng.uniform(0, MAX_DELAY))
            finally:
                os.kill(child.pid, signal.SIGKILL)
                out, err = child.communicate(timeout=60)
        if not early:
            assert line, f"kill {number}: no report; stderr: {err}"
            check_report(json.loads(line), before, campaign)
        assert child.returncode == -signal.SIGKILL, f"kill {number}: child failed: {err}"
        if early and out.endswith("\n"):
            # The child got as far as loading: its report is checked too.
            check_report(json.loads(out.splitlines()[0]), before, campaign)
        campaign.kills += 1
        campaign.early_kills += early
        after = SideLog.read(side)
        campaign.killed_mid_save += after.in_flight is not None
    # A last process, not killed: it loads, checks and commits new generations.
    before = SideLog.read(side)
    with spawn(store, side, "3") as child:
        out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    report, done = (json.loads(line) for line in out.splitlines())
    check_report(report, before, campaign)
    assert done["saved"] == 3
    final = SideLog.read(side)
    assert (final.committed, final.in_flight) == (done["counter"], None)
    campaign.commits = final.generation
    campaign.seconds = time.monotonic() - started
    return campaign


def summary(campaign: Campaign, seed: int) -> str:
    return (
        f"crash campaign seed={seed}: {campaign.kills} SIGKILLs ({campaign.early_kills} early), "
        f"{campaign.killed_mid_save} during a save, of which {campaign.in_flight_committed} "
        f"had committed; {campaign.checked_loads} loads checked, all exact; "
        f"{campaign.commits} generations committed in {campaign.seconds:.1f} s"
    )


def new_seed() -> int:
    """A fresh seed per run (printed with the results), or WARMSTART_SEED to replay one."""
    return int(os.environ.get("WARMSTART_SEED", random.randrange(2**32)))


class TestCrash:
    def test_sigkill_during_saves(self, tmp_path: Path) -> None:
        """After each of 30 random SIGKILLs a new process loads exactly one committed generation."""
        seed = new_seed()
        campaign = run_campaign(tmp_path, kills=30, seed=seed)
        print(summary(campaign, seed))
        assert campaign.kills == 30
        assert campaign.checked_loads >= 25
        # The kills must really hit saves, or the test proves nothing.
        assert campaign.killed_mid_save > 0, summary(campaign, seed)

    @pytest.mark.slow
    def test_sigkill_during_saves_300(self, tmp_path: Path) -> None:
        """After each of 300 random SIGKILLs a new process loads one whole committed generation."""
        seed = new_seed()
        campaign = run_campaign(tmp_path, kills=300, seed=seed)
        print(summary(campaign, seed))
        assert campaign.kills == 300
        assert campaign.killed_mid_save > 10, summary(campaign, seed)
