"""The ``warmstart inspect`` command: a generation's manifest, metadata and schemas.

Private; used by ``cli``. ``inspect`` shows one generation (the head by
default) of one namespace: its lineage, watermark, tags and sizes, and per
section the contract, writer schema and chunk counts; ``--entries K`` adds the
first K entries, decoded without the contract by ``_cli_raw_entries``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import msgspec

from warmstart.cli import _format as fmt
from warmstart.cli._common import EXIT_OK, UsageError, open_store
from warmstart.cli._raw_entries import first_entries
from warmstart.errors import CheckpointNotFoundError
from warmstart.manifest import Manifest, SectionManifest
from warmstart.store import Store

__all__ = ()


def cmd_inspect(args: argparse.Namespace) -> int:
    if args.entries < 0:
        msg = f"Expected --entries >= 0, got {args.entries}"
        raise UsageError(msg)
    with open_store(args, args.path) as store:
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
            s.name: first_entries(store, namespace, s, args.entries)
            for s in sections
            if args.entries
        }
    data = _describe(manifest, sections, entries, head=manifest.generation in heads)
    data["quarantined"] = quarantined
    if args.json:
        fmt.emit_json(data)
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
    raise UsageError(msg)


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
                "values": s.schema.kind,
                "value_type": s.schema.value,
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
        ("created", f"{fmt.iso(d['created_at'])} ({fmt.duration(d['age'])} ago)"),
        ("library", d["library_version"]),
        ("host", f"{d['host']} (pid {d['pid']})"),
        ("watermark", fmt.json_line(d["watermark"])),
        ("tags", tags),
        ("size", f"{fmt.size(d['stored_bytes'])} in {fmt.plural(d['chunks'], 'chunk')}"),
    ]
    if d["quarantined"] is not None:
        lines.append(("quarantined", f"{d['quarantined']} (loads skip it)"))
    print(fmt.table(("", ""), lines, numeric=set()).split("\n", 1)[1])
    for s in d["sections"]:
        print(f"\nsection {s['name']}")
        print(f"  contract  {s['contract']} v{s['version']} (key {s['key']})")
        print(
            f"  entries   {s['entries']} ({s['base_chunks']} base + {s['delta_chunks']} delta "
            f"chunks, {fmt.size(s['stored_bytes'])} stored, {fmt.size(s['raw_bytes'])} raw)"
        )
        if s["keys_only"]:
            print("  keys only")
        if s["deprecated"]:
            print(f"  deprecated  {', '.join(s['deprecated'])}")
        if s["values"] == "value":
            print(f"  values    {s['value_type']}")
        elif s["values"] != "struct":
            print(f"  values    {s['values']}")
        rows = [
            (f["name"], f["type"], "required" if f["required"] else "optional") for f in s["fields"]
        ]
        if rows:
            table = fmt.table(("FIELD", "TYPE", "REQUIRED"), rows, numeric=set())
            print("\n".join(f"  {line}" for line in table.splitlines()))
        if "first_entries" in s:
            first = fmt.plural(len(s["first_entries"]), "entry").replace("entrys", "entries")
            print(f"  first {first}:")
            for entry in s["first_entries"]:
                print(f"    {fmt.json_line(entry)}")
