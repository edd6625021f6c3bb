"""The LMDB checkpoint store: generations, chunks, retention, verification.

One store is one LMDB environment (one directory) with four tables:

* ``meta``: store format version, namespace ids;
* ``heads``: namespace -> newest generation and its lineage;
* ``manifests``: (namespace id, generation) -> manifest frame;
* ``chunks``: (namespace id, xxh3-128 digest) -> frame.

A save writes its new chunks, its manifest, the new head, the retention cut
and the garbage collection of chunks no retained generation references in
**one** write transaction: a reader sees the old generation or the new one,
never a mix. Chunks are scoped to their namespace so that one namespace can
never read or delete another's bytes.

``Store`` is the public face of the store wing; its parts live in private
modules: the tables and their one owner in ``_tables`` (layouts in
``_records``, the LMDB environment in ``_env``), preparing a save (full or
delta) in ``_prepare``, committing a generation in ``_commit``, retention and
garbage collection in ``_retention``. Other wings read records through
:meth:`Store.read` and bring generations in through :meth:`Store.inbound`.

>>> import msgspec, tempfile
>>> from warmstart import Contract
>>> class Row(msgspec.Struct):
...     name: str
>>> ROWS = Contract("row", Row, key=int)
>>> with Store(tempfile.mkdtemp()) as store:
...     generation = store.save("svc", {"rows": (ROWS, {1: Row("a"), 2: Row("b")})})
...     with store.load("svc") as snapshot:
...         print(generation, snapshot.section("rows", ROWS))
1 {1: Row(name='a'), 2: Row(name='b')}
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import msgspec
import xxhash

from warmstart._pacing import pace, pacing
from warmstart.codec import SEAL_MARKER, Codec
from warmstart.delta import CompactionPolicy
from warmstart.errors import (
    CheckpointNotFoundError,
    EncodeError,
    IntegrityError,
    ReadOnlyStoreError,
    StoreFormatError,
)
from warmstart.manifest import ChunkRef, Manifest
from warmstart.store import _ahead, _commit, _prepare, _retention
from warmstart.store._ahead import write_ahead
from warmstart.store._env import PLAIN_FORMAT, SEALED_FORMAT, Env
from warmstart.store._inbound import Inbound
from warmstart.store._prepare import Baselines, Encoding, SaveMode, Sections, StaleBaseError
from warmstart.store._reader import Reader
from warmstart.store._records import (
    check_generation,
    check_namespace,
)
from warmstart.store._snapshot import Snapshot
from warmstart.store._tables import Tables
from warmstart.store._verify import VerifyReport, verify

__all__ = ("GenerationInfo", "SaveResult", "Store")


def __dir__() -> tuple[str, ...]:
    return __all__


log = logging.getLogger("warmstart.store")


class GenerationInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One generation as listed by :meth:`Store.generations`."""

    namespace: str
    generation: int
    kind: str
    created_at: float
    stored_bytes: int
    sections: dict[str, int]
    delta_chain: int
    watermark: Any
    head: bool


_OPEN_STORES: weakref.WeakSet[Store] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for store in list(_OPEN_STORES):
        store._forked()  # noqa: SLF001 - this module's own class


os.register_at_fork(after_in_child=_after_fork_in_child)

#: A marker file is ``<32 hex digits>.<name>``: within a file name's 255 bytes.
_MAX_MARKER_NAME = 200


def _marker_prefix(namespace: str) -> str:
    """Markers of a namespace are named by its digest: a name's hex would not fit.

    A namespace may have 255 bytes; hex-encoded it made file names longer
    than a file system allows, and that namespace never booted warm (issue 14).
    """
    return xxhash.xxh3_128_hexdigest(check_namespace(namespace)) + "."


class SaveResult(msgspec.Struct, frozen=True, kw_only=True):
    """What :meth:`Store.checkpoint` did: the generation, and each section's fate."""

    namespace: str
    #: The generation committed; None when no section could be prepared.
    generation: int | None
    saved: tuple[str, ...] = ()
    #: Sections kept from the head as they were (asked for, or failed now).
    carried: tuple[str, ...] = ()
    #: Section -> why it could not be saved.
    failed: dict[str, str] = msgspec.field(default_factory=dict)


def _marker_key(namespace: str, name: str) -> bytes:
    """What a marker's MAC binds it to: its namespace and name."""
    return check_namespace(namespace) + b"\x00" + name.encode()


