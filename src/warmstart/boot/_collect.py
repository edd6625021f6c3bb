"""Collecting ``@warm`` objects built before the boot that will restore them is open.

Private to the boot wing; public as :class:`warmstart.boot.Collector`. A
pre-forking server imports the application before any per-worker code runs
(gunicorn with ``preload_app`` imports it in the master; uvicorn imports it
in each worker before the lifespan starts), so a service object built at
import time exists before its worker's boot. A collector, started earlier in
the same context, keeps those objects; the boot opened later (in each
worker, after the fork) attaches them: ``collector.hand_over(boot)``.

A collector takes part in capture like a boot (the innermost that accepts an
object gets it) and stops accepting once stopped or handed over. It holds the
objects strongly, as the service does.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from warmstart.boot._capture import capture, release
from warmstart.errors import ContractError

__all__ = ("Collector",)

log = logging.getLogger("warmstart.boot")


class _Attaches(Protocol):
    def attach(self, obj: object) -> object: ...


class Collector:
    """Keeps the ``@warm`` objects built in its context until a boot attaches them.

    Args:
        capture: the ``@warm`` classes it keeps (None: any), as ``boot(capture=...)``.

    >>> import msgspec, tempfile, warmstart
    >>> from warmstart.boot import Collector
    >>> class Row(msgspec.Struct):
    ...     n: int
    >>> @warmstart.warm(rows=warmstart.Contract("row", Row))
    ... class Rows:
    ...     def __init__(self) -> None:
    ...         self.rows: dict[str, Row] = {}
    >>> collector = Collector().start()
    >>> rows = Rows()                                  # built "at import", before any boot
    >>> with warmstart.boot(tempfile.mkdtemp(), namespace="rows", signals=False) as b:
    ...     collector.hand_over(b)
    1
    """

    def __init__(self, capture: type | tuple[type, ...] | None = None) -> None:
        self._classes = (
            None if capture is None else capture if isinstance(capture, tuple) else (capture,)
        )
        self._objects: list[object] = []
        self._lock = threading.Lock()
        self._open = False

    def start(self) -> Collector:
        """Collect the ``@warm`` objects built from now on in the current context."""
        self._open = True
        capture(self)
        return self

    def stop(self) -> list[object]:
        """Stop collecting; return the objects collected (and forget them)."""
        self._open = False
        release(self)  # a no-op in another context: ``accepts`` is False from now on
        with self._lock:
            objects, self._objects = self._objects, []
        return objects

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self._open = False
        release(self)

    @property
    def objects(self) -> tuple[object, ...]:
        """The objects collected so far."""
        with self._lock:
            return tuple(self._objects)

    @property
    def collecting(self) -> bool:
        """Whether it still collects."""
        return self._open

    def accepts(self, obj: object) -> bool:
        """Whether this collector keeps ``obj`` (part of the capture protocol)."""
        return self._open and (self._classes is None or isinstance(obj, self._classes))

    def capture_object(self, obj: object) -> None:
        """Keep ``obj`` (part of the capture protocol)."""
        with self._lock:
            self._objects.append(obj)

    def hand_over(self, boot: _Attaches) -> int:
        """Stop collecting and attach every object collected to ``boot``; return how many.

        An object the boot refuses (a second keyless instance of a class) is
        logged and skipped: start-up goes on.
        """
        attached = 0
        for obj in self.stop():
            try:
                boot.attach(obj)
            except ContractError as exc:
                log.warning("collected %s not attached: %s", type(obj).__name__, exc)
            else:
                attached += 1
        return attached
