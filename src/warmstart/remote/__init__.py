"""Push and pull checkpoints through Redis, object storage or a shared filesystem.

A :class:`Remote` is a small key-value protocol: put (if absent), get, stat
(exists), list, delete, and a compare-and-set of a *head*. Three backends
implement it, each addressed by URL (:func:`open_remote`):

* ``redis://host:6379/0?prefix=warmstart:`` (the ``redis`` extra):
  :class:`RedisRemote`; head updates, and deletions,
  are atomic with their checks (Lua scripts);
* ``s3://bucket/prefix?endpoint=...&region=...`` (the ``s3`` extra):
  :class:`ObjectStoreRemote` over obstore; the head moves
  with a conditional put (``If-Match`` on its ETag, ``If-None-Match: *`` for
  the first);
* ``file:///shared/path``: :class:`FileRemote`, no extra
  needed; the head moves by creating numbered slot files that only one writer
  can create (``link(2)`` fails if the name exists).

:func:`push` and :func:`pull`
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

import importlib
from typing import TYPE_CHECKING, Any

from warmstart._api import claim
from warmstart.remote._deadline import pull_with_deadline, push_with_deadline
from warmstart.remote._errors import RemoteConflictError, RemoteError, RemoteUnavailableError
from warmstart.remote._file import FileRemote

# Internal names for the boot wing (rolling deploys), not in __all__.
from warmstart.remote._handoff import RemoteListener as RemoteListener
from warmstart.remote._handoff import ask_remote as ask_remote
from warmstart.remote._handoff import delete_readers as delete_readers
from warmstart.remote._handoff import get_readers as get_readers
from warmstart.remote._handoff import put_reader as put_reader
from warmstart.remote._handoff import reader_key as reader_key
from warmstart.remote._handoff import supports_handoff as supports_handoff
from warmstart.remote._layout import opened as opened
from warmstart.remote._protocol import Remote, open_remote
from warmstart.remote._reports import PullReport, PushReport, RemoteHead, SyncOutcome
from warmstart.remote._sync import DEFAULT_GRACE as DEFAULT_GRACE
from warmstart.remote._sync import collect_remote, list_remote, pull, push

if TYPE_CHECKING:
    from warmstart.remote._redis import RedisRemote
    from warmstart.remote._s3 import ObjectStoreRemote

__all__ = (
    "FileRemote",
    "ObjectStoreRemote",
    "PullReport",
    "PushReport",
    "RedisRemote",
    "Remote",
    "RemoteConflictError",
    "RemoteError",
    "RemoteHead",
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

claim("warmstart.remote", *(globals()[name] for name in __all__ if name in globals()))

# The backends' own extras (redis, obstore) load only when their class is asked for.
_BACKENDS = {"RedisRemote": "warmstart.remote._redis", "ObjectStoreRemote": "warmstart.remote._s3"}


def __getattr__(name: str) -> Any:
    module = _BACKENDS.get(name)
    if module is None:
        msg = f"module 'warmstart.remote' has no attribute {name!r}"
        raise AttributeError(msg)
    backend = getattr(importlib.import_module(module), name)
    claim("warmstart.remote", backend)
    return backend


def __dir__() -> tuple[str, ...]:
    return __all__
