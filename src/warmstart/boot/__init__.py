"""The boot lifecycle: restore at start-up, checkpoint until shutdown.

``boot``, ``Boot``, ``warm``, ``state``, ``cached``, ``cachedmethod`` and
``Checkpointer`` are imported from the top level (``warmstart.boot(...)``);
this namespace holds the types they hand out, for annotations:
``from warmstart.boot import State, WarmInfo, CacheInfo``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from warmstart._api import claim, load_lazily
from warmstart.boot._environment import VARIABLES as VARIABLES
from warmstart.boot._environment import Environment, environment, parse_duration
from warmstart.boot._environment import read_secret_file as read_secret_file
from warmstart.boot._warm import State, WarmInfo
from warmstart.boot._warm import state as state
from warmstart.boot._warm import warm as warm

if TYPE_CHECKING:
    from warmstart.boot._boot import Boot as Boot
    from warmstart.boot._boot import boot as boot
    from warmstart.boot._checkpointer import Checkpointer as Checkpointer
    from warmstart.boot._collect import Collector
    from warmstart.boot._handoff import HandoffAnswer, HandoffReport
    from warmstart.boot._memo import CacheInfo
    from warmstart.boot._memo import cached as cached
    from warmstart.boot._memo import cachedmethod as cachedmethod

__all__ = (
    "CacheInfo",
    "Collector",
    "Environment",
    "HandoffAnswer",
    "HandoffReport",
    "State",
    "WarmInfo",
    "environment",
    "parse_duration",
)

claim("warmstart.boot", Environment, State, WarmInfo, environment, parse_duration)

#: Loaded on first use: a service module that only declares ``@warm`` classes
#: and ``state()`` fields does not pay for the engine (restore, checkpoints,
#: the store, the agent: about 20 ms) until it boots. Each name's public home
#: is the second element (the top level for ``boot``, ``Boot``, ...).
_LAZY = {
    "Boot": ("warmstart.boot._boot", "warmstart"),
    "boot": ("warmstart.boot._boot", "warmstart"),
    "Checkpointer": ("warmstart.boot._checkpointer", "warmstart"),
    "cached": ("warmstart.boot._memo", "warmstart"),
    "cachedmethod": ("warmstart.boot._memo", "warmstart"),
    "CacheInfo": ("warmstart.boot._memo", "warmstart.boot"),
    "Collector": ("warmstart.boot._collect", "warmstart.boot"),
    "HandoffAnswer": ("warmstart.boot._handoff", "warmstart.boot"),
    "HandoffReport": ("warmstart.boot._handoff", "warmstart.boot"),
}


def __getattr__(name: str) -> Any:
    return load_lazily(globals(), _LAZY, name)


def __dir__() -> tuple[str, ...]:
    return __all__
