"""Reports of what came back warm, and counters an exporter can read.

Every boot yields a :class:`BootReport`: the generation used and why (or why
the service started cold), and per section the entries restored, upgraded,
dropped as invalid or expired, skipped for capacity, bytes and seconds. It is
logged through :mod:`logging` with structured fields (``extra=``), and the
numbers are mirrored in :class:`Metrics`, plain counters and gauges that the
optional Prometheus exporter (``warmstart[prometheus]``) or any other code can
read without extra dependencies.

>>> report = BootReport(namespace="svc", status="cold", reason="no checkpoint yet")
>>> report.warm_fraction
0.0
"""

from __future__ import annotations

import logging
import threading
import warnings
from typing import Any, Literal

import msgspec

from warmstart._api import claim
from warmstart._hits import HitCounter, counter_of
from warmstart.errors import ColdStartWarning

__all__ = (  # BootReport and counted: top level
    "CheckpointReport",
    "HitCounter",
    "Metrics",
    "SectionReport",
    "counter_of",
)


def __dir__() -> tuple[str, ...]:
    return __all__


log = logging.getLogger("warmstart.boot")

Status = Literal["warm", "partial", "warming", "cold"]


def warn_cold_start(message: str, *, stacklevel: int) -> None:
    """Report a failed warm path once: as a ``ColdStartWarning``, or a WARNING record.

    A warning filter set to ``error`` (``python -W error``, pytest's
    ``filterwarnings = error``) turns the warning into an exception; a cold
    start must never become a crash (issue 12), so then the same message is
    logged instead. ``stacklevel`` counts from the caller of this function.
    """
    try:
        warnings.warn(message, ColdStartWarning, stacklevel=stacklevel + 1)
    except ColdStartWarning:
        log.warning(message)


class SectionReport(msgspec.Struct):
    """One section of one attached object, as the boot restored it."""

    name: str
    status: Status = "cold"
    reason: str = ""
    saved: int = 0
    restored: int = 0
    upgraded: int = 0
    dropped_invalid: int = 0
    dropped_expired: int = 0
    skipped_capacity: int = 0
    skipped_live: int = 0
    prefetched: int = 0
    #: Entries merged in from other workers' slots (``boot(pool=...)``).
    pooled: int = 0
    bytes: int = 0
    seconds: float = 0.0
    errors: list[str] = msgspec.field(default_factory=list)

    def summary(self) -> str:
        """One human line: status, entries restored, and what was left out."""
        return (
            f"{self.name}: {self.status}, {self.restored}/{self.saved} restored"
            + (f", {self.upgraded} upgraded" if self.upgraded else "")
            + (f", {self.dropped_invalid} invalid" if self.dropped_invalid else "")
            + (f", {self.dropped_expired} expired" if self.dropped_expired else "")
            + (f", {self.skipped_capacity} over capacity" if self.skipped_capacity else "")
            + (f", {self.pooled} from the pool" if self.pooled else "")
            + (f" - {self.reason}" if self.reason else "")
        )


#: Checkpoint reports a BootReport keeps.
KEEP_CHECKPOINTS = 32


