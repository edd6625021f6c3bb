"""Shared by the service scripts: report a boot as one JSON line on stdout."""

from __future__ import annotations

import json
import sys
from typing import Any

import warmstart


def emit(event: str, **fields: Any) -> None:
    """Print one JSON line and flush it, so the parent can read it at once."""
    sys.stdout.write(json.dumps({"event": event, **fields}, default=repr) + "\n")
    sys.stdout.flush()


def boot_fields(boot: warmstart.Boot) -> dict[str, Any]:
    """The parts of a boot report the end-to-end tests check."""
    report = boot.report
    return {
        "status": report.status,
        "reason": report.reason,
        "generation": report.generation,
        "fallback": report.fallback,
        "sections": {
            name: {
                "status": s.status,
                "reason": s.reason,
                "restored": s.restored,
                "upgraded": s.upgraded,
                "dropped_invalid": s.dropped_invalid,
            }
            for name, s in report.sections.items()
        },
    }
