"""Worker slots: a stable index 0..N-1 per worker process of one service on one host.

Private to the workers wing. Neither gunicorn nor uvicorn numbers its
workers (gunicorn's ``worker.age`` only grows; uvicorn keeps list positions
in the supervisor), so a restarted worker cannot find its predecessor's
state by a name the server gives it. A slot is a file lock: ``slots/<digest
of the service>.<i>`` in the store directory, locked with ``flock(2)`` and
held until the process exits or releases it. A process takes the lowest
slot no live process holds; the kernel drops the lock of a process that dies,
whatever kills it, so the slot of a worker killed by SIGKILL is free for its
replacement at once.

- ``workers=N`` says how many slots the service has. When all N are held (a
  server that starts a replacement before its predecessor has exited: a
  gunicorn SIGHUP, a uvicorn rolling restart), the process waits up to
  ``wait`` seconds for one to be released, then takes the lowest free slot
  from N on (``overflow``).
- ``workers=None``: the lowest free slot, at once.

The lock lives on an open file description (``flock``, not ``fcntl``
record locks, which a process loses when it closes any descriptor of the
file): a child forked after a claim shares it, so children forget the
parent's slots at fork and claim their own.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import time
from pathlib import Path

import msgspec
import xxhash

from warmstart.errors import ConfigurationError, ReadOnlyStoreError, StoreError
from warmstart.store import check_namespace

__all__ = ("WorkerSlot", "claim_slot", "release_slot", "slot_namespace", "slot_of")

log = logging.getLogger("warmstart.workers")

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    _FLOCK = False
else:
    _FLOCK = True

#: Slots tried beyond N before giving up (a directory full of stale locks).
_MAX_SLOTS = 4096
_SLOT_SUFFIX = "/worker-"


class WorkerSlot(msgspec.Struct, frozen=True, kw_only=True):
    """A worker's slot: its index, the namespace its state lives in, and how it was claimed.

    Attributes:
        service: the service's name (the namespace before ``/worker-<i>``).
        index: the slot, 0..N-1 (or N and above for an overflow slot).
        namespace: ``"<service>/worker-<index>"``, for ``boot(namespace=...)``.
        directory: the store directory holding the lock files.
        workers: the N the slot was claimed for (None: not given).
        overflow: all N slots were held for the whole wait; this is one beyond.
        waited: seconds spent waiting for a slot.
        pid: the process holding it.
    """

    service: str
    index: int
    namespace: str
    directory: str
    workers: int | None
    overflow: bool
    waited: float
    pid: int


def slot_namespace(service: str, index: int) -> str:
    """The namespace of slot ``index`` of ``service``.

    >>> slot_namespace("catalog", 2)
    'catalog/worker-2'
    """
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        msg = f"Expected a slot index >= 0, got {index!r}"
        raise ConfigurationError(msg)
    return f"{service}{_SLOT_SUFFIX}{index}"


def slot_of(namespace: str) -> tuple[str, int] | None:
    """``(service, index)`` of a slot namespace; None for any other namespace.

    >>> slot_of("catalog/worker-2"), slot_of("catalog")
    (('catalog', 2), None)
    """
    service, sep, index = namespace.rpartition(_SLOT_SUFFIX)
    if not sep or not service or not index.isdigit() or (index != "0" and index[0] == "0"):
        return None
    return service, int(index)


class _Held(msgspec.Struct):
    fd: int
    slot: WorkerSlot


#: Slots this process holds, by (store directory, service).
_HELD: dict[tuple[str, str], _Held] = {}
_HELD_LOCK = threading.Lock()


def _forget_after_fork() -> None:
    """In a forked child: the parent's slots are the parent's (the child claims its own)."""
    global _HELD_LOCK  # noqa: PLW0603 - a lock a parent thread held stays held in the child
    _HELD_LOCK = threading.Lock()
    for held in _HELD.values():
        # Closing the child's copy leaves the parent's lock in place: a flock
        # is released only when its last descriptor closes.
        with contextlib.suppress(OSError):
            os.close(held.fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


def _slot_file(folder: Path, service: str, index: int) -> Path:
    return folder / f"{xxhash.xxh3_128_hexdigest(service.encode())}.{index}"


def _try_lock(path: Path) -> int | None:
    """A descriptor holding ``path``'s exclusive lock, or None when another process holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        msg = f"Expected to create the slot file {str(path)!r}: {exc.strerror}"
        denied = exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM)
        raise (ReadOnlyStoreError if denied else StoreError)(msg) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        msg = f"Expected to lock the slot file {str(path)!r}: {exc.strerror}"
        raise StoreError(msg) from exc
    return fd


