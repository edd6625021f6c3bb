"""Preparing a save: each section as a full base or a delta, encoded before the commit.

Private to the store wing; used by ``Store.save``. Encoding is the slow part of a save, so it runs
outside the write transaction, which then only puts bytes. A section is a
delta when this process holds a baseline for the namespace (the generation it
last committed or loaded, with its manifest) that the section can extend: a
tracked mapping's change log still points at it, or, for an untracked mapping
saved with ``mode="delta"``, fingerprints of that generation's entries say
what changed. Otherwise, or when the compaction policy asks for it, the
section is a fresh base. Changes taken from a change log are given back
whenever the save does not commit, so none is lost.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import msgspec

from warmstart._pacing import drop, gather, long_lived, pace, parts, sorted_in_steps
from warmstart._sliced import listed, read_all, read_keys
from warmstart.codec import Codec
from warmstart.contract import Contract
from warmstart.delta import (
    ChangeLog,
    ChangeSet,
    CompactionPolicy,
    Fingerprints,
    change_log,
    deeply_immutable,
    watch_reads,
)
from warmstart.errors import EncodeError
from warmstart.manifest import ChunkRef, Manifest, SectionManifest
from warmstart.store._chunks import encode_chunks

__all__ = ()

log = logging.getLogger("warmstart.store")

#: Held while a section's mapping is read: the service's lock, or a no-op.
Guard = contextlib.AbstractContextManager[Any]
SaveMode = Literal["auto", "delta", "full"]
#: A section: (contract, mapping), or (contract, mapping, lock) when other
#: threads write the mapping under that lock.
SectionSpec = tuple[Contract[Any], Any] | tuple[Contract[Any], Any, Guard | None]
Sections = Mapping[str, Any]  # section name -> SectionSpec, checked at run time


class Baseline(msgspec.Struct):
    """What this process last committed or loaded for a namespace (for deltas)."""

    generation: int
    lineage: str
    manifest: Manifest
    prints: dict[str, Fingerprints] = msgspec.field(default_factory=dict)


class StaleBaseError(Exception):
    """Another writer moved the head since the delta was computed."""


class Prepared(msgspec.Struct):
    """A section encoded outside the write transaction, ready to commit."""

    name: str
    contract: Contract[Any]
    mapping: Mapping[Any, Any]
    frames: list[tuple[ChunkRef, bytes]]
    section: SectionManifest
    delta: bool
    changes: ChangeSet | None = None
    #: The entries encoded (all of them for a base, the upserts for a delta).
    keys: Sequence[Any] = msgspec.field(default_factory=list)
    values: Sequence[Any] = msgspec.field(default_factory=list)
    #: For a delta: the (generation, lineage) it was computed against.
    base: tuple[int, str] | None = None
    #: Fingerprint the entries once committed (the next save diffs against them).
    keep: bool = False
    #: CPU seconds this thread spent preparing the section (read, diff, encode).
    cpu: float = 0.0


def check_metadata(watermark: Any, tags: Mapping[str, str] | None, mode: str) -> None:
    """Refuse a mode, a watermark or tags the manifest cannot hold, before any work."""
    if mode not in ("auto", "delta", "full"):
        msg = f"Expected mode 'auto', 'delta' or 'full', got {mode!r}"
        raise ValueError(msg)
    try:
        msgspec.msgpack.encode(watermark)
    except (TypeError, ValueError, OverflowError) as exc:
        msg = f"Expected a watermark msgpack can encode (str, int, ...), got {watermark!r}: {exc}"
        raise EncodeError(msg) from exc
    if tags is not None and not (
        isinstance(tags, Mapping)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items())
    ):
        msg = f"Expected tags as a mapping of str to str, got {tags!r}"
        raise EncodeError(msg)


def release(prepared: list[Prepared]) -> None:
    """After a save: free the entries the sections kept, a slice at a time."""
    while prepared:
        item = prepared.pop()
        keys, values, item.keys, item.values = item.keys, item.values, [], []
        del item
        drop(keys)
        drop(values)


def put_back(prepared: Iterable[Prepared]) -> None:
    """Give the changes taken from change logs back: the save did not commit."""
    for item in prepared:
        changes_log = change_log(item.mapping)
        if changes_log is not None and item.changes is not None:
            changes_log.restore(item.changes)


class Encoding(msgspec.Struct, frozen=True):
    """How a store encodes sections: its codec, compaction policy and baselines."""

    codec: Codec
    compaction: CompactionPolicy
    baselines: Baselines


def prepare(
    how: Encoding,
    namespace: str,
    sections: Sections,
    mode: SaveMode,
    *,
    full: bool = False,
    failed: dict[str, str] | None = None,
) -> list[Prepared]:
    """Encode every section, as a delta where ``mode`` allows it (``full``: never).

    With ``failed``, a section that cannot be read or encoded is left out and
    its error recorded there (by section name); without, the first one raises.
    """
    baseline = how.baselines.get(namespace)
    checked: object = sections  # typed as a Mapping, but user input
    if not isinstance(checked, Mapping):
        msg = f"Expected sections as a mapping of name -> (Contract, mapping), got {checked!r}"
        raise TypeError(msg)
    out: list[Prepared] = []
    try:
        for name, spec in sections.items():
            try:
                out.append(_prepare_one(how, namespace, name, spec, mode, full, baseline))
            except Exception as exc:
                if failed is None:
                    raise
                # One bad section must not cost the others (issue 14).
                failed[name] = f"{type(exc).__name__}: {exc}"
    except BaseException:
        # Sections already prepared took their change logs: give them back.
        put_back(out)
        raise
    return out


def _prepare_one(
    how: Encoding,
    namespace: str,
    name: str,
    spec: Any,
    mode: SaveMode,
    full: bool,
    baseline: Baseline | None,
) -> Prepared:
    started = time.thread_time()
    contract, mapping, lock = _section_spec(name, spec)
    # Values that can change in place: reads of a tracked mapping count as writes.
    watch_reads(mapping, not _immutable(contract))
    base = None if full else baseline
    item = _prepare_delta(how, name, contract, mapping, lock, base, mode, namespace)
    if item is None:
        # A base keeps its entries, to be fingerprinted, when deltas
        # will be diffed from it and diffing is the cheaper way.
        keep = (
            change_log(mapping) is None
            and (mode == "delta" or (baseline is not None and name in baseline.prints))
            and how.baselines.diffable(namespace, name)
        )
        item = _prepare_full(how.codec, name, contract, mapping, lock, keep)
    item.cpu = time.thread_time() - started
    return item


def is_lock(candidate: object) -> bool:
    """Whether ``candidate`` can guard a read: a context manager, as a lock is."""
    return hasattr(candidate, "__enter__") and hasattr(candidate, "__exit__")


def _section_spec(name: str, spec: Any) -> tuple[Contract[Any], Any, Guard | None]:
    """A section's ``(contract, mapping)`` or ``(contract, mapping, lock)``, checked."""
    parts = tuple(spec) if isinstance(spec, (tuple, list)) else ()
    lock = parts[2] if len(parts) == 3 else None
    if len(parts) not in (2, 3) or not isinstance(parts[0], Contract):
        got = type(parts[0]).__name__ if parts else type(spec).__name__
        msg = f"Expected (Contract, mapping[, lock]) for section {name!r}, got {got}"
        raise TypeError(msg)
    if not isinstance(name, str) or not name:
        msg = f"Expected a non-empty str section name, got {name!r}"
        raise TypeError(msg)
    if not isinstance(parts[1], Mapping):
        msg = f"Expected a mapping for section {name!r}, got {type(parts[1]).__name__}"
        raise TypeError(msg)
    if lock is not None and not is_lock(lock):
        msg = f"Expected a lock (a context manager) for section {name!r}, got {type(lock).__name__}"
        raise TypeError(msg)
    return parts[0], parts[1], lock


