"""Export a generation to one self-verifying archive, and import it into another store.

An archive is a byte stream of independently verifiable records::

    archive  := preamble header chunk* trailer
    preamble := b"WSTA" | format u8 (1) | 3 zero bytes
    record   := tag u8 | body length u32 (big-endian) | digest 16 | body
    header   := tag b"H", body = msgpack map: namespace, generation, lineage,
                since, keyed, manifest (as stored: digest + frame), chunk
                count and bytes; digest = xxh3-128 of the body
    chunk    := tag b"C", body = the chunk's frame exactly as stored; digest =
                its content address, xxh3-128 of the frame
    trailer  := tag b"E", body = chunk count u64 | archive length before the
                trailer u64 | xxh3-128 of those bytes; digest = xxh3-128 of the body

Export reads one consistent LMDB snapshot, verifies every chunk it ships, and
writes a temporary file that is fsynced and renamed over ``out_path``, so a
reader never sees half an archive. Import first scans the whole archive
(structure, every record digest, the trailer's whole-archive digest, the
manifest's digest and MAC) before writing anything, then writes the chunks
the target lacks in batch transactions (each chunk verified against its digest
and MAC first), and commits the manifest and the head in one final
transaction. An interrupted import keeps the batches it committed and a rerun
skips them; importing an archive whose generation is already present changes
nothing. See docs/transfer.md.

``export`` and ``import_archive`` show a round trip in their examples.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import struct
import tempfile
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple, Protocol

import msgspec
import xxhash

from warmstart._budget import check as check_budget
from warmstart._budget import profile_of
from warmstart.codec import MAX_PAYLOAD, Codec, decode_record, digest
from warmstart.errors import (
    CheckpointNotFoundError,
    IntegrityError,
    ReadOnlyStoreError,
    StoreError,
    StoreFullError,
)
from warmstart.manifest import ChunkRef, Manifest, decode_manifest
from warmstart.progress import Meter, OnProgress
from warmstart.store import Inbound, Reader, Store, check_namespace

__all__ = ("Archive", "ExportReport", "ImportReport", "export", "import_archive", "open_archive")


def __dir__() -> tuple[str, ...]:
    return __all__


MAGIC = b"WSTA"
ARCHIVE_FORMAT = 1
_PREAMBLE = struct.Struct(">4sB3x")
_RECORD = struct.Struct(">cI16s")
_TRAILER = struct.Struct(">QQ16s")
TAG_HEADER = b"H"
TAG_CHUNK = b"C"
TAG_END = b"E"
#: Largest record body an archive may declare: a frame is at most its payload
#: cap plus header and MAC. Anything larger is damage, refused before reading.
MAX_RECORD = MAX_PAYLOAD + 4096
#: Chunk bytes written per import transaction: large enough that commits (and
#: their fsyncs) do not dominate, small enough that a kill loses little work.
_BATCH_BYTES = 16 * 1024 * 1024
#: How often the final commit may find chunks swept under it (by a concurrent
#: save's garbage collection) and write them again before giving up.
_COMMIT_ATTEMPTS = 3
#: Tag an imported manifest carries: where it came from (``namespace@generation``).
IMPORTED_FROM = "imported-from"


class ExportReport(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`export` wrote.

    Attributes:
        chunks, chunk_bytes: chunk frames shipped in the archive.
        omitted_chunks: chunks the generation references but the archive
            leaves out, because generation ``since`` references them too.
        archive_bytes: size of the archive file.

    >>> report = ExportReport(namespace="svc", generation=3, lineage="ab", since=None,
    ...     path="svc.wsa", chunks=2, chunk_bytes=900, omitted_chunks=0, archive_bytes=1100,
    ...     seconds=0.01)
    >>> report.generation
    3
    """

    namespace: str
    generation: int
    lineage: str
    since: int | None
    path: str
    chunks: int
    chunk_bytes: int
    omitted_chunks: int
    archive_bytes: int
    seconds: float


