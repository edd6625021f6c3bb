"""Progress of a long operation that moves chunks: export, import, push, pull.

>>> p = Progress(operation="import", bytes_done=50, bytes_total=200, chunks_done=1,
...              chunks_total=4, rate=100.0, eta=1.5)
>>> p.fraction
0.25
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

import msgspec

__all__ = ("OnProgress", "Progress")


def __dir__() -> tuple[str, ...]:
    return __all__


Operation = Literal["export", "import", "push", "pull"]


class Progress(msgspec.Struct, frozen=True, kw_only=True):
    """One progress report, passed to a ``progress=`` callback.

    Chunks the other side already has count as done at once; ``rate`` counts
    only bytes actually moved, so skipped chunks do not inflate it; ``eta`` is
    None until a rate is known.
    """

    operation: Operation
    bytes_done: int
    bytes_total: int
    chunks_done: int
    chunks_total: int
    rate: float = 0.0
    eta: float | None = None

    @property
    def fraction(self) -> float:
        """Share of the bytes done, between 0 and 1."""
        return 1.0 if self.bytes_total <= 0 else min(1.0, self.bytes_done / self.bytes_total)


#: The one callback type of every long operation (``progress=``).
OnProgress = Callable[[Progress], None]


class Meter:
    """Counts bytes and chunks of one operation and reports :class:`Progress`."""

    def __init__(
        self,
        callback: OnProgress | None,
        operation: Operation,
        bytes_total: int,
        chunks_total: int,
    ) -> None:
        self.callback = callback
        self.operation: Operation = operation
        self.bytes_total = bytes_total
        self.chunks_total = chunks_total
        self.bytes_done = 0
        self.chunks_done = 0
        self.moved = 0
        self.started = time.perf_counter()

    def skip(self, nbytes: int, chunks: int) -> None:
        """Work the other side already has: done, but not moved."""
        self.bytes_done += nbytes
        self.chunks_done += chunks

    def redo(self, nbytes: int, chunks: int) -> None:
        """Work already counted must be done again (chunks swept meanwhile)."""
        self.bytes_done -= nbytes
        self.chunks_done -= chunks

    def advance(self, nbytes: int) -> None:
        """One chunk of ``nbytes`` moved."""
        self.bytes_done += nbytes
        self.moved += nbytes
        self.chunks_done += 1
        self.emit()

    def emit(self) -> None:
        """Report the current state to the callback, if any."""
        if self.callback is None:
            return
        elapsed = time.perf_counter() - self.started
        rate = self.moved / elapsed if elapsed > 0 and self.moved > 0 else 0.0
        remaining = self.bytes_total - self.bytes_done
        eta = 0.0 if remaining <= 0 else (remaining / rate if rate > 0 else None)
        self.callback(
            Progress(
                operation=self.operation,
                bytes_done=self.bytes_done,
                bytes_total=self.bytes_total,
                chunks_done=self.chunks_done,
                chunks_total=self.chunks_total,
                rate=rate,
                eta=eta,
            )
        )
