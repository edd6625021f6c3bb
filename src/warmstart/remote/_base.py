"""Private helpers shared by the remote backends.

Slot heads: a compare-and-set built from "create if absent" alone, for
backends without a conditional overwrite (a filesystem; obstore's LocalStore,
which does not implement ``PutMode::Update``). The head ``key`` is a directory
of numbered slots ``key/00000000000000000001``, ...; its value is the highest
slot's. Moving the head from the value of slot ``s`` means creating slot
``s + 1``: of two writers that read the same ``s``, only one can create it,
and a writer that read an older slot finds ``s + 1`` taken. Old slots are
deleted once two newer ones exist, so a reader that listed a slot just before
it went re-lists (a bounded number of times). A listing is a hint only: the
slots after the highest listed are probed by name (see ``_current``).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Protocol

from warmstart.codec import MAX_PAYLOAD
from warmstart.errors import IntegrityError
from warmstart.remote._errors import RemoteConflictError, RemoteError

__all__ = ()

#: Largest value warmstart stores on a remote: a frame (chunk or manifest) of
#: the payload cap plus its header, MAC and digest. Reads refuse larger values
#: before reading them whole (issue 17: a 768 MiB object cost a pull 768 MiB).
MAX_OBJECT = MAX_PAYLOAD + 4096
#: Largest head record read: it lists the retained generations (about 60
#: bytes each), so 4 MiB holds tens of thousands.
MAX_HEAD = 4 * 1024 * 1024

_SLOT_DIGITS = 20
#: A reader re-lists this often if the slot it listed was deleted under it.
_SLOT_READS = 8
#: Query parameters whose values are never shown (in ``Remote.url``, logs, reports).
_SECRET_WORDS = ("secret", "password", "token", "credential")


def too_large(url: str, key: str, size: int | str, limit: int) -> IntegrityError:
    """The error for a remote value over the size it may have: not read, refused."""
    msg = (
        f"Expected {key!r} on {url} to hold at most {limit} bytes, it holds {size}: "
        f"damaged or hostile, refused without reading it"
    )
    return IntegrityError(msg)


class Primitives(Protocol):
    """The plain operations slot heads are built on."""

    def put(self, items: Mapping[str, bytes], *, overwrite: bool = False) -> set[str]: ...
    def get(self, keys: Sequence[str], *, limit: int = MAX_OBJECT) -> dict[str, bytes]: ...
    def stat(self, keys: Sequence[str]) -> dict[str, float | None]: ...
    def list(self, prefix: str) -> dict[str, float | None]: ...
    def delete_keys(self, keys: Sequence[str]) -> None: ...


def check_key(key: str) -> str:
    """Refuse keys that could escape their prefix or that object stores reject."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in key:
        msg = f"Expected a relative key of non-empty segments, got {key!r}"
        raise ValueError(msg)
    return key


def check_prefix(prefix: str) -> str:
    if prefix and (not prefix.endswith("/") or prefix.startswith("/")):
        msg = f"Expected a list prefix that is empty or ends with '/', got {prefix!r}"
        raise ValueError(msg)
    if prefix:
        check_key(prefix[:-1])
    return prefix


def redact(url: str) -> str:
    """``url`` without a password or secret-looking query parameters.

    >>> redact("redis://:hunter2@h:6379/0?prefix=ws:")
    'redis://:***@h:6379/0?prefix=ws:'
    >>> redact("s3://b/p?access_key_id=AK&secret_access_key=SK")
    's3://b/p?access_key_id=AK&secret_access_key=***'
    """
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:***@{host}" if has_password else netloc
    query = [
        (k, "***" if any(w in k.lower() for w in _SECRET_WORDS) else v)
        for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urllib.parse.urlunsplit(
        parts._replace(netloc=netloc, query=urllib.parse.urlencode(query, safe=":/*"))
    )


def missing(remote: Primitives, require: Sequence[str]) -> set[str]:
    """The keys of ``require`` the remote lacks (checked, not atomically, before a swap)."""
    if not require:
        return set()
    return set(require) - set(remote.stat(require))


def _slots(remote: Primitives, key: str) -> list[int]:
    found = []
    for name in remote.list(key + "/"):
        tail = name[len(key) + 1 :]
        if len(tail) == _SLOT_DIGITS and tail.isdigit():
            found.append(int(tail))
    return sorted(found)


def _slot(key: str, number: int) -> str:
    return f"{key}/{number:0{_SLOT_DIGITS}d}"


def _current(remote: Primitives, key: str) -> tuple[int, bytes | None]:
    """(highest slot number, its value); (0, None) when the head was never set.

    A listing is only a hint: obstore's LocalStore drops entries of a directory
    whose files are created and deleted while it lists (measured: 1 listing in
    1,300 came back empty under a pusher's churn). So an empty listing is
    looked at again, and the slots after the highest listed one are probed by
    name until one is absent: the number returned is the head's at that moment.
    """
    for _ in range(_SLOT_READS):
        slots = _slots(remote, key) or _slots(remote, key) or _slots(remote, key)
        number = slots[-1] if slots else 0
        value = _read_slot(remote, key, number) if number else None
        if number and value is None:
            continue  # deleted after the listing: list again
        while True:
            newer = _read_slot(remote, key, number + 1)
            if newer is None:
                return number, value
            number, value = number + 1, newer
    msg = f"Expected to read head {key!r}, but its slots kept changing under {_SLOT_READS} reads"
    raise RemoteError(msg)


def _read_slot(remote: Primitives, key: str, number: int) -> bytes | None:
    """One head slot, capped: a hostile object there is refused unread (issue 17)."""
    name = _slot(key, number)
    return remote.get([name], limit=MAX_HEAD).get(name)


def slot_get_head(remote: Primitives, key: str) -> bytes | None:
    """The value of a slot head, or None."""
    return _current(remote, key)[1]


def slot_swap_head(
    remote: Primitives, key: str, expected: bytes | None, new: bytes, require: Sequence[str]
) -> set[str]:
    """Compare-and-set of a slot head (see the module docstring)."""
    number, value = _current(remote, key)
    if value != expected:
        msg = f"Expected head {key!r} to hold the value read before, another writer moved it"
        raise RemoteConflictError(msg)
    lacking = missing(remote, require)
    if lacking:
        return lacking
    if not remote.put({_slot(key, number + 1): new}):
        msg = f"Expected to take slot {number + 1} of head {key!r}, another writer took it first"
        raise RemoteConflictError(msg)
    stale = [_slot(key, n) for n in _slots(remote, key) if n < number]
    if stale:
        remote.delete_keys(stale)
    return set()


def checked_delete(
    remote: Primitives,
    keys: Sequence[str],
    unless_moved: tuple[str, bytes | None] | None,
    head: bytes | None,
) -> None:
    """Delete after checking a guard head (``head`` is its current value, read by the caller)."""
    if unless_moved is not None and head != unless_moved[1]:
        msg = f"Expected head {unless_moved[0]!r} unchanged before deleting, it moved"
        raise RemoteConflictError(msg)
    if keys:
        remote.delete_keys(keys)
