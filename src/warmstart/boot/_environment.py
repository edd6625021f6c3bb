"""The ``WARMSTART_*`` environment variables: one set, read by ``boot()`` and the CLI alike.

Private to the boot wing; public as :func:`warmstart.boot.environment`. A
deployment configures a service the way it configures the tools run beside
it (``warmstart verify`` in the same pod): an argument given in code wins,
a variable fills what the code left out.

=========================  ==============================================  =========================
variable                   meaning                                         read by
=========================  ==============================================  =========================
``WARMSTART_DIR``          the store directory                             ``boot()``; CLI ``PATH``
``WARMSTART_NAMESPACE``    the service's namespace                         ``boot()``, integrations
``WARMSTART_SECRET``       the store's MAC key (the value itself)          ``boot()``, CLI
``WARMSTART_SECRET_FILE``  a file holding the key (a mounted Secret)       ``boot()``, CLI
``WARMSTART_REMOTE``       ``redis://``, ``s3://`` or ``file://`` URL      ``boot()``, CLI
``WARMSTART_INTERVAL``     seconds between periodic checkpoints            ``boot()``
``WARMSTART_MAX_AGE``      a checkpoint older than this starts cold        ``boot()``
=========================  ==============================================  =========================

Durations take seconds (``"30"``, ``"2.5"``) or a unit (``"90s"``, ``"15m"``,
``"1h"``, ``"2d"``). An empty variable counts as unset. A malformed one
raises :class:`~warmstart.errors.ConfigurationError` naming it, at start-up.

>>> env = environment({"WARMSTART_DIR": "/var/lib/svc/warm", "WARMSTART_INTERVAL": "1m"})
>>> env.directory, env.interval, env.secret
('/var/lib/svc/warm', 60.0, None)
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Mapping

import msgspec

from warmstart.errors import ConfigurationError

__all__ = ("VARIABLES", "Environment", "environment", "parse_duration")

#: Each setting and the variable that holds it.
VARIABLES = {
    "directory": "WARMSTART_DIR",
    "namespace": "WARMSTART_NAMESPACE",
    "secret": "WARMSTART_SECRET",
    "secret_file": "WARMSTART_SECRET_FILE",
    "remote": "WARMSTART_REMOTE",
    "interval": "WARMSTART_INTERVAL",
    "max_age": "WARMSTART_MAX_AGE",
}

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
#: A pattern string: ``re`` compiles it on first use, not at import.
_DURATION = r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$"


def parse_duration(value: float | datetime.timedelta | str | None) -> float | None:
    """Seconds from a number, a timedelta, or a string such as ``"90s"``, ``"1h"`` or ``"30"``.

    >>> import datetime
    >>> parse_duration("90s"), parse_duration("1h"), parse_duration(datetime.timedelta(minutes=2))
    (90.0, 3600.0, 120.0)
    """
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            msg = f"Expected a duration >= 0, got {value!r}"
            raise ValueError(msg)
        return float(value)
    if isinstance(value, str):
        match = re.match(_DURATION, value)
        if match:
            return float(match.group(1)) * _UNITS[match.group(2) or "s"]
    msg = f"Expected seconds, a timedelta or a string like '90s', '15m', '1h', '2d', got {value!r}"
    raise ValueError(msg)


class Environment(msgspec.Struct, frozen=True, kw_only=True):
    """The ``WARMSTART_*`` variables, parsed; None where a variable is unset or empty.

    ``secret`` is the key itself, from ``WARMSTART_SECRET`` or read from
    ``WARMSTART_SECRET_FILE`` (trailing newlines dropped). ``repr()`` never
    shows it.
    """

    directory: str | None = None
    namespace: str | None = None
    secret: bytes | None = msgspec.field(default=None)
    remote: str | None = None
    interval: float | None = None
    max_age: float | None = None

    def __repr__(self) -> str:
        shown = {
            "directory": self.directory,
            "namespace": self.namespace,
            "secret": None if self.secret is None else "<redacted>",
            "remote": None if self.remote is None else "<set>",
            "interval": self.interval,
            "max_age": self.max_age,
        }
        return "Environment(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"


def _duration(environ: Mapping[str, str], setting: str) -> float | None:
    name = VARIABLES[setting]
    raw = environ.get(name) or None
    if raw is None:
        return None
    try:
        return parse_duration(raw)
    except ValueError:
        msg = f"Expected {name} in seconds or like '90s', '15m', '1h', got {raw!r}"
        raise ConfigurationError(msg) from None


def _secret(environ: Mapping[str, str]) -> bytes | None:
    value = environ.get(VARIABLES["secret"]) or None
    path = environ.get(VARIABLES["secret_file"]) or None
    if value is not None and path is not None:
        msg = f"Expected one of {VARIABLES['secret']} and {VARIABLES['secret_file']}, both are set"
        raise ConfigurationError(msg)
    if value is not None:
        return value.encode()
    if path is None:
        return None
    return read_secret_file(path, VARIABLES["secret_file"])


def read_secret_file(path: str | os.PathLike[str], what: str) -> bytes:
    """The key held in ``path`` (trailing newlines dropped); ``what`` names the setting."""
    try:
        with open(path, "rb") as file:  # noqa: PTH123 - pathlib costs 3 ms of every import
            secret = file.read().rstrip(b"\r\n")
    except OSError as exc:
        msg = f"Expected {what} to name a readable file, got {str(path)!r}: {exc.strerror}"
        raise ConfigurationError(msg) from None
    if not secret:
        msg = f"Expected a secret in {str(path)!r} ({what}), the file is empty"
        raise ConfigurationError(msg)
    return secret


def environment(environ: Mapping[str, str] | None = None) -> Environment:
    """Read the ``WARMSTART_*`` variables (``os.environ`` by default).

    Raises:
        ConfigurationError: a duration that does not parse, both secret
            variables set, or a secret file that cannot be read or is empty.
    """
    env = os.environ if environ is None else environ
    return Environment(
        directory=env.get(VARIABLES["directory"]) or None,
        namespace=env.get(VARIABLES["namespace"]) or None,
        secret=_secret(env),
        remote=env.get(VARIABLES["remote"]) or None,
        interval=_duration(env, "interval"),
        max_age=_duration(env, "max_age"),
    )
