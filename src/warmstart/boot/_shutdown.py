"""The shutdown checkpoint, within a deadline; and the signal and atexit hooks that take it.

Private; used by ``boot``, which takes the shutdown checkpoint once: when its
``with`` exits, on SIGTERM/SIGINT, or at interpreter exit. Two pieces:

- ``ExitHooks`` runs a callback when the process is told to stop (SIGTERM,
  SIGINT; main thread only) and at interpreter exit. Signal handlers chain to
  the handlers installed before them; with the default disposition, the
  handler restores it and re-sends the signal, so the process dies as it would
  have without warmstart.
- ``FinalCheckpoint`` runs the shutdown checkpoint in a thread joined with a
  deadline: shutdown never waits longer than that. Past it the checkpoint is
  abandoned (``abandoned``: nothing more is started for it) and shutdown goes
  on; a save already encoding or committing may still commit if it finishes
  before the process exits. Either way the head is one whole generation, the
  previous or the new one (a commit is one LMDB transaction). Since the
  thread may still be in the store, the store is released by that thread
  when it finishes rather than closed under it.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

__all__ = ()

log = logging.getLogger("warmstart.boot")


class ExitHooks:
    """Calls ``on_exit(why)`` on SIGTERM/SIGINT and at interpreter exit, while armed.

    Args:
        on_exit: called with the signal's name, or ``"exit"``.
        handler: the function installed for the signals, which calls
            :meth:`on_signal`: a method of the boot, so that
            ``signal.getsignal()`` shows whose handler it is.
    """

    def __init__(self, on_exit: Callable[[str], None], handler: Callable[[int, Any], None]) -> None:
        self._on_exit = on_exit
        self._handler = handler
        self._previous_handlers: dict[int, Any] = {}

    def arm(self, *, signals: bool) -> None:
        atexit.register(self._atexit)
        if not signals or threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous_handlers[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handler)

    def disarm(self) -> None:
        atexit.unregister(self._atexit)
        if threading.current_thread() is threading.main_thread():
            for sig, previous in self._previous_handlers.items():
                if signal.getsignal(sig) == self._handler:
                    signal.signal(sig, previous)
            # Elsewhere they cannot be restored: kept for a disarm on the main thread.
            self._previous_handlers.clear()

    def on_signal(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        self._on_exit(name)
        previous = self._previous_handlers.get(signum, signal.SIG_DFL)
        self.disarm()
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            # Let the default behaviour happen: die by the same signal.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def _atexit(self) -> None:
        self._on_exit("exit")


class FinalCheckpoint:
    """Runs ``save(why)`` in a thread, waits at most a deadline, abandons it past that.

    Args:
        namespace: for the log.
        save: takes the checkpoint; never raises.
        release: closes what the checkpoint uses; called by the checkpoint's
            thread when it finishes after :meth:`releases_later` said so.
        stop: set once the wait is over: background work stops.
    """

    def __init__(
        self,
        namespace: str,
        save: Callable[[str], object],
        release: Callable[[], None],
        stop: threading.Event,
    ) -> None:
        self.namespace = namespace
        self._save = save
        self._release = release
        self._stop = stop
        self.thread: threading.Thread | None = None
        self.abandoned = False  # the shutdown checkpoint missed its deadline
        self._running = False
        self._close_later = False  # release() found the checkpoint still running
        self._lock = threading.Lock()

    def run(self, why: str, deadline: float) -> None:
        """Take the checkpoint, waiting at most ``deadline`` seconds for it."""
        done = threading.Event()

        def run() -> None:
            try:
                self._save(why)
            finally:
                done.set()
                with self._lock:
                    self._running = False
                    later = self._close_later
                if later:
                    self._release()

        worker = threading.Thread(target=run, name="warmstart-final-checkpoint", daemon=True)
        self._running = True
        try:
            worker.start()
        except RuntimeError:
            run()  # interpreter shutdown forbids new threads: no deadline then
        else:
            self.thread = worker
        finished = done.wait(deadline)
        self._stop.set()
        if not finished:
            self.abandoned = True
            log.warning(
                "%s checkpoint of %r did not finish within %.1fs; shutdown goes on "
                "(the checkpoint commits only if it finishes before the process exits)",
                why,
                self.namespace,
                deadline,
            )

    def forked(self) -> None:
        """In a forked child: no shutdown checkpoint of the parent's runs here."""
        self._lock = threading.Lock()
        self.thread = None
        self._running = False
        self._close_later = False

    def releases_later(self) -> bool:
        """Whether the checkpoint still runs in another thread, which then releases when done.

        Closing the store under a thread still in it could crash the process.
        """
        with self._lock:
            self._close_later = self._running and threading.current_thread() is not self.thread
            return self._close_later
