"""What every ``warmstart`` subcommand shares: exit codes, usage errors, opening a store.

Private; used by ``cli`` and the ``_cli_*`` command modules. It sits below
them all so that a command module never imports ``cli`` (which imports every
command module to build its parser).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from warmstart.boot import VARIABLES, environment, read_secret_file
from warmstart.errors import ConfigurationError, StoreError
from warmstart.store import Store

__all__ = ()

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
SECRET_ENV = VARIABLES["secret"]
SECRET_FILE_ENV = VARIABLES["secret_file"]
DIR_ENV = VARIABLES["directory"]


class UsageError(Exception):
    """Bad arguments found after parsing (exit 2, like argparse's own)."""


def secret(args: argparse.Namespace) -> bytes | None:
    """The store's key: ``--secret-file``, else ``$WARMSTART_SECRET`` or ``$WARMSTART_SECRET_FILE``.

    The variables are read as ``boot()`` reads them (``warmstart.boot.environment``),
    so a command run beside a service opens its store with the same key.
    """
    path = getattr(args, "secret_file", None)  # absent from parsers without the option
    try:
        if path is not None:
            return read_secret_file(path, "--secret-file")
        return environment().secret
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None


def store_path(args: argparse.Namespace) -> str:
    """The command's PATH, or ``$WARMSTART_DIR`` when it was left out."""
    path: str | None = getattr(args, "path", None)
    if path is not None:
        return path
    try:
        directory = environment().directory
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None
    if directory is None:
        msg = f"Expected PATH, or ${DIR_ENV} set to the store directory"
        raise UsageError(msg)
    return directory


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
