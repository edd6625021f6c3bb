"""Which boot captures a ``@warm`` object built while it is open.

``@warm`` classes call :func:`attach_to_current` after their ``__init__``. A
boot captures the objects built *in its own context*: the code inside its
``with`` (or ``async with``) block, and what that code runs in the same
context (awaited coroutines, ``asyncio.to_thread``, ``contextvars.copy_context``).
Objects built elsewhere are not captured: a request handled in another task
or thread while the boot is open, a thread the service started itself.
That is what keeps per-request objects from being restored, retained and
checkpointed by a boot that is open for the service's whole life (an ASGI
lifespan). ``boot.attach(obj)`` attaches anything else by hand.

With several boots open in one context (components of one process, each in
its own namespace), an object goes to the innermost boot that accepts it: one
opened with ``capture=(Cls, ...)`` accepts only instances of those classes,
one without accepts any. Kept apart from the boot itself so that ``@warm``
(``_warm``) and ``Boot`` (``_boot``) do not import each other.
"""

from __future__ import annotations

import contextvars
from typing import Protocol

__all__ = ("Capturer", "attach_to_current", "capture", "release")


class Capturer(Protocol):
    """What captures objects: a boot."""

    def accepts(self, obj: object) -> bool:
        """Whether this capturer takes ``obj``."""

    def capture_object(self, obj: object) -> None:
        """Restore ``obj`` and register it for checkpoints."""


#: The capturing boots of this context, outermost first (a tuple: contexts copy it).
_CAPTURING: contextvars.ContextVar[tuple[Capturer, ...]] = contextvars.ContextVar(
    "warmstart_capturing", default=()
)


def capture(capturer: Capturer) -> None:
    """From now on, objects built in this context capture into ``capturer`` (innermost wins)."""
    _CAPTURING.set((*_CAPTURING.get(), capturer))


def release(capturer: Capturer) -> None:
    """Stop capturing into ``capturer`` in this context (no-op if it does not capture)."""
    current = _CAPTURING.get()
    if capturer in current:
        _CAPTURING.set(tuple(c for c in current if c is not capturer))


def attach_to_current(obj: object) -> None:
    """Called by ``@warm`` classes after ``__init__``: attach to the capturing boot, if any."""
    for capturer in reversed(_CAPTURING.get()):
        if capturer.accepts(obj):
            capturer.capture_object(obj)
            return
