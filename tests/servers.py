"""Real servers as subprocesses, for the integration tests: start, talk, signal, kill.

A :class:`Server` runs a command (gunicorn, uvicorn) in its own session on a
free loopback port, with its output in a log file; leaving the ``with``
kills the whole session, so no test leaves a server or a worker behind.
Requests use a new connection each (``Connection: close``), so the kernel
spreads them over the workers that share the listening socket.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "examples"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of a server: the examples importable, the store in ``tmp``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WARMSTART_", "WEB_"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(EXAMPLES), str(ROOT)]),
        WARMSTART_DIR=str(tmp / "warm"),
        XDG_RUNTIME_DIR=str(tmp),  # gunicorn's control socket: not shared between tests
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class Server:
    """One server process group: ``with Server([...], cwd=..., env=...) as s: ...``."""

    def __init__(self, argv: list[str], *, cwd: Path, env: dict[str, str], port: int) -> None:
        self.argv = argv
        self.cwd = cwd
        self.env = env
        self.port = port
        self.log_path = Path(env.get("WARMSTART_DIR", str(cwd))).parent / f"server-{port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def start(self) -> Server:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def request(self, path: str, timeout: float = 10.0) -> tuple[int, dict[str, Any]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Connection": "close"})
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        finally:
            conn.close()

    def wait_up(self, timeout: float = 60.0) -> None:
        """Until the port answers (any status)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
                self.request("/health", timeout=2.0)
                return
            time.sleep(0.1)
        raise AssertionError(f"server did not come up in {timeout}s:\n{self.log()}")

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")

    def workers_ready(
        self, count: int, timeout: float = 60.0, *, exclude: Iterable[int] = ()
    ) -> dict[int, dict[str, Any]]:
        """Health answers of ``count`` distinct worker pids that say 200, not in ``exclude``."""
        skip = set(exclude)
        seen: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
                code, body = self.request("/health", timeout=5.0)
                pid = body.get("pid")
                if code == 200 and pid is not None and pid not in skip:
                    seen[pid] = body
                    if len(seen) >= count:
                        return seen
            time.sleep(0.02)
        raise AssertionError(f"saw {len(seen)} of {count} ready workers: {seen}\n{self.log()}")

    def lookups(self, keys: Iterable[str]) -> list[dict[str, Any]]:
        answers = []
        for key in keys:
            code, body = self._retried(f"/item/{key}")
            assert code == 200, (code, body)
            answers.append(body)
        return answers

    def _retried(self, path: str, attempts: int = 5) -> tuple[int, dict[str, Any]]:
        """A request, again if the connection was reset.

        During a rolling restart (uvicorn's SIGHUP) a worker that is stopping
        can still accept a connection on the shared socket and then close it:
        the server's behaviour, not what the tests check.
        """
        for _ in range(attempts - 1):
            try:
                return self.request(path)
            except ConnectionError:
                time.sleep(0.1)
        return self.request(path)

    def send(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Send ``signum`` to the server and wait for it (and its workers) to exit."""
        assert self.proc is not None
        self.proc.send_signal(signum)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            self.kill()
            raise AssertionError(f"server did not stop in {timeout}s:\n{self.log()}") from exc
        self._wait_group_gone(timeout)
        return code

    def _wait_group_gone(self, timeout: float) -> None:
        """Workers may outlive their master for a moment; wait until the session is empty."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(self.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        self.kill()

    def kill(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None


def gunicorn(
    cwd: Path, tmp: Path, *args: str, workers: int = 2, env: dict[str, str] | None = None
) -> Server:
    port = free_port()
    argv = [
        str(BIN / "gunicorn"),
        *args,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--graceful-timeout",
        "20",
    ]
    return Server(argv, cwd=cwd, env=server_env(tmp, **(env or {})), port=port)


def uvicorn(
    cwd: Path, tmp: Path, app: str, *, workers: int = 2, env: dict[str, str] | None = None
) -> Server:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
    ]
    return Server(argv, cwd=cwd, env=server_env(tmp, **(env or {})), port=port)
