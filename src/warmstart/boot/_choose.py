"""Which generation a boot restores from, or why it starts cold.

Private to the boot wing. The checks run in this order, each a reason to
start cold: the crash-loop breaker (a boot died restoring the head), no
generation at all, ``max_age``, and ``validate()`` against the source of
truth. A checkpoint ``validate()`` refuses, with ``refresh`` given, is
*stale*: its values stay cold, but the boot keeps it to reload the keys that
were hot. The boot applies the :class:`Choice` to its own state.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import msgspec

from warmstart.errors import CheckpointNotFoundError

if TYPE_CHECKING:
    from warmstart.boot._breaker import CrashLoopBreaker
    from warmstart.boot._settings import BootSettings
    from warmstart.metrics import BootReport
    from warmstart.store import Snapshot, Store

__all__ = ("Choice", "choose_generation")

log = logging.getLogger("warmstart.boot")


class Choice(msgspec.Struct, frozen=True):
    """What :func:`choose_generation` found."""

    #: The generation opened (None: none to restore from).
    snapshot: Snapshot | None = None
    #: Why the boot starts cold (None: it restores ``snapshot``).
    cold: str | None = None
    #: The cold start is a failure (warned), not a plain miss.
    failure: bool = False
    #: ``validate()`` refused ``snapshot`` and ``refresh`` reloads its hot keys.
    stale: bool = False


def choose_generation(
    store: Store, settings: BootSettings, breaker: CrashLoopBreaker, report: BootReport
) -> Choice:
    """The generation to restore from, filling ``report``'s generation fields.

    Raises:
        CheckpointNotFoundError: generations exist and none verifies (damage,
            which the boot reports as a failed cold start).
    """
    crashed = breaker.check(store, report)
    if crashed is not None:
        # Do not risk a second crash on the same data: start cold this once.
        return Choice(cold=f"crash-loop breaker: {crashed}", failure=True)
    try:
        snapshot = store.load(settings.namespace)
    except CheckpointNotFoundError as exc:
        if exc.skipped:  # generations exist, none verifies: damage
            raise
        return Choice(cold="no checkpoint yet")
    report.generation = snapshot.generation
    report.generation_age = snapshot.age(settings.clock())
    report.watermark = snapshot.watermark
    report.fallback = list(snapshot.fallback)
    report.status = "warm"
    report.reason = (
        f"newest generation that verifies ({len(snapshot.fallback)} skipped)"
        if snapshot.fallback
        else "head generation"
    )
    if settings.max_age is not None and report.generation_age > settings.max_age:
        return Choice(
            snapshot,
            cold=f"generation {snapshot.generation} is {report.generation_age:.0f}s old, "
            f"max_age is {settings.max_age:.0f}s",
        )
    if settings.validate is None or _validated(settings, snapshot.watermark):
        return Choice(snapshot)
    stale = f"watermark {snapshot.watermark!r} rejected by validate()"
    if settings.refresh is None:
        return Choice(snapshot, cold=stale)
    # Values stay cold, but the keys that were hot are worth reloading.
    report.status = "cold"
    report.reason = f"{stale}; refresh() reloads the keys that were hot"
    log.info(
        "namespace %r starts cold: %s",
        settings.namespace,
        report.reason,
        extra={"namespace": settings.namespace},
    )
    return Choice(snapshot, stale=True)


def _validated(settings: BootSettings, watermark: Any) -> bool:
    assert settings.validate is not None
    try:
        return bool(settings.validate(watermark))
    except Exception as exc:
        if settings.strict:
            raise
        log.warning("validate() raised %r; treating the checkpoint as stale", exc)
        return False
