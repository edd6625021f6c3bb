"""The ``warmstart`` command: look into, check and move checkpoint stores.

A thin argparse layer over the public API. Read commands (``ls``, ``inspect``,
``verify``, ``compat``, ``export``, ``stats``) open stores read-only, so they
are safe on a live store and work on read-only volumes. Every command takes
``--json`` for machine-readable output; errors are one line on stderr (a
traceback only with ``--debug``). Exit codes:

* ``0``: done, nothing wrong found;
* ``1``: a problem was found (``verify``), contracts are incompatible
  (``compat``), or a ``drop`` was declined;
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
import datetime
import importlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

import msgspec

from warmstart.codec import Codec
from warmstart.contract import Contract
from warmstart.errors import (
    CheckpointNotFoundError,
    IntegrityError,
    StoreError,
    WarmstartError,
)
from warmstart.manifest import Manifest, SectionManifest
from warmstart.remote import cli as remote_cli
from warmstart.schema import Schema, compatibility
from warmstart.store import Store
from warmstart.transfer import TransferProgress, export, import_archive

__all__ = ("main",)


def __dir__() -> tuple[str, ...]:
    return __all__


EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
SECRET_ENV = "WARMSTART_SECRET"  # noqa: S105 - the variable name, not a secret


class _UsageError(Exception):
    """Bad arguments found after parsing (exit 2, like argparse's own)."""


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
    if isinstance(exc, (WarmstartError, _UsageError)):
        return text
    return f"{type(exc).__name__}: {text}"


def _version() -> str:
    import warmstart  # noqa: PLC0415 - __version__ is computed lazily

    return str(warmstart.__version__)


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
    parser.add_argument("--version", action="version", version=f"warmstart {_version()}")
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

    p = command("ls", _cmd_ls, "list namespaces and their generations")
    p.add_argument("path", metavar="PATH", nargs="?")
    p.add_argument(
        "--remote",
        metavar="URL",
        default=os.environ.get("WARMSTART_REMOTE"),
        help="list a remote (redis://, s3://, file://) instead; default $WARMSTART_REMOTE",
    )
    p = command("inspect", _cmd_inspect, "show a generation's manifest, metadata and schemas")
    p.add_argument("path", metavar="PATH")
    p.add_argument("namespace", metavar="NAMESPACE", nargs="?")
    p.add_argument("--generation", type=int, metavar="N", help="default: the head")
    p.add_argument("--section", metavar="S", help="only this section")
    p.add_argument("--entries", type=int, metavar="K", default=0, help="show the first K entries")
    p = command("verify", _cmd_verify, "check every chunk digest (and MAC) and reference")
    p.add_argument("path", metavar="PATH")
    p = command("compat", _cmd_compat, "check two contract versions for compatibility")
    p.add_argument("old", metavar="OLD", help="module:attribute or PATH:NAMESPACE:SECTION")
    p.add_argument("new", metavar="NEW", help="module:attribute or PATH:NAMESPACE:SECTION")
    p.add_argument(
        "--direction",
        choices=("both", "backward", "forward"),
        default="both",
        help="which direction must hold for exit 0 (default: both)",
    )
    p = command("export", _cmd_export, "write a generation to an archive file")
    p.add_argument("path", metavar="PATH")
    p.add_argument("namespace", metavar="NAMESPACE")
    p.add_argument("out", metavar="OUT")
    p.add_argument("--generation", type=int, metavar="N", help="default: the head")
    p.add_argument("--since", type=int, metavar="M", help="leave out chunks generation M has")
    p = command("import", _cmd_import, "read an archive into a store")
    p.add_argument("path", metavar="PATH")
    p.add_argument("archive", metavar="IN")
    p.add_argument("--namespace", metavar="NS", help="import under another namespace")
    p = command("gc", _cmd_gc, "collect chunks no generation references")
    p.add_argument("path", metavar="PATH")
    p = command("drop", _cmd_drop, "remove a namespace entirely")
    p.add_argument("path", metavar="PATH")
    p.add_argument("namespace", metavar="NAMESPACE")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p = command("stats", _cmd_stats, "show store-level sizes and counts")
    p.add_argument("path", metavar="PATH")
    remote_cli.register(sub, parents=[common, keyed])
    return parser


# -- helpers ------------------------------------------------------------------


def _secret(args: argparse.Namespace) -> bytes | None:
    if args.secret_file is not None:
        secret = Path(args.secret_file).read_bytes().rstrip(b"\r\n")
        if not secret:
            msg = f"Expected a secret in {args.secret_file!r}, the file is empty"
            raise _UsageError(msg)
        return secret
    value = os.environ.get(SECRET_ENV)
    return value.encode() if value else None


def _open(
    args: argparse.Namespace, path: str, *, readonly: bool = True, create: bool = False
) -> Store:
    # Only `import` may create a store: `gc` or `drop` on a mistyped path
    # must not leave an empty store behind.
    if not readonly and not create and not (Path(path) / "data.mdb").is_file():
        msg = f"Expected a store at {path!r}, found no data.mdb"
        raise StoreError(msg)
    return Store(path, readonly=readonly, secret=_secret(args))


def _enc_hook(obj: Any) -> Any:
    # Untyped data (watermarks, raw entries) may hold msgpack extensions.
    if isinstance(obj, msgspec.msgpack.Ext):
        return {"ext": obj.code, "data": bytes(obj.data).hex()}
    return repr(obj)


_json_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)


