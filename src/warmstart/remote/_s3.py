"""A remote in object storage through obstore: ``s3://bucket/prefix`` (``warmstart[s3]``).

Any obstore store works (``S3Store``, ``LocalStore``, ``MemoryStore``, ...);
URLs open an ``S3Store``. Values are objects. Put-if-absent is a conditional
put (``If-None-Match: *``). A head moves in one of two ways:

* ``etag`` (the default, for S3): read the head and its ETag, compare the
  value, then put with ``If-Match: <etag>`` (``If-None-Match: *`` for the
  first head); a writer that lost the race gets ``412 Precondition Failed``.
  AWS S3 has both conditions since 2024; MinIO and moto implement them too.
* ``slots`` (the default for ``LocalStore``, whose backend does not implement
  conditional overwrites): the head is a directory of numbered slot objects
  and moving it creates the next one with ``If-None-Match`` semantics (see
  ``warmstart.remote._base``). Use ``?conditional=slots`` for an S3-compatible
  server that supports ``If-None-Match`` but not ``If-Match``.

Every client of one remote must use the same mode. Neither mode can check
``require``d keys in the same step as the head write, so the push protocol
leans on a grace period for garbage collection (see ``warmstart.remote._sync``).

>>> import tempfile
>>> from obstore.store import LocalStore
>>> remote = ObjectStoreRemote(LocalStore(tempfile.mkdtemp()))
>>> remote.conditional, remote.put({"a/b": b"1"}), remote.get(["a/b"])
('slots', {'a/b'}, {'a/b': b'1'})
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import os
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypeVar

from warmstart.errors import MissingExtraError
from warmstart.remote._base import (
    check_key,
    check_prefix,
    checked_delete,
    missing,
    redact,
    slot_get_head,
    slot_swap_head,
)
from warmstart.remote._errors import RemoteConflictError, RemoteError, RemoteUnavailableError

__all__ = ("ObjectStoreRemote",)


def __dir__() -> tuple[str, ...]:
    return __all__


T = TypeVar("T")
R = TypeVar("R")
Conditional = Literal["etag", "slots"]
DEFAULT_TIMEOUT = 30.0
#: Query parameters of an ``s3://`` URL that are ours, not obstore's.
_OWN = ("conditional", "concurrency")
#: obstore client options that may come in the query (the rest is S3 config).
_CLIENT = ("allow_http", "allow_invalid_certificates", "timeout", "connect_timeout")
#: Above this many keys, ``stat`` lists their directory instead of one HEAD each.
_LIST_ABOVE = 16
# Texts of obstore errors that mean "the server is not reachable right now".
_UNREACHABLE = ("error sending request", "connect", "timed out", "timeout", "dns", "broken pipe")


def _obstore() -> Any:
    try:
        import obstore  # noqa: PLC0415 - optional extra, imported on first use
    except ImportError as exc:
        msg = (
            "Expected the obstore package for s3:// remotes, it is not installed: "
            "install it (pip install obstore), or warmstart's 's3' extra"
        )
        raise MissingExtraError(msg) from exc
    return obstore


class ObjectStoreRemote:
    """A :class:`~warmstart.remote.Remote` on an obstore store.

    Args:
        store: an obstore store (``obstore.store.S3Store``, ``LocalStore``, ...).
        url: the address to show in reports and logs (credentials redacted).
        conditional: how the head moves, ``"etag"`` or ``"slots"`` (see the
            module docstring); by default ``slots`` for ``LocalStore``, else ``etag``.
        concurrency: requests in flight at once for batch operations.
    """

    atomic = False

    def __init__(
        self,
        store: Any,
        *,
        url: str | None = None,
        conditional: Conditional | None = None,
        concurrency: int = 8,
    ) -> None:
        self._obs = _obstore()
        self._store = store
        local = type(store).__name__ == "LocalStore"
        self.conditional: Conditional = conditional or ("slots" if local else "etag")
        if self.conditional not in ("etag", "slots"):
            msg = f"Expected conditional='etag' or 'slots', got {conditional!r}"
            raise ValueError(msg)
        self.url = redact(url) if url is not None else repr(store)
        self._concurrency = max(1, concurrency)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    @classmethod
    def from_url(cls, url: str, *, timeout: float | None = None) -> ObjectStoreRemote:
        """Open ``s3://bucket/prefix?endpoint=...&region=...``.

        Query parameters are obstore's S3 configuration keys (``endpoint``,
        ``region``, ``access_key_id``, ``secret_access_key``, ``session_token``,
        ...) and client options (``allow_http``, ``timeout``,
        ``connect_timeout``); what is not given comes from the ``AWS_*``
        environment variables. Ours: ``conditional`` and ``concurrency``. An
        ``http://`` endpoint turns on ``allow_http``.
        """
        obstore = _obstore()
        from obstore.store import S3Store  # noqa: PLC0415 - optional extra

        parts = urllib.parse.urlsplit(url)
        config: dict[str, str] = {}
        client: dict[str, Any] = {}
        own: dict[str, str] = {}
        for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
            target = own if key in _OWN else client if key in _CLIENT else config
            target[key] = value
        for flag in ("allow_http", "allow_invalid_certificates"):
            if flag in client:
                client[flag] = client[flag].lower() in ("1", "true", "yes")
        endpoint = config.get("endpoint") or os.environ.get("AWS_ENDPOINT_URL", "")
        if endpoint.startswith("http://"):
            client.setdefault("allow_http", True)
        seconds = DEFAULT_TIMEOUT if timeout is None else timeout
        client.setdefault("timeout", datetime.timedelta(seconds=seconds))
        client.setdefault("connect_timeout", datetime.timedelta(seconds=min(seconds, 5.0)))
        retry = {
            "max_retries": 2,
            "retry_timeout": datetime.timedelta(seconds=seconds),
            "backoff": {
                "init_backoff": datetime.timedelta(milliseconds=50),
                "max_backoff": datetime.timedelta(seconds=1),
                "base": 2,
            },
        }
        base = urllib.parse.urlunsplit(parts._replace(query=""))
        try:
            store = S3Store.from_url(
                base,
                config=config,  # type: ignore[arg-type]
                client_options=client,  # type: ignore[arg-type]
                retry_config=retry,  # type: ignore[arg-type]
            )
        except (obstore.exceptions.BaseError, ValueError, TypeError) as exc:
            msg = f"Expected a usable S3 URL, got {redact(url)!r}: {exc}"
            raise ValueError(msg) from exc
        conditional = own.get("conditional")
        if conditional not in (None, "etag", "slots"):
            msg = f"Expected conditional=etag or conditional=slots, got {conditional!r}"
            raise ValueError(msg)
        return cls(
            store,
            url=url,
            conditional=conditional,  # type: ignore[arg-type]
            concurrency=int(own.get("concurrency", "8")),
        )

    def __repr__(self) -> str:
        return f"ObjectStoreRemote({self.url!r}, conditional={self.conditional!r})"

    @contextlib.contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        exceptions = self._obs.exceptions
        try:
            yield
        except (exceptions.PermissionDeniedError, exceptions.UnauthenticatedError) as exc:
            msg = f"Expected {self.url} to let us {operation}, access was denied: {exc}"
            raise RemoteError(msg) from exc
        except (exceptions.BaseError, OSError) as exc:
            text = str(exc)
            msg = f"Expected {self.url} to {operation}: {_first_line(text)}"
            lowered = text.lower()
            # A 5xx that outlived the retries means the service is down, not refusing.
            if (
                isinstance(exc, OSError)
                or any(w in lowered for w in _UNREACHABLE)
                or "status code: 5" in lowered
            ):
                raise RemoteUnavailableError(msg) from exc
            raise RemoteError(msg) from exc

    def _map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``fn`` over ``items``, several requests in flight when there are several."""
        if len(items) <= 1 or self._concurrency == 1:
            return [fn(item) for item in items]
        try:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    self._concurrency, thread_name_prefix="warmstart-remote"
                )
            return list(self._pool.map(fn, items))
        except RuntimeError:
            # At interpreter shutdown (an atexit push) no thread can start.
            return [fn(item) for item in items]

    # -- the Remote protocol --------------------------------------------------

    def put(self, items: Mapping[str, bytes], *, overwrite: bool = False) -> set[str]:
        """Put each value (``If-None-Match: *`` unless ``overwrite``); return the keys written."""
        mode = "overwrite" if overwrite else "create"
        exists = self._obs.exceptions.AlreadyExistsError

        def one(item: tuple[str, bytes]) -> str | None:
            key, data = item
            try:
                self._obs.put(self._store, check_key(key), data, mode=mode, use_multipart=False)
            except exists:
                return None
            return key

        with self._errors("store objects"):
            return {k for k in self._map(one, list(items.items())) if k is not None}

    def get(self, keys: Sequence[str]) -> dict[str, bytes]:
        """The objects that exist."""

        def one(key: str) -> tuple[str, bytes | None]:
            try:
                return key, bytes(self._obs.get(self._store, check_key(key)).bytes())
            except (FileNotFoundError, self._obs.exceptions.NotFoundError):
                return key, None

        with self._errors("read objects"):
            return {k: v for k, v in self._map(one, list(keys)) if v is not None}

    def stat(self, keys: Sequence[str]) -> dict[str, float | None]:
        """Last-modified times of the objects that exist (one listing for many keys)."""
        directories = {k.rpartition("/")[0] for k in keys}
        if len(keys) > _LIST_ABOVE and len(directories) == 1 and "" not in directories:
            listed = self.list(directories.pop() + "/")
            return {k: listed[k] for k in keys if k in listed}

        def one(key: str) -> tuple[str, float | None, bool]:
            try:
                meta = self._obs.head(self._store, check_key(key))
            except (FileNotFoundError, self._obs.exceptions.NotFoundError):
                return key, None, False
            return key, _timestamp(meta), True

        with self._errors("check objects"):
            return {k: t for k, t, found in self._map(one, list(keys)) if found}

    def list(self, prefix: str) -> dict[str, float | None]:
        """Every object under ``prefix`` with its last-modified time."""
        check_prefix(prefix)
        out: dict[str, float | None] = {}
        with self._errors("list objects"):
            for batch in self._obs.list(self._store, prefix=prefix.rstrip("/") or None):
                for meta in batch:
                    out[str(meta["path"])] = _timestamp(meta)
        return out

    def delete_keys(self, keys: Sequence[str]) -> None:
        """Delete objects (bulk where the store can; a missing one is not an error)."""
        if not keys:
            return
        for key in keys:
            check_key(key)
        with self._errors("delete objects"):
            try:
                self._obs.delete(self._store, list(keys))
            except (FileNotFoundError, self._obs.exceptions.NotFoundError):
                # A local store refuses a batch with a missing path: go one by one.
                for key in keys:
                    with contextlib.suppress(FileNotFoundError, self._obs.exceptions.NotFoundError):
                        self._obs.delete(self._store, key)

    def delete(
        self, keys: Sequence[str], *, unless_moved: tuple[str, bytes | None] | None = None
    ) -> None:
        """Delete objects; with ``unless_moved``, only if that head is unchanged (checked first)."""
        head = None if unless_moved is None else self.get_head(unless_moved[0])
        checked_delete(self, keys, unless_moved, head)

    def get_head(self, key: str) -> bytes | None:
        """The head's value, or None."""
        if self.conditional == "slots":
            return slot_get_head(self, key)
        return self.get([key]).get(key)

    def swap_head(
        self, key: str, expected: bytes | None, new: bytes, *, require: Sequence[str] = ()
    ) -> set[str]:
        """Move the head from ``expected`` to ``new`` with a conditional put."""
        if self.conditional == "slots":
            return slot_swap_head(self, key, expected, new, require)
        exceptions = self._obs.exceptions
        conflict = f"Expected head {key!r} to hold the value read before, another writer moved it"
        with self._errors("read a head"):
            try:
                found = self._obs.get(self._store, check_key(key))
                value: bytes | None = bytes(found.bytes())
                etag = found.meta["e_tag"]
            except (FileNotFoundError, exceptions.NotFoundError):
                value, etag = None, None
        if value != expected:
            raise RemoteConflictError(conflict)
        lacking = missing(self, require)
        if lacking:
            return lacking
        mode: Any = "create" if etag is None else {"e_tag": etag}
        with self._errors("move a head"):
            try:
                self._obs.put(self._store, key, new, mode=mode, use_multipart=False)
            except (exceptions.AlreadyExistsError, exceptions.PreconditionError) as exc:
                raise RemoteConflictError(conflict) from exc
        return set()

    def close(self) -> None:
        """Stop the request threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None


def _timestamp(meta: Any) -> float | None:
    moment = meta.get("last_modified")
    return moment.timestamp() if isinstance(moment, datetime.datetime) else None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text