def _check_options(
    keep: object,
    secret: object,
    max_map_size: object,
    compression_level: object,
    compaction: object,
) -> None:
    """Refuse options the store could only fail on later, at a save."""
    if type(keep) is not int or keep < 1:
        msg = f"Expected keep >= 1 (an int), got {keep!r}"
        raise ValueError(msg)
    if secret is not None and not isinstance(secret, bytes):
        msg = f"Expected secret as bytes (or None), got {type(secret).__name__}"
        raise TypeError(msg)
    if type(max_map_size) is not int or not 1 << 20 <= max_map_size < 1 << 63:
        msg = f"Expected max_map_size in bytes, from 1 MiB to 2**63, got {max_map_size!r}"
        raise ValueError(msg)
    if type(compression_level) is not int or not -(1 << 17) <= compression_level <= 22:
        msg = f"Expected a zstd compression_level from -131072 to 22, got {compression_level!r}"
        raise ValueError(msg)
    if compaction is not None and not isinstance(compaction, CompactionPolicy):
        msg = f"Expected compaction as a CompactionPolicy, got {type(compaction).__name__}"
        raise TypeError(msg)


class Store:
    """An embedded, crash-safe, multi-process checkpoint store in one directory.

    Args:
        path: the store directory (created with mode 0700 if missing).
        keep: generations retained per namespace; older ones are dropped and
            their unreferenced chunks collected at the next save.
        sync: fsync every commit (durable across power loss). ``False`` is
            still crash-safe against process kills, not against power loss.
        secret: key for BLAKE2b MACs on every frame; a tampered checkpoint is
            then rejected. Strongly recommended when checkpoints travel.
        readonly: open for inspection only (also works on read-only volumes).
        max_map_size: upper bound of the LMDB map, reserved as address space
            (not memory or disk) when the store opens; if that is refused
            (a ``ulimit -v``) the map grows by doubling up to it instead. A
            save that does not fit fails with ``StoreFullError``.
        compaction: when deltas give way to a fresh base.
        clock: wall clock, injectable for tests.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        keep: int = 3,
        sync: bool = True,
        secret: bytes | None = None,
        readonly: bool = False,
        max_map_size: int = 1 << 40,
        compression_level: int = 1,
        compaction: CompactionPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        _check_options(keep, secret, max_map_size, compression_level, compaction)
        self.path = Path(path)
        self.keep = keep
        self.codec = Codec(level=compression_level, secret=secret)
        self.compaction = compaction or CompactionPolicy()
        self.clock = clock
        self._env = Env(
            self.path,
            readonly=readonly,
            sync=sync,
            max_map_size=max_map_size,
            initial_format=SEALED_FORMAT if secret is not None else PLAIN_FORMAT,
        )
        self._tables = Tables(self._env, self.codec)
        try:
            self._check_sealing(readonly=readonly)
        except BaseException:
            self._env.close()
            raise
        self._baselines = Baselines(os.path.realpath(self.path))
        self._saving_locks: dict[str, threading.Lock] = {}
        self._saving_guard = threading.Lock()
        _OPEN_STORES.add(self)

    def _check_sealing(self, *, readonly: bool) -> None:
        """Refuse to write a keyed store without its secret; seal a keyed 0.1 store."""
        if self._env.store_format == SEALED_FORMAT and not self.codec.keyed and not readonly:
            msg = (
                f"Expected a secret to open the keyed store at {str(self.path)!r} for "
                f"writing (its records are MAC'd, store format 2); pass secret="
            )
            raise StoreFormatError(msg)
        # A keyed store written by 0.1: its heads and quarantine records carry
        # no MAC. Sealed once here, where the secret is known (issue 17).
        legacy = self._env.store_format != SEALED_FORMAT and self.codec.keyed and not readonly
        if legacy and self._tables.write(self._tables.seal_legacy):
            self._env.store_format = SEALED_FORMAT

    # -- lifecycle ------------------------------------------------------------

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, keep={self.keep})"

    def close(self) -> None:
        """Close the environment; open snapshots must be closed first."""
        _OPEN_STORES.discard(self)
        self._env.close()

    def _forked(self) -> None:
        # A save a parent thread was running holds its lock forever in a child.
        self._saving_locks = {}
        self._saving_guard = threading.Lock()

    @property
    def readonly(self) -> bool:
        """Whether the store was opened read-only."""
        return self._env.readonly

    # -- other wings' views ----------------------------------------------------

    @contextlib.contextmanager
    def read(self) -> Iterator[Reader]:
        """Records as stored, in one read transaction: for export, push and inspect.

        >>> # see warmstart.transfer.export for a complete example
        """
        with self._tables.read() as txn:
            yield Reader(self._tables, txn)

    def inbound(self, namespace: str, manifest: Manifest, *, tag: str, source: str) -> Inbound:
        """The one path for a generation from elsewhere (an import, a pull) to come in.

        ``tags[tag]`` of the committed manifest records ``source``.
        """
        check_namespace(namespace)
        return Inbound(
            self._tables,
            namespace,
            manifest,
            tag=tag,
            source=source,
            keep=self.keep,
            forget=self._baselines.forget,
        )

    def stats(self) -> dict[str, Any]:
        """LMDB's figures for this store: file and map size, readers, entries per table."""
        return self._tables.stats()

    # -- writing --------------------------------------------------------------

    def save(
        self,
        namespace: str,
        sections: Sections,
        *,
        watermark: Any = None,
        tags: Mapping[str, str] | None = None,
        mode: SaveMode = "auto",
        carry: Collection[str] = (),
    ) -> int:
        """Commit one generation of ``namespace`` and return its number.

        Args:
            namespace: e.g. ``"pricing"`` or ``"tenant-42/pricing"``.
            sections: section name -> ``(contract, mapping)``, or
                ``(contract, mapping, lock)`` for a container other threads
                write under ``lock`` (a cachetools cache): the lock is held
                while the mapping is read, not while it is encoded. Each
                mapping is read in its own policy order (LRU to MRU for an
                LRU cache); a dict in one atomic copy.
            watermark: an opaque source-of-truth position (a DB LSN, a Kafka
                offset, an ETag) that a boot can validate staleness against.
            tags: free-form string labels kept in the manifest.
            mode: ``"auto"`` writes deltas for tracked mappings and full bases
                otherwise; ``"delta"`` also diffs untracked mappings against
                fingerprints kept from the last save (costs memory, see the
                docs); ``"full"`` always writes a fresh base.
            carry: sections of the head generation to keep in the new one as
                they are (by reference: their chunks are already stored), for
                state this process did not load (an object not built in this
                run). Names also in ``sections`` are saved, not carried.

        Raises:
            EncodeError: a value is not of its contract's type, refers to
                itself, or is too large for a frame (64 MiB once encoded, as
                are the watermark and tags).
            StoreFullError: the map or the disk is full; nothing was written.
            ReadOnlyStoreError: the store is read-only.
        """
        result = self._checkpoint(namespace, sections, watermark, tags, mode, carry, None)
        assert result.generation is not None
        return result.generation

    def checkpoint(
        self,
        namespace: str,
        sections: Sections,
        *,
        watermark: Any = None,
        tags: Mapping[str, str] | None = None,
        mode: SaveMode = "auto",
        carry: Collection[str] = (),
        isolate: bool = True,
    ) -> SaveResult:
        """:meth:`save`, where one bad section costs only itself, and a result says so.

        A section that cannot be read or encoded is left out and, when the
        head holds it, carried forward as it was; the others are saved. The
        result says what was saved, carried and failed (and why). Nothing is
        committed when no section could be prepared. ``isolate=False`` raises
        at the first bad section instead, as :meth:`save` does.

        Raises:
            StoreFullError, ReadOnlyStoreError: as for :meth:`save`.
        """
        failed: dict[str, str] | None = {} if isolate else None
        return self._checkpoint(namespace, sections, watermark, tags, mode, carry, failed)

    def _checkpoint(
        self,
        namespace: str,
        sections: Sections,
        watermark: Any,
        tags: Mapping[str, str] | None,
        mode: SaveMode,
        carry: Collection[str],
        failed: dict[str, str] | None,
    ) -> SaveResult:
        check_namespace(namespace)
        try:
            _prepare.check_metadata(watermark, tags, mode)
            if isinstance(carry, str):
                msg = f"Expected carry as a collection of section names, got {carry!r}"
                raise TypeError(msg)
            # Saves of one namespace in this process run one at a time: each takes
            # change logs and advances the baseline the next one builds on.
            # Paced (warmstart._pacing): every step that is O(entries) works on
            # slices and lets the service's threads run between them.
            with self._saving(namespace), pacing():
                return self._save(namespace, sections, watermark, tags, mode, carry, failed)
        except RecursionError as exc:
            # msgpack encoding recurses: a value that refers to itself (or nests
            # deeper than the interpreter's limit) exhausts the stack (issue 17).
            msg = (
                f"Expected values and a watermark msgpack can encode, got one that refers "
                f"to itself or nests too deeply ({exc}) - in namespace {namespace!r}"
            )
            raise EncodeError(msg) from exc

    def _saving(self, namespace: str) -> threading.Lock:
        with self._saving_guard:
            return self._saving_locks.setdefault(namespace, threading.Lock())

    def _save(
        self,
        namespace: str,
        sections: Sections,
        watermark: Any,
        tags: Mapping[str, str] | None,
        mode: SaveMode,
        carry: Collection[str],
        failed: dict[str, str] | None,
    ) -> SaveResult:
        # Built per save: ``compaction`` may be changed on an open store.
        how = Encoding(self.codec, self.compaction, self._baselines)
        prepared = _prepare.prepare(how, namespace, sections, mode, failed=failed)
        if not prepared and failed:
            return SaveResult(namespace=namespace, generation=None, failed=failed)
        carried = set(carry) | set(failed or ())

        def commit(txn: Any) -> Manifest:
            return _commit.commit(
                self._tables,
                txn,
                namespace,
                prepared,
                watermark=watermark,
                tags=tags,
                keep=self.keep,
                now=self.clock,
                carry=carried,
            )

        pace()
        ahead = 0
        try:
            # A large save's chunks first, a few MB per transaction (_ahead).
            ahead = write_ahead(
                self._tables, namespace, [f for item in prepared for f in item.frames]
            )
            pace(before_long_step=True)  # the commit: a step of its own
            try:
                manifest = self._tables.write(commit)
            except StaleBaseError:
                log.info(
                    "head of %r moved under this process; writing a full base",
                    namespace,
                    extra={"namespace": namespace},
                )
                _prepare.put_back(prepared)
                prepared = _prepare.prepare(
                    how, namespace, sections, mode, full=True, failed=failed
                )
                ahead += write_ahead(
                    self._tables, namespace, [f for item in prepared for f in item.frames]
                )
                manifest = self._tables.write(commit)
        except BaseException:
            _prepare.put_back(prepared)
            if ahead:
                _ahead.sweep(self._tables, namespace)  # no space taken by a failed save
            raise
        pace()
        self._baselines.committed(namespace, manifest, prepared)
        saved = tuple(p.name for p in prepared)
        _prepare.release(prepared)
        return SaveResult(
            namespace=namespace,
            generation=manifest.generation,
            saved=saved,
            carried=tuple(s.name for s in manifest.sections if s.name not in saved),
            failed=failed or {},
        )

    # -- reading --------------------------------------------------------------

    def load(self, namespace: str, *, generation: int | None = None) -> Snapshot:
        """Open the newest generation of ``namespace`` that verifies.

        Every chunk of the chosen generation is verified (digest, and MAC when
        keyed) before the snapshot is returned. If the head fails, older
        generations are tried, newest first; ``snapshot.fallback`` says which
        were skipped and why, and a warning is logged.

        Args:
            generation: a specific generation (no fallback when given).

        Raises:
            CheckpointNotFoundError: no such namespace or generation, or none verifies.
        """
        check_namespace(namespace)
        txn = self._env.begin_read()
        try:
            with self._env.reading():
                snapshot = self._load(txn, namespace, generation)
        except BaseException:
            txn.abort()
            raise
        return snapshot

    def _load(self, txn: Any, namespace: str, generation: int | None) -> Snapshot:
        tables = self._tables
        nsid = tables.nsid(txn, namespace, create=False)
        stored = [] if nsid is None else tables.generations(txn, nsid)
        if generation is not None:
            if nsid is None:
                raise CheckpointNotFoundError(tables.missing_namespace(txn, namespace))
            if generation not in stored:
                msg = (
                    f"Expected generation {generation} of namespace {namespace!r} in "
                    f"{str(self.path)!r}, found none (it holds {stored or 'none'})"
                )
                raise CheckpointNotFoundError(msg)
            return self._first_good(txn, namespace, nsid, [generation], [], {})
        skipped = self._head_problems(txn, namespace, stored)
        if nsid is None or not stored:
            if skipped:
                msg = f"Expected a generation of namespace {namespace!r}, found none: " + "; ".join(
                    skipped
                )
                raise CheckpointNotFoundError(msg, skipped=tuple(skipped))
            raise CheckpointNotFoundError(tables.missing_namespace(txn, namespace))
        quarantined = tables.quarantined(txn, namespace)
        return self._first_good(txn, namespace, nsid, stored, skipped, quarantined)

    def _head_problems(self, txn: Any, namespace: str, stored: list[int]) -> list[str]:
        """Why the head record cannot be taken at its word: each is a reported skip.

        Whatever load returns must be the head generation or say why not
        (issue 17): a head record that is damaged or forged, missing beside
        stored generations, or naming a generation whose manifest is gone
        (deleted newer manifests) means newer generations may have been lost.
        """
        newest = stored[0] if stored else None
        try:
            head = self._tables.head(txn, namespace)
        except IntegrityError as exc:
            return [f"head record: {exc}; generations after {newest} may be missing"]
        if head is None:
            if newest is None:
                return []  # a namespace never saved
            return [
                f"head record: missing beside generations up to {newest}; newer ones may be lost"
            ]
        if newest is None or head[0] > newest:
            return [f"generation {head[0]}: named by the head, but its manifest is missing"]
        if head[0] < newest:
            # Newer manifests than the head: a replayed old head; the newest that
            # verifies is still loaded, so nothing is skipped (verify reports it).
            log.warning(
                "namespace %r: the head names generation %d, generation %d is stored",
                namespace,
                head[0],
                newest,
                extra={"namespace": namespace},
            )
        return []

    def _first_good(
        self,
        txn: Any,
        namespace: str,
        nsid: bytes,
        candidates: list[int],
        skipped: list[str],
        quarantined: dict[int, str],
    ) -> Snapshot:
        """A snapshot of the first of ``candidates`` that verifies, reporting every skip."""
        tables = self._tables

        def skip(candidate: int, why: str) -> None:
            reason = f"generation {candidate}: {why}"
            skipped.append(reason)
            log.warning(
                "namespace %r: skipping %s",
                namespace,
                reason,
                extra={"namespace": namespace, "generation": candidate},
            )

        for candidate in candidates:
            if candidate in quarantined:
                skip(candidate, f"quarantined: {quarantined[candidate]}")
                continue
            try:
                manifest = tables.manifest(txn, nsid, candidate, namespace)
                self._verify_chunks(txn, nsid, manifest)
            except IntegrityError as exc:
                skip(candidate, str(exc))
                continue
            if skipped:
                log.warning(
                    "namespace %r: fell back to generation %d",
                    namespace,
                    candidate,
                    extra={"namespace": namespace, "generation": candidate},
                )
            if tables.readable_head(txn, namespace) == (manifest.generation, manifest.lineage):
                self._baselines.loaded(namespace, manifest)

            def frame_of(read_txn: Any, ref: ChunkRef, nsid: bytes = nsid) -> memoryview:
                return tables.snapshot_chunk(read_txn, nsid, ref.digest)

            return Snapshot(
                manifest=manifest,
                txn=txn,
                frame_of=frame_of,
                codec=self.codec,
                fallback=tuple(skipped),
            )
        msg = (
            f"Expected a generation of namespace {namespace!r} that verifies, none did: "
            + "; ".join(skipped)
        )
        raise CheckpointNotFoundError(msg, skipped=tuple(skipped))

    def _verify_chunks(self, txn: Any, nsid: bytes, manifest: Manifest) -> None:
        for ref in {c.digest: c for s in manifest.sections for c in s.chunks}.values():
            if self._tables.checked_chunk(txn, nsid, ref) is None:
                msg = f"Expected chunk {ref.digest.hex()}, it is missing"
                raise IntegrityError(msg)

    def mark_baseline(
        self, namespace: str, section: str, mapping: Mapping[Any, Any], generation: int
    ) -> None:
        """Declare that ``mapping`` now holds exactly ``section`` of ``generation``.

        Called after a restore into a tracked mapping, so the next checkpoint can
        be a delta on top of the generation it was restored from.
        """
        self._baselines.mark(namespace, section, mapping, generation)

    # -- markers and quarantine (the boot's crash-loop breaker) ---------------

    def quarantined(self, namespace: str) -> dict[int, str]:
        """Generations of ``namespace`` that loads skip, with the reason each was set aside."""
        with self._tables.read() as txn:
            return self._tables.quarantined(txn, namespace)

    def quarantine(self, namespace: str, generation: int, reason: str) -> None:
        """Set a generation aside: ``load`` skips it; it stays for inspection.

        ``release_quarantine`` undoes it.
        """
        check_namespace(namespace)
        check_generation(generation)
        given: object = reason
        if not isinstance(given, str):
            msg = f"Expected the reason as a str, got {given!r}"
            raise TypeError(msg)
        self._tables.write(lambda txn: self._tables.quarantine(txn, namespace, generation, reason))

    def release_quarantine(self, namespace: str, generation: int | None = None) -> int:
        """Let loads use quarantined generations again; return how many were released."""
        check_namespace(namespace)
        if generation is not None:
            check_generation(generation)
        return self._tables.write(lambda txn: self._tables.release(txn, namespace, generation))

    def marker_file(self, namespace: str, name: str) -> Path:
        """Where marker ``name`` of ``namespace`` lives (for an owner that rewrites it in place).

        Raises:
            ValueError: a name with ``/``, a leading dot, or over 200 characters.
        """
        if not name or "/" in name or name.startswith(".") or len(name) > _MAX_MARKER_NAME:
            msg = (
                f"Expected a marker name of at most {_MAX_MARKER_NAME} characters without '/' "
                f"or a leading dot, got {name!r}"
            )
            raise ValueError(msg)
        return self.path / "markers" / f"{_marker_prefix(namespace)}{name}"

    def set_marker(self, namespace: str, name: str, value: bytes | None) -> None:
        """Write (or with None, delete) a small marker for ``namespace``.

        Markers are files beside the LMDB environment, not records in it:
        setting one must never wait for another process's writer lock or an
        fsync, since a boot sets one before every restore.
        """
        if self.readonly:
            msg = f"Expected a writable store, {str(self.path)!r} is open read-only"
            raise ReadOnlyStoreError(msg)
        target = self.marker_file(namespace, name)
        if value is None:
            target.unlink(missing_ok=True)
            return
        target.parent.mkdir(mode=0o700, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}")
        partial.write_bytes(self.marker_bytes(namespace, name, value))
        partial.replace(target)  # atomic: a reader sees the whole marker or none

    def marker_bytes(self, namespace: str, name: str, value: bytes) -> bytes:
        """What :meth:`set_marker` writes for ``value``: sealed in a keyed store.

        An owner that rewrites its marker in place (see :meth:`marker_file`)
        writes these bytes; a MAC is as long for every value of one length,
        so the file keeps its size.
        """
        if self._sealed_markers:
            return self.codec.seal(SEAL_MARKER, _marker_key(namespace, name), value)
        return value

    @property
    def _sealed_markers(self) -> bool:
        # A marker makes a boot quarantine a generation: in a keyed store one
        # forged by someone without the secret must not (issue 17).
        return self.codec.keyed and self._env.store_format == SEALED_FORMAT

    def markers(self, namespace: str) -> dict[str, bytes]:
        """Every marker of ``namespace``, by name.

        In a keyed store a marker is sealed with the secret: one without a
        valid MAC (forged, or left by 0.1) is ignored and logged.
        """
        folder = self.path / "markers"
        prefix = _marker_prefix(namespace)
        found: dict[str, bytes] = {}
        if not folder.is_dir():
            return found
        for entry in folder.iterdir():
            if not entry.name.startswith(prefix):
                continue
            name = entry.name[len(prefix) :]
            try:
                value = entry.read_bytes()
            except FileNotFoundError:
                continue  # cleared meanwhile
            if self._sealed_markers:
                try:
                    value = self.codec.unseal(SEAL_MARKER, _marker_key(namespace, name), value)
                except IntegrityError as exc:
                    log.warning(
                        "namespace %r: marker %r ignored: %s",
                        namespace,
                        name,
                        exc,
                        extra={"namespace": namespace},
                    )
                    continue
            found[name] = value
        return found

    # -- listing --------------------------------------------------------------

    def namespaces(self) -> list[str]:
        """Every namespace that has a head, sorted (a damaged head key is skipped and logged)."""
        with self._tables.read() as txn:
            found = []
            for raw, namespace in self._tables.head_keys(txn):
                if namespace is None:
                    log.warning("head key %r names no namespace: damaged, skipped", raw)
                else:
                    found.append(namespace)
            return sorted(found)

    def generations(self, namespace: str) -> list[GenerationInfo]:
        """Generations of ``namespace``, newest first (damaged ones are skipped and logged)."""
        tables = self._tables
        with tables.read() as txn:
            try:
                nsid = tables.nsid(txn, namespace, create=False)
            except IntegrityError as exc:
                log.warning("namespace %r: %s", namespace, exc, extra={"namespace": namespace})
                return []
            if nsid is None:
                return []
            head = tables.readable_head(txn, namespace)
            infos = []
            for generation in tables.generations(txn, nsid):
                try:
                    m = tables.manifest(txn, nsid, generation, namespace)
                except IntegrityError as exc:
                    log.warning("namespace %r generation %d: %s", namespace, generation, exc)
                    continue
                infos.append(
                    GenerationInfo(
                        namespace=namespace,
                        generation=generation,
                        kind=m.kind,
                        created_at=m.created_at,
                        stored_bytes=m.stored_bytes,
                        sections={s.name: s.entries for s in m.sections},
                        delta_chain=m.delta_chain,
                        watermark=m.watermark,
                        head=head is not None and head[0] == generation,
                    )
                )
            return infos

    def manifest(self, namespace: str, generation: int | None = None) -> Manifest:
        """The manifest of a generation (the head by default), verified.

        Raises:
            CheckpointNotFoundError: no such namespace or generation.
            IntegrityError: the manifest, or (for the head's) the head record, is damaged.
        """
        tables = self._tables
        with tables.read() as txn:
            nsid = tables.nsid(txn, namespace, create=False)
            if nsid is None or not tables.has_head(txn, namespace):
                raise CheckpointNotFoundError(tables.missing_namespace(txn, namespace))
            if generation is not None:
                return tables.manifest(txn, nsid, generation, namespace)
            head = tables.head(txn, namespace)
            assert head is not None
            try:
                return tables.manifest(txn, nsid, head[0], namespace)
            except CheckpointNotFoundError as exc:
                msg = (
                    f"Expected the head of namespace {namespace!r} in {str(self.path)!r} to "
                    f"name a stored generation, it names {head[0]}: the head record is damaged"
                )
                raise IntegrityError(msg) from exc

    # -- maintenance ----------------------------------------------------------

    def drop(self, namespace: str) -> bool:
        """Remove a namespace entirely (head, manifests, chunks). True if it existed."""
        check_namespace(namespace)

        def body(txn: Any) -> bool:
            try:
                nsid = self._tables.nsid(txn, namespace, create=False)
            except IntegrityError as exc:
                # Which manifests and chunks are the namespace's is lost with its
                # id: drop its records and leave those, rather than guess.
                log.warning(
                    "namespace %r: %s; dropping its records, not its manifests or chunks",
                    namespace,
                    exc,
                    extra={"namespace": namespace},
                )
            else:
                if nsid is None:
                    return False
                _retention.drop_data(self._tables, txn, namespace, nsid)
            # Quarantine and markers name generations of the namespace that is
            # gone: a namespace created again under that name must not inherit them.
            self._tables.forget_namespace(txn, namespace)
            for name in self.markers(namespace):
                self.marker_file(namespace, name).unlink(missing_ok=True)
            return True

        dropped = self._tables.write(body)
        self._baselines.forget(namespace)
        return dropped

    def gc(self) -> int:
        """Mark and sweep every namespace; return how many chunks were freed.

        Saves already collect as they go; this also cleans what an older
        release or an interrupted operation may have left.
        """
        return self._tables.write(lambda txn: _retention.collect(self._tables, txn))

    def verify(self) -> VerifyReport:
        """Check every chunk digest (and MAC) and every manifest's references.

        Damaged heads, namespace ids and manifest keys are reported too, and
        so is every head a load would not take at its word: a head record
        that is forged (in a keyed store, one without a valid MAC) or
        missing beside stored generations, a head naming a generation that
        is not the newest stored, or a quarantined head; and quarantine
        records a keyed store ignores because their MAC does not match.
        """
        return verify(self._tables)
