"""Periodic checkpoints in a background thread.

A service that checkpoints every few seconds loses little warm state even to a
``kill -9``. The checkpointer saves in delta mode (a tracked mapping costs what
changed; an untracked one is diffed against fingerprints), at most one save at
a time, and never lets a failure reach the service: errors are logged and
counted, and the next tick tries again.

>>> import msgspec, tempfile
>>> from warmstart import Contract, Store, TrackedDict
>>> class Row(msgspec.Struct):
...     name: str
>>> ROWS = Contract("row", Row)
>>> rows = TrackedDict({"a": Row("x")})
>>> with Store(tempfile.mkdtemp()) as store:
...     with Checkpointer(store, "svc", {"rows": (ROWS, rows)}, interval=3600) as cp:
...         generation = cp.checkpoint()
...     print(generation, cp.saves, cp.failures)
1 1 0
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from warmstart._pacing import Pacer
from warmstart.boot._periodic import Periodic
from warmstart.metrics import CheckpointReport
from warmstart.store import SectionSpec, Store

__all__ = ("Checkpointer",)


def __dir__() -> tuple[str, ...]:
    return __all__


log = logging.getLogger("warmstart.checkpointer")


class Checkpointer:
    """Save ``sections`` of ``namespace`` into ``store`` every ``interval`` seconds.

    Args:
        store: the store to save into.
        namespace: the namespace to save.
        sections: section name -> ``(contract, mapping)`` or ``(contract,
            mapping, lock)`` (see :meth:`Store.save`), or a callable that
            returns that mapping at each tick (for state that changes shape).
        interval: seconds between the end of one save and the start of the next.
        watermark: a callable returning the source-of-truth position to record.

    Attributes:
        saves, failures: counters; ``last_error`` and ``last_generation``,
        ``last_seconds`` describe the latest attempt, ``last_report`` too,
        with its CPU and its longest stretch without letting other threads
        run (see :class:`~warmstart.metrics.CheckpointReport`).
    """

    def __init__(
        self,
        store: Store,
        namespace: str,
        sections: Mapping[str, SectionSpec] | Callable[[], Mapping[str, SectionSpec]],
        *,
        interval: float,
        watermark: Callable[[], Any] | None = None,
    ) -> None:
        self.store = store
        self.namespace = namespace
        self.interval = interval
        self._sections = sections
        self._watermark = watermark
        self._lock = threading.Lock()
        self._loop = Periodic(
            interval,
            lambda: self.checkpoint(raise_errors=False),
            name=f"warmstart-checkpointer-{namespace}",
            stop=threading.Event(),
        )
        self.saves = 0
        self.failures = 0
        self.last_error: BaseException | None = None
        self.last_generation: int | None = None
        self.last_seconds: float | None = None
        self.last_report: CheckpointReport | None = None

    def __enter__(self) -> Checkpointer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the background thread (idempotent)."""
        self._loop.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the thread, letting a save in progress finish first."""
        self._loop.stop(timeout)

    @property
    def running(self) -> bool:
        """Whether the background thread is alive."""
        return self._loop.running

    def checkpoint(self, *, raise_errors: bool = True) -> int | None:
        """Save now (waiting for a save in progress); return the generation.

        Args:
            raise_errors: False in the background thread: log and count instead.
        """
        with self._lock:
            started = time.perf_counter()
            pacer = Pacer()
            try:
                sections = self._sections() if callable(self._sections) else self._sections
                watermark = self._watermark() if self._watermark is not None else None
                with pacer:
                    generation = self.store.save(
                        self.namespace, sections, watermark=watermark, mode="delta"
                    )
            except Exception as exc:
                self.failures += 1
                self.last_error = exc
                self.last_report = self._report(None, started, pacer, str(exc))
                log.warning(
                    "checkpoint of %r failed: %s",
                    self.namespace,
                    exc,
                    extra={"namespace": self.namespace, "failures": self.failures},
                )
                if raise_errors:
                    raise
                return None
            finally:
                self.last_seconds = time.perf_counter() - started
            self.saves += 1
            self.last_generation = generation
            self.last_error = None
            self.last_report = self._report(generation, started, pacer, None)
            return generation

    def _report(
        self, generation: int | None, started: float, pacer: Pacer, error: str | None
    ) -> CheckpointReport:
        return CheckpointReport(
            namespace=self.namespace,
            generation=generation,
            seconds=time.perf_counter() - started,
            reason="periodic",
            error=error,
            **pacer.costs(),
        )
