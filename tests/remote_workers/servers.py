"""Real servers for the remote tests, on 127.0.0.1 only: redis-server, moto, directories.

Every backend a test runs against is described by a :class:`Backend` that a
child process can rebuild from two strings (``kind`` and ``arg``), so workers
in other processes talk to the very same remote.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from warmstart.remote import Remote, open_remote

KINDS = ("redis", "s3", "local", "file")
BUCKET = "warmstart-tests"
CREDENTIALS = "access_key_id=test&secret_access_key=test&region=us-east-1"
_REDIS_PATHS = ("/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    return next((p for p in _REDIS_PATHS if Path(p).exists()), None)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process on a free loopback port, data in ``directory``."""

    def __init__(self, directory: Path, *, appendonly: bool = False) -> None:
        binary = redis_binary()
        if binary is None:
            pytest.skip("redis-server not found and not installed: run .ci/ensure-redis")
        self.binary = binary
        self.directory = directory
        self.appendonly = appendonly
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.directory),
                "--save", "",
                "--appendonly", "yes" if self.appendonly else "no",
                "--appendfsync", "always",
                "--maxmemory-policy", "noeviction",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while not _answers(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.skip(f"redis-server did not start on 127.0.0.1:{self.port}")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last save."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


class MotoServer:
    """moto's S3 API server on loopback, serving one request at a time.

    moto 5 implements ``If-None-Match: *`` and ``If-Match`` on PutObject (412
    when they fail), but checks the condition and writes the object in two
    steps without a lock; with its threaded server two racing conditional
    puts can both pass. AWS S3 evaluates them atomically, so the suite
    serialises requests to the moto app to get that behaviour.
    """

    def __init__(self) -> None:
        from moto.moto_server.threaded_moto_server import ThreadedMotoServer
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        lock = threading.Lock()

        class Serialized(ThreadedMotoServer):
            def _server_entry(self) -> None:
                app = DomainDispatcherApplication(create_backend_app)

                def one_at_a_time(environ: Any, start_response: Any) -> list[bytes]:
                    with lock:
                        return list(app(environ, start_response))

                self._server = make_server(
                    self._ip_address,
                    self._port,
                    one_at_a_time,
                    True,
                    request_handler=MotoRequestHandler,
                )
                self._server_ready_event.set()
                self._server.serve_forever()

        self.port = free_port()
        self.server = Serialized(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/{BUCKET}", method="PUT")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def url(self, prefix: str) -> str:
        endpoint = f"http://127.0.0.1:{self.port}"
        return f"s3://{BUCKET}/{prefix}?endpoint={endpoint}&{CREDENTIALS}"

    def stop(self) -> None:
        self.server.stop()


class Backend:
    """A fresh, empty remote of one kind; ``open()`` gives a Remote on it."""

    def __init__(self, kind: str, arg: str) -> None:
        self.kind = kind
        self.arg = arg

    def open(self, **kwargs: Any) -> Remote:
        return open_backend(self.kind, self.arg, **kwargs)

    def __repr__(self) -> str:
        return f"Backend({self.kind})"


def open_backend(kind: str, arg: str, **kwargs: Any) -> Remote:
    """Rebuild a backend's remote (also in a child process)."""
    if kind == "local":
        from obstore.store import LocalStore

        from warmstart.remote._s3 import ObjectStoreRemote

        Path(arg).mkdir(parents=True, exist_ok=True)
        return ObjectStoreRemote(LocalStore(arg), url=f"local:{arg}", **kwargs)
    return open_remote(arg, **kwargs)


def make_backend(
    kind: str, tmp_path: Path, redis: RedisServer | None, moto: MotoServer | None
) -> Backend:
    name = uuid.uuid4().hex[:12]
    if kind == "redis":
        assert redis is not None
        return Backend(kind, f"{redis.url}?prefix=t{name}:")
    if kind == "s3":
        assert moto is not None
        return Backend(kind, moto.url(f"t{name}"))
    if kind == "local":
        return Backend(kind, str(tmp_path / f"local-{name}"))
    return Backend(kind, (tmp_path / f"file-{name}").as_uri())


@contextlib.contextmanager
def redis_server(directory: Path, *, appendonly: bool = False) -> Iterator[RedisServer]:
    server = RedisServer(directory, appendonly=appendonly)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session", name="redis")
def _redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session", name="moto")
def _moto() -> Iterator[MotoServer]:
    server = MotoServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=KINDS, name="backend")
def _backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    kind = request.param
    redis = request.getfixturevalue("redis") if kind == "redis" else None
    moto = request.getfixturevalue("moto") if kind == "s3" else None
    return make_backend(kind, tmp_path, redis, moto)


@pytest.fixture(name="remote")
def _remote(backend: Backend) -> Iterator[Remote]:
    opened = backend.open()
    try:
        yield opened
    finally:
        opened.close()