class ImportReport(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`import_archive` did.

    Attributes:
        status: ``"imported"`` (a new generation was committed) or
            ``"present"`` (an identical generation was already there: nothing
            changed).
        generation: the generation in the target store (the existing one when
            ``present``); it differs from ``source_generation`` when the target
            already had that number or a newer one.
        chunks_written, bytes_written: chunks this run wrote.
        chunks_skipped: chunks of the archive the target already held (shared
            with another generation, or written by an interrupted earlier run).

    >>> r = ImportReport(namespace="svc", generation=4, source_namespace="svc",
    ...     source_generation=2, lineage="ab", status="imported", chunks_written=3,
    ...     chunks_skipped=0, bytes_written=5000, seconds=0.01)
    >>> r.renumbered
    True
    """

    namespace: str
    generation: int
    source_namespace: str
    source_generation: int
    lineage: str
    status: Literal["imported", "present"]
    chunks_written: int
    chunks_skipped: int
    bytes_written: int
    seconds: float

    @property
    def renumbered(self) -> bool:
        """Whether the generation got a new number in the target."""
        return self.generation != self.source_generation


class _Header(msgspec.Struct, frozen=True, kw_only=True):
    """The archive's first record (unknown fields are ignored: forward compatible)."""

    namespace: str
    generation: int
    lineage: str
    since: int | None = None
    keyed: bool = False
    manifest: bytes
    chunks: int
    chunk_bytes: int
    exported_at: float = 0.0
    library_version: str = ""


_header_decoder = msgspec.msgpack.Decoder(_Header)


# -- export -------------------------------------------------------------------


def export(
    store: Store,
    namespace: str,
    out_path: str | os.PathLike[str],
    *,
    generation: int | None = None,
    since: int | None = None,
    progress: OnProgress | None = None,
) -> ExportReport:
    """Write one generation of ``namespace`` to an archive file at ``out_path``.

    The archive is written to a temporary file next to ``out_path``, fsynced
    and renamed over it: ``out_path`` holds a complete archive or is untouched.
    Every chunk is verified (digest, and MAC when keyed) before it is shipped.

    Args:
        store: the source store (read-only is fine).
        namespace: the namespace to export.
        out_path: the archive file to write (replaced if it exists).
        generation: the generation to export (the head by default).
        since: ship only the chunks that generation ``since`` of the same
            lineage does not reference (an incremental archive, for a target
            that already imported ``since``).
        progress: called after each chunk with a :class:`~warmstart.progress.Progress`.

    Returns:
        An :class:`ExportReport`.

    Raises:
        CheckpointNotFoundError: no such namespace or generation, or ``since``
            is not a generation of the same lineage.
        IntegrityError: the generation is damaged in the source store.

    >>> import msgspec, tempfile, pathlib
    >>> from warmstart import Contract, Store
    >>> class Row(msgspec.Struct):
    ...     name: str
    >>> ROWS = Contract("row", Row, key=int)
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> with Store(tmp / "a") as store:
    ...     _ = store.save("svc", {"rows": (ROWS, {1: Row("x")})})
    ...     report = export(store, "svc", tmp / "svc.wsa")
    >>> report.generation, report.chunks, report.archive_bytes == (tmp / "svc.wsa").stat().st_size
    (1, 1, True)
    """
    started = time.perf_counter()
    out = Path(out_path)
    where = f"namespace {namespace!r} of {str(store.path)!r}"
    with store.read() as reader:
        head = reader.head(namespace)
        if head is None:
            msg = reader.missing(namespace)
            raise CheckpointNotFoundError(msg)
        chosen = head[0] if generation is None else generation
        raw_manifest, manifest = _stored_manifest(reader, namespace, chosen, where)
        omitted: set[bytes] = set()
        if since is not None:
            _, base = _stored_manifest(reader, namespace, since, where)
            if base.lineage != manifest.lineage:
                msg = (
                    f"Expected generation {since} of lineage {manifest.lineage} for since=, "
                    f"got lineage {base.lineage} - in {where}; export without since"
                )
                raise CheckpointNotFoundError(msg)
            omitted = base.digests()
        refs = _unique_refs(manifest)
        ship = [ref for ref in refs if ref.digest not in omitted]
        header = _Header(
            namespace=namespace,
            generation=chosen,
            lineage=manifest.lineage,
            since=since,
            keyed=store.codec.keyed,
            manifest=raw_manifest,
            chunks=len(ship),
            chunk_bytes=sum(ref.stored_bytes for ref in ship),
            exported_at=time.time(),
            library_version=manifest.library_version,
        )
        meter = Meter(progress, "export", header.chunk_bytes, len(ship))
        meter.emit()

        def frames() -> Iterator[tuple[bytes, memoryview]]:
            for ref, frame in reader.frames(namespace, ship):
                yield ref.digest, frame
                meter.advance(len(frame))

        size = _write_archive(out, msgspec.msgpack.encode(header), frames(), len(ship))
    return ExportReport(
        namespace=namespace,
        generation=chosen,
        lineage=manifest.lineage,
        since=since,
        path=str(out),
        chunks=len(ship),
        chunk_bytes=header.chunk_bytes,
        omitted_chunks=len(refs) - len(ship),
        archive_bytes=size,
        seconds=time.perf_counter() - started,
    )


def _stored_manifest(
    reader: Reader, namespace: str, generation: int, where: str
) -> tuple[bytes, Manifest]:
    """A generation's manifest as stored (for the archive) and verified (for the export).

    Verified as every read of the store verifies it: a record that is damaged
    or describes another generation or namespace raises ``IntegrityError``.
    """
    try:
        return reader.stored_manifest(namespace, generation)
    except CheckpointNotFoundError:
        available = sorted(reader.generations(namespace)) or "none"
        msg = f"Expected generation {generation} in {where}, found generations {available}"
        raise CheckpointNotFoundError(msg) from None


def _unique_refs(manifest: Manifest) -> list[ChunkRef]:
    """Every chunk a manifest references, once, in replay order."""
    return list({ref.digest: ref for s in manifest.sections for ref in s.chunks}.values())


def _write_archive(
    out: Path, header: bytes, frames: Iterator[tuple[bytes, memoryview]], count: int
) -> int:
    """Write the archive to a temporary file, fsync it and rename it over ``out``.

    Raises:
        StoreError: the file cannot be written (no such directory, no
            permission); ``StoreFullError`` when the disk is full. ``out`` is
            untouched and no temporary file is left.
    """
    try:
        return _write_file(out, header, frames, count)
    except OSError as exc:
        # The temporary file's name means nothing to the caller: name ``out``.
        if not out.parent.is_dir():
            msg = (
                f"Expected a directory to write the archive {str(out)!r} into, "
                f"{str(out.parent)!r} is not one"
            )
            raise StoreError(msg) from exc
        reason = exc.strerror or type(exc).__name__
        msg = f"Expected to write the archive {str(out)!r}, got: {reason}; it was not written"
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        raise (StoreFullError if full else StoreError)(msg) from exc


def _write_file(
    out: Path, header: bytes, frames: Iterator[tuple[bytes, memoryview]], count: int
) -> int:
    tmp = out.with_name(f".{out.name}.{os.urandom(4).hex()}.tmp")
    # Archives hold the service's state: readable by their owner only, like the store.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb", buffering=1024 * 1024) as f:
            hasher = xxhash.xxh3_128()
            length = 0

            def put(*parts: bytes | memoryview) -> None:
                nonlocal length
                for part in parts:
                    f.write(part)
                    hasher.update(part)
                    length += len(part)

            put(_PREAMBLE.pack(MAGIC, ARCHIVE_FORMAT))
            put(_RECORD.pack(TAG_HEADER, len(header), digest(header)), header)
            for chunk_digest, frame in frames:
                put(_RECORD.pack(TAG_CHUNK, len(frame), chunk_digest), frame)
            end = _TRAILER.pack(count, length, hasher.digest())
            f.write(_RECORD.pack(TAG_END, len(end), digest(end)) + end)
            f.flush()
            os.fsync(f.fileno())
            size = f.tell()
        tmp.replace(out)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(out.parent)
    return size


def _fsync_dir(path: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


# -- import -------------------------------------------------------------------


class _Scan(msgspec.Struct):
    """An archive whose structure and digests all check out."""

    header: _Header
    #: (digest, offset of the frame, frame length) per chunk, in archive order.
    chunks: list[tuple[bytes, int, int]]


class Archive:
    """An archive whose structure and every record digest check out.

    Obtained from :func:`open_archive`; :func:`import_archive` takes one (or
    a path). Nothing about the target store is checked yet: the manifest's
    MAC is checked against the target's secret by :meth:`manifest` and at
    import. Close it (or use it as a context manager) when done; an archive
    read from a pipe is held in a temporary file until then.

    Attributes:
        path: where it was read from.
        namespace, generation, lineage: what the archive holds, as its
            header says (the manifest is checked to say the same).
        since: the generation an incremental archive builds on, or None.
        keyed: whether the source store had a secret.
        chunks, chunk_bytes: chunk frames the archive ships.
    """

    def __init__(self, path: Path, file: IO[bytes], scan: _Scan, where: str) -> None:
        _OPENED[self] = _Opened(file, scan, where)
        self.path = path
        header = scan.header
        self.namespace = header.namespace
        self.generation = header.generation
        self.lineage = header.lineage
        self.since = header.since
        self.keyed = header.keyed
        self.chunks = len(scan.chunks)
        self.chunk_bytes = sum(n for _, _, n in scan.chunks)
        self.exported_at = header.exported_at
        self.library_version = header.library_version

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Archive({str(self.path)!r}, namespace={self.namespace!r}, "
            f"generation={self.generation}, chunks={self.chunks})"
        )

    def close(self) -> None:
        """Close the file (a pipe's temporary copy is deleted)."""
        _OPENED[self].file.close()

    def manifest(self, codec: Codec) -> Manifest:
        """The archive's manifest, verified with ``codec`` (the target store's).

        Raises:
            IntegrityError: the manifest is damaged, MAC'd under another
                secret (or none), names an invalid namespace, or disagrees
                with the header or the chunks shipped.
        """
        opened = _OPENED[self]
        return _archive_manifest(codec, opened.scan, opened.where)


class _Opened(NamedTuple):
    """What an :class:`Archive` reads from, kept out of its public attributes."""

    file: IO[bytes]
    scan: _Scan
    where: str


_OPENED: weakref.WeakKeyDictionary[Archive, _Opened] = weakref.WeakKeyDictionary()


def open_archive(in_path: str | os.PathLike[str]) -> Archive:
    """Read an archive and check its structure and every digest, writing nothing.

    A regular file is read in place; anything else (a pipe, ``/dev/stdin``)
    is read once, in order, and kept in a temporary file for the import.

    Raises:
        CheckpointNotFoundError: there is no such file.
        StoreError: the path cannot be read (a directory, no permission).
        IntegrityError: it is not an archive, or it is truncated or damaged.

    >>> import tempfile, pathlib
    >>> bad = pathlib.Path(tempfile.mkdtemp()) / "x.wsa"
    >>> _ = bad.write_bytes(b"not an archive")
    >>> open_archive(bad)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    warmstart.IntegrityError: Expected archive magic b'WSTA', got b'not ' - archive ...
    """
    path = Path(in_path)
    where = f"archive {str(path)!r}"
    f = _open_input(path, where)
    try:
        regular = stat.S_ISREG(os.fstat(f.fileno()).st_mode)
        if regular:
            scan = _scan(f, os.fstat(f.fileno()).st_size, where)
            return Archive(path, f, scan, where)
        # A pipe is read once: keep a copy to read the chunks from at import.
        spool = tempfile.TemporaryFile(prefix="warmstart-import-")  # noqa: SIM115 - kept open
        try:
            with f:
                scan = _scan(_Tee(f, spool), None, where)
        except BaseException:
            spool.close()
            raise
        return Archive(path, spool, scan, where)
    except BaseException:
        f.close()
        raise


def _open_input(path: Path, where: str) -> IO[bytes]:
    try:
        return path.open("rb")
    except FileNotFoundError:
        msg = f"Expected an archive file at {str(path)!r}, found none"
        raise CheckpointNotFoundError(msg) from None
    except IsADirectoryError:
        msg = f"Expected an archive file at {str(path)!r}, it is a directory"
        raise StoreError(msg) from None
    except OSError as exc:
        msg = f"Expected to read the {where}: {exc.strerror or exc}"
        raise StoreError(msg) from exc


class _Tee:
    """Reads a stream and keeps a copy of every byte read in ``copy``."""

    def __init__(self, stream: IO[bytes], copy: IO[bytes]) -> None:
        self._stream = stream
        self._copy = copy

    def read(self, n: int) -> bytes:
        parts = []
        while n > 0:  # a pipe returns what it holds: read until n or its end
            data = self._stream.read(n)
            if not data:
                break
            parts.append(data)
            n -= len(data)
        data = b"".join(parts)
        self._copy.write(data)
        return data


def import_archive(
    store: Store,
    in_path: str | os.PathLike[str] | Archive,
    *,
    namespace: str | None = None,
    progress: OnProgress | None = None,
) -> ImportReport:
    """Import an archive written by :func:`export` into ``store``.

    Nothing is written until the whole archive has been checked (structure,
    every record digest, the whole-archive digest, the manifest's digest and
    MAC). Then the chunks the target lacks are verified one by one and written
    in batch transactions, and the manifest and head are committed in one
    final transaction, only when every chunk the generation references is
    present. An interrupted import keeps its batches: rerun it and it skips
    them.

    Generation numbers never move backwards: the import keeps its source
    generation number when that is newer than the target's head (and below
    2**48: a larger foreign number would leave the namespace no room to go
    on), and becomes ``head + 1`` otherwise. Either way it becomes the head,
    keeps its ``created_at`` and watermark (so staleness checks see the
    state's real age), and carries a tag ``imported-from`` =
    ``"namespace@generation"``. If the target already holds an identical
    generation (same lineage, same chunks), nothing changes and the status is
    ``"present"``.

    Args:
        store: the target store, opened writable (and with the source's secret
            when the source is keyed).
        in_path: the archive: a file, a pipe (``/dev/stdin``), or an
            :class:`Archive` from :func:`open_archive` (not closed here).
        namespace: import under another namespace (the source's by default).
        progress: called after each chunk with a :class:`~warmstart.progress.Progress`.

    Returns:
        An :class:`ImportReport`.

    Raises:
        IntegrityError: the archive is truncated, damaged or tampered with, or
            was written by a store with another secret (or none); the target's
            heads, manifests and loadable generations are unchanged.
        CheckpointNotFoundError: no such archive file, or an incremental
            archive needs chunks of its ``since`` generation that the target
            lacks (the message names them).
        StoreError: the archive cannot be read (a directory, no permission).
        ReadOnlyStoreError: the target is read-only.

    >>> import msgspec, tempfile, pathlib
    >>> from warmstart import Contract, Store
    >>> class Row(msgspec.Struct):
    ...     name: str
    >>> ROWS = Contract("row", Row, key=int)
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> with Store(tmp / "a") as source:
    ...     _ = source.save("svc", {"rows": (ROWS, {1: Row("x")})})
    ...     _ = export(source, "svc", tmp / "svc.wsa")
    >>> with Store(tmp / "b") as target:
    ...     first = import_archive(target, tmp / "svc.wsa")
    ...     again = import_archive(target, tmp / "svc.wsa")
    >>> first.status, again.status, again.chunks_written
    ('imported', 'present', 0)
    """
    if store.readonly:
        msg = f"Expected a writable target store, {str(store.path)!r} is open read-only"
        raise ReadOnlyStoreError(msg)
    if namespace is not None:
        check_namespace(namespace)
    if isinstance(in_path, Archive):
        return _import(store, in_path, namespace, progress)
    with open_archive(in_path) as archive:
        return _import(store, archive, namespace, progress)


def _import(
    store: Store, archive: Archive, namespace: str | None, progress: OnProgress | None
) -> ImportReport:
    started = time.perf_counter()
    f, scan, where = _OPENED[archive]
    manifest = archive.manifest(store.codec)
    target = manifest.namespace if namespace is None else namespace
    present, have = _plan(store, target, manifest)
    meter = Meter(progress, "import", archive.chunk_bytes, archive.chunks)
    written: dict[bytes, int] = {}
    if present is None:
        status, generation = _write_and_commit(
            store, f, target, manifest, scan, have, meter, written, where
        )
    else:
        status, generation = "present", present
        meter.skip(archive.chunk_bytes, archive.chunks)
        meter.emit()
    return ImportReport(
        namespace=target,
        generation=generation,
        source_namespace=manifest.namespace,
        source_generation=manifest.generation,
        lineage=manifest.lineage,
        status=status,
        chunks_written=len(written),
        chunks_skipped=len(scan.chunks) - len(written),
        bytes_written=sum(written.values()),
        seconds=time.perf_counter() - started,
    )


def _write_and_commit(
    store: Store,
    f: IO[bytes],
    target: str,
    manifest: Manifest,
    scan: _Scan,
    have: set[bytes],
    meter: Meter,
    written: dict[bytes, int],
    where: str,
) -> tuple[Literal["imported", "present"], int]:
    """Write the chunks the target lacks, then commit; record what was written."""
    shipped = {d for d, _, _ in scan.chunks}
    _check_available(store, target, manifest, scan.header, shipped, have)
    todo = [c for c in scan.chunks if c[0] not in have]
    total = sum(n for _, _, n in scan.chunks)
    meter.skip(total - sum(n for _, _, n in todo), len(scan.chunks) - len(todo))
    meter.emit()
    # Every chunk is checked before the first is written: an archive refused
    # for a bad chunk leaves the target as it was (issue 17).
    for _ in _frames(store, f, todo, where):
        pass
    source = f"{manifest.namespace}@{manifest.generation}"
    inbound = store.inbound(target, manifest, tag=IMPORTED_FROM, source=source)
    for _ in range(_COMMIT_ATTEMPTS):
        try:
            written.update(_write_chunks(store, inbound, f, todo, meter, where))
        except IntegrityError:
            inbound.discard()  # the file changed under the import: take back what it wrote
            raise
        outcome = inbound.commit()
        if isinstance(outcome, tuple):
            status, generation = outcome
            return ("imported" if status == "adopted" else "present"), generation
        # A concurrent save's garbage collection swept chunks this import
        # wrote (they were unreferenced until now): write them again.
        _check_available(
            store, target, manifest, scan.header, shipped, manifest.digests() - outcome
        )
        todo = [c for c in scan.chunks if c[0] in outcome]
        meter.redo(sum(n for _, _, n in todo), len(todo))
    msg = (
        f"Expected to commit {where} into {str(store.path)!r}, but its chunks were "
        f"collected {_COMMIT_ATTEMPTS} times by concurrent saves; retry"
    )
    raise StoreError(msg)


class _Reading(Protocol):
    def read(self, n: int, /) -> bytes: ...


def _scan(f: _Reading, size: int | None, where: str) -> _Scan:
    """Check an archive's structure and every digest, without writing anything.

    ``size`` is the file's size, or None for a stream (read to its end).
    """
    hasher = _check_preamble(f.read(_PREAMBLE.size), size, where)
    offset = _PREAMBLE.size
    header: _Header | None = None
    chunks: list[tuple[bytes, int, int]] = []
    seen: set[bytes] = set()
    while True:
        tag, declared, body = _read_record(f, offset, size, where)
        body_at = offset + _RECORD.size
        if tag == TAG_END:
            _check_trailer(f, body, offset, body_at + len(body), size, len(chunks), hasher, where)
            break
        hasher.update(_RECORD.pack(tag, len(body), declared))
        hasher.update(body)
        if tag == TAG_HEADER and header is None:
            header = _decode_header(body, where)
        elif tag == TAG_CHUNK and header is not None and declared not in seen:
            if len(chunks) >= header.chunks:
                # Checked as records come: a stream is not read past what it claims.
                msg = f"Expected {header.chunks} chunks as the header says, got more - in {where}"
                raise IntegrityError(msg)
            seen.add(declared)
            chunks.append((declared, body_at, len(body)))
        else:
            what = "a chunk not seen before" if header else "the header"
            msg = f"Expected {what} at byte {offset} of {where}, got a {tag!r} record"
            raise IntegrityError(msg)
        offset = body_at + len(body)
    if header is None:
        msg = f"Expected a header record in {where}, found none"
        raise IntegrityError(msg)
    # ``chunk_bytes`` is only informative: progress counts the bytes actually shipped.
    if header.chunks != len(chunks):
        msg = f"Expected {header.chunks} chunks as the header says, got {len(chunks)} - in {where}"
        raise IntegrityError(msg)
    return _Scan(header, chunks)


def _check_preamble(preamble: bytes, size: int | None, where: str) -> Any:
    """Check the preamble and return the whole-archive hasher fed with it."""
    if len(preamble) < _PREAMBLE.size:
        got = len(preamble) if size is None else size
        msg = (
            f"Expected a warmstart archive of at least {_PREAMBLE.size} bytes, got {got} - {where}"
        )
        raise IntegrityError(msg)
    magic, version = _PREAMBLE.unpack(preamble)
    if magic != MAGIC:
        msg = (
            f"Expected archive magic {MAGIC!r}, got {magic!r} - {where} is not a warmstart archive"
        )
        raise IntegrityError(msg)
    if version != ARCHIVE_FORMAT:
        msg = (
            f"Expected archive format {ARCHIVE_FORMAT}, got {version} - {where} was written "
            f"by another warmstart release"
        )
        raise IntegrityError(msg)
    return xxhash.xxh3_128(preamble)


def _read_record(
    f: _Reading, offset: int, size: int | None, where: str
) -> tuple[bytes, bytes, bytes]:
    """Read the record at ``offset`` and check its digest: (tag, digest, body)."""
    record = f.read(_RECORD.size)
    if len(record) < _RECORD.size:
        end = offset + len(record)
        msg = (
            f"Expected a record or the trailer at byte {offset} of {where}, "
            f"the {'stream' if size is None else 'file'} ends at byte {end} (truncated)"
        )
        raise IntegrityError(msg)
    tag, length, declared = _RECORD.unpack(record)
    body_at = offset + _RECORD.size
    # Checked before reading: a damaged length must not make us allocate it.
    room = MAX_RECORD if size is None else max(0, min(MAX_RECORD, size - body_at))
    if length > room:
        msg = (
            f"Expected a record of at most {room} bytes at byte {offset} of {where}, "
            f"it declares {length} (truncated or damaged)"
        )
        raise IntegrityError(msg)
    body = f.read(length)
    if len(body) < length:
        msg = (
            f"Expected a record of {length} bytes at byte {offset} of {where}, the stream "
            f"ends after {len(body)} (truncated)"
        )
        raise IntegrityError(msg)
    found = digest(body)
    if found != declared:
        msg = (
            f"Expected record digest {declared.hex()} at byte {offset} of {where}, got "
            f"{found.hex()} - the archive is damaged"
        )
        raise IntegrityError(msg)
    return tag, declared, body


def _check_trailer(
    f: _Reading,
    body: bytes,
    offset: int,
    end: int,
    size: int | None,
    chunks: int,
    hasher: Any,
    where: str,
) -> None:
    if len(body) != _TRAILER.size:
        msg = (
            f"Expected a trailer of {_TRAILER.size} bytes at byte {offset} of {where}, "
            f"got {len(body)}"
        )
        raise IntegrityError(msg)
    count, length, whole = _TRAILER.unpack(body)
    extra = (size or end) != end or bool(f.read(1))
    if extra:
        got = "more" if size is None else f"{size} bytes"
        msg = f"Expected the archive to end at byte {end} after its trailer, got {got} - {where}"
        raise IntegrityError(msg)
    if count != chunks or length != offset or whole != hasher.digest():
        msg = (
            f"Expected the trailer to match the archive ({chunks} chunks, {offset} bytes, digest "
            f"{hasher.hexdigest()}), got {count} chunks, {length} bytes, digest {whole.hex()} "
            f"- {where} is damaged"
        )
        raise IntegrityError(msg)


def _decode_header(body: bytes, where: str) -> _Header:
    what = f"an archive header in {where}"
    check_budget(body, profile_of(_Header), what)
    header: _Header = decode_record(_header_decoder, body, what)
    return header


def _archive_manifest(codec: Codec, scan: _Scan, where: str) -> Manifest:
    """Verify the archive's manifest with the target's codec and cross-check the header."""
    header = scan.header
    if header.keyed != codec.keyed:
        has, wants = ("keyed", "without") if header.keyed else ("unkeyed", "with")
        msg = (
            f"Expected an archive from a store {'with' if codec.keyed else 'without'} a "
            f"secret like the target, got a {has} one - {where}; open the target "
            f"{wants} the source's secret"
        )
        raise IntegrityError(msg)
    try:
        manifest = decode_manifest(codec, header.manifest)
    except IntegrityError as exc:
        msg = f"Expected a valid manifest in {where}: {exc}"
        raise IntegrityError(msg) from exc
    try:
        check_namespace(manifest.namespace)
    except ValueError as exc:
        # Every digest checks out, but no store can hold such a namespace.
        msg = f"Expected a manifest of a valid namespace in {where}: {exc}"
        raise IntegrityError(msg) from None
    claimed = (header.namespace, header.generation, header.lineage)
    actual = (manifest.namespace, manifest.generation, manifest.lineage)
    if claimed != actual:
        msg = f"Expected the header to describe its manifest {actual}, got {claimed} - in {where}"
        raise IntegrityError(msg)
    required = manifest.digests()
    shipped = {d for d, _, _ in scan.chunks}
    extra = shipped - required
    if extra:
        msg = (
            f"Expected only chunks the manifest references, got {len(extra)} others "
            f"(e.g. {min(extra).hex()}) - in {where}"
        )
        raise IntegrityError(msg)
    if header.since is None and shipped != required:
        msg = (
            f"Expected all {len(required)} chunks in a full archive, "
            f"{len(required - shipped)} are missing - in {where}"
        )
        raise IntegrityError(msg)
    # What the manifest says of each chunk must hold of the frame shipped: a
    # generation whose sizes lie would be committed, and then never load.
    sizes = {d: n for d, _, n in scan.chunks}
    for section in manifest.sections:
        for ref in section.chunks:
            if ref.digest in sizes and sizes[ref.digest] != ref.stored_bytes:
                msg = (
                    f"Expected chunk {ref.digest.hex()} of {ref.stored_bytes} bytes as the "
                    f"manifest says, the archive ships {sizes[ref.digest]} - in {where}"
                )
                raise IntegrityError(msg)
    return manifest


def _plan(store: Store, namespace: str, manifest: Manifest) -> tuple[int | None, set[bytes]]:
    """(identical generation already present, chunks of the manifest the target has)."""
    with store.read() as reader:
        return reader.identical(namespace, manifest), reader.present(namespace, manifest.digests())


def _check_available(
    store: Store,
    namespace: str,
    manifest: Manifest,
    header: _Header,
    shipped: set[bytes],
    have: set[bytes],
) -> None:
    """Refuse an incremental archive whose omitted chunks the target lacks."""
    unavailable = manifest.digests() - shipped - have
    if not unavailable:
        return
    names = ", ".join(sorted(d.hex() for d in unavailable)[:5])
    msg = (
        f"Expected the target {str(store.path)!r} to hold the {len(unavailable)} chunks that "
        f"the incremental archive (since generation {header.since}, lineage "
        f"{manifest.lineage}) leaves out, missing in namespace {namespace!r}: {names}"
        f"{', ...' if len(unavailable) > 5 else ''}; import generation {header.since} first "
        f"or export without --since"
    )
    raise CheckpointNotFoundError(msg)


def _frames(
    store: Store, f: IO[bytes], todo: list[tuple[bytes, int, int]], where: str
) -> Iterator[tuple[bytes, bytes]]:
    """(digest, frame) for each chunk of ``todo``, read from the archive and verified."""
    for chunk_digest, offset, length in todo:
        f.seek(offset)
        frame = f.read(length)
        if len(frame) != length:
            msg = f"Expected {length} bytes at byte {offset} of {where}, the file changed"
            raise IntegrityError(msg)
        try:
            store.codec.verify(frame, digest=chunk_digest)
        except IntegrityError as exc:
            msg = f"Expected a valid chunk {chunk_digest.hex()} at byte {offset} of {where}: {exc}"
            raise IntegrityError(msg) from exc
        yield chunk_digest, frame


def _write_chunks(
    store: Store,
    inbound: Inbound,
    f: IO[bytes],
    todo: list[tuple[bytes, int, int]],
    meter: Meter,
    where: str,
) -> dict[bytes, int]:
    """Verify and write chunks in batch transactions; return {digest: bytes} of those written."""
    written: dict[bytes, int] = {}
    batch: list[tuple[bytes, bytes]] = []
    pending = 0

    def flush() -> None:
        nonlocal pending
        if batch:
            written.update(inbound.put(batch))
            batch.clear()
            pending = 0

    for chunk_digest, frame in _frames(store, f, todo, where):
        batch.append((chunk_digest, frame))
        pending += len(frame)
        if pending >= _BATCH_BYTES:
            flush()
        meter.advance(len(frame))
    flush()
    return written
