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

>>> import msgspec, tempfile
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
import dataclasses
import functools
import logging
import os
import struct
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from warmstart._chunks import encode_chunks
from warmstart._env import Env
from warmstart.codec import Codec
from warmstart.containers import entries_of, peek_entries
from warmstart.contract import Contract
from warmstart.delta import (
    ChangeSet,
    CompactionPolicy,
    Fingerprints,
    change_log,
    deeply_immutable,
)
from warmstart.errors import (
    CheckpointNotFoundError,
    EncodeError,
    IntegrityError,
    ReadOnlyStoreError,
    StoreError,
)
from warmstart.manifest import (
    ChunkRef,
    Manifest,
    SectionManifest,
    decode_manifest,
    encode_manifest,
)
from warmstart.snapshot import Snapshot

__all__ = ("GenerationInfo", "Problem", "Store", "VerifyReport")


def __dir__() -> tuple[str, ...]:
    return __all__


log = logging.getLogger("warmstart.store")

SaveMode = Literal["auto", "delta", "full"]
Sections = Mapping[str, Any]  # section name -> (Contract, mapping), checked at run time
_GEN = struct.Struct(">Q")
_NSID = struct.Struct(">I")
NS_PREFIX = b"ns:"
NS_NEXT = b"ns-next"
MAX_NAMESPACE = 255
_MAX_GEN = (1 << 64) - 1
_MAX_NSID = (1 << 32) - 1


@dataclasses.dataclass(frozen=True)
class GenerationInfo:
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


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing :meth:`Store.verify` found wrong."""

    namespace: str
    generation: int | None
    what: str
    chunk: str | None = None


@dataclasses.dataclass
class VerifyReport:
    """The outcome of :meth:`Store.verify`."""

    problems: list[Problem] = dataclasses.field(default_factory=list)
    namespaces: int = 0
    generations: int = 0
    chunks: int = 0
    orphans: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing was found wrong."""
        return not self.problems


@dataclasses.dataclass
class _Baseline:
    """What this process last committed or loaded for a namespace (for deltas)."""

    generation: int
    lineage: str
    manifest: Manifest
    prints: dict[str, Fingerprints] = dataclasses.field(default_factory=dict)


class _StaleBaseError(Exception):
    """Another writer moved the head since the delta was computed."""


@dataclasses.dataclass
class _Prepared:
    """A section encoded outside the write transaction, ready to commit."""

    name: str
    contract: Contract[Any]
    mapping: Mapping[Any, Any]
    frames: list[tuple[ChunkRef, bytes]]
    section: SectionManifest
    delta: bool
    changes: ChangeSet | None = None
    #: The entries encoded (all of them for a base, the upserts for a delta).
    keys: list[Any] = dataclasses.field(default_factory=list)
    values: list[Any] = dataclasses.field(default_factory=list)


def _check_namespace(namespace: str) -> bytes:
    if not isinstance(namespace, str) or not namespace:
        msg = f"Expected a non-empty namespace string, got {namespace!r}"
        raise ValueError(msg)
    raw = namespace.encode()
    if len(raw) > MAX_NAMESPACE or "\x00" in namespace:
        msg = (
            f"Expected a namespace of at most {MAX_NAMESPACE} bytes without NUL, got {namespace!r}"
        )
        raise ValueError(msg)
    return raw


def _namespace_name(raw: bytes) -> str | None:
    """The namespace a head key names, or None when no namespace has that key (damage)."""
    try:
        name = raw.decode()
        _check_namespace(name)
    except ValueError:  # UnicodeDecodeError is a ValueError
        return None
    return name


