"""Hand-off: a booting instance asks the running ones for a fresh checkpoint first.

Private to the boot wing. In a rolling deploy the new instance starts while
the old one still serves; without hand-off it restores the newest periodic
checkpoint, up to one ``interval`` old. With ``boot(..., handoff=2.0)``:

- every running boot with hand-off listens on a Unix domain socket in
  ``<store>/handoff/``, named ``<namespace digest>.<pid>-<token>.sock``
  (:class:`LocalListener`; the folder is 0700, so only the store's owner
  can ask). It is bound under a hidden name and renamed once it listens, so
  a connection to a listed socket is refused only when its owner is gone;
  the asker then removes that stale socket;
- a booting boot connects to each of them, sends one request, and waits
  for the answers at most its deadline (:func:`ask`); across hosts it also
  publishes the request on the remote's channel (Redis only, see
  ``warmstart.remote``). With no listener it does not wait at all;
- a listener hands the request to the boot's agent (``_agent``), which
  takes one checkpoint for every request that arrived before that
  checkpoint started (requests that come while it runs get the next one),
  pushes it where a remote is configured, and answers with its generation.

Answers are JSON lines: ``{"status": ..., "generation": ...}``; ``status`` is
the checkpoint's (``saved``, ``skipped``, ``nothing``, ``failed``) or
``closed`` (the instance is shutting down; its shutdown checkpoint is the
head). An answer that comes after the deadline is not read: its generation
stays in the store (and remote) for the next boot, and is never applied to
the running one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import xxhash

if TYPE_CHECKING:
    import socket

__all__ = ("HandoffAnswer", "HandoffReport")

log = logging.getLogger("warmstart.boot")

#: A request or an answer is one JSON line of at most this many bytes.
_MAX_LINE = 4096
#: Seconds a listener waits for a request line after accepting a connection.
_READ_TIMEOUT = 1.0
#: sun_path holds 108 bytes on Linux; longer paths go through /proc/self/fd.
_MAX_SOCKET_PATH = 100

AnswerStatus = Literal["saved", "skipped", "nothing", "failed", "closed", "gone"]


class HandoffAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """One running instance's answer to a hand-off request."""

    #: ``local`` (a socket in the store directory) or ``remote`` (the remote's channel).
    via: Literal["local", "remote"]
    #: Who answered (``pid-token``, with the host for remote answers).
    instance: str
    #: The hand-off checkpoint's status; ``closed``: the instance was shutting
    #: down (its shutdown checkpoint is the head); ``gone``: it went away
    #: without answering.
    status: AnswerStatus
    #: The generation its checkpoint wrote (or the head it left).
    generation: int | None = None
    #: Seconds from the request to this answer.
    seconds: float = 0.0


class HandoffReport(msgspec.Struct, frozen=True, kw_only=True):
    """What a boot's hand-off request got, before it picked a generation."""

    namespace: str
    #: ``none``: no running instance to ask (no wait); ``answered``: every
    #: instance asked answered (or went away) within the deadline;
    #: ``timeout``: the deadline passed first (late answers are left for the
    #: next boot).
    status: Literal["none", "answered", "timeout"]
    #: Instances asked (sockets connected, plus remote listeners reached).
    asked: int = 0
    answers: tuple[HandoffAnswer, ...] = ()
    #: The newest generation an answer named.
    generation: int | None = None
    seconds: float = 0.0
    #: Why a channel could not be used (remote unreachable, ...).
    errors: tuple[str, ...] = ()


def namespace_prefix(namespace: str) -> str:
    """Sockets (and reader records) of a namespace start with its digest."""
    return xxhash.xxh3_128_hexdigest(namespace.encode()) + "."


def handoff_dir(store_path: Path) -> Path:
    return store_path / "handoff"


