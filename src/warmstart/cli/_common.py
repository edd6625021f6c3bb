"""What every ``warmstart`` subcommand shares: exit codes, usage errors, opening a store.

Private; used by ``cli`` and the ``_cli_*`` command modules. It sits below
them all so that a command module never imports ``cli`` (which imports every
command module to build its parser).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from warmstart.errors import StoreError
from warmstart.store import Store

__all__ = ()

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
SECRET_ENV = "WARMSTART_SECRET"  # noqa: S105 - the variable name, not a secret


class UsageError(Exception):
    """Bad arguments found after parsing (exit 2, like argparse's own)."""


def secret(args: argparse.Namespace) -> bytes | None:
    """The store's secret key, from ``--secret-file`` or ``$WARMSTART_SECRET``."""
    path = getattr(args, "secret_file", None)  # absent from parsers without the option
    if path is not None:
        value = Path(path).read_bytes().rstrip(b"\r\n")
        if not value:
            msg = f"Expected a secret in {path!r}, the file is empty"
            raise UsageError(msg)
        return value
    env = os.environ.get(SECRET_ENV)
    return env.encode() if env else None


def open_store(
    args: argparse.Namespace, path: str, *, readonly: bool = True, create: bool = False
) -> Store:
    """Open the store at ``path`` with the command's secret; only ``create`` may make one.

    ``path`` may name the store's ``data.mdb`` itself (tab completion lands
    there): the store is its directory.
    """
    path = store_dir(path)
    # Only `import` may create a store: `gc` or `drop` on a mistyped path
    # must not leave an empty store behind.
    if not readonly and not create and not (Path(path) / "data.mdb").is_file():
        msg = f"Expected a store at {path!r}, found no data.mdb"
        raise StoreError(msg)
    return Store(path, readonly=readonly, secret=secret(args))


def store_dir(path: str) -> str:
    """The store directory ``path`` names: itself, or the directory of its ``data.mdb``."""
    given = Path(path)
    if given.name == "data.mdb" and given.is_file():
        return str(given.parent)
    return path
