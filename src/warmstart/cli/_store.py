"""The ``warmstart`` commands on a local store as a whole: ls, verify, stats, gc, drop.

Private; used by ``cli``. ``ls``, ``verify`` and ``stats`` open the store
read-only; ``gc`` and ``drop`` open it for writing and refuse a path that
holds no store rather than create one. ``ls --remote`` is handed to
``warmstart.remote.cli``.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from warmstart.cli import _format as fmt
from warmstart.cli import _remote as remote_cli
from warmstart.cli._common import EXIT_OK, EXIT_PROBLEM, UsageError, open_store
from warmstart.errors import CheckpointNotFoundError, WarmstartError
from warmstart.store import Store

__all__ = ()


# -- ls -----------------------------------------------------------------------


def cmd_ls(args: argparse.Namespace) -> int:
    if args.remote is not None:
        return remote_cli.cmd_ls(args)
    if args.path is None:
        msg = "Expected PATH or --remote URL"
        raise UsageError(msg)
    now = time.time()
    with open_store(args, args.path) as store:
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
                    **fmt.builtins(g),
                    "age": now - g.created_at,
                    "entries": sum(g.sections.values()),
                    "quarantined": quarantined,
                }
            )
        rows = [{"namespace": ns, "generations": gens} for ns, gens in namespaces.items()]
        fmt.emit_json({"path": args.path, "namespaces": rows})
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
            fmt.duration(now - g.created_at),
            fmt.size(g.stored_bytes),
            len(g.sections),
            sum(g.sections.values()),
            g.delta_chain,
            "" if quarantined is None else f"quarantined: {quarantined}",
        )
        for ns, g, quarantined in listing
    ]
    headers = ("NAMESPACE", "GEN", "HEAD", "KIND", "AGE", "SIZE", "SECTIONS", "ENTRIES", "CHAIN")
    print(fmt.table((*headers, "NOTE"), table, numeric={1, 4, 5, 6, 7, 8}))
    return EXIT_OK


# -- verify -------------------------------------------------------------------


def cmd_verify(args: argparse.Namespace) -> int:
    with open_store(args, args.path) as store:
        report = store.verify()
    if args.json:
        fmt.emit_json({"path": args.path, "ok": report.ok, **fmt.builtins(report)})
        return EXIT_OK if report.ok else EXIT_PROBLEM
    summary = (
        f"{fmt.plural(report.namespaces, 'namespace')}, "
        f"{fmt.plural(report.generations, 'generation')}, "
        f"{fmt.plural(report.chunks, 'chunk')} verified, {report.orphans} orphaned"
        + (
            f", {report.unaccounted} unaccounted for (a manifest is unreadable)"
            if report.unaccounted
            else ""
        )
    )
    if report.ok:
        print(f"ok: {summary}")
        return EXIT_OK
    for p in report.problems:
        where = p.namespace + ("" if p.generation is None else f" generation {p.generation}")
        print(f"{where}: {p.what}{'' if p.chunk is None else f' (chunk {p.chunk})'}")
    print(f"FAILED: {fmt.plural(len(report.problems), 'problem')} found; {summary}")
    return EXIT_PROBLEM


# -- gc / drop ----------------------------------------------------------------


def cmd_gc(args: argparse.Namespace) -> int:
    with open_store(args, args.path, readonly=False) as store:
        freed = store.gc()
    if args.json:
        fmt.emit_json({"path": args.path, "freed_chunks": freed})
    else:
        print(f"freed {fmt.plural(freed, 'chunk')} in {args.path}")
    return EXIT_OK


def cmd_drop(args: argparse.Namespace) -> int:
    with open_store(args, args.path, readonly=False) as store:
        if args.namespace in store.namespaces() and not args.yes:
            if not sys.stdin.isatty():
                msg = (
                    f"Expected --yes to drop namespace {args.namespace!r} without a terminal "
                    f"to confirm on; nothing dropped"
                )
                raise UsageError(msg)
            count = len(store.generations(args.namespace))
            sys.stderr.write(
                f"drop namespace {args.namespace!r} ({fmt.plural(count, 'generation')}) from "
                f"{args.path}? This cannot be undone. [y/N] "
            )
            sys.stderr.flush()
            if sys.stdin.readline().strip().lower() not in ("y", "yes"):
                print("not dropped", file=sys.stderr)
                return EXIT_PROBLEM
        dropped = store.drop(args.namespace)
        if not dropped:
            held = ", ".join(map(repr, store.namespaces())) or "no namespace"
            msg = (
                f"Expected namespace {args.namespace!r} in {args.path!r}, found none "
                f"(it holds {held})"
            )
            raise CheckpointNotFoundError(msg)
    if args.json:
        fmt.emit_json({"path": args.path, "dropped": args.namespace})
    else:
        print(f"dropped namespace {args.namespace} from {args.path}")
    return EXIT_OK


# -- stats --------------------------------------------------------------------


def cmd_stats(args: argparse.Namespace) -> int:
    with open_store(args, args.path) as store:
        data = _stats(store, args.path)
    if args.json:
        fmt.emit_json(data)
        return EXIT_OK
    print(f"path          {data['path']}")
    print(
        f"disk          {fmt.size(data['disk_bytes'])} used by data.mdb "
        f"(file size {fmt.size(data['file_bytes'])})"
    )
    print(
        f"map           {fmt.size(data['map_size'])} of address space reserved, not memory "
        f"or disk (page {data['page_size']} B)"
    )
    print(f"transactions  {data['last_txnid']}")
    print(f"readers       {data['readers']} of {data['max_readers']}")
    orphaned = data["orphaned_chunks"]
    print(
        "orphaned      "
        + (
            "unknown (a manifest is unreadable: run `warmstart verify`)"
            if orphaned is None
            else fmt.plural(orphaned, "chunk")
        )
    )
    print()
    tables = [(name, t["entries"], fmt.size(t["bytes"])) for name, t in data["tables"].items()]
    print(fmt.table(("TABLE", "ENTRIES", "SIZE"), tables, numeric={1, 2}))
    if data["namespaces"]:
        print()
        rows = [
            (
                n["namespace"],
                n["generations"],
                "-" if n["head"] is None else n["head"],
                n["entries"],
                n["chunks"],
                fmt.size(n["chunk_bytes"]),
            )
            for n in data["namespaces"]
        ]
        headers = ("NAMESPACE", "GENERATIONS", "HEAD", "ENTRIES", "CHUNKS", "CHUNK BYTES")
        print(fmt.table(headers, rows, numeric={1, 2, 3, 4, 5}))
    return EXIT_OK


def _stats(store: Store, path: str) -> dict[str, Any]:
    """Sizes and counts of a store (LMDB's own statistics plus the manifests')."""
    lmdb_stats = store.stats()
    tables: dict[str, dict[str, int]] = lmdb_stats["tables"]
    namespaces = []
    referenced = 0
    unreadable = False  # then which chunks are orphans is unknown
    for namespace in store.namespaces():
        generations = store.generations(namespace)
        # generations() leaves out what it cannot read: a smaller count than
        # the manifests stored means some chunks may belong to a damaged one.
        with store.read() as reader:
            unreadable |= len(generations) < len(reader.generations(namespace))
        chunks: dict[bytes, int] = {}
        for g in generations:
            try:
                manifest = store.manifest(namespace, g.generation)
            except WarmstartError:
                unreadable = True
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
    return {
        "path": path,
        **lmdb_stats,
        "namespaces": namespaces,
        "orphaned_chunks": (
            None if unreadable else max(0, tables["chunks"]["entries"] - referenced)
        ),
    }
