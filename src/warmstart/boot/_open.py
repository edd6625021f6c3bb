"""Opening a boot's store within a timeout, so that a held writer lock cannot hang startup.

Private; used by ``boot``. Opening a store whose tables exist still takes
LMDB's writer lock for a moment; a process stopped while holding it (SIGSTOP,
a debugger) would hang the boot, and the safety rule says a boot never makes
startup worse. So the store is opened in a thread and waited for with a
timeout; past it the boot starts cold with ``StoreTimeoutError``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from warmstart.errors import StoreTimeoutError
from warmstart.store import Store

__all__ = ()


def open_within(path: Path, options: dict[str, Any], timeout: float) -> Store:
    """Open a store, giving up after ``timeout`` seconds.

    On timeout the open goes on in its thread and closes the store when it
    finally gets it.
    """
    done = threading.Event()
    box: dict[str, Any] = {}
    abandoned = threading.Event()

    def run() -> None:
        try:
            box["store"] = Store(path, **options)
        except BaseException as exc:
            box["error"] = exc
        finally:
            done.set()
            if abandoned.is_set() and "store" in box:
                box["store"].close()

    threading.Thread(target=run, name="warmstart-open", daemon=True).start()
    if not done.wait(timeout):
        abandoned.set()
        if done.is_set() and "store" in box:  # finished in the meantime
            return box["store"]  # type: ignore[no-any-return]
        msg = f"Expected the store at {str(path)!r} to open within {timeout:g}s; it is locked"
        raise StoreTimeoutError(msg)
    if "error" in box:
        raise box["error"]
    return box["store"]  # type: ignore[no-any-return]