def _prepare_full(
    codec: Codec,
    name: str,
    contract: Contract[Any],
    mapping: Mapping[Any, Any],
    lock: Guard | None,
    keep: bool,
) -> Prepared:
    """A section as a fresh base; ``keep``: keep its entries, to fingerprint them."""
    # Read a slice at a time, each under the service's lock (never while
    # encoding); a tracked mapping's change log is taken at the moment read.
    # Kept to be fingerprinted: in the order the next diff reads in.
    taken, (keys, values, expires) = read_all(mapping, lock, stable_order=keep)
    changes = None
    if taken is not None:
        changes = ChangeSet(upserts=taken[0], deletes=taken[1], full=taken[2])
    try:
        frames = encode_chunks(contract, codec, keys, values, expires=expires)
    except BaseException:
        changes_log = change_log(mapping)
        if changes_log is not None and changes is not None:
            changes_log.restore(changes)
        raise
    section = SectionManifest(
        name=name,
        schema=contract.write_schema,
        base=tuple(ref for ref, _ in frames),
        entries=sum(ref.entries for ref, _ in frames),
    )
    if not keep:
        # A million references freed in one go is one long step: a slice at a time.
        drop(keys)
        drop(values)
        keys, values = [], []
    return Prepared(
        name, contract, mapping, frames, section, False, changes, keys, values, keep=keep
    )


