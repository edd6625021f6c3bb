"""The LMDB environment under a store: opening, sharing, growth, fork safety, errors.

Private to the store wing. Everything LMDB-specific that is not about
checkpoints lives here. One process holds one LMDB environment per store
directory (the binding refuses a second open, and two handles of one file in
one process would corrupt each other's locks): every ``Store`` of a path is
an :class:`Env` view of one shared :class:`_Handle`, closed with the last.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import lmdb

from warmstart._pacing import released
from warmstart.errors import (
    ReadOnlyStoreError,
    StoreError,
    StoreFormatError,
    StoreFullError,
)

__all__ = ()

log = logging.getLogger("warmstart.store")

R = TypeVar("R")
#: Store formats: 1, records as 0.1 wrote them (every unkeyed store); 2, a
#: keyed store whose heads, quarantine records and markers are sealed (MAC'd
#: with its secret, issue 17). The layout is otherwise the same.
PLAIN_FORMAT = 1
SEALED_FORMAT = 2
FORMATS = (PLAIN_FORMAT, SEALED_FORMAT)
FORMAT_KEY = b"store-format"
DB_NAMES = (b"meta", b"heads", b"manifests", b"chunks")
#: Map all of ``max_map_size`` at open: it takes address space, not memory or
#: disk (data.mdb grows with what is written; 12 KiB for an empty store under a
#: 1 TiB map). Growing a map in place aborts every transaction of the
#: environment, those other threads are in the middle of included: a writer's
#: lock is left held (every later write hangs) and a reader's frame is unmapped
#: under it (SIGSEGV). Not on Windows, where the file would be preallocated.
RESERVE_WHOLE_MAP = os.name == "posix"
# When the reservation is refused (a ``ulimit -v``) or off, the map starts at
# this size and grows by doubling on demand.
INITIAL_MAP = 256 * 1024 * 1024
# Free space under which an I/O error during a commit is taken for a full disk.
DISK_FULL_MARGIN = 1024 * 1024


class _Handle:
    """One LMDB environment, shared by the process's stores of one path, reopened after fork."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        readonly: bool,
        sync: bool,
        max_map_size: int,
        max_readers: int = 256,
        initial_format: int = PLAIN_FORMAT,
    ) -> None:
        self.path = Path(path)
        self.initial_format = initial_format
        #: The format the store had when this process opened it (see ``FORMATS``).
        self.format = initial_format
        self.readonly = readonly
        self.sync = sync
        self.max_map_size = max_map_size
        self.max_readers = max_readers
        # Handles opened by a parent process: never used or closed in the
        # child (LMDB forbids it), only kept so they are not finalised here.
        self._inherited: list[Any] = []
        # Long-lived read transactions (snapshots): at fork, whether the parent
        # still reads decides if the child may close its copy of the handle.
        self._readers: weakref.WeakSet[Any] = weakref.WeakSet()
        self.users = 0  # Env views sharing this handle (changed under _HANDLES_LOCK)
        self._open()

    def reopen_writable(self) -> None:
        """A writable store joins a path open read-only: reopen, if nothing reads it.

        Raises:
            StoreError: a snapshot of the read-only store is open.
        """
        if any(map(_alive, self._readers)):
            msg = (
                f"Expected to open the store at {str(self.path)!r} writable, but this process "
                f"holds it read-only with a snapshot open; close that snapshot (or store) first"
            )
            raise StoreError(msg)
        self.env.close()
        self.readonly = False
        self._open()

    def _open(self) -> None:
        if self.path.name == "data.mdb" and self.path.is_file():
            msg = (
                f"Expected a store directory, got its file {str(self.path)!r}; "
                f"open {str(self.path.parent)!r}"
            )
            raise StoreError(msg)
        if self.readonly:
            if not (self.path / "data.mdb").exists():
                msg = f"Expected a store at {str(self.path)!r}, found no data.mdb"
                raise StoreError(msg)
        else:
            try:
                self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                msg = f"Expected a writable store directory at {str(self.path)!r}: {exc}"
                raise (
                    ReadOnlyStoreError if exc.errno in (errno.EACCES, errno.EROFS) else StoreError
                )(msg) from exc
        self.env = self._open_env(lock=True)
        self.pid = os.getpid()
        # Writes of this process run one at a time, growth included: a map
        # that must grow never aborts another thread's write transaction.
        self._writing = threading.Lock()
        self.dbs = self._open_dbs()
        if not self.readonly:
            # Clear reader slots left behind by killed processes.
            self.env.reader_check()
        self._check_format()

    def _open_env(self, *, lock: bool) -> Any:
        if RESERVE_WHOLE_MAP:
            try:
                return self._lmdb_open(self.max_map_size, lock=lock, reserving=True)
            except lmdb.MemoryError as exc:
                log.warning(
                    "store at %r: could not reserve %d bytes of address space (%s); the map "
                    "will grow in place, which ends snapshots open in other threads",
                    str(self.path),
                    self.max_map_size,
                    exc,
                )
        data = self.path / "data.mdb"
        map_size = max(INITIAL_MAP, data.stat().st_size * 2 if data.exists() else 0)
        return self._lmdb_open(min(map_size, self.max_map_size), lock=lock, reserving=False)

    def _lmdb_open(self, map_size: int, *, lock: bool, reserving: bool) -> Any:
        try:
            return lmdb.open(
                str(self.path),
                map_size=map_size,
                subdir=True,
                readonly=self.readonly,
                lock=lock,
                sync=self.sync,
                metasync=self.sync,
                max_dbs=len(DB_NAMES),
                max_readers=self.max_readers,
                mode=0o600,
                readahead=False,
                create=not self.readonly,
            )
        except lmdb.Error as exc:
            if reserving and isinstance(exc, lmdb.MemoryError):
                raise  # no address space for the whole map: the caller maps less
            if self.readonly and lock and _is_permission(exc):
                # A read-only volume cannot hold the lock file: read without it.
                return self._open_env(lock=False)
            msg = f"Expected to open the store at {str(self.path)!r}: {exc}"
            text = str(exc).lower()
            denied = "read-only" in text or "permission" in text
            raise (ReadOnlyStoreError if denied else StoreError)(msg) from exc

    def _open_dbs(self) -> dict[str, Any]:
        """Open (or create) the tables in one transaction begun by us.

        ``open_db`` without a transaction begins one internally while holding
        the GIL: waiting there for another process's writer would freeze every
        thread of this process. ``begin()`` waits with the GIL released.
        """
        if self.readonly:
            return {name.decode(): self._open_existing(name) for name in DB_NAMES}
        try:
            txn = self.env.begin(write=True)
        except lmdb.Error as exc:
            msg = f"Expected to open the tables of the store at {str(self.path)!r}: {exc}"
            raise StoreError(msg) from exc
        dbs: dict[str, Any] = {}
        try:
            for name in DB_NAMES:
                dbs[name.decode()] = self.env.open_db(name, txn=txn, create=True)
            txn.commit()
        except lmdb.Error as exc:
            txn.abort()
            msg = f"Expected the tables of the store at {str(self.path)!r}: {exc}"
            raise StoreError(msg) from exc
        return dbs

    def _open_existing(self, name: bytes) -> Any:
        # Read-only: a read transaction never waits for the writer.
        try:
            return self.env.open_db(name, create=False)
        except lmdb.NotFoundError:
            return None  # a store that never held this table reads as empty
        except lmdb.Error as exc:
            msg = f"Expected table {name.decode()!r} in the store at {str(self.path)!r}: {exc}"
            raise StoreError(msg) from exc

    def _check_format(self) -> None:
        with self.read() as txn:
            stored = txn.get(FORMAT_KEY, db=self.dbs["meta"]) if self.dbs["meta"] else None
            stored = None if stored is None else bytes(stored)
        if stored is None:
            self.format = self.initial_format
            if not self.readonly:
                value = str(self.initial_format).encode()
                self.write(lambda txn: txn.put(FORMAT_KEY, value, db=self.dbs["meta"]))
            return
        found = read_format(stored)
        if found is None:
            why = (
                "it is not a format number: the record is damaged"
                if not stored.isdigit()
                else "it was written by another warmstart release"
            )
            msg = (
                f"Expected store format {' or '.join(map(str, FORMATS))}, got {stored!r} - in "
                f"{str(self.path)!r}; {why}"
            )
            raise StoreFormatError(msg)
        self.format = found

    def _ensure_process(self) -> None:
        if os.getpid() != self.pid:
            self._reopen_in_child()

    def _reopen_in_child(self) -> None:
        # The binding refuses a second open of an environment this process
        # holds, so the child must close its copy of the parent's handle first.
        # Closing aborts the handle's transactions, which frees their reader
        # slots in the shared lock table: with a parent snapshot open that
        # would let writers reuse pages the parent is still reading. Then the
        # handle is kept, never closed, and the reopen may be refused.
        parent_reading = any(map(_alive, self._readers))
        self._readers = weakref.WeakSet()
        if not parent_reading:
            self.env.close()
        elif self.env not in self._inherited:
            self._inherited.append(self.env)
        try:
            self._open()
        except StoreError as exc:
            if not parent_reading:
                raise
            msg = (
                f"Expected to reopen the store at {str(self.path)!r} after fork(), but the "
                f"parent had a snapshot open; close snapshots before forking, or open the "
                f"store in the child"
            )
            raise StoreError(msg) from exc

    @contextlib.contextmanager
    def read(self) -> Iterator[Any]:
        """A read transaction whose values are zero-copy memoryviews."""
        txn = self.begin_read()
        try:
            yield txn
        except lmdb.Error as exc:
            # A damaged B-tree surfaces as MDB_CORRUPTED / MDB_PAGE_NOTFOUND.
            raise read_error(exc, self.path) from exc
        finally:
            txn.abort()

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Turn LMDB errors of reads in a caller's transaction into StoreError."""
        try:
            yield
        except lmdb.Error as exc:
            raise read_error(exc, self.path) from exc

    def get(self, txn: Any, key: bytes, db: Any) -> Any:
        """``txn.get`` for a snapshot's long-lived transaction."""
        try:
            return txn.get(key, db=db)
        except lmdb.Error as exc:
            msg = (
                f"Expected an open snapshot of the store at {str(self.path)!r}: {exc}; a save "
                f"that grew the map (or closing the store) ends open snapshots: reload"
            )
            raise StoreError(msg) from exc

    def begin_read(self) -> Any:
        """A long-lived read transaction; the caller aborts it."""
        self._ensure_process()
        try:
            try:
                txn = self.env.begin(buffers=True)
            except lmdb.MapResizedError:
                # Another process grew the map past ours: adopt its size.
                self.env.set_mapsize(0)
                txn = self.env.begin(buffers=True)
        except lmdb.Error as exc:
            raise read_error(exc, self.path) from exc
        self._readers.add(txn)
        return txn

    def write(self, body: Callable[[Any], R]) -> R:
        """Run ``body(txn)`` in one write transaction, growing the map if needed.

        The transaction commits only if ``body`` returns; any exception aborts
        it, so nothing of a failed write is visible.
        """
        if self.readonly:
            msg = f"Expected a writable store, {str(self.path)!r} is open read-only"
            raise ReadOnlyStoreError(msg)
        self._ensure_process()
        with self._writing:
            while True:
                try:
                    return self._commit(body)
                except lmdb.MapFullError as exc:
                    self._grow(exc)
                except lmdb.MapResizedError:
                    # Another process grew the map: adopt its size and retry.
                    self.env.set_mapsize(0)
                except lmdb.Error as exc:
                    raise _translate(exc, self.path) from exc

    def _commit(self, body: Callable[[Any], R]) -> R:
        """``body(txn)`` in a write transaction, committed if it returns."""
        txn = self.env.begin(write=True)
        try:
            result = body(txn)
        except BaseException:
            txn.abort()
            raise
        # The binding lets go of the GIL while LMDB commits (2.3 and 3.0
        # both): the pages written and the kernel's writeback at fsync are
        # CPU, but not a stretch that keeps the service's threads waiting.
        with released():
            txn.commit()  # ends the transaction, committed or not
        return result

    def _grow(self, exc: Exception) -> None:
        current = self.env.info()["map_size"]
        if current >= self.max_map_size:
            msg = (
                f"Expected the save to fit in the store's maximum map size of "
                f"{self.max_map_size} bytes at {str(self.path)!r}; raise max_map_size"
            )
            raise StoreFullError(msg) from exc
        self.env.set_mapsize(min(current * 2, self.max_map_size))

    def close(self) -> None:
        """Close the environment (in the process that opened it)."""
        if os.getpid() == self.pid:
            self.env.close()