@contextlib.contextmanager
def _address(folder: Path, name: str) -> Iterator[str]:
    """A path for bind/connect: through /proc/self/fd when the real one is too long."""
    path = str(folder / name)
    if len(path.encode()) <= _MAX_SOCKET_PATH:
        yield path
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        short = f"/proc/self/fd/{fd}/{name}"
        if len(short.encode()) > _MAX_SOCKET_PATH:
            msg = f"Expected a socket name under {_MAX_SOCKET_PATH} bytes, got {name!r}"
            raise OSError(msg)
        yield short
    finally:
        os.close(fd)


def _read_line(conn: socket.socket) -> dict[str, Any] | None:
    """One JSON object line from ``conn`` (None: nothing well-formed came)."""
    data = b""
    while b"\n" not in data and len(data) < _MAX_LINE:
        chunk = conn.recv(_MAX_LINE)
        if not chunk:
            break
        data += chunk
    line = data.split(b"\n", 1)[0]
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _send(conn: socket.socket, message: dict[str, Any]) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


# -- asking -----------------------------------------------------------------------


class _Pending:
    """A connected listener whose answer has not come yet."""

    def __init__(self, conn: socket.socket, instance: str) -> None:
        self.conn = conn
        self.instance = instance
        self.data = b""

    def receive(self) -> bool:
        """Read what arrived; True once the answer is complete (or the connection ended)."""
        try:
            chunk = self.conn.recv(_MAX_LINE)
        except BlockingIOError:
            return False
        except OSError:
            chunk = b""
        self.data += chunk
        return not chunk or b"\n" in self.data or len(self.data) >= _MAX_LINE


def ask(
    store_path: Path,
    namespace: str,
    deadline: float,
    *,
    remote_ask: Callable[[dict[str, Any], float], tuple[int, list[dict[str, Any]], str | None]]
    | None = None,
) -> HandoffReport:
    """Ask the running instances of ``namespace`` for a checkpoint; wait at most ``deadline``.

    ``remote_ask(request, deadline)`` asks across hosts too (it runs in a
    thread beside the local requests) and returns (listeners reached,
    answers, error).
    """
    started = time.monotonic()
    request = {"v": 1, "namespace": namespace, "id": os.urandom(8).hex(), "pid": os.getpid()}
    remote_result: list[tuple[int, list[dict[str, Any]], str | None]] = []
    thread = None
    if remote_ask is not None:

        def run() -> None:
            try:
                remote_result.append(remote_ask(request, deadline))
            except Exception as exc:
                remote_result.append((0, [], str(exc)))

        thread = threading.Thread(target=run, name="warmstart-handoff-ask", daemon=True)
        thread.start()
    answers: list[HandoffAnswer] = []
    asked, unanswered = _ask_local(store_path, namespace, request, started, deadline, answers)
    errors: list[str] = []
    if thread is not None:
        thread.join(max(0.0, deadline - (time.monotonic() - started)))
        if remote_result:
            reached, remote_answers, error = remote_result[0]
            asked += reached
            unanswered += reached - len(remote_answers)
            if error:
                errors.append(error)
            answers.extend(_remote_answer(a, started) for a in remote_answers)
        else:
            # Who listens there is not known: the deadline passed first.
            errors.append(f"the remote did not answer within {deadline:g}s")
            unanswered += 1
    if not asked and not unanswered:
        status: Literal["none", "answered", "timeout"] = "none"
    else:
        status = "timeout" if unanswered > 0 else "answered"
    generations = [a.generation for a in answers if a.generation is not None]
    return HandoffReport(
        namespace=namespace,
        status=status,
        asked=asked,
        answers=tuple(answers),
        generation=max(generations) if generations else None,
        seconds=time.monotonic() - started,
        errors=tuple(errors),
    )


def _remote_answer(answer: dict[str, Any], started: float) -> HandoffAnswer:
    status = answer.get("status")
    generation = answer.get("generation")
    return HandoffAnswer(
        via="remote",
        instance=str(answer.get("instance", "?")),
        status=status if status in ("saved", "skipped", "nothing", "closed") else "failed",
        generation=generation if isinstance(generation, int) else None,
        seconds=float(answer.get("received", time.monotonic())) - started,
    )


