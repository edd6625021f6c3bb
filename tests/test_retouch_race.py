"""A removal during the background restore's re-touch of the hot keys stays removed."""

from __future__ import annotations

import inspect
import threading
from pathlib import Path
from typing import Any

import msgspec

import warmstart
from warmstart.boot import _restore


class Row(msgspec.Struct):
    value: int


ROWS = warmstart.Contract("row", Row, key=int)
SIZE = 60_000  # several base chunks: a hot part and a background part


@warmstart.warm(rows=ROWS)
class TrackedService:
    def __init__(self) -> None:
        self.rows: warmstart.TrackedDict[int, Row] = warmstart.TrackedDict()


def _line_of(func: Any, needle: str) -> int:
    lines, first = inspect.getsourcelines(func)
    return first + next(i for i, line in enumerate(lines) if needle in line)


def test_tracked_dict_removal_during_hot_retouch_stays_removed(store_path: Path) -> None:
    """A TrackedDict key the service pops while the background phase re-touches
    the hot keys must stay removed (docs: "no interleaving brings a removed key
    back"). _retouch_hot pops and re-inserts each hot key in ``_data`` without
    the change log's lock, so a pop landing between the two is silently lost.
    """
    with warmstart.Store(store_path, sync=False) as store:
        store.save("n", {"TrackedService.rows": (ROWS, {i: Row(i) for i in range(SIZE)})})
    target = SIZE - 1  # the hottest key: in the last base chunk
    code = _restore._move_to_end.__code__
    window_line = _line_of(_restore._move_to_end, "dict.setdefault(data, key, value)")
    in_window = threading.Event()
    go = threading.Event()

    def local(frame: Any, event: str, arg: Any) -> Any:
        if (
            event == "line"
            and frame.f_lineno == window_line
            and frame.f_locals.get("key") == target
            and not in_window.is_set()
        ):
            in_window.set()  # the key is popped, not yet put back
            go.wait(5)
        return local

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code is code and threading.current_thread().name == "warmstart-restore":
            return local
        return None

    threading.settrace(tracer)
    try:
        with warmstart.boot(
            store_path, namespace="n", signals=False, checkpoint_on_exit=False
        ) as boot:
            service = TrackedService()
            assert in_window.wait(20), "the background phase never re-touched the hot key"
            # The service invalidates the key (an ordinary, thread-safe TrackedDict pop).
            deleter = threading.Thread(target=service.rows.pop, args=(target, None))
            deleter.start()
            deleter.join(0.5)  # a fixed retouch would hold the lock pop() takes
            go.set()
            deleter.join(10)
            assert boot.wait_ready(30)
            came_back = target in service.rows
            assert not came_back, "a key the service removed came back with its saved value"
    finally:
        threading.settrace(None)  # type: ignore[arg-type]
        go.set()
