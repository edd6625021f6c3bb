"""Errors of the remote tier, rooted in :class:`~warmstart.errors.StoreError`.

A remote is a store too, so its failures are store errors: code that already
catches ``StoreError`` (or the builtin each class also derives from) keeps
working. Damaged or tampered remote data raises the core
:class:`~warmstart.errors.IntegrityError`, and a namespace the remote does not
hold raises :class:`~warmstart.errors.CheckpointNotFoundError`, as locally.

>>> from warmstart.errors import StoreError
>>> issubclass(RemoteConflictError, RemoteError) and issubclass(RemoteError, StoreError)
True
>>> issubclass(RemoteUnavailableError, ConnectionError)
True
"""

from __future__ import annotations

from warmstart.errors import StoreError

__all__ = ("RemoteConflictError", "RemoteError", "RemoteUnavailableError")


def __dir__() -> tuple[str, ...]:
    return __all__


class RemoteError(StoreError):
    """A remote (Redis, object storage, shared filesystem) refused or failed an operation.

    .. versionadded:: 0.1.0
    """


class RemoteUnavailableError(RemoteError, ConnectionError):
    """The remote could not be reached, or did not answer within its timeout.

    Boot treats it as "no remote this time": it goes on with the local store
    and reports it; it never blocks startup or shutdown past the deadline.

    .. versionadded:: 0.1.0
    """


class RemoteConflictError(RemoteError):
    """Another writer moved the remote head first; this push published nothing.

    The remote head still names a complete generation (the other writer's).
    Pull to adopt it, or push again to publish on top of it.

    .. versionadded:: 0.1.0
    """
