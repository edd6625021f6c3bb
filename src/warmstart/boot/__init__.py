"""The boot lifecycle: restore at start-up, checkpoint until shutdown."""

from __future__ import annotations

from warmstart.boot._boot import Boot, boot, parse_duration
from warmstart.boot._checkpointer import Checkpointer
from warmstart.boot._warm import State, WarmInfo, state, warm

__all__ = ("Boot", "Checkpointer", "State", "WarmInfo", "boot", "parse_duration", "state", "warm")


def __dir__() -> tuple[str, ...]:
    return __all__
