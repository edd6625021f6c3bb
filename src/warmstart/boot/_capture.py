"""Which boot captures a ``@warm`` object built while it is open.

``@warm`` classes call :func:`attach_to_current` after their ``__init__``;
boots register themselves here while they capture. Kept apart from the boot
itself so that ``@warm`` (``_warm``) and ``Boot`` (``_boot``) do not import
each other.
"""

from __future__ import annotations

import threading
from typing import Protocol

__all__ = ("Capturer", "attach_to_current", "capture", "release")


class Capturer(Protocol):
    """What captures objects: a boot."""

    def attach(self, obj: object) -> object:
        """Restore ``obj`` and register it for checkpoints."""


_CAPTURING: list[Capturer] = []
_LOCK = threading.Lock()


def capture(capturer: Capturer) -> None:
    """From now on, objects built capture into ``capturer`` (the innermost wins)."""
    with _LOCK:
        _CAPTURING.append(capturer)


def release(capturer: Capturer) -> None:
    """Stop capturing into ``capturer`` (no-op if it does not capture)."""
    with _LOCK:
        if capturer in _CAPTURING:
            _CAPTURING.remove(capturer)


def attach_to_current(obj: object) -> None:
    """Called by ``@warm`` classes after ``__init__``: attach to the capturing boot, if any."""
    with _LOCK:
        current = _CAPTURING[-1] if _CAPTURING else None
    if current is not None:
        current.attach(obj)