def read_format(stored: bytes | None) -> int | None:
    """The format a ``store-format`` record names, or None if it names none this release reads."""
    if stored is None:
        return None
    try:
        found = int(stored)
    except ValueError:
        return None
    return found if found in FORMATS else None


def _is_permission(exc: lmdb.Error) -> bool:
    text = str(exc).lower()
    return "permission" in text or "read-only" in text or "no such file" in text


def _alive(txn: Any) -> bool:
    try:
        txn.id()
    except lmdb.Error:
        return False
    return True


def read_error(exc: lmdb.Error, path: Path) -> StoreError:
    """A read LMDB refused (closed, damaged, resized), as a StoreError."""
    return StoreError(f"Expected to read the store at {str(path)!r}: {exc}")


def _disk_full(exc: lmdb.Error, path: Path) -> bool:
    # LMDB reports a short write (what a full disk gives) as EIO, not ENOSPC.
    if isinstance(exc, lmdb.DiskError) or getattr(exc, "errno", None) == errno.ENOSPC:
        return True
    if "Input/output error" not in str(exc):
        return False
    try:
        fs = os.statvfs(path)
    except OSError:
        return False
    return fs.f_bavail * fs.f_frsize < DISK_FULL_MARGIN


def _translate(exc: lmdb.Error, path: Path) -> StoreError:
    text = str(exc)
    if isinstance(exc, lmdb.ReadonlyError) or "read-only" in text.lower():
        return ReadOnlyStoreError(f"Expected a writable store at {str(path)!r}: {text}")
    if "No space left" in text or _disk_full(exc, path):
        return StoreFullError(
            f"Expected free disk space for the store at {str(path)!r}: {text}; "
            f"the previous generation is intact"
        )
    return StoreError(f"Expected the store at {str(path)!r} to accept the write: {text}")