class BootReport(msgspec.Struct):
    """What a boot did: the generation used and why, and every section's fate."""

    namespace: str
    status: Status = "cold"
    reason: str = ""
    generation: int | None = None
    generation_age: float | None = None
    watermark: Any = None
    fallback: list[str] = msgspec.field(default_factory=list)
    sections: dict[str, SectionReport] = msgspec.field(default_factory=dict)
    #: Seconds from entering boot() until the hot part of every section was in place.
    time_to_ready: float | None = None
    #: Seconds until the background restore finished too.
    time_to_warm: float | None = None
    #: The shared pool (``boot(pool=...)``): each other worker's namespace and
    #: what was taken from it ("generation 12, 3s old") or why not.
    pool: dict[str, str] = msgspec.field(default_factory=dict)
    #: The latest checkpoints (at most ``KEEP_CHECKPOINTS``), oldest first.
    checkpoints: list[CheckpointReport] = msgspec.field(default_factory=list)

    def add_checkpoint(self, report: CheckpointReport) -> None:
        """Remember one checkpoint (the oldest is forgotten past ``KEEP_CHECKPOINTS``)."""
        self.checkpoints.append(report)
        del self.checkpoints[:-KEEP_CHECKPOINTS]

    @property
    def restored(self) -> int:
        """Entries restored across all sections."""
        return sum(s.restored for s in self.sections.values())

    @property
    def warm_fraction(self) -> float:
        """Restored entries over saved entries (0.0 when nothing was saved)."""
        saved = sum(s.saved for s in self.sections.values())
        return self.restored / saved if saved else 0.0

    def summary(self) -> str:
        """One human line per section, preceded by the overall outcome."""
        lines = [
            f"warmstart {self.namespace!r}: {self.status}"
            + (f" from generation {self.generation}" if self.generation is not None else "")
            + (f" ({self.reason})" if self.reason else "")
        ]
        lines.extend(f"  {s.summary()}" for s in self.sections.values())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


CheckpointStatus = Literal["saved", "partial", "failed", "skipped", "nothing"]


