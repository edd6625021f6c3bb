"""The Prometheus exporter maps a boot's metrics onto a collector."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from prometheus_client import CollectorRegistry, generate_latest

import warmstart
from warmstart.prometheus import register


class Item(msgspec.Struct):
    name: str


ITEMS = warmstart.Contract("item", Item)


class TestRegister:
    def test_boot_metrics_are_scraped_live(self, tmp_path: Path) -> None:
        """A scrape after a checkpoint shows the checkpoint counters of that boot."""

        @warmstart.warm(items=ITEMS)
        class Holder:
            def __init__(self) -> None:
                self.items: dict[str, Item] = {}

        registry = CollectorRegistry()
        with warmstart.boot(tmp_path / "s", namespace="p", signals=False) as boot:
            register(boot, registry=registry, labels={"namespace": "p"})
            holder = Holder()
            holder.items["a"] = Item("a")
        text = generate_latest(registry).decode()
        assert 'warmstart_checkpoints_total{namespace="p"} 1.0' in text
        assert 'warmstart_readiness{namespace="p"} 1.0' in text
        assert 'warmstart_last_checkpoint_generation{namespace="p"} 1.0' in text
        for name in warmstart.metrics.Metrics.GAUGES:
            assert f"warmstart_{name}" in text

    def test_missing_extra_names_the_install_command(self) -> None:
        """Without prometheus_client, register raises MissingExtraError naming the extra."""
        code = (
            "import sys; sys.modules['prometheus_client'] = None\n"
            "import warmstart\n"
            "from warmstart.prometheus import register\n"
            "try:\n"
            "    register(warmstart.metrics.Metrics())\n"
            "except warmstart.errors.MissingExtraError as exc:\n"
            "    print(isinstance(exc, ImportError), exc)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert out.stdout.startswith("True ")
        assert "pip install prometheus-client" in out.stdout

    def test_metrics_object_needs_no_extra(self) -> None:
        """The plain Metrics object reads without prometheus_client."""
        metrics = warmstart.metrics.Metrics()
        metrics.inc("lookups_total", 4)
        metrics.inc("warm_hits_total", 3)
        assert metrics.warm_hit_fraction == pytest.approx(0.75)
        assert metrics.snapshot()["lookups_total"] == 4