def _prepare_delta(
    how: Encoding,
    name: str,
    contract: Contract[Any],
    mapping: Mapping[Any, Any],
    lock: Guard | None,
    baseline: Baseline | None,
    mode: SaveMode,
    namespace: str,
) -> Prepared | None:
    if mode == "full" or baseline is None:
        return None
    previous = baseline.manifest.section(name)
    if previous is None or previous.schema != contract.write_schema:
        return None
    chain = len({c.sequence for c in previous.deltas})
    delta_bytes = sum(c.stored_bytes for c in previous.deltas)
    if how.compaction.wants_base(chain, delta_bytes, previous.base_bytes):
        return None
    changes_log = change_log(mapping)
    if changes_log is not None:
        token = (how.baselines.token, namespace, name, baseline.generation, baseline.lineage)
        read = _take_tracked(changes_log, mapping, lock) if changes_log.baseline == token else None
    else:
        prints = baseline.prints.get(name)
        if prints is None or not how.baselines.diffable(namespace, name):
            return None
        read = _diff_untracked(prints, contract, mapping, lock)
    if read is None:
        return None
    changes, (keys, values, expires) = read
    sequence = baseline.generation + 1
    try:
        deleted = _deletions(changes, keys)
        frames = encode_chunks(
            contract,
            how.codec,
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
    base = (baseline.generation, baseline.lineage)
    return Prepared(name, contract, mapping, frames, section, True, changes, keys, values, base)


Entries = tuple[Sequence[Any], Sequence[Any], Sequence[float]]


def _take_tracked(
    changes_log: ChangeLog, mapping: Mapping[Any, Any], lock: Guard | None
) -> tuple[ChangeSet, Entries] | None:
    """A tracked mapping's changes and the upserted entries (None: it needs a base)."""
    raw = None
    try:
        with lock if lock is not None else contextlib.nullcontext():
            raw = changes_log.take_raw()
    except BaseException:
        # The service's lock failed on release: keep the changes taken.
        if raw is not None:
            changes_log.restore(ChangeSet(upserts=list(raw[0]), deletes=raw[1], full=raw[2]))
        raise
    dirty, deletes, cleared = raw
    if cleared:
        # No baseline to build on: the save writes a base (which takes the log again).
        changes_log.restore(ChangeSet(upserts=[], deletes=deletes, full=True))
        return None
    changes = ChangeSet(upserts=listed(dirty), deletes=deletes)
    try:
        # A slice at a time under the service's lock: each value is one its
        # key held during the read; a key written meanwhile is in the next
        # change log too, so the next delta repairs what this one raced with.
        read = read_keys(mapping, changes.upserts, lock)
    except BaseException:
        changes_log.restore(changes)  # the read failed: keep the changes
        raise
    return changes, read


def _diff_untracked(
    prints: Fingerprints,
    contract: Contract[Any],
    mapping: Mapping[Any, Any],
    lock: Guard | None,
) -> tuple[ChangeSet, Entries]:
    """An untracked mapping's changes against its prints, and the upserted entries."""
    _, (all_keys, all_values, all_expires) = read_all(mapping, lock, stable_order=True)
    changes = prints.diff(all_keys, all_values, contract.encode_value)
    # The upserts' values come from the read the diff compared: one read.
    at = prints.positions(changes)
    values = _picked(all_values, at)
    expires = _picked(all_expires, at) if all_expires else ()
    # The read's lists, unless the prints keep them: freed a slice at a time.
    del all_keys
    drop(all_values)
    drop(all_expires)
    return changes, (changes.upserts, values, expires)


def _picked(items: Sequence[Any], at: Sequence[int]) -> Sequence[Any]:
    out = long_lived(len(at))
    for part in parts(at, 1024):  # scattered positions: a cache miss each
        out.extend(gather(items, part))
        pace()
    return out


class SectionCost(msgspec.Struct):
    """CPU seconds (of the saving thread: what the service's threads wait for) per way of saving."""

    full: float | None = None  # a full save: read and encode
    diff: float | None = None  # a diff against fingerprints, the delta encoded
    prints: float | None = None  # fingerprinting every entry after a base
    diffs: int = 0  # diffs measured


#: CPU seconds under which a section's diff is never traded for a full save.
CHEAP = 0.005
#: How much dearer than a full save a diff must measure to be traded for one.
MARGIN = 1.1


def _averaged(old: float | None, new: float) -> float:
    return new if old is None else (old + new) / 2


class Baselines:
    """What this process last committed or loaded, per namespace of one store.

    A delta is computed against the baseline: the generation it extends, and
    for untracked mappings the fingerprints of that generation's entries.
    ``token`` names the store (its real path): a tracked mapping's change log
    is bound to one store, namespace, section and generation.
    """

    def __init__(self, token: str) -> None:
        self.token = token
        self._by_namespace: dict[str, Baseline] = {}
        self._costs: dict[tuple[str, str], SectionCost] = {}

    def diffable(self, namespace: str, section: str) -> bool:
        """Whether diffing ``section`` against fingerprints costs less than a full save.

        Decided by what was measured: once a diff (or merely fingerprinting
        every entry, which any diff must do) took more CPU than a full save
        of the same section, the section is saved in full, without
        fingerprints, from then on. A diff is judged on the average of two at
        least, and must cost ``MARGIN`` times a full save: one measurement
        on a loaded machine is noise (a diff of frozen records costs about
        half a full save, one of mutable records 1.4 times). Below ``CHEAP``
        seconds either way is cheap, and the diff is kept: its delta writes
        far fewer bytes.
        """
        cost = self._costs.get((namespace, section))
        if cost is None or cost.full is None:
            return True
        bound = max(MARGIN * cost.full, CHEAP)
        if cost.prints is not None and cost.prints > bound:
            return False  # every diff fingerprints every entry: it cannot be cheaper
        return cost.diffs < 2 or cost.diff is None or cost.diff <= bound

    def _measured(self, namespace: str, item: Prepared, prints_cpu: float | None) -> None:
        cost = self._costs.setdefault((namespace, item.name), SectionCost())
        was = self.diffable(namespace, item.name)
        if item.delta:
            cost.diff = _averaged(cost.diff, item.cpu + (prints_cpu or 0.0))
            cost.diffs += 1
        else:
            cost.full = _averaged(cost.full, item.cpu)
            if prints_cpu is not None:
                cost.prints = _averaged(cost.prints, prints_cpu)
        if was and not self.diffable(namespace, item.name):
            log.info(
                "section %r of %r: a diff costs more than a full save (%.0f vs %.0f ms of "
                "CPU); saved in full from now on",
                item.name,
                namespace,
                1000 * max(cost.diff or 0.0, cost.prints or 0.0),
                1000 * (cost.full or 0.0),
                extra={"namespace": namespace, "section": item.name},
            )

    def get(self, namespace: str) -> Baseline | None:
        """The namespace's baseline, if this process has one."""
        return self._by_namespace.get(namespace)

    def forget(self, namespace: str) -> None:
        """The head moved under this process (an import, a pull, a drop)."""
        self._by_namespace.pop(namespace, None)

    def committed(self, namespace: str, manifest: Manifest, prepared: list[Prepared]) -> None:
        """After a commit: remember the baseline for the next delta."""
        baseline = Baseline(manifest.generation, manifest.lineage, manifest)
        previous = self._by_namespace.get(namespace)
        for item in prepared:
            changes_log = change_log(item.mapping)
            if changes_log is not None:
                changes_log.baseline = (
                    self.token,
                    namespace,
                    item.name,
                    manifest.generation,
                    manifest.lineage,
                )
                continue
            prints = previous.prints.get(item.name) if previous else None
            encode = item.contract.encode_value
            started = time.thread_time()
            fingerprinted = False
            if item.delta and prints is not None and item.changes is not None:
                prints.update(item.keys, item.values, item.changes, encode)
            elif item.keep and len(item.keys) == item.section.entries:
                immutable = _immutable(item.contract)
                prints = Fingerprints.of(item.keys, item.values, encode, by_identity=immutable)
                fingerprinted = True
            else:
                prints = None
            cpu = time.thread_time() - started
            self._measured(namespace, item, cpu if (fingerprinted or item.delta) else None)
            if prints is not None and self.diffable(namespace, item.name):
                baseline.prints[item.name] = prints
            elif prints is not None and (
                previous is None or previous.prints.get(item.name) is not prints
            ):
                prints.release()  # made, then found not worth keeping
        if previous is not None:
            # Prints this baseline does not carry over: freed a slice at a time.
            for name, prints in previous.prints.items():
                if baseline.prints.get(name) is not prints:
                    prints.release()
        self._by_namespace[namespace] = baseline

    def loaded(self, namespace: str, manifest: Manifest) -> None:
        """After a load of the head generation: it is the baseline for the next delta."""
        known = self._by_namespace.get(namespace)
        # Fingerprints of this very generation stay valid: keep them.
        head = (manifest.generation, manifest.lineage)
        same = known if known and (known.generation, known.lineage) == head else None
        self._by_namespace[namespace] = Baseline(
            manifest.generation, manifest.lineage, manifest, same.prints if same else {}
        )

    def mark(
        self, namespace: str, section: str, mapping: Mapping[Any, Any], generation: int
    ) -> None:
        """Bind a tracked ``mapping``, just restored from ``generation``, to the baseline."""
        changes_log = change_log(mapping)
        baseline = self._by_namespace.get(namespace)
        if changes_log is not None and baseline is not None and baseline.generation == generation:
            changes_log.take()
            changes_log.baseline = (self.token, namespace, section, generation, baseline.lineage)


def _immutable(contract: Contract[Any]) -> bool:
    # Frozen all the way down: a frozen Struct's list field can change in place.
    return deeply_immutable(contract.type)


def _deletions(changes: ChangeSet, present: Sequence[Any]) -> list[Any]:
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
        return sorted_in_steps(gone)
    except TypeError:
        return sorted_in_steps(gone, key=repr)
