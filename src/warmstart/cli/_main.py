"""The ``warmstart`` command: look into, check and move checkpoint stores.

A thin argparse layer over the public API. This module builds the parser and
turns errors into exit codes; the commands live in private ``_cli_*`` modules
(``_cli_store``, ``_cli_inspect``, ``_cli_compat``, ``_check``, ``_cli_transfer``; ``push``
and ``pull`` in ``warmstart.remote.cli``). Read commands (``ls``, ``inspect``,
``verify``, ``compat``, ``check``, ``export``, ``stats``) open stores read-only, so they
are safe on a live store and work on read-only volumes. Every command takes
``--json`` for machine-readable output; errors are one line on stderr (a
traceback only with ``--debug``). Exit codes:

* ``0``: done, nothing wrong found;
* ``1``: a problem was found (``verify``), contracts are incompatible
  (``compat``), entries would be dropped or unreadable (``check``), or a
  ``drop`` was declined;
* ``2``: a usage error, or an error that stopped the command;
* ``130``: interrupted (Ctrl-C).

See docs/cli.md for the reference and examples.

>>> import msgspec, tempfile
>>> from warmstart import Contract, Store
>>> class Row(msgspec.Struct):
...     name: str
>>> path = tempfile.mkdtemp()
>>> with Store(path) as store:
...     _ = store.save("svc", {"rows": (Contract("row", Row), {"a": Row("x")})})
>>> main(["verify", path])
ok: 1 namespace, 1 generation, 1 chunk verified, 0 orphaned
0
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from warmstart._version import version
from warmstart.cli import _remote as remote_cli
from warmstart.cli._check import add_check
from warmstart.cli._common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    SECRET_ENV,
    UsageError,
)
from warmstart.cli._compat import cmd_compat
from warmstart.cli._inspect import cmd_inspect
from warmstart.cli._store import cmd_drop, cmd_gc, cmd_ls, cmd_stats, cmd_verify
from warmstart.cli._transfer import cmd_export, cmd_import
from warmstart.errors import WarmstartError

__all__ = ("main",)


def __dir__() -> tuple[str, ...]:
    return __all__


# -- entry point --------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``warmstart`` command and return its exit code.

    Args:
        argv: the arguments (``sys.argv[1:]`` by default).

    >>> main(["--version"]) == 0  # doctest: +ELLIPSIS
    warmstart ...
    True
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("\nwarmstart: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader (`| head`) went away: not our problem, and not worth a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        if args.debug:
            raise
        print(f"warmstart: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, (WarmstartError, UsageError)):
        return text
    return f"{type(exc).__name__}: {text}"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line too."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="warmstart",
        description="Inspect, verify and move warmstart checkpoint stores.",
        epilog="Exit codes: 0 ok, 1 problem found or incompatible, 2 usage or error.",
    )
    parser.add_argument("--version", action="version", version=f"warmstart {version()}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.set_defaults(json=False, secret_file=None)
    # Options repeated on each subcommand: SUPPRESS keeps a subparser from
    # resetting what was given before the subcommand name.
    common = _Parser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="JSON output"
    )
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    keyed = _Parser(add_help=False)
    keyed.add_argument(
        "--secret-file",
        default=argparse.SUPPRESS,
        metavar="FILE",
        help=f"file holding the store's secret key (or set ${SECRET_ENV})",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, handler: Callable[[argparse.Namespace], int], text: str) -> Any:
        p = sub.add_parser(name, parents=[common, keyed], help=text, description=text)
        p.set_defaults(handler=handler)
        return p

    p = command("ls", cmd_ls, "list namespaces and their generations")
    p.add_argument("path", metavar="PATH", nargs="?")
    p.add_argument(
        "--remote",
        metavar="URL",
        default=os.environ.get("WARMSTART_REMOTE"),
        help="list a remote (redis://, s3://, file://) instead; default $WARMSTART_REMOTE",
    )
    p = command("inspect", cmd_inspect, "show a generation's manifest, metadata and schemas")
    p.add_argument("path", metavar="PATH")
    p.add_argument("namespace", metavar="NAMESPACE", nargs="?")
    p.add_argument("--generation", type=int, metavar="N", help="default: the head")
    p.add_argument("--section", metavar="S", help="only this section")
    p.add_argument("--entries", type=int, metavar="K", default=0, help="show the first K entries")
    p = command("verify", cmd_verify, "check every chunk digest (and MAC) and reference")
    p.add_argument("path", metavar="PATH")
    p = command("compat", cmd_compat, "check two contract versions for compatibility")
    p.add_argument("old", metavar="OLD", help="module:attribute or PATH:NAMESPACE:SECTION")
    p.add_argument("new", metavar="NEW", help="module:attribute or PATH:NAMESPACE:SECTION")
    p.add_argument(
        "--direction",
        choices=("both", "backward", "forward"),
        default="both",
        help="which direction must hold for exit 0 (default: both)",
    )
    add_check(command)
    p = command("export", cmd_export, "write a generation to an archive file")
    p.add_argument("path", metavar="PATH")
    p.add_argument("namespace", metavar="NAMESPACE")
    p.add_argument("out", metavar="OUT")
    p.add_argument("--generation", type=int, metavar="N", help="default: the head")
    p.add_argument("--since", type=int, metavar="M", help="leave out chunks generation M has")
    p = command("import", cmd_import, "read an archive into a store")
    p.add_argument("path", metavar="PATH")
    p.add_argument("archive", metavar="IN")
    p.add_argument("--namespace", metavar="NS", help="import under another namespace")
    p = command("gc", cmd_gc, "collect chunks no generation references")
    p.add_argument("path", metavar="PATH")
    p = command("drop", cmd_drop, "remove a namespace entirely")
    p.add_argument("path", metavar="PATH")
    p.add_argument("namespace", metavar="NAMESPACE")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p = command("stats", cmd_stats, "show store-level sizes and counts")
    p.add_argument("path", metavar="PATH")
    remote_cli.register(sub, parents=[common, keyed])
    return parser