def _shown(raw: bytes) -> str:
    """Bytes read back from the store, printable whatever they hold."""
    return raw.decode(errors="backslashreplace")


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
        max_map_size: upper bound of the LMDB map; the map grows by doubling
            up to it. A save that does not fit fails with ``StoreFullError``.
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
        if keep < 1:
            msg = f"Expected keep >= 1, got {keep}"
            raise ValueError(msg)
        self.path = Path(path)
        self.keep = keep
        self.codec = Codec(level=compression_level, secret=secret)
        self.compaction = compaction or CompactionPolicy()
        self.clock = clock
        self._env = Env(self.path, readonly=readonly, sync=sync, max_map_size=max_map_size)
        self._token = os.path.realpath(self.path)
        self._baselines: dict[str, _Baseline] = {}

    # -- lifecycle ------------------------------------------------------------

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, keep={self.keep})"

    def close(self) -> None:
        """Close the environment; open snapshots must be closed first."""
        self._env.close()

    @property
    def readonly(self) -> bool:
        """Whether the store was opened read-only."""
        return self._env.readonly

    # -- keys -----------------------------------------------------------------

    def _db(self, name: str) -> Any:
        return self._env.dbs[name]

    def _nsid(self, txn: Any, namespace: str, *, create: bool) -> bytes | None:
        """The namespace's 4-byte id; None when it has none (and ``create`` is false).

        Raises:
            IntegrityError: the id record is damaged. Every key of the
                namespace's manifests and chunks starts with its id: a wrong one
                would read, or collect, another namespace's records.
        """
        key = NS_PREFIX + _check_namespace(namespace)
        meta = self._db("meta")
        if meta is None:
            return None
        found = txn.get(key, db=meta)
        if found is not None:
            nsid = bytes(found)
            if len(nsid) != _NSID.size:
                msg = (
                    f"Expected a {_NSID.size}-byte id for namespace {namespace!r} in the meta "
                    f"table of {str(self.path)!r}, got {nsid!r}: the record is damaged; "
                    f"`warmstart drop` the namespace to start it afresh"
                )
                raise IntegrityError(msg)
            return nsid
        if not create:
            return None
        nsid = _NSID.pack(self._last_nsid(txn) + 1)
        txn.put(NS_NEXT, nsid, db=meta)
        txn.put(key, nsid, db=meta)
        return nsid

    def _last_nsid(self, txn: Any) -> int:
        """The last namespace id given out, recounted from the ids if the counter is damaged."""
        counter = txn.get(NS_NEXT, db=self._db("meta"))
        if counter is None:
            return 0
        raw = bytes(counter)
        if len(raw) == _NSID.size and _NSID.unpack(raw)[0] < _MAX_NSID:
            return int(_NSID.unpack(raw)[0])
        log.warning("the namespace id counter %r is damaged; recounting the ids in use", raw)
        last = max((n for _, n in self._namespace_ids(txn) if n is not None), default=0)
        if last >= _MAX_NSID:
            msg = f"Expected a free namespace id in {str(self.path)!r}, found none"
            raise StoreError(msg)
        return last

    def _namespace_ids(self, txn: Any) -> Iterator[tuple[bytes, int | None]]:
        """(namespace as stored, its id or None if that record is damaged) for every id record."""
        for key, raw_id in _prefixed(txn, self._db("meta"), NS_PREFIX, values=True):
            raw = bytes(raw_id)
            yield key[len(NS_PREFIX) :], _NSID.unpack(raw)[0] if len(raw) == _NSID.size else None

    @staticmethod
    def _chunk_key(nsid: bytes, ref_digest: bytes) -> bytes:
        return nsid + ref_digest

    def _head(self, txn: Any, namespace: str) -> tuple[int, str] | None:
        """The namespace's head record: (generation, lineage), or None if it has none.

        Raises:
            IntegrityError: the record is too short to hold a generation.
        """
        heads = self._db("heads")
        raw = None if heads is None else txn.get(_check_namespace(namespace), db=heads)
        if raw is None:
            return None
        raw = bytes(raw)
        if len(raw) < _GEN.size:
            msg = (
                f"Expected the head record of namespace {namespace!r} in {str(self.path)!r} "
                f"to start with an {_GEN.size}-byte generation, got {raw!r}: the record is damaged"
            )
            raise IntegrityError(msg)
        # A damaged lineage must not fail a load: it just matches no manifest.
        return _GEN.unpack(raw[:8])[0], raw[8:].decode("ascii", errors="replace")

    def _readable_head(self, txn: Any, namespace: str) -> tuple[int, str] | None:
        """The head, or None (logged) when its record is damaged: for reads that go on."""
        try:
            return self._head(txn, namespace)
        except IntegrityError as exc:
            log.warning("namespace %r: %s", namespace, exc, extra={"namespace": namespace})
            return None

    def _tip(self, txn: Any, namespace: str, nsid: bytes) -> tuple[tuple[int, str] | None, int]:
        """(the head if it is sound, else None; the newest stored generation, 0 if none).

        The manifests say what is stored; the head only says which of them is
        the newest. A head that is damaged, or names another generation than
        the newest stored, is set aside (and logged): a commit then builds on
        the newest stored generation, never overwrites one, and rewrites the head.
        """
        stored = self._generations(txn, nsid)
        newest = stored[0] if stored else 0
        try:
            head = self._head(txn, namespace)
        except IntegrityError as exc:
            problem = str(exc)
        else:
            if head is None and not stored:
                return None, 0  # a new namespace
            if head is not None and head[0] == newest:
                return head, newest
            named = "none" if head is None else head[0]
            problem = f"the head names generation {named}, the newest stored is {newest or 'none'}"
        log.warning(
            "namespace %r: %s; commits follow the newest stored generation",
            namespace,
            problem,
            extra={"namespace": namespace},
        )
        return None, newest

    def _next_generation(self, namespace: str, newest: int) -> int:
        if newest >= _MAX_GEN:
            msg = (
                f"Expected a generation number after {newest} for namespace {namespace!r} in "
                f"{str(self.path)!r}, there is none: that manifest key is damaged; "
                f"`warmstart drop` the namespace to start it afresh"
            )
            raise IntegrityError(msg)
        return newest + 1

    def _generations(self, txn: Any, nsid: bytes) -> list[int]:
        """Generations stored for a namespace, newest first (malformed keys are logged)."""
        generations, malformed = self._manifest_keys(txn, nsid)
        if malformed:
            log.warning(
                "namespace id %s: %d malformed manifest keys skipped: %s",
                nsid.hex(),
                len(malformed),
                ", ".join(key.hex() for key in malformed),
            )
        return generations

    def _manifest_keys(self, txn: Any, nsid: bytes) -> tuple[list[int], list[bytes]]:
        """(generations stored for a namespace newest first, keys too malformed to name one)."""
        manifests = self._db("manifests")
        if manifests is None:
            return [], []
        generations: list[int] = []
        malformed: list[bytes] = []
        for key, _ in _prefixed(txn, manifests, nsid):
            if len(key) == len(nsid) + _GEN.size:
                generations.append(_GEN.unpack(key[len(nsid) :])[0])
            else:
                malformed.append(key)
        return sorted(generations, reverse=True), malformed

    def _read_manifest(
        self, txn: Any, nsid: bytes, generation: int, namespace: str | None = None
    ) -> Manifest:
        """The manifest stored as ``generation`` (of ``namespace``, when given), verified.

        Raises:
            CheckpointNotFoundError: none is stored there.
            IntegrityError: it is damaged, or describes another generation or namespace.
        """
        raw = txn.get(nsid + _GEN.pack(generation), db=self._db("manifests"))
        if raw is None:
            msg = f"Expected a manifest for generation {generation}, found none"
            raise CheckpointNotFoundError(msg)
        manifest = decode_manifest(self.codec, raw)
        if manifest.generation != generation or namespace not in (None, manifest.namespace):
            msg = (
                f"Expected the manifest stored as generation {generation}"
                f"{'' if namespace is None else f' of namespace {namespace!r}'} to describe it, "
                f"it describes generation {manifest.generation} of namespace "
                f"{manifest.namespace!r}: the record is damaged"
            )
            raise IntegrityError(msg)
        return manifest

    # -- writing --------------------------------------------------------------

    def save(
        self,
        namespace: str,
        sections: Sections,
        *,
        watermark: Any = None,
        tags: Mapping[str, str] | None = None,
        mode: SaveMode = "auto",
    ) -> int:
        """Commit one generation of ``namespace`` and return its number.

        Args:
            namespace: e.g. ``"pricing"`` or ``"tenant-42/pricing"``.
            sections: section name -> ``(contract, mapping)``. Each mapping is
                read in its own policy order (LRU to MRU for an LRU cache).
            watermark: an opaque source-of-truth position (a DB LSN, a Kafka
                offset, an ETag) that a boot can validate staleness against.
            tags: free-form string labels kept in the manifest.
            mode: ``"auto"`` writes deltas for tracked mappings and full bases
                otherwise; ``"delta"`` also diffs untracked mappings against
                fingerprints kept from the last save (costs memory, see the
                docs); ``"full"`` always writes a fresh base.

        Raises:
            EncodeError: a value is not of its contract's type.
            StoreFullError: the map or the disk is full; nothing was written.
            ReadOnlyStoreError: the store is read-only.
        """
        nsbytes = _check_namespace(namespace)
        _check_metadata(watermark, tags)
        prepared = self._prepare(namespace, sections, mode)
        try:
            try:
                manifest = self._env.write(
                    lambda txn: self._commit(txn, nsbytes, namespace, prepared, watermark, tags)
                )
            except _StaleBaseError:
                log.info(
                    "head of %r moved under this process; writing a full base",
                    namespace,
                    extra={"namespace": namespace},
                )
                for item in prepared:
                    self._put_back(item)
                prepared = self._prepare(namespace, sections, "full")
                manifest = self._env.write(
                    lambda txn: self._commit(txn, nsbytes, namespace, prepared, watermark, tags)
                )
        except BaseException:
            for item in prepared:
                self._put_back(item)
            raise
        self._committed(namespace, manifest, prepared, mode)
        return manifest.generation

    @staticmethod
    def _put_back(item: _Prepared) -> None:
        changes_log = change_log(item.mapping)
        if changes_log is not None and item.changes is not None:
            changes_log.restore(item.changes)

    def _prepare(self, namespace: str, sections: Sections, mode: SaveMode) -> list[_Prepared]:
        baseline = self._baselines.get(namespace)
        specs = []
        for name, spec in sections.items():
            contract, mapping = spec
            if not isinstance(contract, Contract):
                got = type(contract).__name__
                msg = f"Expected (Contract, mapping) for section {name!r}, got {got}"
                raise TypeError(msg)
            specs.append((name, contract, mapping))
        out: list[_Prepared] = []
        try:
            for name, contract, mapping in specs:
                item = self._prepare_delta(name, contract, mapping, baseline, mode, namespace)
                out.append(item or self._prepare_full(name, contract, mapping))
        except BaseException:
            # Sections already prepared took their change logs: give them back.
            for item in out:
                self._put_back(item)
            raise
        return out

    def _prepare_full(
        self, name: str, contract: Contract[Any], mapping: Mapping[Any, Any]
    ) -> _Prepared:
        changes_log = change_log(mapping)
        changes = changes_log.take() if changes_log is not None else None
        try:
            keys, values, expires = entries_of(mapping)
            frames = encode_chunks(contract, self.codec, keys, values, expires=expires)
        except BaseException:
            if changes_log is not None and changes is not None:
                changes_log.restore(changes)
            raise
        section = SectionManifest(
            name=name,
            schema=contract.write_schema,
            base=tuple(ref for ref, _ in frames),
            entries=len(keys),
        )
        return _Prepared(name, contract, mapping, frames, section, False, changes, keys, values)

    def _prepare_delta(  # noqa: PLR0911 - each early return is one reason to write a base
        self,
        name: str,
        contract: Contract[Any],
        mapping: Mapping[Any, Any],
        baseline: _Baseline | None,
        mode: SaveMode,
        namespace: str,
    ) -> _Prepared | None:
        if mode == "full" or baseline is None:
            return None
        previous = baseline.manifest.section(name)
        if previous is None or previous.schema != contract.write_schema:
            return None
        chain = len({c.sequence for c in previous.deltas})
        delta_bytes = sum(c.stored_bytes for c in previous.deltas)
        if self.compaction.wants_base(chain, delta_bytes, previous.base_bytes):
            return None
        changes_log = change_log(mapping)
        if changes_log is not None:
            token = (self._token, namespace, name, baseline.generation, baseline.lineage)
            if changes_log.baseline != token:
                return None
            changes = changes_log.take()
            if changes.full:
                changes_log.restore(changes)
                return None
        else:
            prints = baseline.prints.get(name)
            if prints is None:
                return None
            all_keys, all_values, _ = entries_of(mapping)
            changes = prints.diff(all_keys, all_values, contract.encode_value)
        sequence = baseline.generation + 1
        try:
            keys, values, expires = peek_entries(mapping, changes.upserts)
            deleted = _deletions(changes, keys)
            frames = encode_chunks(
                contract,
                self.codec,
                keys,
                values,
                deleted=deleted,
                sequence=sequence,
                expires=expires,
            )
        except BaseException:
            # An encoding failure must not lose the changes taken for this delta.
            if changes_log is not None:
                changes_log.restore(changes)
            raise
        section = SectionManifest(
            name=name,
            schema=contract.write_schema,
            base=previous.base,
            deltas=previous.deltas + tuple(ref for ref, _ in frames),
            entries=len(mapping),
        )
        return _Prepared(name, contract, mapping, frames, section, True, changes, keys, values)

    def _commit(
        self,
        txn: Any,
        nsbytes: bytes,
        namespace: str,
        prepared: list[_Prepared],
        watermark: Any,
        tags: Mapping[str, str] | None,
    ) -> Manifest:
        nsid = self._nsid(txn, namespace, create=True)
        assert nsid is not None
        head, newest = self._tip(txn, namespace, nsid)
        baseline = self._baselines.get(namespace)
        delta = any(p.delta for p in prepared)
        if delta and (
            head is None or baseline is None or head != (baseline.generation, baseline.lineage)
        ):
            raise _StaleBaseError
        generation = self._next_generation(namespace, newest)
        lineage = head[1] if delta and head is not None else os.urandom(8).hex()
        chunks = self._db("chunks")
        for item in prepared:
            for ref, frame in item.frames:
                txn.put(self._chunk_key(nsid, ref.digest), frame, db=chunks, overwrite=False)
        manifest = Manifest(
            namespace=namespace,
            generation=generation,
            lineage=lineage,
            created_at=self.clock(),
            library_version=_library_version(),
            host=_hostname(),
            pid=os.getpid(),
            parent=newest or None,
            kind="delta" if delta else "full",
            watermark=watermark,
            tags=dict(tags or {}),
            sections=tuple(p.section for p in prepared),
        )
        txn.put(
            nsid + _GEN.pack(generation),
            encode_manifest(self.codec, manifest),
            db=self._db("manifests"),
        )
        txn.put(nsbytes, _GEN.pack(generation) + lineage.encode(), db=self._db("heads"))
        self._retain(txn, nsid, manifest)
        return manifest

    def _identical(self, txn: Any, nsid: bytes, manifest: Manifest) -> int | None:
        """The stored generation holding the same state as ``manifest``, if any."""
        wanted = manifest.signature()
        for generation in self._generations(txn, nsid):
            try:
                if self._read_manifest(txn, nsid, generation).signature() == wanted:
                    return generation
            except (IntegrityError, CheckpointNotFoundError):
                continue
        return None

    def _adopt(
        self,
        txn: Any,
        namespace: str,
        manifest: Manifest,
        frames: Mapping[bytes, bytes],
        *,
        tag: str,
        source: str,
    ) -> tuple[Literal["adopted", "present"], int] | set[bytes]:
        """Commit a generation that came from elsewhere (an import, a pull).

        Inside the caller's write transaction: writes ``frames`` that are
        absent, and if every chunk the manifest references is now present,
        the manifest and the head. The head never moves backwards: the
        generation keeps its number when that is newer than the head, else it
        becomes head + 1; ``tags[tag]`` records ``source``.

        Returns ("adopted" or "present", generation), or the digests still
        missing (nothing of the manifest or head was written then).
        """
        nsid = self._nsid(txn, namespace, create=True)
        assert nsid is not None
        present = self._identical(txn, nsid, manifest)
        if present is not None:
            return "present", present
        chunks = self._db("chunks")
        for chunk_digest, frame in frames.items():
            txn.put(self._chunk_key(nsid, chunk_digest), frame, db=chunks, overwrite=False)
        missing = {
            d for d in manifest.digests() if txn.get(self._chunk_key(nsid, d), db=chunks) is None
        }
        if missing:
            return missing
        _, newest = self._tip(txn, namespace, nsid)
        newer = newest < manifest.generation
        generation = manifest.generation if newer else self._next_generation(namespace, newest)
        adopted = msgspec.structs.replace(
            manifest,
            namespace=namespace,
            generation=generation,
            parent=newest or None,
            tags={**manifest.tags, tag: source},
        )
        txn.put(
            nsid + _GEN.pack(generation),
            encode_manifest(self.codec, adopted),
            db=self._db("manifests"),
        )
        txn.put(
            _check_namespace(namespace),
            _GEN.pack(generation) + manifest.lineage.encode(),
            db=self._db("heads"),
        )
        self._retain(txn, nsid, adopted)
        # Deltas computed in this process were against the previous head.
        self._baselines.pop(namespace, None)
        return "adopted", generation

    def _retain(self, txn: Any, nsid: bytes, newest: Manifest) -> None:
        """Drop generations beyond ``keep`` and sweep chunks none references.

        ``newest`` was just written with a number above every stored one, so
        it is never among those dropped.
        """
        generations, malformed = self._manifest_keys(txn, nsid)
        expired = generations[self.keep :]
        if not expired:
            return
        manifests = self._db("manifests")
        for generation in expired:
            txn.delete(nsid + _GEN.pack(generation), db=manifests)
        namespace = newest.namespace
        if malformed:
            # A manifest under a malformed key may still reference chunks.
            log.warning(
                "namespace %r: %d malformed manifest keys; garbage collection skipped",
                namespace,
                len(malformed),
                extra={"namespace": namespace},
            )
            return
        marked = newest.digests()
        for generation in generations[1 : self.keep]:
            try:
                marked |= self._read_manifest(txn, nsid, generation, namespace).digests()
            except IntegrityError:
                # A damaged manifest cannot say what it references: keep every
                # chunk rather than risk deleting one a generation needs.
                log.warning("generation %d is damaged; garbage collection skipped", generation)
                return
        self._sweep(txn, nsid, marked)

    def _sweep(self, txn: Any, nsid: bytes, marked: set[bytes]) -> int:
        chunks = self._db("chunks")
        doomed = [key for key, _ in _prefixed(txn, chunks, nsid) if key[4:] not in marked]
        for key in doomed:
            txn.delete(key, db=chunks)
        return len(doomed)

    def _committed(
        self, namespace: str, manifest: Manifest, prepared: list[_Prepared], mode: SaveMode
    ) -> None:
        """After a commit: remember the baseline for the next delta."""
        baseline = _Baseline(manifest.generation, manifest.lineage, manifest)
        previous = self._baselines.get(namespace)
        for item in prepared:
            changes_log = change_log(item.mapping)
            if changes_log is not None:
                changes_log.baseline = (
                    self._token,
                    namespace,
                    item.name,
                    manifest.generation,
                    manifest.lineage,
                )
                continue
            prints = previous.prints.get(item.name) if previous else None
            encode = item.contract.encode_value
            if item.delta and prints is not None and item.changes is not None:
                prints.update(item.keys, item.values, item.changes, encode)
            elif mode == "delta" or prints is not None:
                immutable = _immutable(item.contract)
                prints = Fingerprints.of(item.keys, item.values, encode, by_identity=immutable)
            else:
                continue
            baseline.prints[item.name] = prints
        self._baselines[namespace] = baseline

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
        _check_namespace(namespace)
        txn = self._env.begin_read()
        try:
            with self._env.reading():
                snapshot = self._load(txn, namespace, generation)
        except BaseException:
            txn.abort()
            raise
        return snapshot

    def _load(self, txn: Any, namespace: str, generation: int | None) -> Snapshot:
        nsid = self._nsid(txn, namespace, create=False)
        candidates = [] if nsid is None else self._generations(txn, nsid)
        if generation is not None:
            candidates = [g for g in candidates if g == generation]
        else:
            quarantined = self._quarantined(txn, namespace)
            candidates = [g for g in candidates if g not in quarantined]
        if nsid is None or not candidates:
            which = "any generation" if generation is None else f"generation {generation}"
            msg = f"Expected {which} of namespace {namespace!r} in {str(self.path)!r}, found none"
            raise CheckpointNotFoundError(msg)
        skipped: list[str] = []
        for candidate in candidates:
            try:
                manifest = self._read_manifest(txn, nsid, candidate, namespace)
                self._verify_chunks(txn, nsid, manifest)
            except IntegrityError as exc:
                reason = f"generation {candidate}: {exc}"
                skipped.append(reason)
                log.warning(
                    "namespace %r: skipping %s",
                    namespace,
                    reason,
                    extra={"namespace": namespace, "generation": candidate},
                )
                continue
            if skipped:
                log.warning(
                    "namespace %r: fell back to generation %d",
                    namespace,
                    candidate,
                    extra={"namespace": namespace, "generation": candidate},
                )
            head = self._readable_head(txn, namespace)
            if head == (manifest.generation, manifest.lineage):
                known = self._baselines.get(namespace)
                # Fingerprints of this very generation stay valid: keep them.
                same = known if known and (known.generation, known.lineage) == head else None
                self._baselines[namespace] = _Baseline(
                    manifest.generation, manifest.lineage, manifest, same.prints if same else {}
                )

            def frame_of(read_txn: Any, ref: ChunkRef, nsid: bytes = nsid) -> memoryview:
                key = self._chunk_key(nsid, ref.digest)
                return self._env.get(read_txn, key, self._db("chunks"))  # type: ignore[no-any-return]

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
        raise CheckpointNotFoundError(msg)

    def _verify_chunks(self, txn: Any, nsid: bytes, manifest: Manifest) -> None:
        for ref in {c.digest: c for s in manifest.sections for c in s.chunks}.values():
            if self._checked_frame(txn, nsid, ref) is None:
                msg = f"Expected chunk {ref.digest.hex()}, it is missing"
                raise IntegrityError(msg)

    def _checked_frame(self, txn: Any, nsid: bytes, ref: ChunkRef) -> memoryview | None:
        """A chunk's frame, verified against its reference; None if it is absent.

        Raises:
            IntegrityError: digest, MAC or size disagree with the reference.
        """
        frame: memoryview | None = txn.get(self._chunk_key(nsid, ref.digest), db=self._db("chunks"))
        if frame is None:
            return None
        self.codec.verify(frame, digest=ref.digest)
        if len(frame) != ref.stored_bytes:
            msg = (
                f"Expected chunk {ref.digest.hex()} of {ref.stored_bytes} bytes as its "
                f"manifest says, got {len(frame)}"
            )
            raise IntegrityError(msg)
        return frame

    def mark_baseline(
        self, namespace: str, section: str, mapping: Mapping[Any, Any], generation: int
    ) -> None:
        """Declare that ``mapping`` now holds exactly ``section`` of ``generation``.

        Called after a restore into a tracked mapping, so the next checkpoint can
        be a delta on top of the generation it was restored from.
        """
        changes_log = change_log(mapping)
        baseline = self._baselines.get(namespace)
        if changes_log is not None and baseline is not None and baseline.generation == generation:
            changes_log.take()
            changes_log.baseline = (self._token, namespace, section, generation, baseline.lineage)

    # -- markers and quarantine (the boot's crash-loop breaker) ---------------

    def _meta_prefix(self, kind: bytes, namespace: str) -> bytes:
        return kind + b":" + _check_namespace(namespace) + b"\x00"

    def _quarantined(self, txn: Any, namespace: str) -> dict[int, str]:
        """Quarantined generations and why; a malformed key is skipped and logged."""
        meta = self._db("meta")
        if meta is None:
            return {}
        prefix = self._meta_prefix(b"quarantine", namespace)
        found = {}
        for key, value in _prefixed(txn, meta, prefix, values=True):
            if len(key) != len(prefix) + _GEN.size:
                log.warning(
                    "namespace %r: malformed quarantine key %r skipped",
                    namespace,
                    key,
                    extra={"namespace": namespace},
                )
                continue
            found[_GEN.unpack(key[len(prefix) :])[0]] = bytes(value).decode(errors="replace")
        return found

    def quarantined(self, namespace: str) -> dict[int, str]:
        """Generations of ``namespace`` that loads skip, with the reason each was set aside."""
        with self._env.read() as txn:
            return self._quarantined(txn, namespace)

    def quarantine(self, namespace: str, generation: int, reason: str) -> None:
        """Set a generation aside: ``load`` skips it; it stays for inspection.

        ``release_quarantine`` undoes it.
        """
        key = self._meta_prefix(b"quarantine", namespace) + _GEN.pack(generation)
        self._env.write(lambda txn: txn.put(key, reason.encode(), db=self._db("meta")))

    def release_quarantine(self, namespace: str, generation: int | None = None) -> int:
        """Let loads use quarantined generations again; return how many were released."""
        prefix = self._meta_prefix(b"quarantine", namespace)

        def body(txn: Any) -> int:
            keys = [k for k, _ in _prefixed(txn, self._db("meta"), prefix)]
            if generation is not None:
                keys = [k for k in keys if k == prefix + _GEN.pack(generation)]
            for key in keys:
                txn.delete(key, db=self._db("meta"))
            return len(keys)

        return self._env.write(body)

    def _marker_file(self, namespace: str, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            msg = f"Expected a marker name without '/' or a leading dot, got {name!r}"
            raise ValueError(msg)
        return self.path / "markers" / f"{_check_namespace(namespace).hex()}.{name}"

    def set_marker(self, namespace: str, name: str, value: bytes | None) -> None:
        """Write (or with None, delete) a small marker for ``namespace``.

        Markers are files beside the LMDB environment, not records in it:
        setting one must never wait for another process's writer lock or an
        fsync, since a boot sets one before every restore.
        """
        if self.readonly:
            msg = f"Expected a writable store, {str(self.path)!r} is open read-only"
            raise ReadOnlyStoreError(msg)
        target = self._marker_file(namespace, name)
        if value is None:
            target.unlink(missing_ok=True)
            return
        target.parent.mkdir(mode=0o700, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}")
        partial.write_bytes(value)
        partial.replace(target)  # atomic: a reader sees the whole marker or none

    def markers(self, namespace: str) -> dict[str, bytes]:
        """Every marker of ``namespace``, by name."""
        folder = self.path / "markers"
        prefix = f"{_check_namespace(namespace).hex()}."
        found: dict[str, bytes] = {}
        if not folder.is_dir():
            return found
        for entry in folder.iterdir():
            if entry.name.startswith(prefix):
                with contextlib.suppress(FileNotFoundError):
                    found[entry.name[len(prefix) :]] = entry.read_bytes()
        return found

    # -- listing --------------------------------------------------------------

    def namespaces(self) -> list[str]:
        """Every namespace that has a head, sorted (a damaged head key is skipped and logged)."""
        with self._env.read() as txn:
            found = []
            for raw, namespace in self._head_keys(txn):
                if namespace is None:
                    log.warning("head key %r names no namespace: damaged, skipped", raw)
                else:
                    found.append(namespace)
            return sorted(found)

    def _head_keys(self, txn: Any) -> Iterator[tuple[bytes, str | None]]:
        """(key, the namespace it names or None if it names none) for every head."""
        heads = self._db("heads")
        if heads is None:
            return
        with txn.cursor(db=heads) as cur:
            for key in cur.iternext(values=False):
                raw = bytes(key)
                yield raw, _namespace_name(raw)

    def generations(self, namespace: str) -> list[GenerationInfo]:
        """Generations of ``namespace``, newest first (damaged ones are skipped and logged)."""
        with self._env.read() as txn:
            try:
                nsid = self._nsid(txn, namespace, create=False)
            except IntegrityError as exc:
                log.warning("namespace %r: %s", namespace, exc, extra={"namespace": namespace})
                return []
            if nsid is None:
                return []
            head = self._readable_head(txn, namespace)
            infos = []
            for generation in self._generations(txn, nsid):
                try:
                    m = self._read_manifest(txn, nsid, generation, namespace)
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
        with self._env.read() as txn:
            nsid = self._nsid(txn, namespace, create=False)
            heads = self._db("heads")
            if (
                nsid is None
                or heads is None
                or txn.get(_check_namespace(namespace), db=heads) is None
            ):
                msg = f"Expected namespace {namespace!r} in {str(self.path)!r}, found none"
                raise CheckpointNotFoundError(msg)
            if generation is not None:
                return self._read_manifest(txn, nsid, generation, namespace)
            head = self._head(txn, namespace)
            assert head is not None
            try:
                return self._read_manifest(txn, nsid, head[0], namespace)
            except CheckpointNotFoundError as exc:
                msg = (
                    f"Expected the head of namespace {namespace!r} in {str(self.path)!r} to "
                    f"name a stored generation, it names {head[0]}: the head record is damaged"
                )
                raise IntegrityError(msg) from exc

    # -- maintenance ----------------------------------------------------------

    def drop(self, namespace: str) -> bool:
        """Remove a namespace entirely (head, manifests, chunks). True if it existed."""
        nsbytes = _check_namespace(namespace)

        def body(txn: Any) -> bool:
            try:
                nsid = self._nsid(txn, namespace, create=False)
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
                self._drop_data(txn, namespace, nsid)
            txn.delete(nsbytes, db=self._db("heads"))
            txn.delete(NS_PREFIX + nsbytes, db=self._db("meta"))
            # Quarantine and markers name generations of the namespace that is
            # gone: a namespace created again under that name must not inherit them.
            prefix = self._meta_prefix(b"quarantine", namespace)
            for key in [k for k, _ in _prefixed(txn, self._db("meta"), prefix)]:
                txn.delete(key, db=self._db("meta"))
            for name in self.markers(namespace):
                self._marker_file(namespace, name).unlink(missing_ok=True)
            return True

        dropped = self._env.write(body)
        self._baselines.pop(namespace, None)
        return dropped

    def _drop_data(self, txn: Any, namespace: str, nsid: bytes) -> None:
        """Delete the manifests and chunks under ``nsid``, unless another namespace claims it."""
        nsbytes = _check_namespace(namespace)
        claimed = {number for name, number in self._namespace_ids(txn) if name != nsbytes}
        if _NSID.unpack(nsid)[0] in claimed:
            log.warning(
                "namespace %r: another namespace has the same id; its manifests and chunks kept",
                namespace,
                extra={"namespace": namespace},
            )
            return
        manifests = self._db("manifests")
        for key in [key for key, _ in _prefixed(txn, manifests, nsid)]:
            txn.delete(key, db=manifests)
        self._sweep(txn, nsid, set())

    def gc(self) -> int:
        """Mark and sweep every namespace; return how many chunks were freed.

        Saves already collect as they go; this also cleans what an older
        release or an interrupted operation may have left.
        """

        def body(txn: Any) -> int:
            freed = 0
            # Every namespace id, with or without a head: an import killed
            # before its commit leaves chunks under an id that has no head.
            for name, number in list(self._namespace_ids(txn)):
                # Only named in logs and checked against manifests: any bytes do.
                namespace = _namespace_name(name)
                shown = _shown(name)
                if number is None:
                    log.warning("namespace %r: damaged id record, not collected", shown)
                    continue
                nsid = _NSID.pack(number)
                generations, malformed = self._manifest_keys(txn, nsid)
                if malformed:
                    log.warning("namespace %r: malformed manifest keys, not collected", shown)
                    continue
                marked: set[bytes] = set()
                for generation in generations:
                    try:
                        manifest = self._read_manifest(txn, nsid, generation, namespace)
                    except IntegrityError:
                        log.warning("namespace %r: damaged manifest, not collected", shown)
                        break
                    marked |= manifest.digests()
                else:
                    freed += self._sweep(txn, nsid, marked)
            return freed

        return self._env.write(body)

    def verify(self) -> VerifyReport:
        """Check every chunk digest (and MAC) and every manifest's references.

        Damaged heads, namespace ids and manifest keys are reported too.
        """
        report = VerifyReport()
        with self._env.read() as txn:
            for raw, namespace in list(self._head_keys(txn)):
                if namespace is None:
                    what = f"head key {raw!r} names no namespace: it is damaged"
                    report.problems.append(Problem(_shown(raw), None, what))
                    continue
                report.namespaces += 1
                self._verify_namespace(txn, namespace, report)
        return report

    def _verify_records(
        self, txn: Any, namespace: str, report: VerifyReport
    ) -> tuple[bytes, list[int]] | None:
        """Check the id, head and manifest keys; (id, generations) if the id is usable."""
        try:
            nsid = self._nsid(txn, namespace, create=False)
        except IntegrityError as exc:
            report.problems.append(Problem(namespace, None, f"namespace id: {exc}"))
            return None
        if nsid is None:
            report.problems.append(Problem(namespace, None, "namespace has a head but no id"))
            return None
        generations, malformed = self._manifest_keys(txn, nsid)
        report.problems.extend(
            Problem(namespace, None, f"manifest key {key.hex()} is malformed") for key in malformed
        )
        try:
            head = self._head(txn, namespace)
        except IntegrityError as exc:
            report.problems.append(Problem(namespace, None, f"head: {exc}"))
        else:
            newest = generations[0] if generations else None
            if head is not None and head[0] != newest:
                what = f"head names generation {head[0]}, the newest stored is {newest}"
                report.problems.append(Problem(namespace, head[0], what))
        return nsid, generations

    def _verify_namespace(self, txn: Any, namespace: str, report: VerifyReport) -> None:
        found = self._verify_records(txn, namespace, report)
        if found is None:
            return
        nsid, generations = found
        referenced: dict[bytes, list[int | None]] = {}  # digest -> generations using it
        for generation in generations:
            report.generations += 1
            try:
                manifest = self._read_manifest(txn, nsid, generation, namespace)
            except (IntegrityError, CheckpointNotFoundError) as exc:
                report.problems.append(Problem(namespace, generation, f"manifest: {exc}"))
                continue
            for ref_digest in manifest.digests():
                referenced.setdefault(ref_digest, []).append(generation)
                if txn.get(self._chunk_key(nsid, ref_digest), db=self._db("chunks")) is None:
                    report.problems.append(
                        Problem(
                            namespace, generation, "referenced chunk is missing", ref_digest.hex()
                        )
                    )
        for key, frame in _prefixed(txn, self._db("chunks"), nsid, values=True):
            report.chunks += 1
            try:
                self.codec.verify(frame, digest=key[4:])
            except IntegrityError as exc:
                # Name each generation the damage breaks (None for an orphan chunk).
                for user in referenced.get(key[4:]) or [None]:
                    report.problems.append(Problem(namespace, user, f"chunk: {exc}", key[4:].hex()))
            report.orphans += key[4:] not in referenced


def _check_metadata(watermark: Any, tags: Mapping[str, str] | None) -> None:
    """Refuse a watermark or tags the manifest cannot hold, before any work."""
    try:
        msgspec.msgpack.encode(watermark)
    except (TypeError, ValueError, OverflowError) as exc:
        msg = f"Expected a watermark msgpack can encode (str, int, ...), got {watermark!r}: {exc}"
        raise EncodeError(msg) from exc
    if tags is not None and not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        msg = f"Expected tags as a mapping of str to str, got {dict(tags)!r}"
        raise EncodeError(msg)


def _prefixed(
    txn: Any, db: Any, prefix: bytes, *, values: bool = False
) -> Iterator[tuple[bytes, Any]]:
    """(key, value or None) for every key of ``db`` that starts with ``prefix``."""
    with txn.cursor(db=db) as cur:
        if not cur.set_range(prefix):
            return
        for key, value in (
            cur.iternext(values=values)
            if values
            else ((k, None) for k in cur.iternext(values=False))
        ):
            raw = bytes(key)
            if not raw.startswith(prefix):
                return
            yield raw, value


def _immutable(contract: Contract[Any]) -> bool:
    # Frozen all the way down: a frozen Struct's list field can change in place.
    return deeply_immutable(contract.type)


@functools.cache
def _hostname() -> str:
    import socket  # noqa: PLC0415 - only the first save pays for it

    return socket.gethostname()


@functools.cache
def _library_version() -> str:
    # Resolved once: importlib.metadata parses the package metadata each call.
    from warmstart import __version__  # noqa: PLC0415 - avoid an import cycle

    return __version__


def _deletions(changes: ChangeSet, present: list[Any]) -> list[Any]:
    """A delta's deletions, sorted so that equal deltas encode to equal bytes.

    ``present`` are the upserted keys still in the mapping: one written then
    removed before this checkpoint is a deletion too. Keys of one contract are
    usually of one comparable type; mixed ones (tuples holding ``None``, say)
    are sorted by ``repr``.
    """
    gone = changes.deletes
    if len(present) != len(changes.upserts):
        gone = gone | (set(changes.upserts) - set(present))
    try:
        return sorted(gone)
    except TypeError:
        return sorted(gone, key=repr)
