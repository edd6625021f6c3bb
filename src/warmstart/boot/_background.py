"""The background phase of a restore: one worker thread, and readiness when it drains.

Private; used by ``boot``. What a boot need not finish before the service goes
on (the cold part of a progressive restore, prefetching hot keys, refreshing a
stale checkpoint's keys) is queued here and run in order by one daemon thread,
started with the first job. An attach restoring in its own thread counts as
pending too. The boot's ``ready`` event is clear while anything is pending;
each time it drains, ``on_idle`` runs. Once the boot is
stopping, queued jobs are skipped; a failed job is logged, never raised.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

__all__ = ()

log = logging.getLogger("warmstart.boot")


class BackgroundJobs:
    """A boot's background restore work, run in order by one worker thread.

    Args:
        lock: the boot's lock, which a checkpoint holds while it saves: no job
            is queued (and the worker not started) in the middle of a save.
        ready: cleared while jobs are pending.
        stop: set when the boot stops: the jobs still queued are skipped.
        on_idle: called by the worker each time the queue drains.
    """

    def __init__(
        self,
        lock: threading.RLock,
        ready: threading.Event,
        stop: threading.Event,
        on_idle: Callable[[], None],
    ) -> None:
        self._lock = lock
        self._ready = ready
        self._stop = stop
        self._on_idle = on_idle
        self._jobs: queue.SimpleQueue[tuple[Callable[[], None], Callable[[], None] | None] | None]
        self._jobs = queue.SimpleQueue()
        self.pending = 0
        self.thread: threading.Thread | None = None

    def add(self, job: Callable[[], None], cancel: Callable[[], None] | None = None) -> None:
        """Queue background restore work; the worker starts on the first job.

        ``cancel`` runs instead of ``job`` if the boot stops before its turn.
        """
        with self._lock:
            self.pending += 1
            self._ready.clear()
            self._jobs.put((job, cancel))
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._run, name="warmstart-restore", daemon=True
                )
                self.thread.start()

    def idle(self) -> bool:
        """Whether no job is pending."""
        with self._lock:
            return self.pending == 0

    def begin(self) -> None:
        """An attach restores in its own thread: count it as pending until :meth:`end`.

        Called under the boot's lock together with registering the object, so
        no checkpoint can save its container between the two.
        """
        with self._lock:
            self.pending += 1
            self._ready.clear()

    def end(self) -> None:
        """One pending unit is over: a job, or an attach's own restore (its jobs may still run)."""
        with self._lock:
            self.pending -= 1
            idle = self.pending == 0
        if idle:
            self._on_idle()

    def close(self, timeout: float) -> None:
        """Stop the worker after the jobs queued so far, waiting at most ``timeout`` seconds."""
        if self.thread is not None:
            self._jobs.put(None)
            self.thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            job, cancel = item
            try:
                if not self._stop.is_set():
                    job()
                elif cancel is not None:
                    cancel()
            except Exception as exc:
                log.warning("background restore failed: %r", exc)
            self.end()