def _ask_local(
    store_path: Path,
    namespace: str,
    request: dict[str, Any],
    started: float,
    deadline: float,
    answers: list[HandoffAnswer],
) -> tuple[int, int]:
    """(asked, unanswered) of the instances listening in ``store_path``."""
    pending = _connect_all(store_path, namespace, request, started, deadline)
    asked = len(pending)
    if not pending:
        return 0, 0
    import selectors  # noqa: PLC0415 - only a boot with someone to ask pays for it

    with selectors.DefaultSelector() as selector:
        for item in pending.values():
            item.conn.setblocking(False)
            selector.register(item.conn, selectors.EVENT_READ)
        while pending:
            remaining = deadline - (time.monotonic() - started)
            if remaining <= 0:
                break
            for key, _ in selector.select(remaining):
                item = pending[key.fd]
                if not item.receive():
                    continue
                answers.append(_local_answer(item, time.monotonic() - started))
                selector.unregister(item.conn)
                item.conn.close()
                del pending[key.fd]
    for item in pending.values():
        item.conn.close()  # past the deadline: its answer is left for the next boot
    return asked, len(pending)


def _connect_all(
    store_path: Path, namespace: str, request: dict[str, Any], started: float, deadline: float
) -> dict[int, _Pending]:
    """Send the request to every listening socket of ``namespace``; remove stale ones."""
    folder = handoff_dir(store_path)
    prefix = namespace_prefix(namespace)
    try:
        names = sorted(
            p.name
            for p in folder.iterdir()
            if p.name.startswith(prefix) and p.name.endswith(".sock")
        )
    except OSError:
        return {}  # no folder: nobody ever listened here
    if not names:
        return {}
    import socket  # noqa: PLC0415 - only a boot with someone to ask pays for it

    line = json.dumps(request).encode() + b"\n"
    pending: dict[int, _Pending] = {}
    for name in names:
        instance = name[len(prefix) : -len(".sock")]
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.settimeout(max(0.01, deadline - (time.monotonic() - started)))
            with _address(folder, name) as address:
                conn.connect(address)
            conn.sendall(line)
        except ConnectionRefusedError:
            conn.close()
            # Renamed into place only once listening: refused means its owner is gone.
            with contextlib.suppress(OSError):
                (folder / name).unlink()
            log.info("hand-off: removed the stale socket of %s (%r)", instance, namespace)
            continue
        except FileNotFoundError:
            conn.close()  # its owner stopped since the listing
            continue
        except OSError as exc:
            conn.close()
            log.warning("hand-off: could not ask %s in %r: %s", instance, namespace, exc)
            continue
        pending[conn.fileno()] = _Pending(conn, instance)
    return pending


def _local_answer(item: _Pending, seconds: float) -> HandoffAnswer:
    try:
        value = json.loads(item.data.split(b"\n", 1)[0]) if item.data else None
    except ValueError:
        value = None
    if not isinstance(value, dict):
        return HandoffAnswer(via="local", instance=item.instance, status="gone", seconds=seconds)
    status = value.get("status")
    generation = value.get("generation")
    return HandoffAnswer(
        via="local",
        instance=item.instance,
        status=status if status in ("saved", "skipped", "nothing", "closed") else "failed",
        generation=generation if isinstance(generation, int) else None,
        seconds=seconds,
    )


# -- listening --------------------------------------------------------------------