class CheckpointReport(msgspec.Struct, frozen=True, kw_only=True):
    """One checkpoint, as ``boot.checkpoint()`` returns it, with what it cost the service.

    ``status`` is ``"saved"`` (every attached section), ``"partial"`` (some
    sections failed and kept their previous state: see ``failed``),
    ``"failed"`` (no generation written: see ``error``), ``"skipped"`` (this
    process has changed nothing since its restore and another process wrote
    the head since), or ``"nothing"`` (no object attached).

    ``cpu_seconds`` is the CPU time of the checkpointing thread, about the time
    it held the GIL (compression runs in another thread, without it).
    ``longest_hold_seconds`` is the longest stretch of that CPU between two
    points where it let the service's threads run: about the longest time a
    request thread or an event loop waited for it, as long as the thread
    kept its CPU. Time the kernel or a hypervisor took the CPU away while the
    thread held the GIL is not CPU time: other threads waited through it,
    and it is not counted here (docs/benchmarks.md, "The host's floor").
    ``longest_collection_seconds`` is the longest garbage collection the
    checkpointing thread ran meanwhile, part of one of those stretches: a
    young collection walks every object the service made since the last
    one, and runs in whichever thread's allocation comes next, so a long
    hold that is mostly a collection is the service's own pause.
    """

    namespace: str
    generation: int | None
    seconds: float
    #: Why it ran: ``"checkpoint"``, ``"periodic"``, ``"exit"``, ``"SIGTERM"``...
    reason: str
    status: CheckpointStatus = "saved"
    error: str | None = None
    saved: tuple[str, ...] = ()
    #: Sections kept as they were in the head (not claimed in this run, or failed now).
    carried: tuple[str, ...] = ()
    #: Section -> why it was not saved.
    failed: dict[str, str] = msgspec.field(default_factory=dict)
    cpu_seconds: float = 0.0
    longest_hold_seconds: float = 0.0
    longest_collection_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether a generation holding every attached section was written."""
        return self.status == "saved"


class Metrics:
    """Counters and gauges of one boot, safe to read from any thread.

    Counters only grow; gauges hold the latest value. Names follow Prometheus
    conventions so the exporter maps them one to one.
    """

    COUNTERS = (
        "restore_entries_total",
        "restore_upgraded_total",
        "restore_dropped_invalid_total",
        "restore_dropped_expired_total",
        "restore_fallbacks_total",
        "cold_sections_total",
        "checkpoints_total",
        "checkpoint_failures_total",
        "checkpoint_section_failures_total",
        "checkpoints_skipped_total",
        "checkpoint_seconds_total",
        "checkpoint_cpu_seconds_total",
        "warm_hits_total",
        "lookups_total",
        "handoff_requests_total",
        "handoff_checkpoints_total",
    )
    GAUGES = (
        "restore_seconds",
        "time_to_ready_seconds",
        "readiness",
        "last_checkpoint_seconds",
        "last_checkpoint_cpu_seconds",
        "last_checkpoint_longest_hold_seconds",
        "checkpoint_longest_hold_seconds_max",
        "last_checkpoint_longest_collection_seconds",
        "last_checkpoint_generation",
        "last_checkpoint_bytes",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, float] = dict.fromkeys(self.COUNTERS + self.GAUGES, 0.0)
        self._counters: list[HitCounter] = []

    def inc(self, name: str, amount: float = 1.0) -> None:
        """Add to a counter."""
        with self._lock:
            self._values[name] += amount

    def set(self, name: str, value: float) -> None:
        """Set a gauge."""
        with self._lock:
            self._values[name] = value

    def watch(self, counter: HitCounter) -> None:
        """Add a counted container's lookups to ``warm_hits_total`` and ``lookups_total``."""
        with self._lock:
            if all(c is not counter for c in self._counters):
                self._counters.append(counter)

    def get(self, name: str) -> float:
        """Read one value."""
        return self.snapshot()[name]

    def snapshot(self) -> dict[str, float]:
        """All values at once, consistent with each other."""
        with self._lock:
            values = dict(self._values)
            for counter in self._counters:
                values["warm_hits_total"] += counter.hits
                values["lookups_total"] += counter.lookups
            return values

    @property
    def warm_hit_fraction(self) -> float:
        """Lookups served by restored entries, over counted lookups."""
        values = self.snapshot()
        lookups = values["lookups_total"]
        return values["warm_hits_total"] / lookups if lookups else 0.0

    def record_section(self, section: SectionReport) -> None:
        """Fold one finished section into the counters and log it."""
        self.inc("restore_entries_total", section.restored)
        self.inc("restore_upgraded_total", section.upgraded)
        self.inc("restore_dropped_invalid_total", section.dropped_invalid)
        self.inc("restore_dropped_expired_total", section.dropped_expired)
        if section.status == "cold":
            self.inc("cold_sections_total")
        log.info(
            "section %s",
            section.summary(),
            extra={
                "section": section.name,
                "status": section.status,
                "restored": section.restored,
                "seconds": section.seconds,
            },
        )

    def record_boot(self, report: BootReport) -> None:
        """Fold a boot report (its finished sections too) into the counters and log it.

        A boot calls it when its generation is chosen, before any section,
        and folds each section in with :meth:`record_section` as it finishes.
        """
        for section in report.sections.values():
            if section.status != "warming":
                self.record_section(section)
        self.inc("restore_fallbacks_total", len(report.fallback))
        if report.time_to_ready is not None:
            self.set("time_to_ready_seconds", report.time_to_ready)
        log.info(
            "%s",
            report.summary(),
            extra={
                "namespace": report.namespace,
                "status": report.status,
                "generation": report.generation,
                "restored": report.restored,
                "fallbacks": len(report.fallback),
            },
        )

    def record_checkpoint(self, report: CheckpointReport, stored_bytes: int = 0) -> None:
        """Fold one checkpoint into the counters."""
        self.inc("checkpoints_total")
        self.inc("checkpoint_seconds_total", report.seconds)
        self.inc("checkpoint_cpu_seconds_total", report.cpu_seconds)
        self.set("last_checkpoint_seconds", report.seconds)
        self.set("last_checkpoint_cpu_seconds", report.cpu_seconds)
        self.set("last_checkpoint_longest_hold_seconds", report.longest_hold_seconds)
        self.set("last_checkpoint_longest_collection_seconds", report.longest_collection_seconds)
        with self._lock:
            worst = self._values["checkpoint_longest_hold_seconds_max"]
            self._values["checkpoint_longest_hold_seconds_max"] = max(
                worst, report.longest_hold_seconds
            )
        if report.status == "skipped":
            self.inc("checkpoints_skipped_total")
            return
        if report.failed:
            self.inc("checkpoint_section_failures_total", len(report.failed))
        if report.generation is None:
            self.inc("checkpoint_failures_total")
            return
        self.set("last_checkpoint_generation", float(report.generation or 0))
        self.set("last_checkpoint_bytes", float(stored_bytes))


claim("warmstart.metrics", HitCounter, counter_of)
