"""What pushes and pulls report: the remote head record, progress, reports, outcomes.

>>> report = PushReport(namespace="svc", remote="file:///r", status="pushed", generation=4,
...                     local_generation=9, chunks_shipped=2, bytes_shipped=4096)
>>> report.status, report.bytes_shipped
('pushed', 4096)
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ("PullReport", "PushReport", "RemoteHead", "SyncOutcome")


def __dir__() -> tuple[str, ...]:
    return __all__


HEAD_FORMAT = 1


class RemoteHead(msgspec.Struct, frozen=True, kw_only=True):
    """The head record of one namespace on a remote.

    Attributes:
        generation: the remote generation number (remote numbering: it counts
            the pushes of this namespace, whatever store they came from).
        manifest: name of the head's manifest object.
        created_at: when the writing store saved this state (its clock).
        signature: identity of the state (lineage and chunk digests): equal
            signatures mean equal generations.
        history: the retained generations, newest first: ``(generation,
            manifest name)``, the head included.

    >>> h = RemoteHead(namespace="svc", generation=2, lineage="ab", manifest="m", created_at=1.0,
    ...                pushed_at=2.0, host="h", keyed=False, signature="s")
    >>> h.generation, h.history
    (2, ())
    """

    namespace: str
    generation: int
    lineage: str
    manifest: str
    created_at: float
    pushed_at: float
    host: str
    keyed: bool
    signature: str
    entries: int = 0
    stored_bytes: int = 0
    history: tuple[tuple[int, str], ...] = ()
    format: int = HEAD_FORMAT


class PushReport(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`push` did.

    Attributes:
        status: ``"pushed"`` (a new remote generation), ``"present"`` (the
            remote head already is this state: nothing written) or
            ``"behind"`` (the remote head was saved later than this
            generation: nothing written; ``force=True`` pushes anyway).
        generation: the remote head's generation afterwards.
        local_generation: the generation of the local store that was pushed.
        chunks_shipped, bytes_shipped: chunk frames sent.
        chunks_skipped: chunks the remote already had.
        swept: remote objects deleted by retention and garbage collection.

    >>> PushReport(namespace="svc", remote="file:///r", status="present", generation=3,
    ...            local_generation=9, seconds=0.01).bytes_shipped
    0
    """

    namespace: str
    remote: str
    status: Literal["pushed", "present", "behind"]
    generation: int
    local_generation: int
    chunks_shipped: int = 0
    bytes_shipped: int = 0
    chunks_skipped: int = 0
    swept: int = 0
    seconds: float = 0.0


class PullReport(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`pull` did.

    Attributes:
        status: ``"pulled"`` (committed as a new local generation),
            ``"present"`` (an identical generation was already local) or
            ``"skipped"`` (``if_newer`` and the local head is as new).
        generation: the local generation holding the remote head afterwards
            (None when skipped).
        remote_generation: the remote head's generation.
        chunks_fetched, bytes_fetched: chunk frames downloaded.
        chunks_skipped: chunks the local store already had.

    >>> PullReport(namespace="svc", remote="file:///r", status="pulled", generation=1,
    ...            remote_generation=4, seconds=0.1).chunks_fetched
    0
    """

    namespace: str
    remote: str
    status: Literal["pulled", "present", "skipped"]
    generation: int | None
    remote_generation: int
    chunks_fetched: int = 0
    bytes_fetched: int = 0
    chunks_skipped: int = 0
    seconds: float = 0.0


class SyncOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """How a push or pull under a deadline ended; it never raises.

    Attributes:
        status: ``"done"``; ``"empty"`` (pull: the remote holds nothing for
            the namespace); ``"timeout"`` (the deadline passed: nothing more
            is committed by it); ``"unavailable"``; ``"conflict"`` (push:
            another writer moved the head first); ``"failed"`` (anything
            else, such as damaged remote data; ``error`` says what).
        report: the :class:`PushReport` or :class:`PullReport` when done.

    >>> SyncOutcome(operation="pull", namespace="svc", remote="x", status="timeout",
    ...             seconds=5.0).ok
    False
    """

    operation: Literal["push", "pull"]
    namespace: str
    remote: str
    status: Literal["done", "empty", "timeout", "unavailable", "conflict", "failed"]
    seconds: float
    report: PushReport | PullReport | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the operation finished (``done`` or ``empty``)."""
        return self.status in ("done", "empty")
