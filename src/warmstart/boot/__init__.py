"""The boot lifecycle: restore at start-up, checkpoint until shutdown.

``boot``, ``Boot``, ``warm``, ``state`` and ``Checkpointer`` are imported
from the top level (``warmstart.boot(...)``); this namespace holds the types
they hand out, for annotations: ``from warmstart.boot import State, WarmInfo``.
"""

from __future__ import annotations

from warmstart._api import claim
from warmstart.boot._boot import Boot as Boot
from warmstart.boot._boot import boot as boot
from warmstart.boot._checkpointer import Checkpointer as Checkpointer
from warmstart.boot._collect import Collector
from warmstart.boot._environment import VARIABLES as VARIABLES
from warmstart.boot._environment import Environment, environment, parse_duration
from warmstart.boot._environment import read_secret_file as read_secret_file
from warmstart.boot._warm import State, WarmInfo
from warmstart.boot._warm import state as state
from warmstart.boot._warm import warm as warm

__all__ = (
    "Collector",
    "Environment",
    "State",
    "WarmInfo",
    "environment",
    "parse_duration",
)

claim("warmstart.boot", Collector, Environment, State, WarmInfo, environment, parse_duration)


def __dir__() -> tuple[str, ...]:
    return __all__
