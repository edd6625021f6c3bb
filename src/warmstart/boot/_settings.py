"""A boot's settings, as one frozen object.

``boot(...)`` takes them as keyword arguments (its documented signature);
they are checked once and kept here, so that a boot used as a decorator
makes a fresh boot per call from the same settings.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

__all__ = ("BootSettings",)


class BootSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Every setting of a boot; see :func:`warmstart.boot` for what each does."""

    namespace: str
    max_age: float | None = None
    validate: Callable[[Any], bool] | None = None
    refresh: Callable[[str, list[Any]], Any] | None = None
    progressive: bool = True
    strict: bool = False
    checkpoint_on_exit: bool = True
    interval: float | None = None
    signals: bool = True
    deadline: float = 20.0
    freeze_gc: bool = False
    watermark: Callable[[], Any] | None = None
    prefetch_concurrency: int = 8
    prefetch_batch: int = 256
    store_options: Mapping[str, Any] = msgspec.field(default_factory=dict)
    clock: Callable[[], float] = time.time
    open_timeout: float = 5.0
    remote: Any = None  # a URL or a warmstart.remote.Remote
    remote_deadline: float = 5.0
    capture: tuple[type, ...] | None = None
    carry_forward: bool = True
    handoff: float | None = None
    heartbeat: float | None = 10.0