def _builtins(obj: Any) -> Any:
    return msgspec.to_builtins(obj, enc_hook=_enc_hook)


def _to_json(data: Any) -> str:
    return msgspec.json.format(_json_encoder.encode(data), indent=2).decode()


def _emit_json(data: Any) -> None:
    print(_to_json(data))


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover - the loop always returns


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _iso(ts: float) -> str:
    moment = datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: set[int]) -> str:
    """Align ``rows`` in columns under ``headers`` (``numeric`` columns to the right)."""
    cells = [list(map(str, headers))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [
            c.rjust(widths[i]) if i in numeric else c.ljust(widths[i]) for i, c in enumerate(row)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


class _ProgressLine:
    """Draws a progress line with an ETA on a terminal, at most ten times a second."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.last = 0.0
        self.drawn = False

    def __call__(self, p: TransferProgress) -> None:
        now = time.monotonic()
        if p.bytes_done < p.bytes_total and now - self.last < 0.1:
            return
        self.last = now
        self.drawn = True
        self.stream.write(
            f"\r{p.operation}ing {_size(p.bytes_done)} / {_size(p.bytes_total)}"
            f"  {p.fraction:4.0%}  {p.chunks_done}/{p.chunks_total} chunks"
            f"  {_size(p.rate)}/s  ETA {_duration(p.eta)}\x1b[K"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def _progress() -> _ProgressLine | None:
    return _ProgressLine(sys.stderr) if sys.stderr.isatty() else None


# -- ls -----------------------------------------------------------------------


def _cmd_ls(args: argparse.Namespace) -> int:
    if args.remote is not None:
        return remote_cli.cmd_ls(args)
    if args.path is None:
        msg = "Expected PATH or --remote URL"
        raise _UsageError(msg)
    now = time.time()
    with _open(args, args.path) as store:
        listing = [
            (ns, g, store.quarantined(ns).get(g.generation))
            for ns in store.namespaces()
            for g in store.generations(ns)
        ]
    if args.json:
        namespaces: dict[str, list[Any]] = {}
        for ns, g, quarantined in listing:
            namespaces.setdefault(ns, []).append(
                {
                    **_builtins(g),
                    "age": now - g.created_at,
                    "entries": sum(g.sections.values()),
                    "quarantined": quarantined,
                }
            )
        rows = [{"namespace": ns, "generations": gens} for ns, gens in namespaces.items()]
        _emit_json({"path": args.path, "namespaces": rows})
        return EXIT_OK
    if not listing:
        print(f"no namespaces in {args.path}")
        return EXIT_OK
    table = [
        (
            ns,
            g.generation,
            "*" if g.head else "",
            g.kind,
            _duration(now - g.created_at),
            _size(g.stored_bytes),
            len(g.sections),
            sum(g.sections.values()),
            g.delta_chain,
            "" if quarantined is None else f"quarantined: {quarantined}",
        )
        for ns, g, quarantined in listing
    ]
    headers = ("NAMESPACE", "GEN", "HEAD", "KIND", "AGE", "SIZE", "SECTIONS", "ENTRIES", "CHAIN")
    print(_table((*headers, "NOTE"), table, numeric={1, 4, 5, 6, 7, 8}))
    return EXIT_OK


# -- inspect ------------------------------------------------------------------


def _cmd_inspect(args: argparse.Namespace) -> int:
    if args.entries < 0:
        msg = f"Expected --entries >= 0, got {args.entries}"
        raise _UsageError(msg)
    with _open(args, args.path) as store:
        namespace = args.namespace or _only_namespace(store, args.path)
        manifest = store.manifest(namespace, args.generation)
        heads = [g.generation for g in store.generations(namespace) if g.head]
        quarantined = store.quarantined(namespace).get(manifest.generation)
        sections = list(manifest.sections)
        if args.section is not None:
            sections = [s for s in sections if s.name == args.section]
            if not sections:
                msg = (
                    f"Expected section {args.section!r} in namespace {namespace!r} generation "
                    f"{manifest.generation}, found {[s.name for s in manifest.sections]}"
                )
                raise CheckpointNotFoundError(msg)
        entries = {
            s.name: _first_entries(store, namespace, s, args.entries)
            for s in sections
            if args.entries
        }
    data = _describe(manifest, sections, entries, head=manifest.generation in heads)
    data["quarantined"] = quarantined
    if args.json:
        _emit_json(data)
    else:
        _print_inspect(data)
    return EXIT_OK


def _only_namespace(store: Store, path: str) -> str:
    names = store.namespaces()
    if len(names) == 1:
        return names[0]
    msg = (
        f"Expected a NAMESPACE argument, the store at {path!r} holds "
        f"{', '.join(map(repr, names)) if names else 'none'}"
    )
    raise _UsageError(msg)


def _describe(
    manifest: Manifest,
    sections: list[SectionManifest],
    entries: dict[str, list[dict[str, Any]]],
    *,
    head: bool,
) -> dict[str, Any]:
    return {
        "namespace": manifest.namespace,
        "generation": manifest.generation,
        "head": head,
        "kind": manifest.kind,
        "parent": manifest.parent,
        "lineage": manifest.lineage,
        "delta_chain": manifest.delta_chain,
        "created_at": manifest.created_at,
        "age": time.time() - manifest.created_at,
        "library_version": manifest.library_version,
        "host": manifest.host,
        "pid": manifest.pid,
        "watermark": manifest.watermark,
        "tags": manifest.tags,
        "stored_bytes": manifest.stored_bytes,
        "chunks": len(manifest.digests()),
        "sections": [
            {
                "name": s.name,
                "contract": s.schema.contract,
                "version": s.schema.version,
                "key": s.schema.key,
                "fields": [msgspec.structs.asdict(f) for f in s.schema.fields],
                "deprecated": list(s.schema.deprecated),
                "entries": s.entries,
                "keys_only": s.keys_only,
                "base_chunks": len(s.base),
                "delta_chunks": len(s.deltas),
                "stored_bytes": s.stored_bytes,
                "raw_bytes": sum(c.raw_bytes for c in s.chunks),
                **({"first_entries": entries[s.name]} if s.name in entries else {}),
            }
            for s in sections
        ],
    }


def _print_inspect(d: dict[str, Any]) -> None:
    kind = d["kind"] + (f", parent {d['parent']}" if d["parent"] is not None else "")
    tags = ", ".join(f"{k}={v}" for k, v in sorted(d["tags"].items())) or "-"
    lines = [
        ("namespace", d["namespace"]),
        ("generation", f"{d['generation']}{' (head)' if d['head'] else ''}"),
        ("kind", f"{kind}, delta chain {d['delta_chain']}"),
        ("lineage", d["lineage"]),
        ("created", f"{_iso(d['created_at'])} ({_duration(d['age'])} ago)"),
        ("library", d["library_version"]),
        ("host", f"{d['host']} (pid {d['pid']})"),
        ("watermark", _json_line(d["watermark"])),
        ("tags", tags),
        ("size", f"{_size(d['stored_bytes'])} in {_plural(d['chunks'], 'chunk')}"),
    ]
    if d["quarantined"] is not None:
        lines.append(("quarantined", f"{d['quarantined']} (loads skip it)"))
    print(_table(("", ""), lines, numeric=set()).split("\n", 1)[1])
    for s in d["sections"]:
        print(f"\nsection {s['name']}")
        print(f"  contract  {s['contract']} v{s['version']} (key {s['key']})")
        print(
            f"  entries   {s['entries']} ({s['base_chunks']} base + {s['delta_chunks']} delta "
            f"chunks, {_size(s['stored_bytes'])} stored, {_size(s['raw_bytes'])} raw)"
        )
        if s["keys_only"]:
            print("  keys only")
        if s["deprecated"]:
            print(f"  deprecated  {', '.join(s['deprecated'])}")
        rows = [
            (f["name"], f["type"], "required" if f["required"] else "optional") for f in s["fields"]
        ]
        table = _table(("FIELD", "TYPE", "REQUIRED"), rows, numeric=set())
        print("\n".join(f"  {line}" for line in table.splitlines()))
        if "first_entries" in s:
            print(
                f"  first {_plural(len(s['first_entries']), 'entry').replace('entrys', 'entries')}:"
            )
            for entry in s["first_entries"]:
                print(f"    {_json_line(entry)}")


def _json_line(data: Any) -> str:
    return _json_encoder.encode(data).decode()


def _first_entries(
    store: Store, namespace: str, section: SectionManifest, limit: int
) -> list[dict[str, Any]]:
    """The first ``limit`` entries of a section once replayed, decoded without its contract.

    Delta chunks are read first (they are small) to know which base keys they
    touch; the base is then streamed only until ``limit`` entries are found.
    """
    payloads = _raw_payloads(store, namespace, section)
    tail: dict[Any, dict[str, Any]] = {}
    touched: set[Any] = set()
    for _, keys, values, deleted, expires in payloads(section.deltas):
        for key in deleted:
            touched.add(_hashable(key))
            tail.pop(_hashable(key), None)
        for i, (key, value) in enumerate(zip(keys, values)):
            hkey = _hashable(key)
            touched.add(hkey)
            tail.pop(hkey, None)
            tail[hkey] = _entry(key, value, expires, i)
    out: list[dict[str, Any]] = []
    if limit > 0:
        for _, keys, values, _, expires in payloads(section.base):
            for i, (key, value) in enumerate(zip(keys, values)):
                if _hashable(key) not in touched:
                    out.append(_entry(key, value, expires, i))
                    if len(out) >= limit:
                        return out
    out.extend(tail.values())
    return out[:limit]


def _entry(key: Any, value: Any, expires: list[Any], i: int) -> dict[str, Any]:
    entry = {"key": key, "value": value}
    if expires:
        entry["expires"] = expires[i]
    return entry


def _hashable(key: Any) -> Any:
    # Tuple keys come back from untyped msgpack as lists.
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


def _raw_payloads(
    store: Store, namespace: str, section: SectionManifest
) -> Callable[[tuple[Any, ...]], Iterator[list[Any]]]:
    def payloads(refs: tuple[Any, ...]) -> Iterator[list[Any]]:
        codec: Codec = store.codec
        with store._env.read() as txn:
            nsid = store._nsid(txn, namespace, create=False)
            for ref in refs:
                frame = (
                    None
                    if nsid is None
                    else txn.get(store._chunk_key(nsid, ref.digest), db=store._db("chunks"))
                )
                if frame is None:
                    msg = (
                        f"Expected chunk {ref.digest.hex()} of section {section.name!r}, "
                        f"it is missing; run `warmstart verify`"
                    )
                    raise IntegrityError(msg)
                payload = codec.decode(frame, digest=ref.digest)
                yield _check_payload(msgspec.msgpack.decode(payload), ref.digest.hex())

    return payloads


def _check_payload(decoded: Any, where: str) -> list[Any]:
    ok = (
        isinstance(decoded, list)
        and len(decoded) == 5
        and all(isinstance(part, list) for part in decoded[1:])
        and len(decoded[1]) == len(decoded[2])
    )
    if not ok:
        msg = (
            f"Expected a chunk payload [sequence, keys, values, deleted, expires] in chunk {where}"
        )
        raise IntegrityError(msg)
    return decoded  # type: ignore[no-any-return]


# -- verify -------------------------------------------------------------------


def _cmd_verify(args: argparse.Namespace) -> int:
    with _open(args, args.path) as store:
        report = store.verify()
    if args.json:
        _emit_json({"path": args.path, "ok": report.ok, **_builtins(report)})
        return EXIT_OK if report.ok else EXIT_PROBLEM
    summary = (
        f"{_plural(report.namespaces, 'namespace')}, {_plural(report.generations, 'generation')}, "
        f"{_plural(report.chunks, 'chunk')} verified, {report.orphans} orphaned"
    )
    if report.ok:
        print(f"ok: {summary}")
        return EXIT_OK
    for p in report.problems:
        where = p.namespace + ("" if p.generation is None else f" generation {p.generation}")
        print(f"{where}: {p.what}{'' if p.chunk is None else f' (chunk {p.chunk})'}")
    print(f"FAILED: {_plural(len(report.problems), 'problem')} found; {summary}")
    return EXIT_PROBLEM


# -- compat -------------------------------------------------------------------


class _Side:
    """One side of a compatibility check: what it writes and what it reads."""

    def __init__(
        self, spec: str, writer: Schema, reader: Schema, contract: Contract[Any] | None
    ) -> None:
        self.spec = spec
        self.writer = writer
        self.reader = reader
        self.contract = contract

    def describe(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "contract": self.reader.contract,
            "version": self.reader.version,
            "write_version": self.writer.version,
            "key": self.reader.key,
        }


def _cmd_compat(args: argparse.Namespace) -> int:
    old = _resolve(args, args.old)
    new = _resolve(args, args.new)
    backward = _read_problems(old.writer, new)
    forward = _read_problems(new.writer, old)
    reasons = [f"backward: {r}" for r in backward] + [f"forward: {r}" for r in forward]
    wanted = {"both": (True, True), "backward": (True, False), "forward": (False, True)}
    need_back, need_fwd = wanted[args.direction]
    ok = not (need_back and backward) and not (need_fwd and forward)
    if args.json:
        _emit_json(
            {
                "old": old.describe(),
                "new": new.describe(),
                "backward": not backward,
                "forward": not forward,
                "direction": args.direction,
                "ok": ok,
                "reasons": reasons,
            }
        )
        return EXIT_OK if ok else EXIT_PROBLEM
    for label, side in (("old", old), ("new", new)):
        staged = (
            f", writes v{side.writer.version}" if side.writer.version != side.reader.version else ""
        )
        print(
            f"{label}  {side.reader.contract} v{side.reader.version}{staged} "
            f"(key {side.reader.key})  from {side.spec}"
        )
    for name, problems, what in (
        ("backward", backward, "new reads old data"),
        ("forward ", forward, "old reads new data"),
    ):
        print(f"{name} ({what}): {'INCOMPATIBLE' if problems else 'compatible'}")
        for problem in problems:
            print(f"  - {problem}")
    return EXIT_OK if ok else EXIT_PROBLEM


def _read_problems(writer: Schema, reader: _Side) -> list[str]:
    """Why ``reader`` cannot read data written with ``writer``, as its contract would decide."""
    problems: list[str] = []
    if writer.contract != reader.reader.contract:
        problems.append(
            f"contract name changed from {writer.contract!r} to {reader.reader.contract!r}"
        )
    upgrades = False
    if reader.contract is not None and writer.version < reader.reader.version:
        # Contract.plan refuses an older version without a complete upgrader chain,
        # whatever the fields say; with one, the upgraders produce the new shape.
        missing = [
            v
            for v in range(writer.version, reader.reader.version)
            if v not in reader.contract.upgraders
        ]
        problems.extend(f"no upgrader v{v}->v{v + 1} in {reader.spec}" for v in missing)
        upgrades = not missing
    result = compatibility(writer, reader.reader, upgrades=upgrades)
    problems.extend(
        r.removeprefix("backward: ") for r in result.reasons if r.startswith("backward: ")
    )
    return problems


def _resolve(args: argparse.Namespace, spec: str) -> _Side:
    """A ``module:attribute`` contract or schema, or a stored ``PATH:NAMESPACE:SECTION``."""
    for i, char in enumerate(spec):
        # The store path may itself hold colons: the first prefix that is a store wins.
        if char == ":" and (Path(spec[:i]) / "data.mdb").is_file():
            return _stored_side(args, spec, spec[:i], spec[i + 1 :])
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute or ":" in attribute:
        msg = f"Expected module:attribute or PATH:NAMESPACE:SECTION (PATH a store), got {spec!r}"
        raise _UsageError(msg)
    # A console script's sys.path lacks the working directory; a project's
    # contracts are usually importable from there.
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    obj: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            msg = f"Expected attribute {attribute!r} in module {module_name!r}, found none"
            raise _UsageError(msg) from None
    if isinstance(obj, Contract):
        return _Side(spec, obj.write_schema, obj.schema, obj)
    if isinstance(obj, Schema):
        return _Side(spec, obj, obj, None)
    msg = f"Expected a warmstart.Contract or Schema at {spec!r}, got {type(obj).__name__}"
    raise _UsageError(msg)


def _stored_side(args: argparse.Namespace, spec: str, path: str, rest: str) -> _Side:
    namespace, sep, section = rest.rpartition(":")
    if not sep or not namespace or not section:
        msg = f"Expected PATH:NAMESPACE:SECTION, got {spec!r}"
        raise _UsageError(msg)
    with _open(args, path) as store:
        found = store.manifest(namespace).section(section)
    if found is None:
        msg = (
            f"Expected section {section!r} in the head of namespace {namespace!r} of "
            f"{path!r}, found none"
        )
        raise CheckpointNotFoundError(msg)
    return _Side(spec, found.schema, found.schema, None)


# -- export / import ----------------------------------------------------------


def _cmd_export(args: argparse.Namespace) -> int:
    line = _progress()
    try:
        with _open(args, args.path) as store:
            report = export(
                store,
                args.namespace,
                args.out,
                generation=args.generation,
                since=args.since,
                progress=line,
            )
    finally:
        if line is not None:
            line.close()
    if args.json:
        _emit_json(_builtins(report))
        return EXIT_OK
    left_out = (
        ""
        if report.since is None
        else f" ({report.omitted_chunks} left out: generation {report.since} has them)"
    )
    print(
        f"exported {report.namespace} generation {report.generation} to {report.path}: "
        f"{_plural(report.chunks, 'chunk')}{left_out}, {_size(report.archive_bytes)}, "
        f"in {report.seconds:.2f}s"
    )
    return EXIT_OK


def _cmd_import(args: argparse.Namespace) -> int:
    line = _progress()
    try:
        with _open(args, args.path, readonly=False, create=True) as store:
            report = import_archive(store, args.archive, namespace=args.namespace, progress=line)
    finally:
        if line is not None:
            line.close()
    if args.json:
        _emit_json({**_builtins(report), "renumbered": report.renumbered})
        return EXIT_OK
    source = f"{report.source_namespace}@{report.source_generation}"
    if report.status == "present":
        print(
            f"{source} is already in {args.path} as {report.namespace} generation "
            f"{report.generation}: nothing changed"
        )
        return EXIT_OK
    renumbered = " (renumbered: the target had that generation or a newer one)"
    print(
        f"imported {source} into {args.path} as {report.namespace} generation "
        f"{report.generation}{renumbered if report.renumbered else ''}: "
        f"{_plural(report.chunks_written, 'chunk')} written ({_size(report.bytes_written)}), "
        f"{report.chunks_skipped} already present, in {report.seconds:.2f}s"
    )
    return EXIT_OK


# -- gc / drop ----------------------------------------------------------------


def _cmd_gc(args: argparse.Namespace) -> int:
    with _open(args, args.path, readonly=False) as store:
        freed = store.gc()
    if args.json:
        _emit_json({"path": args.path, "freed_chunks": freed})
    else:
        print(f"freed {_plural(freed, 'chunk')} in {args.path}")
    return EXIT_OK


def _cmd_drop(args: argparse.Namespace) -> int:
    with _open(args, args.path, readonly=False) as store:
        if args.namespace in store.namespaces() and not args.yes:
            if not sys.stdin.isatty():
                msg = (
                    f"Expected --yes to drop namespace {args.namespace!r} without a terminal "
                    f"to confirm on; nothing dropped"
                )
                raise _UsageError(msg)
            count = len(store.generations(args.namespace))
            sys.stderr.write(
                f"drop namespace {args.namespace!r} ({_plural(count, 'generation')}) from "
                f"{args.path}? This cannot be undone. [y/N] "
            )
            sys.stderr.flush()
            if sys.stdin.readline().strip().lower() not in ("y", "yes"):
                print("not dropped", file=sys.stderr)
                return EXIT_PROBLEM
        dropped = store.drop(args.namespace)
    if not dropped:
        msg = f"Expected namespace {args.namespace!r} in {args.path!r}, found none"
        raise CheckpointNotFoundError(msg)
    if args.json:
        _emit_json({"path": args.path, "dropped": args.namespace})
    else:
        print(f"dropped namespace {args.namespace} from {args.path}")
    return EXIT_OK


# -- stats --------------------------------------------------------------------


def _cmd_stats(args: argparse.Namespace) -> int:
    with _open(args, args.path) as store:
        data = _stats(store, args.path)
    if args.json:
        _emit_json(data)
        return EXIT_OK
    print(f"path          {data['path']}")
    print(
        f"file          {_size(data['file_bytes'])} (map {_size(data['map_size'])}, "
        f"page {data['page_size']} B)"
    )
    print(f"transactions  {data['last_txnid']}")
    print(f"readers       {data['readers']} of {data['max_readers']}")
    print(f"orphaned      {_plural(data['orphaned_chunks'], 'chunk')}")
    print()
    tables = [(name, t["entries"], _size(t["bytes"])) for name, t in data["tables"].items()]
    print(_table(("TABLE", "ENTRIES", "SIZE"), tables, numeric={1, 2}))
    if data["namespaces"]:
        print()
        rows = [
            (
                n["namespace"],
                n["generations"],
                "-" if n["head"] is None else n["head"],
                n["entries"],
                n["chunks"],
                _size(n["chunk_bytes"]),
            )
            for n in data["namespaces"]
        ]
        headers = ("NAMESPACE", "GENERATIONS", "HEAD", "ENTRIES", "CHUNKS", "CHUNK BYTES")
        print(_table(headers, rows, numeric={1, 2, 3, 4, 5}))
    return EXIT_OK


def _stats(store: Store, path: str) -> dict[str, Any]:
    """Sizes and counts of a store (LMDB's own statistics plus the manifests')."""
    info = store._env.env.info()
    tables: dict[str, dict[str, int]] = {}
    page_size = 0
    with store._env.read() as txn:
        for name, db in store._env.dbs.items():
            if db is None:
                tables[name] = {"entries": 0, "bytes": 0}
                continue
            st = txn.stat(db)
            page_size = st["psize"]
            pages = st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]
            tables[name] = {"entries": st["entries"], "bytes": pages * st["psize"]}
    namespaces = []
    referenced = 0
    for namespace in store.namespaces():
        generations = store.generations(namespace)
        chunks: dict[bytes, int] = {}
        for g in generations:
            try:
                manifest = store.manifest(namespace, g.generation)
            except WarmstartError:
                continue  # `warmstart verify` reports it
            chunks.update((c.digest, c.stored_bytes) for s in manifest.sections for c in s.chunks)
        head = next((g for g in generations if g.head), None)
        referenced += len(chunks)
        namespaces.append(
            {
                "namespace": namespace,
                "generations": len(generations),
                "head": None if head is None else head.generation,
                "entries": 0 if head is None else sum(head.sections.values()),
                "chunks": len(chunks),
                "chunk_bytes": sum(chunks.values()),
            }
        )
    data_file = store.path / "data.mdb"
    return {
        "path": path,
        "file_bytes": data_file.stat().st_size,
        "map_size": info["map_size"],
        "page_size": page_size,
        "last_txnid": info["last_txnid"],
        "readers": info["num_readers"],
        "max_readers": info["max_readers"],
        "tables": tables,
        "namespaces": namespaces,
        "orphaned_chunks": max(0, tables["chunks"]["entries"] - referenced),
    }