def _first_free(folder: Path, service: str, start: int, stop: int) -> tuple[int, int] | None:
    for index in range(start, stop):
        fd = _try_lock(_slot_file(folder, service, index))
        if fd is not None:
            return index, fd
    return None


def claim_slot(
    directory: str | os.PathLike[str],
    service: str,
    *,
    workers: int | None = None,
    wait: float = 0.0,
    poll: float = 0.05,
) -> WorkerSlot:
    """Claim the lowest free slot of ``service`` for this process, and hold it until exit.

    Claiming again in the same process returns the slot it holds. The slot is
    released when the process exits (however it dies) or by
    :func:`release_slot`.

    Args:
        directory: the store directory (created if missing); the locks live
            in its ``slots/`` folder.
        service: the service's name; its slots' namespaces are
            ``"<service>/worker-<i>"``.
        workers: the number of slots N (the server's worker count); None
            takes the lowest free slot at once.
        wait: with ``workers``, seconds to wait for one of the N slots when
            all are held, before taking one beyond N.
        poll: seconds between attempts while waiting.

    Raises:
        ConfigurationError: a bad ``workers`` or ``wait``, or no ``fcntl`` (Windows).
        StoreError: the directory or a slot file cannot be created or locked.

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> slot = claim_slot(folder, "catalog", workers=4)
    >>> slot.index, slot.namespace, slot.overflow
    (0, 'catalog/worker-0', False)
    >>> release_slot(slot)
    """
    if not _FLOCK:  # pragma: no cover - Windows
        msg = "Expected a POSIX system: worker slots are flock(2) file locks"
        raise ConfigurationError(msg)
    if workers is not None and (
        not isinstance(workers, int) or isinstance(workers, bool) or workers < 1
    ):
        msg = f"Expected workers >= 1 (an int) or None, got {workers!r}"
        raise ConfigurationError(msg)
    if not isinstance(wait, (int, float)) or isinstance(wait, bool) or wait < 0:
        msg = f"Expected wait >= 0 seconds, got {wait!r}"
        raise ConfigurationError(msg)
    try:
        check_namespace(slot_namespace(service, _MAX_SLOTS))
    except ValueError as exc:
        msg = f"Expected a service name that makes a namespace: {exc}"
        raise ConfigurationError(msg) from None
    folder = Path(directory) / "slots"
    key = (os.path.realpath(directory), service)
    with _HELD_LOCK:
        held = _HELD.get(key)
        if held is not None:
            return held.slot
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            msg = f"Expected a writable store directory at {str(directory)!r}: {exc.strerror}"
            raise StoreError(msg) from exc
        started = time.monotonic()
        found = _claim(folder, service, workers, started + wait, poll)
        index, fd, overflow = found
        slot = WorkerSlot(
            service=service,
            index=index,
            namespace=slot_namespace(service, index),
            directory=str(directory),
            workers=workers,
            overflow=overflow,
            waited=time.monotonic() - started,
            pid=os.getpid(),
        )
        _describe(fd, slot)
        _HELD[key] = _Held(fd, slot)
    if overflow:
        log.warning(
            "service %r: all %d worker slots are held (a replacement starting before its "
            "predecessor exited?); this process takes slot %d",
            service,
            workers,
            index,
            extra={"namespace": slot.namespace},
        )
    return slot


def _claim(
    folder: Path, service: str, workers: int | None, deadline: float, poll: float
) -> tuple[int, int, bool]:
    if workers is None:
        found = _first_free(folder, service, 0, _MAX_SLOTS)
    else:
        while True:
            found = _first_free(folder, service, 0, workers)
            if found is not None or time.monotonic() >= deadline:
                break
            time.sleep(poll)
        if found is not None:
            return found[0], found[1], False
        found = _first_free(folder, service, workers, workers + _MAX_SLOTS)
    if found is None:
        msg = f"Expected a free worker slot of {service!r} in {str(folder)!r}, all are held"
        raise StoreError(msg)
    return found[0], found[1], workers is not None


def _describe(fd: int, slot: WorkerSlot) -> None:
    """Write who holds the slot into its file (for people reading the directory)."""
    text = msgspec.json.encode({"pid": slot.pid, "namespace": slot.namespace, "since": time.time()})
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, text + b"\n", 0)
    except OSError:  # pragma: no cover - a full disk: the lock itself still holds
        pass


def release_slot(slot: WorkerSlot) -> None:
    """Release ``slot`` if this process holds it (a successor may then take it at once)."""
    key = (os.path.realpath(slot.directory), slot.service)
    with _HELD_LOCK:
        held = _HELD.get(key)
        if held is None or held.slot != slot:
            return
        del _HELD[key]
        os.close(held.fd)
