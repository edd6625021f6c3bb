"""A remote in Redis: ``redis://host:6379/0?prefix=warmstart:`` (``warmstart[redis]``).

Every key is a Redis string under ``prefix``. Puts are ``SET ... NX`` (or a
plain ``SET``), reads ``GET``, existence ``EXISTS``, all pipelined in batches.
Moving a head is one Lua script: compare the head with the value read
before, check that every ``require``d key exists, then set it, all in one
atomic step, so a head never names a chunk a concurrent deletion removed.
Guarded deletions are a Lua script too (delete only if the head is unchanged).

Operational needs: ``maxmemory-policy noeviction`` (an evicting Redis may drop
a chunk a head references; pull then refuses that generation), and
persistence (AOF or RDB) if the checkpoints must survive a Redis restart.
Standalone Redis only (or a Sentinel-managed master: pass its client to
:class:`RedisRemote`): the scripts touch several keys, which Redis Cluster
refuses unless they share a slot.

>>> RedisRemote.from_url("redis://:pw@127.0.0.1:6379/2?prefix=svc:").url
'redis://:***@127.0.0.1:6379/2?prefix=svc:'
"""

from __future__ import annotations

import contextlib
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from warmstart.errors import MissingExtraError
from warmstart.remote._base import check_key, check_prefix, redact
from warmstart.remote._errors import RemoteConflictError, RemoteError, RemoteUnavailableError

__all__ = ("RedisRemote",)


def __dir__() -> tuple[str, ...]:
    return __all__


DEFAULT_PREFIX = "warmstart:"
DEFAULT_TIMEOUT = 10.0
#: Bytes sent per pipeline round trip (values are chunks of about 200 kB).
_BATCH_BYTES = 8 * 1024 * 1024
#: Keys per pipeline round trip or script call for small values and deletions.
_BATCH_KEYS = 512

# KEYS[1] = head, KEYS[2..] = keys that must exist; ARGV = expected-present
# flag, expected value, new value. Returns {1} when set, {0, current} on a
# conflict, {2, missing...} when required keys are missing.
_SWAP = """
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if cur ~= ARGV[2] then return {0, cur} end
elseif cur then
  return {0, cur}
end
local missing = {2}
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then missing[#missing + 1] = KEYS[i] end
end
if #missing > 1 then return missing end
redis.call('SET', KEYS[1], ARGV[3])
return {1}
"""

# KEYS[1] = head, KEYS[2..] = keys to delete; deletes only if the head holds
# ARGV[2] (ARGV[1] = '1') or is absent (ARGV[1] = '0'). Returns -1 if it moved.
_GUARDED_DELETE = """
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if cur ~= ARGV[2] then return -1 end
elseif cur then
  return -1
end
for i = 2, #KEYS do redis.call('UNLINK', KEYS[i]) end
return #KEYS - 1
"""


def _redis() -> Any:
    try:
        import redis  # noqa: PLC0415 - optional extra, imported on first use
    except ImportError as exc:
        msg = (
            "Expected the redis package for redis:// remotes, it is not installed: "
            "install it (pip install redis), or warmstart's 'redis' extra"
        )
        raise MissingExtraError(msg) from exc
    return redis


