"""Push and pull checkpoints through Redis, object storage or a shared filesystem.

A :class:`Remote` is a small key-value protocol: put (if absent), get, stat
(exists), list, delete, and a compare-and-set of a *head*. Three backends
implement it, each addressed by URL (:func:`open_remote`):

* ``redis://host:6379/0?prefix=warmstart:`` (``pip install 'warmstart[redis]'``):
  :class:`~warmstart.remote.redis.RedisRemote`; head updates, and deletions,
  are atomic with their checks (Lua scripts);
* ``s3://bucket/prefix?endpoint=...&region=...`` (``pip install 'warmstart[s3]'``):
  :class:`~warmstart.remote.s3.ObjectStoreRemote` over obstore; the head moves
  with a conditional put (``If-Match`` on its ETag, ``If-None-Match: *`` for
  the first);
* ``file:///shared/path``: :class:`~warmstart.remote.file.FileRemote`, no extra
  needed; the head moves by creating numbered slot files that only one writer
  can create (``link(2)`` fails if the name exists).

:func:`~warmstart.remote.sync.push` and :func:`~warmstart.remote.sync.pull`
move generations between a local :class:`~warmstart.Store` and a remote,
shipping only the chunks the other side lacks. See docs/how-to/remote.md.

>>> import msgspec, pathlib, tempfile
>>> from warmstart import Contract, Store
>>> class Row(msgspec.Struct):
...     name: str
>>> ROWS = Contract("row", Row, key=int)
>>> tmp = pathlib.Path(tempfile.mkdtemp())
>>> url = (tmp / "shared").as_uri()
>>> with Store(tmp / "a") as a:
...     _ = a.save("svc", {"rows": (ROWS, {1: Row("x")})})
...     pushed = push(a, url, "svc")
>>> with Store(tmp / "b") as b:
...     pulled = pull(b, url, "svc")
...     with b.load("svc") as snapshot:
...         print(pushed.status, pulled.status, snapshot.section("rows", ROWS))
pushed pulled {1: Row(name='x')}
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from warmstart.remote.deadline import pull_with_deadline, push_with_deadline
from warmstart.remote.errors import RemoteConflictError, RemoteError, RemoteUnavailableError
from warmstart.remote.file import FileRemote
from warmstart.remote.reports import (
    PullReport,
    PushReport,
    RemoteHead,
    RemoteProgress,
    SyncOutcome,
)
from warmstart.remote.sync import collect_remote, list_remote, pull, push

__all__ = (
    "FileRemote",
    "PullReport",
    "PushReport",
    "Remote",
    "RemoteConflictError",
    "RemoteError",
    "RemoteHead",
    "RemoteProgress",
    "RemoteUnavailableError",
    "SyncOutcome",
    "collect_remote",
    "list_remote",
    "open_remote",
    "pull",
    "pull_with_deadline",
    "push",
    "push_with_deadline",
)


def __dir__() -> tuple[str, ...]:
    return __all__


@runtime_checkable
class Remote(Protocol):
    """What push and pull need from a remote tier; keys are ``/``-separated paths.

    Every method may raise :class:`RemoteUnavailableError` (unreachable, timed
    out) or :class:`RemoteError` (refused). Batch methods take many keys at
    once so a backend can pipeline them.

    Attributes:
        url: where the remote is, without credentials (safe to log).
        atomic: True when :meth:`swap_head` checks ``require`` and
            :meth:`delete` checks ``unless_moved`` in the same atomic step as
            the write (Redis). Otherwise (object storage, files) they are
            checked just before, and garbage collection relies on a grace
            period instead (see :func:`~warmstart.remote.sync.collect_remote`).

    >>> import tempfile
    >>> isinstance(FileRemote(tempfile.mkdtemp()), Remote)
    True
    """

    url: str
    atomic: bool

    def put(self, items: Mapping[str, bytes], *, overwrite: bool = False) -> set[str]:
        """Store each value under its key; return the keys written.

        Without ``overwrite`` a key that exists is left alone (put if absent).
        """

    def get(self, keys: Sequence[str]) -> dict[str, bytes]:
        """The values of the keys that exist (missing keys are left out)."""

    def stat(self, keys: Sequence[str]) -> dict[str, float | None]:
        """For each key that exists, its last-modified time (None if unknown)."""

    def list(self, prefix: str) -> dict[str, float | None]:
        """Every key under ``prefix`` ("" or ending in "/"), with last-modified times."""

    def delete(
        self, keys: Sequence[str], *, unless_moved: tuple[str, bytes | None] | None = None
    ) -> None:
        """Delete keys (a missing key is not an error).

        With ``unless_moved=(head_key, value)`` nothing is deleted if that head
        no longer holds ``value`` (None: no head); raises
        :class:`RemoteConflictError` then.
        """

    def get_head(self, key: str) -> bytes | None:
        """The current value of a head, or None."""

    def swap_head(
        self, key: str, expected: bytes | None, new: bytes, *, require: Sequence[str] = ()
    ) -> set[str]:
        """Set a head to ``new`` if it still holds ``expected`` (None: no head yet).

        Returns the keys of ``require`` that are missing (the head was then
        left alone), or an empty set once the head is set.

        Raises:
            RemoteConflictError: the head holds something else.
        """

    def close(self) -> None:
        """Release connections."""


_SCHEMES = "redis://, rediss://, unix://, s3://, s3a:// or file://"


def open_remote(url: str, *, timeout: float | None = None) -> Remote:
    """Open the remote a URL names; the backend's extra is imported only now.

    Args:
        url: ``redis://[:password@]host:port/db?prefix=warmstart:`` (also
            ``rediss://`` and ``unix://``), ``s3://bucket/prefix`` with
            ``endpoint``, ``region``, ``access_key_id``, ``secret_access_key``,
            ``conditional`` (``etag`` or ``slots``) in the query or the usual
            ``AWS_*`` environment variables, or ``file:///path``.
        timeout: seconds one remote operation may take (connect, read, or a
            request with its retries); each backend has a default.

    Raises:
        ValueError: an unknown scheme or a malformed URL.
        MissingExtraError: the backend's extra is not installed.

    >>> import tempfile
    >>> remote = open_remote("file://" + tempfile.mkdtemp())
    >>> type(remote).__name__, remote.atomic
    ('FileRemote', False)
    """
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme in ("redis", "rediss", "unix"):
        from warmstart.remote.redis import RedisRemote  # noqa: PLC0415 - optional extra

        return RedisRemote.from_url(url, timeout=timeout)
    if scheme in ("s3", "s3a"):
        from warmstart.remote.s3 import ObjectStoreRemote  # noqa: PLC0415 - optional extra

        return ObjectStoreRemote.from_url(url, timeout=timeout)
    if scheme == "file":
        return FileRemote.from_url(url)
    msg = f"Expected a remote URL starting with {_SCHEMES}, got {url!r}"
    raise ValueError(msg)
