"""Snapshots: one verified generation, read section by section on demand.

A snapshot holds an LMDB read transaction, so everything it reads comes from
one consistent generation however many saves happen meanwhile, and frames are
read zero-copy from the map. Close it (or use it as a context manager) when
done: an open read transaction keeps LMDB from reusing pages.

Reading a section gives what replaying its base chunks then its delta chunks in
order gives, computed deltas first (``FoldedChain``). Bulk
decoding pauses the garbage collector: building a million objects with it on
costs 2-3x more (docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import msgspec

from warmstart.codec import Codec
from warmstart.contract import Contract, DecodedEntries
from warmstart.delta import FoldedChain, LoggedDict
from warmstart.errors import CheckpointNotFoundError
from warmstart.manifest import ChunkRef, Manifest, SectionManifest

__all__ = ("Section", "SectionStats", "Snapshot")


def __dir__() -> tuple[str, ...]:
    return __all__


T = TypeVar("T", bound=msgspec.Struct)


class SectionStats(msgspec.Struct):
    """What reading one section did."""

    name: str
    restored: int = 0
    upgraded: int = 0
    dropped_invalid: int = 0
    reasons: list[str] = msgspec.field(default_factory=list)
    chunks: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def add(self, decoded: DecodedEntries[Any], ref: ChunkRef) -> None:
        self.upgraded += decoded.upgraded
        self.dropped_invalid += decoded.dropped
        room = 5 - len(self.reasons)
        if room > 0:
            self.reasons.extend(decoded.reasons[:room])
        self.chunks += 1
        self.bytes += ref.stored_bytes


class Section(msgspec.Struct, frozen=True, kw_only=True):
    """A replayed section: entries in saved order, expiries, and what it cost."""

    entries: dict[Any, Any]
    expires: dict[Any, float]
    stats: SectionStats


@contextlib.contextmanager
def paused_gc(*, freeze: bool = False) -> Iterator[None]:
    """Pause the cyclic collector during bulk decoding.

    With ``freeze``, objects alive at the end move to the permanent generation
    (``gc.freeze()``), so the next collection does not walk the million
    restored objects either. Only boot does that, once.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if was_enabled:
            gc.enable()


def promote_built() -> None:
    """Move every object alive to the oldest generation in O(1) (inside :func:`paused_gc`).

    What a restore built (a million values, an LRU cache's new recency list)
    would otherwise be walked by the next young collections, each reference
    a cache miss: an ``OrderedDict`` of a million keys made the next two take
    44 and 32 ms. The service's own young objects of the moment are promoted
    too; that is the restore's trade. Skipped when the process froze objects
    itself: ``unfreeze()`` would thaw them.
    """
    if not gc.get_freeze_count():
        gc.freeze()
        gc.unfreeze()


