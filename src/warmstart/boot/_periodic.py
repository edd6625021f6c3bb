"""One periodic loop: a daemon thread that runs a tick every ``interval`` seconds.

Both the boot's periodic checkpoints and :class:`~warmstart.Checkpointer`
run on it. The interval counts from the end of one tick to the start of the
next, so a slow checkpoint never queues up behind itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ("Periodic",)


class Periodic:
    """Run ``tick()`` every ``interval`` seconds until ``stop`` is set.

    Args:
        stop: the event that ends the loop (shared with its owner's other
            background work, which stops with it).
    """

    def __init__(
        self, interval: float, tick: Callable[[], object], *, name: str, stop: threading.Event
    ) -> None:
        if not interval > 0:
            msg = f"Expected a positive interval in seconds, got {interval!r}"
            raise ValueError(msg)
        self.interval = interval
        self._tick = tick
        self._name = name
        self._stop = stop
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (idempotent while it runs)."""
        if self.running:
            return
        self._stop.clear()
        self.thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self.thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """End the loop, letting a tick in progress finish (up to ``timeout``)."""
        self._stop.set()
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        return self.thread is not None and self.thread.is_alive()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._tick()
