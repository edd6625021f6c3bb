"""The remote protocol, and opening a remote by URL."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from warmstart.remote._base import MAX_OBJECT
from warmstart.remote._file import FileRemote

__all__ = ("Remote", "open_remote")


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
            period instead (see :func:`~warmstart.remote.collect_remote`).

    >>> import tempfile
    >>> from warmstart.remote import FileRemote, Remote
    >>> isinstance(FileRemote(tempfile.mkdtemp()), Remote)
    True
    """

    url: str
    atomic: bool

    def put(self, items: Mapping[str, bytes], *, overwrite: bool = False) -> set[str]:
        """Store each value under its key; return the keys written.

        Without ``overwrite`` a key that exists is left alone (put if absent).
        """

    def get(self, keys: Sequence[str], *, limit: int = MAX_OBJECT) -> dict[str, bytes]:
        """The values of the keys that exist (missing keys are left out).

        A value over ``limit`` bytes is refused with ``IntegrityError``
        without being read whole: its size is checked first (a file's stat,
        Redis ``STRLEN``, an object store's ranged read).
        """

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
        """The current value of a head, or None (one over ``MAX_HEAD`` bytes is refused)."""

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
    >>> from warmstart.remote import open_remote
    >>> remote = open_remote("file://" + tempfile.mkdtemp())
    >>> type(remote).__name__, remote.atomic
    ('FileRemote', False)
    """
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme in ("redis", "rediss", "unix"):
        from warmstart.remote._redis import RedisRemote  # noqa: PLC0415 - optional extra

        return RedisRemote.from_url(url, timeout=timeout)
    if scheme in ("s3", "s3a"):
        from warmstart.remote._s3 import ObjectStoreRemote  # noqa: PLC0415 - optional extra

        return ObjectStoreRemote.from_url(url, timeout=timeout)
    if scheme == "file":
        return FileRemote.from_url(url)
    msg = f"Expected a remote URL starting with {_SCHEMES}, got {url!r}"
    raise ValueError(msg)
