"""Push and pull under a deadline, for startup and shutdown: they never raise.

A remote that is down, slow or refusing must not hold a service's startup or
shutdown past its deadline. These run the operation in a daemon thread and
wait at most ``deadline`` seconds; past it the operation is told to stop, and
it starts no commit after that (a pull writes nothing locally, a push does not
move the remote head; one already committing finishes, atomically), and the
caller goes on. The outcome, logged, says what happened. At interpreter exit,
when no thread can start, the operation runs inline, bounded only by the
remote's own timeouts (which the deadline also sets).

>>> import tempfile
>>> from warmstart import Store
>>> with Store(tempfile.mkdtemp()) as store:
...     outcome = push_with_deadline(store, "file://" + tempfile.mkdtemp(), "svc", deadline=5)
>>> outcome.status, outcome.error is not None     # nothing saved locally yet
('failed', True)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from warmstart.errors import CheckpointNotFoundError, StoreTimeoutError
from warmstart.remote._base import redact
from warmstart.remote._errors import RemoteConflictError, RemoteUnavailableError
from warmstart.remote._layout import DeadlinePassedError, opened
from warmstart.remote._reports import PullReport, PushReport, SyncOutcome
from warmstart.remote._sync import DEFAULT_GRACE, _pull, _push
from warmstart.store import Store

if TYPE_CHECKING:
    from warmstart.remote._protocol import Remote

__all__ = ("pull_with_deadline", "push_with_deadline")


def __dir__() -> tuple[str, ...]:
    return __all__


log = logging.getLogger("warmstart.remote")


def pull_with_deadline(
    store: Store,
    remote: Remote | str,
    namespace: str,
    *,
    deadline: float,
    if_newer: bool = True,
) -> SyncOutcome:
    """Pull at startup, for at most ``deadline`` seconds; never raises.

    By default only when the remote head was saved after the local head (or
    there is none). Past the deadline the pull is told to stop and starts no
    commit; the caller goes on with the local store as it is.

    >>> import tempfile
    >>> from warmstart import Store
    >>> with Store(tempfile.mkdtemp()) as store:
    ...     outcome = pull_with_deadline(store, "file://" + tempfile.mkdtemp(), "svc", deadline=2)
    >>> outcome.status, outcome.ok
    ('empty', True)
    """

    def body(rem: Remote, cancel: threading.Event) -> PushReport | PullReport:
        return _pull(store, rem, namespace, if_newer, None, cancel)

    return _with_deadline("pull", namespace, remote, deadline, body)


def push_with_deadline(
    store: Store,
    remote: Remote | str,
    namespace: str,
    *,
    deadline: float,
    keep: int | None = None,
    grace: float = DEFAULT_GRACE,
) -> SyncOutcome:
    """Push the local head after a save, for at most ``deadline`` seconds; never raises.

    Past the deadline the push is told to stop: it will not move the remote
    head anymore (what it uploaded is collected later).
    """
    kept = store.keep if keep is None else keep

    def body(rem: Remote, cancel: threading.Event) -> PushReport | PullReport:
        return _push(store, rem, namespace, None, kept, grace, False, None, cancel)

    return _with_deadline("push", namespace, remote, deadline, body)


def _with_deadline(
    operation: Literal["push", "pull"],
    namespace: str,
    remote: Remote | str,
    deadline: float,
    body: Callable[[Remote, threading.Event], PushReport | PullReport],
) -> SyncOutcome:
    started = time.perf_counter()
    url = redact(remote) if isinstance(remote, str) else remote.url
    cancel = threading.Event()
    done = threading.Event()
    result: list[PushReport | PullReport | Exception] = []

    def run() -> None:
        try:
            with opened(remote, timeout=max(deadline, 0.1)) as rem:
                result.append(body(rem, cancel))
        except Exception as exc:
            result.append(exc)
        finally:
            done.set()

    worker = threading.Thread(target=run, name=f"warmstart-{operation}", daemon=True)
    try:
        worker.start()
    except RuntimeError:
        run()  # interpreter shutdown forbids new threads: no deadline then
    outcome: PushReport | PullReport | Exception
    if done.wait(deadline):
        outcome = result[0]
    else:
        cancel.set()  # it stops before committing anything more
        outcome = StoreTimeoutError(f"Expected the {operation} to finish in {deadline:g}s")
    status, level = _status(outcome, operation)
    error = str(outcome) if isinstance(outcome, Exception) and status != "empty" else None
    log.log(
        level,
        "%s of %r with %s: %s%s",
        operation,
        namespace,
        url,
        status,
        f" ({error})" if error else "",
        extra={"namespace": namespace, "remote": url, "status": status},
    )
    return SyncOutcome(
        operation=operation,
        namespace=namespace,
        remote=url,
        status=status,
        seconds=time.perf_counter() - started,
        report=None if isinstance(outcome, Exception) else outcome,
        error=error,
    )


_Status = Literal["done", "empty", "timeout", "unavailable", "conflict", "failed"]


def _status(outcome: object, operation: str) -> tuple[_Status, int]:
    """The outcome's status, and the level it is logged at."""
    if isinstance(outcome, (PushReport, PullReport)):
        return "done", logging.INFO
    if isinstance(outcome, CheckpointNotFoundError) and operation == "pull":
        return "empty", logging.INFO
    kinds: tuple[tuple[type[Exception] | tuple[type[Exception], ...], _Status], ...] = (
        ((StoreTimeoutError, DeadlinePassedError), "timeout"),
        (RemoteUnavailableError, "unavailable"),
        (RemoteConflictError, "conflict"),
    )
    for kind, status in kinds:
        if isinstance(outcome, kind):
            return status, logging.WARNING
    return "failed", logging.WARNING
