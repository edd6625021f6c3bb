"""The crash-loop breaker: a restore that kills the process is not tried again.

Private to the boot wing. Before restoring, a boot leaves a "restoring"
marker in the store (``restoring-<pid>-<token>``: the generation, the time,
and a state byte) and sets it idle when the restore is done. The file is
created once per boot and rewritten in place (one ``pwrite`` of 17 bytes,
and their MAC in a keyed store): a boot that attaches 100,000 objects marks
and clears 100,000 times, and creating and removing a file each time cost a
millisecond apiece. A later boot that finds the marker of a process that is
gone knows that process died while restoring: it quarantines that generation
for inspection and starts cold once, rather than crash again on the same data.
A marker of a process still alive is another worker restoring right now, and
is left alone.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import struct
import threading
from collections.abc import Callable

from warmstart.errors import WarmstartError
from warmstart.metrics import BootReport
from warmstart.store import Store

__all__ = ()

log = logging.getLogger("warmstart.boot")

_PREFIX = "restoring-"
_MARKER = struct.Struct(">Qd")  # generation, time: 0.1's marker, restoring
_STATE = struct.Struct(">QdB")  # generation, time, 1 restoring / 0 idle
#: ``restoring-<pid>-<token>``; anything else in the folder is not ours to judge.
#: A marker's name (a pattern string: ``re`` compiles it on first use, not at import).
_NAME = r"restoring-([0-9]{1,10})-[0-9a-f]{1,32}"
_MAX_PID = (1 << 31) - 1


class CrashLoopBreaker:
    """One boot's "restoring" marker, and the check for markers of dead boots."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        # pid alone is not unique across restarts (a container's service is
        # often pid 1 every time), so each boot adds a token of its own.
        self.name = f"{_PREFIX}{os.getpid()}-{os.urandom(4).hex()}"
        self.marked = False  # this boot's marker says "restoring"
        self._lock = threading.Lock()
        self._fd: int | None = None  # the marker file, once created
        self._state = (0, 0.0)
        self._seal: Callable[[bytes], bytes] = bytes  # the store's marker_bytes, once marked

    def check(self, store: Store, report: BootReport) -> str | None:
        """A boot that died while restoring left its marker: quarantine that generation.

        Returns why this boot must start cold, or None.
        """
        if store.readonly:
            return None
        crashed = None
        for name, value in store.markers(self.namespace).items():
            parsed = _parse(name, value)
            if parsed is None:
                # A stray file or a damaged marker must never make every boot
                # cold (issue 14): skip it, and say so.
                log.warning(
                    "namespace %r: marker %r is not a restoring marker; ignored",
                    self.namespace,
                    name,
                )
                continue
            pid, generation, restoring = parsed
            if pid != os.getpid() and _alive(pid):
                continue  # another worker, restoring or serving right now
            if not restoring:
                # Its boot was killed while serving: not a crash in a restore.
                with contextlib.suppress(WarmstartError, OSError):
                    store.set_marker(self.namespace, name, None)
                continue
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
        if store.readonly:
            return
        # Marked first: a signal handler clearing between the write and the
        # flag would otherwise leave the marker saying "restoring".
        self.marked = True
        self._state = (generation, now)
        marker = _STATE.pack(generation, now, 1)
        if self._fd is None:
            store.set_marker(self.namespace, self.name, marker)  # created whole, atomically
            self._fd = os.open(store.marker_file(self.namespace, self.name), os.O_WRONLY)
            # Rewrites in place carry the MAC a keyed store checks (issue 17).
            self._seal = functools.partial(store.marker_bytes, self.namespace, self.name)
        else:
            os.pwrite(self._fd, self._seal(marker), 0)

    def clear(self, store: Store | None) -> None:
        """Restoring stopped: say "idle" (the file stays until :meth:`close`)."""
        with self._lock:
            marked, self.marked = self.marked, False
        if marked and store is not None and self._fd is not None:
            with contextlib.suppress(OSError):
                os.pwrite(self._fd, self._seal(_STATE.pack(*self._state, 0)), 0)

    def close(self, store: Store | None) -> None:
        """The boot is done: remove its marker."""
        fd, self._fd = self._fd, None
        self.marked = False
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.close(fd)
        if store is not None:
            with contextlib.suppress(WarmstartError, OSError):
                store.set_marker(self.namespace, self.name, None)


def _parse(name: str, value: bytes) -> tuple[int, int, bool] | None:
    """(pid, generation, restoring) of a well-formed marker, else None."""
    match = re.fullmatch(_NAME, name)
    if match is None:
        return None
    if len(value) == _MARKER.size:  # written by 0.1: it exists while restoring
        generation, _ = _MARKER.unpack(value)
        restoring = 1
    elif len(value) == _STATE.size:
        generation, _, restoring = _STATE.unpack(value)
    else:
        return None
    pid = int(match.group(1))
    if not 0 < pid <= _MAX_PID or generation < 1 or restoring not in (0, 1):
        return None
    return pid, generation, bool(restoring)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