class LocalListener:
    """Accepts hand-off requests on a Unix socket in the store directory, in its own thread.

    The thread waits in ``select`` on the socket and a wake-up pipe: a
    request is noticed as soon as it is sent, and an idle listener costs no
    CPU (no timeout, no polling). ``on_request(reply)`` gets a function that
    sends the answer and closes the connection (from any thread).
    """

    def __init__(
        self,
        store_path: Path,
        namespace: str,
        name: str,
        on_request: Callable[[Callable[[dict[str, Any]], None]], None],
    ) -> None:
        self.namespace = namespace
        self.folder = handoff_dir(store_path)
        self.name = f"{namespace_prefix(namespace)}{name}.sock"
        self._on_request = on_request
        self._sock: socket.socket | None = None
        self._wake_r, self._wake_w = -1, -1
        self._closed = False
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind, listen, then appear under the listed name; start the thread."""
        import socket  # noqa: PLC0415 - only a boot with hand-off pays for it

        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        hidden = f".{self.name}.{os.urandom(4).hex()}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with _address(self.folder, hidden) as address:
                sock.bind(address)
            sock.listen(64)
            (self.folder / hidden).replace(self.folder / self.name)
        except BaseException:
            sock.close()
            with contextlib.suppress(OSError):
                (self.folder / hidden).unlink()
            raise
        sock.setblocking(False)
        self._sock = sock
        self._wake_r, self._wake_w = os.pipe()
        self.thread = threading.Thread(target=self._run, name="warmstart-handoff", daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop accepting: remove the socket, wake and join the thread."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            (self.folder / self.name).unlink()
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        if thread is None or not thread.is_alive():
            self._close_fds()

    def forked(self) -> None:
        """In a child of fork(): drop the parent's socket (never unlink its name)."""
        self._closed = True
        self.thread = None
        self._close_fds()

    def _close_fds(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._wake_r = self._wake_w = -1

    def _run(self) -> None:
        import selectors  # noqa: PLC0415 - only a boot with hand-off pays for it

        sock = self._sock
        assert sock is not None
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._closed:
                for key, _ in selector.select():
                    if key.fileobj is sock and not self._closed:
                        self._accept(sock)

    def _accept(self, sock: socket.socket) -> None:
        try:
            conn, _ = sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.warning("hand-off listener of %r: accept failed: %s", self.namespace, exc)
            return
        try:
            conn.setblocking(True)
            conn.settimeout(_READ_TIMEOUT)
            request = _read_line(conn)
        except OSError:
            request = None
        if request is None or request.get("namespace") != self.namespace:
            conn.close()  # not a request of ours: the asker sees "gone"
            return
        self._on_request(self._replier(conn))

    @staticmethod
    def _replier(conn: socket.socket) -> Callable[[dict[str, Any]], None]:
        def reply(answer: dict[str, Any]) -> None:
            try:
                _send(conn, answer)
            except OSError:
                pass  # the asker's deadline passed: it left; the checkpoint stays
            finally:
                conn.close()

        return reply


# -- a boot's request ---------------------------------------------------------------


def ask_predecessors(
    store_path: Path, namespace: str, deadline: float, remote: Any
) -> HandoffReport:
    """Ask this host's running instances, and with a Redis remote every host's.

    ``remote`` is the boot's ``remote=`` setting (a URL, a Remote or None).
    Object storage and ``file://`` remotes have no channel to ask through;
    only instances of this host are asked then.
    """
    remote_ask = None
    if remote is not None:
        from warmstart.remote import ask_remote, opened, supports_handoff  # noqa: PLC0415

        def remote_ask(
            request: dict[str, Any], wait: float
        ) -> tuple[int, list[dict[str, Any]], str | None]:
            # BLPOP waits up to ``wait``: the connection must outlast it.
            with opened(remote, timeout=wait + 1.0) as rem:
                if not supports_handoff(rem):
                    return 0, [], None
                reached, answers = ask_remote(rem, namespace, request, wait)
            return reached, answers, None

    report = ask(store_path, namespace, deadline, remote_ask=remote_ask)
    log.info(
        "hand-off of %r: %s, %d asked, %d answered, generation %s, in %.3fs",
        namespace,
        report.status,
        report.asked,
        len(report.answers),
        report.generation,
        report.seconds,
        extra={"namespace": namespace, "generation": report.generation},
    )
    return report