class Snapshot:
    """One verified generation of a namespace. Obtained from ``Store.load``.

    Attributes:
        namespace: the namespace read.
        generation: the generation actually used.
        manifest: its manifest (sections, contracts, writer schemas, metadata).
        fallback: why newer generations were skipped (empty when the head was used).
    """

    def __init__(
        self,
        *,
        manifest: Manifest,
        txn: Any,
        frame_of: Callable[[Any, ChunkRef], memoryview],
        codec: Codec,
        fallback: tuple[str, ...] = (),
    ) -> None:
        self.manifest = manifest
        self._names = tuple(s.name for s in manifest.sections)
        self.namespace = manifest.namespace
        self.generation = manifest.generation
        self.fallback = fallback
        self._txn = txn
        self._frame_of = frame_of
        self._codec = codec

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Snapshot(namespace={self.namespace!r}, generation={self.generation}, "
            f"sections={list(self.sections)})"
        )

    def close(self) -> None:
        """End the read transaction; sections can no longer be read."""
        if self._txn is not None:
            self._txn.abort()
            self._txn = None

    @property
    def sections(self) -> tuple[str, ...]:
        """Names of the sections this generation holds."""
        return self._names

    def has_section(self, name: str) -> bool:
        """Whether this generation holds section ``name`` (O(1))."""
        return self.manifest.section(name) is not None

    @property
    def watermark(self) -> Any:
        """The source-of-truth position recorded at save (or None)."""
        return self.manifest.watermark

    def age(self, now: float | None = None) -> float:
        """Seconds since this generation was saved."""
        return (time.time() if now is None else now) - self.manifest.created_at

    def section_manifest(self, name: str) -> SectionManifest:
        """The manifest entry of section ``name``.

        Raises:
            CheckpointNotFoundError: no such section in this generation.
        """
        found = self.manifest.section(name)
        if found is None:
            msg = (
                f"Expected section {name!r} in namespace {self.namespace!r} generation "
                f"{self.generation}, found {list(self.sections)}"
            )
            raise CheckpointNotFoundError(msg)
        return found

    def chunks(
        self, name: str, contract: Contract[T], *, refs: tuple[ChunkRef, ...] | None = None
    ) -> Iterator[tuple[ChunkRef, DecodedEntries[T]]]:
        """Decode a section chunk by chunk, in replay order (streaming)."""
        if self._txn is None:
            msg = f"Expected an open snapshot, generation {self.generation} was closed"
            raise CheckpointNotFoundError(msg)
        section = self.section_manifest(name)
        contract.plan(section.schema)  # fail fast, before any chunk is read
        for ref in section.chunks if refs is None else refs:
            payload = self._codec.decode(self._frame_of(self._txn, ref))
            where = f"chunk {ref.digest.hex()} of section {name!r}"
            # Held to the manifest's entry count and to the decode bound (issue 17).
            yield (
                ref,
                contract.decode_entries(payload, section.schema, entries=ref.entries, where=where),
            )

    def read(
        self,
        name: str,
        contract: Contract[T],
        *,
        freeze_gc: bool = False,
        into: dict[Any, Any] | None = None,
    ) -> Section:
        """Replay section ``name`` (base, then deltas) into an ordered dict.

        ``into`` is an empty dict to fill instead of a new one (a restore fills
        the container's own dict and skips a copy of a million entries).

        Raises:
            CheckpointNotFoundError: no such section.
            IncompatibleVersionError: the stored version cannot be read by ``contract``.
            IntegrityError: a chunk is damaged.
        """
        started = time.perf_counter()
        stats = SectionStats(name)
        entries: dict[Any, T] = {} if into is None else into
        # A LoggedDict is filled through dict's own update: restored entries
        # are in the generation already, not changes to log.
        update: Any = dict.update if isinstance(entries, LoggedDict) else type(entries).update
        expires: dict[Any, float] = {}
        section = self.section_manifest(name)
        chain = FoldedChain()
        with paused_gc(freeze=freeze_gc):
            # The deltas first, folded to their net effect, so that the base
            # chunks shed their superseded entries one by one (FoldedChain).
            for ref, decoded in self.chunks(name, contract, refs=section.deltas):
                stats.add(decoded, ref)
                chain.add(decoded.keys, decoded.values, decoded.deleted, decoded.expires)
            for ref, decoded in self.chunks(name, contract, refs=section.base):
                stats.add(decoded, ref)
                # Merging a dict grows ``entries`` once per chunk and reuses
                # the hashes: ~10% faster than inserting pairs one by one.
                chunk = dict(zip(decoded.keys, decoded.values))
                chain.drop_superseded(chunk)
                update(entries, chunk)
                if decoded.expires:
                    expires.update(zip(decoded.keys, decoded.expires))
            chain.release()
            update(entries, chain.upserts)
            expires.update(chain.expires)
            if not freeze_gc:
                # Before the collector resumes: otherwise its first young
                # collection walks every restored object (~15% of a restore).
                promote_built()
        if expires and len(expires) != len(entries):
            expires = {k: expires[k] for k in entries if k in expires}
        stats.restored = len(entries)
        stats.seconds = time.perf_counter() - started
        return Section(entries=entries, expires=expires, stats=stats)

    def section(self, name: str, contract: Contract[T]) -> dict[Any, T]:
        """Return section ``name`` as an ordered dict of its entries.

        >>> # see Store.load for a complete example
        """
        return self.read(name, contract).entries
