"""Private: the remote side of rolling deploys: reader records, and hand-off through Redis.

Reader records (``warmstart.exposure.Instance``, encoded by the boot) live
beside a namespace's generations, one key per live instance::

    <namespace>/@ws/readers/<name>

and work on every backend (put, list, get, delete of the protocol). Push's
garbage collection never touches them (it judges only ``chunks/`` and
``manifests/``).

Hand-off across hosts needs a channel a running instance can wait on without
polling: Redis pub/sub. A booting instance publishes a request on the
namespace's channel; ``PUBLISH`` answers how many instances listen, so with
none it does not wait at all. Each listener answers on a list named in the
request (``RPUSH``, with an expiry so an answer nobody reads goes away), and
the asker waits on it with ``BLPOP`` until every listener answered or its
deadline passed. Object storage and ``file://`` remotes have no such
channel: there hand-off works between instances of one host only (through
the store directory), and across hosts a successor gets the newest push.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from warmstart.remote._layout import escape, namespace_dir
from warmstart.remote._protocol import Remote

__all__ = ()

log = logging.getLogger("warmstart.remote")

#: Seconds an answer stays on its reply list when nobody reads it (a late one).
REPLY_TTL_MS = 60_000
#: Longest wait between two reconnection attempts of a listener.
_MAX_BACKOFF = 30.0


# -- reader records -------------------------------------------------------------


def _readers_dir(namespace: str) -> str:
    return namespace_dir(namespace) + "readers/"


def reader_key(namespace: str, host: str, name: str) -> str:
    """The key of one instance's reader record (``name`` is ``pid-token``)."""
    return f"{_readers_dir(namespace)}{escape(host)}.{name}"


def put_reader(remote: Remote, namespace: str, host: str, name: str, record: bytes) -> None:
    """Write (or refresh) one instance's reader record."""
    remote.put({reader_key(namespace, host, name): record}, overwrite=True)


def get_readers(remote: Remote, namespace: str) -> dict[str, bytes]:
    """Every reader record of ``namespace``, by key."""
    keys = sorted(remote.list(_readers_dir(namespace)))
    return remote.get(keys) if keys else {}


def delete_readers(remote: Remote, keys: list[str]) -> None:
    """Remove reader records (a stopped instance's, or expired ones)."""
    if keys:
        remote.delete(keys)


# -- hand-off through Redis -----------------------------------------------------


def supports_handoff(remote: Remote) -> bool:
    """Whether ``remote`` has an event channel for hand-off requests (Redis)."""
    return callable(getattr(remote, "pubsub_client", None))


def _channel(remote: Any, namespace: str) -> str:
    return f"{remote.prefix}{namespace_dir(namespace)}handoff"


def ask_remote(
    remote: Remote, namespace: str, request: dict[str, Any], deadline: float
) -> tuple[int, list[dict[str, Any]]]:
    """Publish a hand-off request; wait at most ``deadline`` seconds for the answers.

    Returns (how many listeners got the request, the answers that came).

    Raises:
        RemoteUnavailableError, RemoteError: Redis could not be reached.
    """
    started = time.monotonic()
    client = remote.pubsub_client()  # type: ignore[attr-defined]
    reply = f"{_channel(remote, namespace)}/reply/{request['id']}"
    answers: list[dict[str, Any]] = []
    with remote.errors("ask for a hand-off"):  # type: ignore[attr-defined]
        listeners = int(
            client.publish(_channel(remote, namespace), json.dumps({**request, "reply": reply}))
        )
        try:
            while len(answers) < listeners:
                remaining = deadline - (time.monotonic() - started)
                if remaining < 0.01:
                    break
                got = client.blpop([reply], timeout=remaining)
                if got is None:
                    break
                answer = _parse(got[1])
                answer["received"] = time.monotonic()  # the asker's clock, for its report
                answers.append(answer)
        finally:
            client.delete(reply)
    return listeners, answers


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {"status": "failed", "error": "malformed answer"}


class RemoteListener:
    """Listens on a namespace's hand-off channel in its own thread (Redis pub/sub).

    ``on_request(request, reply)`` is called for each request; ``reply(answer)``
    sends the answer (from any thread). A request is noticed as soon as Redis
    delivers it; while idle the thread waits on the socket (no traffic, no
    wake-ups). When Redis is unreachable the listener retries with a backoff
    of up to 30 s; requests published meanwhile are not delivered, and their
    askers, which count the listeners, do not wait for it.
    """

    def __init__(
        self,
        remote: Remote,
        namespace: str,
        name: str,
        on_request: Callable[[dict[str, Any], Callable[[dict[str, Any]], None]], None],
    ) -> None:
        self._remote: Any = remote
        self._channel = _channel(remote, namespace)
        self._control = f"{self._channel}/control/{name}"
        self._on_request = on_request
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(
            target=self._run, name="warmstart-handoff-remote", daemon=True
        )
        self.thread.start()

    def wait_subscribed(self, timeout: float) -> bool:
        """Block until the listener is subscribed (tests, benchmarks)."""
        return self._subscribed.wait(timeout)

    def stop(self, timeout: float) -> None:
        """Stop listening; wakes the thread through its control channel."""
        self._stop.set()
        thread = self.thread
        if thread is None or not thread.is_alive():
            return
        try:
            self._remote.pubsub_client().publish(self._control, b"stop")
        except Exception as exc:
            log.debug("hand-off listener: could not wake it through Redis: %s", exc)
        thread.join(timeout)

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._listen()
                backoff = 0.5
            except Exception as exc:
                self._subscribed.clear()
                log.warning(
                    "hand-off listener on %s: %s; retrying in %.1fs", self._remote.url, exc, backoff
                )
                if self._stop.wait(backoff):
                    return
                backoff = min(backoff * 2, _MAX_BACKOFF)

    def _listen(self) -> None:
        client = self._remote.pubsub_client()
        pubsub = client.pubsub()
        try:
            pubsub.subscribe(self._channel, self._control)
            # Each subscription is confirmed by a reply: once both came, a
            # publish from now on reaches this listener.
            while not self._stop.is_set() and not self._subscribed.is_set():
                message = pubsub.get_message(timeout=1.0)
                if (
                    message is not None
                    and message.get("type") == "subscribe"
                    and int(message.get("data", 0)) >= len((self._channel, self._control))
                ):
                    self._subscribed.set()
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=30.0)
                if message is None or message.get("type") != "message":
                    continue
                channel = message["channel"]
                if isinstance(channel, bytes):
                    channel = channel.decode()
                if channel != self._channel:
                    continue  # the control channel: look at the stop flag again
                request = _parse(message["data"])
                reply_to = request.get("reply")
                if not isinstance(reply_to, str) or not reply_to.startswith(self._channel + "/"):
                    continue  # not a request this library sent
                self._on_request(request, self._replier(reply_to))
        finally:
            self._subscribed.clear()
            try:
                pubsub.close()
            except Exception as exc:
                log.debug("hand-off listener: closing the subscription: %s", exc)

    def _replier(self, reply_to: str) -> Callable[[dict[str, Any]], None]:
        def reply(answer: dict[str, Any]) -> None:
            try:
                client = self._remote.pubsub_client()
                pipe = client.pipeline(transaction=False)
                pipe.rpush(reply_to, json.dumps(answer))
                pipe.pexpire(reply_to, REPLY_TTL_MS)
                pipe.execute()
            except Exception as exc:
                log.warning("hand-off answer on %s not sent: %s", self._remote.url, exc)

        return reply
