"""The ``warmstart push``, ``pull`` and ``ls --remote`` commands.

:func:`register` adds ``push`` and ``pull`` to the ``warmstart`` command's
subparsers; :func:`cmd_ls` lists a remote for ``warmstart ls --remote URL``.
The remote URL comes from ``--remote`` or ``$WARMSTART_REMOTE``; the store's
secret from ``--secret-file`` or ``$WARMSTART_SECRET``, as for the other
commands. Errors propagate to the ``warmstart`` entry point, which prints them
on one line and exits 2.

>>> import argparse, msgspec, pathlib, tempfile
>>> from warmstart import Contract, Store
>>> class Row(msgspec.Struct):
...     name: str
>>> tmp = pathlib.Path(tempfile.mkdtemp())
>>> with Store(tmp / "a") as store:
...     _ = store.save("svc", {"rows": (Contract("row", Row), {"k": Row("x")})})
>>> parser = argparse.ArgumentParser(prog="warmstart")
>>> register(parser.add_subparsers())
>>> args = parser.parse_args(["push", str(tmp / "a"), "svc", "--remote", (tmp / "r").as_uri()])
>>> args.handler(args)  # doctest: +ELLIPSIS +NORMALIZE_WHITESPACE
pushed svc generation 1 to file:///.../r as remote generation 1:
1 chunk shipped (...), 0 already there, in ...s
0
"""

from __future__ import annotations

import argparse
import datetime
import os
from collections.abc import Sequence
from typing import Any

from warmstart.boot import VARIABLES
from warmstart.cli._common import open_store
from warmstart.cli._format import emit_json, plural, size
from warmstart.remote import DEFAULT_GRACE, list_remote, pull, push

__all__ = ("cmd_ls", "cmd_pull", "cmd_push", "register")


def __dir__() -> tuple[str, ...]:
    return __all__


REMOTE_ENV = VARIABLES["remote"]
EXIT_OK = 0


def register(subparsers: Any, *, parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    """Add ``push`` and ``pull`` to an argparse subparsers object.

    Args:
        subparsers: what ``ArgumentParser.add_subparsers()`` returned.
        parents: parsers whose options every subcommand shares (``--json``,
            ``--secret-file``, ``--debug`` in the ``warmstart`` command).
    """

    def command(name: str, handler: Any, text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = subparsers.add_parser(
            name, parents=list(parents), help=text, description=text
        )
        p.set_defaults(handler=handler)
        p.add_argument("path", metavar="PATH", help="the local store")
        p.add_argument("namespace", metavar="NAMESPACE")
        add_remote_argument(p)
        return p

    p = command("push", cmd_push, "publish a generation as a remote's new head")
    p.add_argument("--generation", type=int, metavar="N", help="default: the local head")
    p.add_argument("--keep", type=int, metavar="K", help="generations the remote retains")
    p.add_argument(
        "--grace",
        type=float,
        metavar="SECONDS",
        default=DEFAULT_GRACE,
        help=f"age before unreferenced objects are collected (default {DEFAULT_GRACE:g})",
    )
    p.add_argument("--force", action="store_true", help="push even if the remote head is newer")
    p = command("pull", cmd_pull, "fetch a remote's head generation into a store")
    p.add_argument(
        "--if-newer", action="store_true", help="only if the remote head was saved later"
    )


def add_remote_argument(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """Add ``--remote URL`` (default ``$WARMSTART_REMOTE``) to a parser."""
    default = os.environ.get(REMOTE_ENV) or None
    parser.add_argument(
        "--remote",
        metavar="URL",
        default=default,
        required=required and default is None,
        help=f"redis://, s3:// or file:// URL (or set ${REMOTE_ENV})",
    )


def _json(args: argparse.Namespace, data: Any) -> bool:
    """Print ``data`` as the command's JSON output when ``--json`` was given."""
    if not getattr(args, "json", False):
        return False
    emit_json(data)
    return True


def cmd_push(args: argparse.Namespace) -> int:
    """``warmstart push PATH NAMESPACE --remote URL``."""
    with open_store(args, args.path) as store:
        report = push(
            store,
            args.remote,
            args.namespace,
            generation=args.generation,
            keep=args.keep,
            grace=args.grace,
            force=args.force,
        )
    if _json(args, report):
        return EXIT_OK
    where = f"{report.namespace} generation {report.local_generation}"
    if report.status == "present":
        print(
            f"{where} already is the head of {report.remote} (remote generation "
            f"{report.generation}): nothing pushed"
        )
    elif report.status == "behind":
        print(
            f"{report.remote} holds a {report.namespace} saved after {where} (remote "
            f"generation {report.generation}): nothing pushed; --force pushes anyway"
        )
    else:
        swept = f", {plural(report.swept, 'old object')} collected" if report.swept else ""
        print(
            f"pushed {where} to {report.remote} as remote generation {report.generation}: "
            f"{plural(report.chunks_shipped, 'chunk')} shipped ({size(report.bytes_shipped)}), "
            f"{report.chunks_skipped} already there{swept}, in {report.seconds:.2f}s"
        )
    return EXIT_OK


def cmd_pull(args: argparse.Namespace) -> int:
    """``warmstart pull PATH NAMESPACE --remote URL``."""
    with open_store(args, args.path, readonly=False, create=True) as store:
        report = pull(store, args.remote, args.namespace, if_newer=args.if_newer)
    if _json(args, report):
        return EXIT_OK
    source = f"{report.namespace} remote generation {report.remote_generation}"
    if report.status == "skipped":
        print(f"{args.path} holds a {report.namespace} saved at or after {source}: nothing pulled")
    elif report.status == "present":
        print(
            f"{source} is already in {args.path} as generation {report.generation}: nothing pulled"
        )
    else:
        print(
            f"pulled {source} from {report.remote} into {args.path} as generation "
            f"{report.generation}: {plural(report.chunks_fetched, 'chunk')} fetched "
            f"({size(report.bytes_fetched)}), {report.chunks_skipped} already local, "
            f"in {report.seconds:.2f}s"
        )
    return EXIT_OK


def cmd_ls(args: argparse.Namespace) -> int:
    """``warmstart ls --remote URL``: every namespace on the remote and its head."""
    heads = list_remote(args.remote)
    if _json(args, heads):
        return EXIT_OK
    if not heads:
        print(f"no namespaces on {args.remote}")
        return EXIT_OK
    rows = [
        (
            h.namespace,
            str(h.generation),
            str(h.entries),
            size(h.stored_bytes),
            datetime.datetime.fromtimestamp(h.created_at, tz=datetime.timezone.utc)
            .isoformat(timespec="seconds")
            .replace("+00:00", "Z"),
            h.host,
            ",".join(str(g) for g, _ in h.history),
        )
        for h in heads
    ]
    headers = ("NAMESPACE", "GEN", "ENTRIES", "SIZE", "SAVED", "HOST", "RETAINED")
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return EXIT_OK
