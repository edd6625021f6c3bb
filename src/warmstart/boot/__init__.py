"""The boot lifecycle: restore at start-up, checkpoint until shutdown.

``boot``, ``Boot``, ``warm``, ``state``, ``cached``, ``cachedmethod`` and
``Checkpointer`` are imported from the top level (``warmstart.boot(...)``);
this namespace holds the types they hand out, for annotations:
``from warmstart.boot import State, WarmInfo, CacheInfo``.
"""

from __future__ import annotations

from warmstart._api import claim
from warmstart.boot._boot import Boot as Boot
from warmstart.boot._boot import boot as boot
from warmstart.boot._boot import parse_duration
from warmstart.boot._checkpointer import Checkpointer as Checkpointer
from warmstart.boot._handoff import HandoffAnswer, HandoffReport
from warmstart.boot._memo import CacheInfo
from warmstart.boot._memo import cached as cached
from warmstart.boot._memo import cachedmethod as cachedmethod
from warmstart.boot._warm import State, WarmInfo
from warmstart.boot._warm import state as state
from warmstart.boot._warm import warm as warm

__all__ = (
    "CacheInfo",
    "HandoffAnswer",
    "HandoffReport",
    "State",
    "WarmInfo",
    "parse_duration",
)

claim("warmstart.boot", CacheInfo, HandoffAnswer, HandoffReport, State, WarmInfo, parse_duration)


def __dir__() -> tuple[str, ...]:
    return __all__