_HANDLES: dict[str, _Handle] = {}
_HANDLES_LOCK = threading.Lock()


class Env:
    """One store's view of its directory's environment (shared within the process).

    The first store of a path opens the environment with its settings; later
    stores share it. A read-only store refuses writes itself; a writable store
    of a path open only read-only reopens it writable when nothing reads it. A
    store that asks for ``sync`` on an environment opened without it flushes
    after each of its commits.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        readonly: bool,
        sync: bool,
        max_map_size: int,
        max_readers: int = 256,
        initial_format: int = PLAIN_FORMAT,
    ) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.sync = sync
        self.max_map_size = max_map_size
        self._key = os.path.realpath(self.path)
        self._closed = False
        with _HANDLES_LOCK:
            handle = _HANDLES.get(self._key)
            if handle is None:
                handle = _Handle(
                    self.path,
                    readonly=readonly,
                    sync=sync,
                    max_map_size=max_map_size,
                    max_readers=max_readers,
                    initial_format=initial_format,
                )
                _HANDLES[self._key] = handle
            elif handle.readonly and not readonly:
                handle.reopen_writable()
            handle.users += 1
        self._handle = handle

    @property
    def env(self) -> Any:
        """The LMDB environment (shared)."""
        return self._handle.env

    @property
    def store_format(self) -> int:
        """The store's format (see ``FORMATS``), shared by every store of the path."""
        return self._handle.format

    @store_format.setter
    def store_format(self, value: int) -> None:
        self._handle.format = value

    @property
    def dbs(self) -> dict[str, Any]:
        """The four tables (shared)."""
        return self._handle.dbs

    def read(self) -> contextlib.AbstractContextManager[Any]:
        """A read transaction whose values are zero-copy memoryviews."""
        return self._handle.read()

    def reading(self) -> contextlib.AbstractContextManager[None]:
        """Turn LMDB errors of reads in a caller's transaction into StoreError."""
        return self._handle.reading()

    def get(self, txn: Any, key: bytes, db: Any) -> Any:
        """``txn.get`` for a snapshot's long-lived transaction."""
        return self._handle.get(txn, key, db)

    def begin_read(self) -> Any:
        """A long-lived read transaction; the caller aborts it."""
        return self._handle.begin_read()

    def write(self, body: Callable[[Any], R]) -> R:
        """Run ``body(txn)`` in one write transaction (see :meth:`_Handle.write`)."""
        if self.readonly:
            msg = f"Expected a writable store, {str(self.path)!r} is open read-only"
            raise ReadOnlyStoreError(msg)
        result = self._handle.write(body)
        if self.sync and not self._handle.sync:
            with released():  # an fsync, without the GIL
                self._handle.env.sync(True)
        return result

    def close(self) -> None:
        """Release this store's share; the last one closes the environment."""
        with _HANDLES_LOCK:
            if self._closed:
                return
            self._closed = True
            self._handle.users -= 1
            if self._handle.users == 0:
                if _HANDLES.get(self._key) is self._handle:
                    del _HANDLES[self._key]
                self._handle.close()
