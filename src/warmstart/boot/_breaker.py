"""The crash-loop breaker: a restore that kills the process is not tried again.

Private; used by ``boot``. Before restoring, a boot leaves a "restoring"
marker in the store (``restoring-<pid>-<token>``: the generation and the
time) and clears it when the restore is done. A later boot that finds the
marker of a process that is gone knows that process died while restoring:
it quarantines that generation for inspection and starts cold once, rather
than crash again on the same data. A marker of a process still alive is
another worker restoring right now, and is left alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import threading

from warmstart.errors import WarmstartError
from warmstart.metrics import BootReport
from warmstart.store import Store

__all__ = ()

log = logging.getLogger("warmstart.boot")

_PREFIX = "restoring-"
_MARKER = struct.Struct(">Qd")  # generation, time


class CrashLoopBreaker:
    """One boot's "restoring" marker, and the check for markers of dead boots."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        # pid alone is not unique across restarts (a container's service is
        # often pid 1 every time), so each boot adds a token of its own.
        self.name = f"{_PREFIX}{os.getpid()}-{os.urandom(4).hex()}"
        self.marked = False  # this boot's marker is in the store
        self._lock = threading.Lock()

    def check(self, store: Store, report: BootReport) -> str | None:
        """A boot that died while restoring left its marker: quarantine that generation.

        Returns why this boot must start cold, or None.
        """
        if store.readonly:
            return None
        crashed = None
        for name, value in store.markers(self.namespace).items():
            if not name.startswith(_PREFIX) or len(value) != _MARKER.size:
                continue
            pid = int(name.split("-")[1])
            if pid != os.getpid() and _alive(pid):
                continue  # another worker restoring right now
            generation, _ = _MARKER.unpack(value)
            reason = f"a boot (pid {pid}) died while restoring generation {generation}"
            store.quarantine(self.namespace, generation, reason)
            store.set_marker(self.namespace, name, None)
            report.fallback.append(f"generation {generation} quarantined: {reason}")
            log.warning(
                "namespace %r: %s; it is quarantined for inspection",
                self.namespace,
                reason,
                extra={"namespace": self.namespace, "generation": generation},
            )
            crashed = reason
        return crashed

    def mark(self, store: Store, generation: int, now: float) -> None:
        """Say "restoring": a boot that dies before clearing it trips the breaker."""
        if not store.readonly:
            marker = _MARKER.pack(generation, now)
            store.set_marker(self.namespace, self.name, marker)
            self.marked = True

    def clear(self, store: Store | None) -> None:
        """Restoring stopped: remove this boot's marker, if it is in the store."""
        with self._lock:
            marked, self.marked = self.marked, False
        if marked and store is not None:
            with contextlib.suppress(WarmstartError):
                store.set_marker(self.namespace, self.name, None)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