class RedisRemote:
    """A :class:`~warmstart.remote.Remote` on one Redis database.

    Args:
        client: a ``redis.Redis`` client (bytes responses: no ``decode_responses``).
        prefix: prepended to every key, so several services can share a database.
        url: the address to show in reports and logs (credentials redacted).
    """

    atomic = True

    def __init__(
        self, client: Any, *, prefix: str = DEFAULT_PREFIX, url: str | None = None
    ) -> None:
        self._redis = _redis()
        self._client = client
        self.prefix = prefix
        self.url = redact(url) if url is not None else f"redis (prefix {prefix!r})"
        self._swap = client.register_script(_SWAP)
        self._guarded_delete = client.register_script(_GUARDED_DELETE)

    @classmethod
    def from_url(cls, url: str, *, timeout: float | None = None) -> RedisRemote:
        """Connect (lazily) to ``redis://``, ``rediss://`` or ``unix://`` URL.

        ``prefix`` in the query sets the key prefix (default ``warmstart:``);
        other query parameters go to ``redis.Redis.from_url``.
        """
        redis = _redis()
        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        prefix = DEFAULT_PREFIX
        rest = []
        for key, value in query:
            if key == "prefix":
                prefix = value
            else:
                rest.append((key, value))
        seconds = DEFAULT_TIMEOUT if timeout is None else timeout
        from redis.backoff import ExponentialBackoff  # noqa: PLC0415 - optional extra
        from redis.retry import Retry  # noqa: PLC0415 - optional extra

        client = redis.Redis.from_url(
            urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(rest))),
            socket_timeout=seconds,
            socket_connect_timeout=min(seconds, 5.0),
            # One quick retry rides over a dropped idle connection; more would
            # stretch an outage past the caller's deadline.
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
        )
        return cls(client, prefix=prefix, url=url)

    def __repr__(self) -> str:
        return f"RedisRemote({self.url!r})"

    def _key(self, key: str) -> bytes:
        return (self.prefix + check_key(key)).encode()

    @contextlib.contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        exceptions = self._redis.exceptions
        try:
            yield
        except exceptions.AuthenticationError as exc:
            msg = f"Expected Redis at {self.url} to accept our credentials to {operation}: {exc}"
            raise RemoteError(msg) from exc
        except (exceptions.ConnectionError, exceptions.TimeoutError, OSError) as exc:
            msg = f"Expected Redis at {self.url} to {operation}, it is unavailable: {exc}"
            raise RemoteUnavailableError(msg) from exc
        except exceptions.RedisError as exc:
            msg = f"Expected Redis at {self.url} to {operation}: {exc}"
            raise RemoteError(msg) from exc

    def pubsub_client(self) -> Any:
        """The ``redis.Redis`` client, for what the protocol lacks (the hand-off channel)."""
        return self._client

    def errors(self, operation: str) -> contextlib.AbstractContextManager[None]:
        """Turn Redis failures during ``operation`` into the remote's own errors."""
        return self._errors(operation)

    # -- the Remote protocol --------------------------------------------------

    def put(self, items: Mapping[str, bytes], *, overwrite: bool = False) -> set[str]:
        """``SET`` (``NX`` unless ``overwrite``) each value; return the keys written."""
        written: set[str] = set()
        with self._errors("store values"):
            for batch in _batches(list(items.items()), lambda kv: len(kv[1])):
                pipe = self._client.pipeline(transaction=False)
                for key, data in batch:
                    pipe.set(self._key(key), data, nx=not overwrite)
                for (key, _), done in zip(batch, pipe.execute()):
                    if done:
                        written.add(key)
        return written

    def get(self, keys: Sequence[str]) -> dict[str, bytes]:
        """``GET`` the keys, pipelined; missing keys are left out."""
        out: dict[str, bytes] = {}
        with self._errors("read values"):
            for batch in _batches(list(keys), lambda _: _BATCH_BYTES // 32):
                pipe = self._client.pipeline(transaction=False)
                for key in batch:
                    pipe.get(self._key(key))
                for key, value in zip(batch, pipe.execute()):
                    if value is not None:
                        out[key] = bytes(value)
        return out

    def stat(self, keys: Sequence[str]) -> dict[str, float | None]:
        """Which keys exist (Redis keeps no modification time: None)."""
        out: dict[str, float | None] = {}
        with self._errors("check keys"):
            for batch in _batches(list(keys), lambda _: _BATCH_BYTES // _BATCH_KEYS):
                pipe = self._client.pipeline(transaction=False)
                for key in batch:
                    pipe.exists(self._key(key))
                out.update((key, None) for key, n in zip(batch, pipe.execute()) if n)
        return out

    def list(self, prefix: str) -> dict[str, float | None]:
        """Every key under ``prefix`` (``SCAN``: it walks the whole database, use sparingly)."""
        pattern = _glob_escape(self.prefix + check_prefix(prefix)) + "*"
        start = len(self.prefix.encode())
        with self._errors("list keys"):
            return {
                bytes(name)[start:].decode(): None
                for name in self._client.scan_iter(match=pattern, count=1000)
            }

    def delete_keys(self, keys: Sequence[str]) -> None:
        """``UNLINK`` the keys (missing ones are not an error)."""
        with self._errors("delete keys"):
            for batch in _batches(list(keys), lambda _: _BATCH_BYTES // _BATCH_KEYS):
                self._client.unlink(*(self._key(k) for k in batch))

    def delete(
        self, keys: Sequence[str], *, unless_moved: tuple[str, bytes | None] | None = None
    ) -> None:
        """Delete keys; with ``unless_moved``, atomically only if that head is unchanged."""
        if unless_moved is None:
            self.delete_keys(keys)
            return
        head, value = unless_moved
        flag = b"0" if value is None else b"1"
        with self._errors("delete keys"):
            for batch in _batches(list(keys), lambda _: _BATCH_BYTES // _BATCH_KEYS):
                found = self._guarded_delete(
                    keys=[self._key(head), *(self._key(k) for k in batch)],
                    args=[flag, value or b""],
                )
                if found == -1:
                    msg = f"Expected head {head!r} unchanged before deleting, it moved"
                    raise RemoteConflictError(msg)

    def get_head(self, key: str) -> bytes | None:
        """``GET`` the head."""
        with self._errors("read a head"):
            value = self._client.get(self._key(key))
        return None if value is None else bytes(value)

    def swap_head(
        self, key: str, expected: bytes | None, new: bytes, *, require: Sequence[str] = ()
    ) -> set[str]:
        """Atomically: if the head holds ``expected`` and ``require`` all exist, set it."""
        flag = b"0" if expected is None else b"1"
        with self._errors("move a head"):
            result = self._swap(
                keys=[self._key(key), *(self._key(k) for k in require)],
                args=[flag, expected or b"", new],
            )
        if result[0] == 1:
            return set()
        if result[0] == 2:
            start = len(self.prefix.encode())
            return {bytes(name)[start:].decode() for name in result[1:]}
        msg = f"Expected head {key!r} to hold the value read before, another writer moved it"
        raise RemoteConflictError(msg)

    def close(self) -> None:
        """Close the connection pool."""
        with contextlib.suppress(Exception):
            self._client.close()


def _batches(items: list[Any], size: Any) -> Iterator[list[Any]]:
    """Runs of ``items`` of about ``_BATCH_BYTES`` (``size(item)`` each), at most ``_BATCH_KEYS``.

    The last one may be short; ``size`` of a key alone caps the count.
    """
    batch: list[Any] = []
    total = 0
    for item in items:
        batch.append(item)
        total += size(item)
        if total >= _BATCH_BYTES or len(batch) >= _BATCH_KEYS:
            yield batch
            batch, total = [], 0
    if batch:
        yield batch


def _glob_escape(text: str) -> str:
    """Escape Redis ``MATCH`` pattern characters."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
