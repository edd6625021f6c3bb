"""A remote on a shared filesystem (NFS, a mounted volume): ``file:///path``.

Each key is a file under the root. A value is written to a temporary file in
the same directory and fsynced first, then linked into place (put if absent:
``link(2)`` fails when the name exists) or renamed over it (overwrite), so a
reader never sees half a value and a crash leaves at worst a temporary file.
Heads are slot heads (see ``warmstart.remote._base``): moving one creates the
next numbered slot file, which only one writer can do. This needs nothing
more than atomic ``link`` and ``rename`` from the filesystem, which local
filesystems and NFS provide.

>>> import tempfile
>>> remote = FileRemote(tempfile.mkdtemp())
>>> remote.put({"a/b": b"1"}), remote.put({"a/b": b"2"})
({'a/b'}, set())
>>> remote.get(["a/b", "a/c"])
{'a/b': b'1'}
>>> remote.swap_head("a/head", None, b"h1"), remote.get_head("a/head")
(set(), b'h1')
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from warmstart.remote._base import (
    MAX_OBJECT,
    check_key,
    check_prefix,
    checked_delete,
    slot_get_head,
    slot_swap_head,
    too_large,
)
from warmstart.remote._errors import RemoteError, RemoteUnavailableError

__all__ = ("FileRemote",)


def __dir__() -> tuple[str, ...]:
    return __all__


_TMP = ".ws-tmp-"
# Errors that mean "the shared filesystem is not there right now", not "refused".
_UNAVAILABLE = {errno.ENOTCONN, errno.ESTALE, errno.EIO, errno.ETIMEDOUT, errno.EHOSTDOWN}


class FileRemote:
    """A remote kept as files under ``root`` (created with mode 0700 if missing).

    Args:
        root: the shared directory.
        fsync: fsync values and their directories before they count as
            written (durable across a power loss of the file server).
    """

    atomic = False

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self.url = self.root.absolute().as_uri()
        with self._errors("open"):
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)

    @classmethod
    def from_url(cls, url: str) -> FileRemote:
        """Open ``file:///path`` (``file://localhost/path`` too).

        >>> FileRemote.from_url("file:///tmp/ws%20remote").root
        PosixPath('/tmp/ws remote')
        """
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost") or not parts.path:
            msg = f"Expected file:///absolute/path, got {url!r}"
            raise ValueError(msg)
        return cls(urllib.parse.unquote(parts.path))

    def __repr__(self) -> str:
        return f"FileRemote({str(self.root)!r})"

    @contextlib.contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            msg = f"Expected to {operation} under {str(self.root)!r}: {exc}"
            if exc.errno in _UNAVAILABLE:
                raise RemoteUnavailableError(msg) from exc
            raise RemoteError(msg) from exc

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    # -- the Remote protocol --------------------------------------------------

    def put(self, items: Mapping[str, bytes], *, overwrite: bool = False) -> set[str]:
        """Write each value (if absent, unless ``overwrite``); return the keys written."""
        written: set[str] = set()
        touched: set[Path] = set()
        with self._errors("write"):
            for key, data in items.items():
                path = self._path(key)
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                if self._place(path, data, overwrite=overwrite):
                    written.add(key)
                    touched.add(path.parent)
            if self.fsync:
                for directory in touched:
                    _fsync_dir(directory)
        return written

    def _place(self, path: Path, data: bytes, *, overwrite: bool) -> bool:
        tmp = path.with_name(f"{_TMP}{path.name}.{secrets.token_hex(6)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            if overwrite:
                tmp.replace(path)
                return True
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def get(self, keys: Sequence[str], *, limit: int = MAX_OBJECT) -> dict[str, bytes]:
        """The values of the keys that exist; one over ``limit`` bytes is refused unread."""
        out: dict[str, bytes] = {}
        with self._errors("read"):
            for key in keys:
                try:
                    f = self._path(key).open("rb")
                except (FileNotFoundError, NotADirectoryError):
                    continue
                with f:
                    size = os.fstat(f.fileno()).st_size
                    if size > limit:
                        raise too_large(self.url, key, size, limit)
                    # Values are replaced by rename, never in place: an open file
                    # that grows is being written by someone else.
                    data = f.read(size)
                    if f.read(1):
                        raise too_large(self.url, key, f"more than {size}", limit)
                out[key] = data
        return out

    def stat(self, keys: Sequence[str]) -> dict[str, float | None]:
        """Modification times of the keys that exist."""
        out: dict[str, float | None] = {}
        with self._errors("stat"):
            for key in keys:
                try:
                    out[key] = self._path(key).stat().st_mtime
                except (FileNotFoundError, NotADirectoryError):
                    continue
        return out

    def list(self, prefix: str) -> dict[str, float | None]:
        """Every key under ``prefix`` with its modification time (temporary files left out)."""
        base = self.root / check_prefix(prefix) if prefix else self.root
        out: dict[str, float | None] = {}
        with self._errors("list"):
            for directory, _, files in os.walk(base):
                for name in files:
                    if name.startswith(_TMP):
                        continue
                    path = Path(directory, name)
                    try:
                        mtime = path.stat().st_mtime
                    except FileNotFoundError:
                        continue  # deleted while listing
                    out[path.relative_to(self.root).as_posix()] = mtime
        return out

    def delete_keys(self, keys: Sequence[str]) -> None:
        """Remove files (a missing one is not an error)."""
        with self._errors("delete"):
            for key in keys:
                with contextlib.suppress(FileNotFoundError):
                    self._path(key).unlink()

    def delete(
        self, keys: Sequence[str], *, unless_moved: tuple[str, bytes | None] | None = None
    ) -> None:
        """Delete keys; with ``unless_moved``, only if that head is unchanged (checked first)."""
        head = None if unless_moved is None else self.get_head(unless_moved[0])
        checked_delete(self, keys, unless_moved, head)

    def get_head(self, key: str) -> bytes | None:
        """The head's value, or None."""
        return slot_get_head(self, key)

    def swap_head(
        self, key: str, expected: bytes | None, new: bytes, *, require: Sequence[str] = ()
    ) -> set[str]:
        """Move the head from ``expected`` to ``new`` by taking the next slot."""
        return slot_swap_head(self, key, expected, new, require)

    def close(self) -> None:
        """Nothing to release."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
