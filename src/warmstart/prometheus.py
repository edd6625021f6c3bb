"""Expose a boot's report and counters to Prometheus (``warmstart[prometheus]``).

The numbers live in :class:`warmstart.metrics.Metrics`, plain Python that needs no
extra; this module only maps them onto a ``prometheus_client`` collector,
read at scrape time so nothing is copied on the hot path.

>>> from warmstart.metrics import Metrics
>>> from prometheus_client import CollectorRegistry, generate_latest
>>> metrics = Metrics()
>>> metrics.inc("restore_entries_total", 42)
>>> registry = CollectorRegistry()
>>> _ = register(metrics, registry=registry, labels={"namespace": "pricing"})
>>> b'warmstart_restore_entries_total{namespace="pricing"} 42.0' in generate_latest(registry)
True
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from warmstart.boot import Boot
from warmstart.errors import MissingExtraError
from warmstart.metrics import Metrics

__all__ = ("register",)


def __dir__() -> tuple[str, ...]:
    return __all__


_HELP = {
    "restore_entries_total": "Entries restored into the service's containers.",
    "restore_upgraded_total": "Entries upgraded from an older contract version.",
    "restore_dropped_invalid_total": "Entries dropped because they failed validation.",
    "restore_dropped_expired_total": "Entries dropped because their TTL had passed.",
    "restore_fallbacks_total": "Generations skipped or quarantined at restore.",
    "cold_sections_total": "Sections that started cold.",
    "checkpoints_total": "Checkpoints attempted.",
    "checkpoint_failures_total": "Checkpoints that wrote no generation because of an error.",
    "checkpoint_section_failures_total": "Sections left out of a checkpoint (kept as they were).",
    "checkpoints_skipped_total": "Checkpoints skipped: nothing changed, or a restore ran.",
    "checkpoint_seconds_total": "Seconds spent checkpointing.",
    "checkpoint_cpu_seconds_total": "CPU seconds of the checkpointing thread (about its GIL time).",
    "warm_hits_total": "Lookups served by restored entries.",
    "lookups_total": "Lookups counted.",
    "handoff_requests_total": "Hand-off requests from successors (rolling deploys).",
    "handoff_checkpoints_total": "Checkpoints taken to answer hand-off requests.",
    "restore_seconds": "Seconds the last restore took until fully warm.",
    "time_to_ready_seconds": "Seconds from boot until the hot state was in place.",
    "readiness": "Fraction of saved entries in place (1 when warm).",
    "last_checkpoint_seconds": "Seconds the last checkpoint took.",
    "last_checkpoint_cpu_seconds": "CPU seconds of the last checkpoint's thread.",
    "last_checkpoint_longest_hold_seconds": (
        "Longest stretch the last checkpoint ran without letting other threads run."
    ),
    "checkpoint_longest_hold_seconds_max": "The longest such stretch of any checkpoint.",
    "last_checkpoint_longest_collection_seconds": (
        "Longest garbage collection the last checkpoint's thread ran (part of its holds)."
    ),
    "last_checkpoint_generation": "Generation written by the last checkpoint.",
    "last_checkpoint_bytes": "Stored bytes referenced by the last checkpoint.",
}


def register(
    source: Boot | Metrics,
    *,
    registry: Any = None,
    prefix: str = "warmstart",
    labels: Mapping[str, str] | None = None,
) -> Any:
    """Register a collector for ``source``'s metrics and return it.

    Args:
        source: a :class:`~warmstart.Boot` (its ``metrics``) or a ``Metrics``.
        registry: a ``prometheus_client`` registry (default: the global one).
        prefix: metric name prefix.
        labels: constant labels, e.g. ``{"namespace": "pricing"}``.

    Raises:
        MissingExtraError: ``prometheus_client`` is not installed.
    """
    try:
        import prometheus_client  # noqa: PLC0415 - optional extra
        from prometheus_client.core import (  # noqa: PLC0415
            CounterMetricFamily,
            GaugeMetricFamily,
        )
    except ImportError as exc:
        msg = (
            "Expected prometheus_client, it is not installed: install it "
            "(pip install prometheus-client), or warmstart's 'prometheus' extra"
        )
        raise MissingExtraError(msg) from exc
    metrics = source.metrics if isinstance(source, Boot) else source
    names = list(labels or {})
    values = [str(v) for v in (labels or {}).values()]

    class Collector:
        def collect(self) -> Iterator[Any]:
            current = metrics.snapshot()
            for name in Metrics.COUNTERS:
                family = CounterMetricFamily(
                    f"{prefix}_{name.removesuffix('_total')}", _HELP[name], labels=names
                )
                family.add_metric(values, current[name])
                yield family
            for name in Metrics.GAUGES:
                gauge = GaugeMetricFamily(f"{prefix}_{name}", _HELP[name], labels=names)
                gauge.add_metric(values, current[name])
                yield gauge

    collector = Collector()
    (registry or prometheus_client.REGISTRY).register(collector)
    return collector
