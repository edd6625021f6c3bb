"""The ``warmstart export`` and ``import`` commands: a generation to and from an archive.

Private; used by ``cli``. Both draw a progress line with an ETA when stderr
is a terminal. ``import`` is the one command that may create its target store,
and does so only once the archive has checked out; it reads ``-`` (or a pipe
such as ``/dev/stdin``) as well as a file.
"""

from __future__ import annotations

import argparse

from warmstart.cli import _format as fmt
from warmstart.cli._common import EXIT_OK, open_store, secret
from warmstart.codec import Codec
from warmstart.transfer import export, import_archive, open_archive

__all__ = ()


def cmd_export(args: argparse.Namespace) -> int:
    line = fmt.progress()
    try:
        with open_store(args, args.path) as store:
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
        fmt.emit_json(fmt.builtins(report))
        return EXIT_OK
    left_out = (
        ""
        if report.since is None
        else f" ({report.omitted_chunks} left out: generation {report.since} has them)"
    )
    print(
        f"exported {report.namespace} generation {report.generation} to {report.path}: "
        f"{fmt.plural(report.chunks, 'chunk')}{left_out}, {fmt.size(report.archive_bytes)}, "
        f"in {report.seconds:.2f}s"
    )
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    # "-" is stdin; a pipe is read once and kept in a temporary file.
    source = "/dev/stdin" if args.archive == "-" else args.archive
    line = fmt.progress()
    try:
        with open_archive(source) as archive:
            # Checked before the target is opened: `import` may create its
            # store, and a file that is no archive (or keyed under another
            # secret) must not leave an empty store behind.
            archive.manifest(Codec(secret=secret(args)))
            with open_store(args, args.path, readonly=False, create=True) as store:
                report = import_archive(store, archive, namespace=args.namespace, progress=line)
    finally:
        if line is not None:
            line.close()
    if args.json:
        fmt.emit_json({**fmt.builtins(report), "renumbered": report.renumbered})
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
        f"{fmt.plural(report.chunks_written, 'chunk')} written ({fmt.size(report.bytes_written)}), "
        f"{report.chunks_skipped} already present, in {report.seconds:.2f}s"
    )
    return EXIT_OK
