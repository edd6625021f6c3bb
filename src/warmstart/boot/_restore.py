"""Restoring one section into one container: eager, or hot part first.

Private; used by ``_sections``. The hot part of a section is its delta
chunks (the entries written most recently) and its last base chunk (the most
recent of the saved order). A progressive restore inserts the hot part before the
service goes on, and the rest in a background thread, coldest first, never
overwriting a key the live service has written meanwhile and never evicting;
an LRU container's hot keys are touched again at the end so that they stay
the most recent.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

from warmstart._containers import bulk_target, dict_behind, finish_bulk, restore_into
from warmstart._hits import counter_of
from warmstart.contract import Contract
from warmstart.delta import FoldedChain, LoggedDict, TrackedDict, change_log
from warmstart.manifest import ChunkRef
from warmstart.metrics import SectionReport
from warmstart.store import SectionStats, Snapshot, paused_gc, promote_built

__all__ = ()

_DELETED = object()


class SectionRestore:
    """The restore of one section into one container, in one or two phases."""

    def __init__(
        self,
        snapshot: Snapshot,
        name: str,
        contract: Contract[Any],
        container: Any,
        report: SectionReport,
        *,
        lock: Any = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.snapshot = snapshot
        self.name = name
        self.contract = contract
        self.container = container
        self.report = report
        self.lock = lock
        self.now = now
        manifest = snapshot.section_manifest(name)
        self.base = manifest.base
        self.deltas = manifest.deltas
        report.saved = manifest.entries
        self.hot_keys: list[Any] = []
        self._chain = FoldedChain()

    def _decode(
        self, refs: tuple[ChunkRef, ...]
    ) -> Iterator[tuple[list[Any], list[Any], list[float], list[Any]]]:
        for ref, decoded in self.snapshot.chunks(self.name, self.contract, refs=refs):
            stats = SectionStats(self.name)
            stats.add(decoded, ref)
            self._count(stats)
            yield decoded.keys, decoded.values, decoded.expires, decoded.deleted

    def _count(self, stats: SectionStats) -> None:
        """Add what reading chunks did to the report (at most five error reasons)."""
        report = self.report
        report.upgraded += stats.upgraded
        report.dropped_invalid += stats.dropped_invalid
        report.errors.extend(stats.reasons[: max(0, 5 - len(report.errors))])
        report.bytes += stats.bytes

    def _insert(
        self, keys: list[Any], values: list[Any], expires: list[float], *, overwrite: bool
    ) -> None:
        target = self.container
        guard = self.lock
        # The background phase must not bring back what the service removed
        # since the restore began (tracked mappings record it).
        log = None if overwrite else change_log(target)
        if not overwrite and isinstance(target, (TrackedDict, LoggedDict)):
            # The background phase fills the dict behind the log: its
            # setdefault is atomic (a live write is never overwritten), and the
            # entries, already in the generation, are not logged as changes.
            target = getattr(target, "_data", target)
            guard = self._background_guard()
        counter = counter_of(self.container)
        # Under the container's lock no live write interleaves: what is
        # written now is the restore's, not the service's.
        with (
            guard if guard is not None else contextlib.nullcontext(),
            counter.restoring() if counter is not None else contextlib.nullcontext(),
        ):
            if log is not None:
                keys, values, expires = _kept(log.restorable(keys), keys, values, expires)
                # A tracked cache's writes now are the restore's: entries the
                # generation holds, not changes for the next delta (without
                # this, the first checkpoint after a warm boot was a delta of
                # nearly every entry).
                log.muted = True
            try:
                stats = restore_into(
                    target, keys, values, expires, overwrite=overwrite, now=self.now()
                )
            finally:
                if log is not None:
                    log.muted = False
        if log is not None:
            log.restored(keys)  # the next base saves them: they are in the index
        self.report.restored += stats.inserted
        self.report.dropped_expired += stats.skipped_expired
        self.report.skipped_capacity += stats.skipped_capacity
        self.report.skipped_live += stats.skipped_live

    def eager(self) -> None:
        """Restore everything now (the container is not shared yet)."""
        started = time.perf_counter()
        target = bulk_target(self.container, self.report.saved)
        try:
            section = self.snapshot.read(self.name, self.contract, into=target)
        except BaseException:
            if target is not None:
                # Half a section in the container's own dict, its bookkeeping
                # not rebuilt: empty it again, the section starts cold.
                target.clear()
            raise
        self._count(section.stats)
        entries = section.entries
        if target is not None:
            finish_bulk(self.container)
            # An LRU or FIFO cache's recency list is new: promoted with the
            # entries (the boot runs eager restores with the collector paused).
            promote_built()
            self.report.restored += len(entries)
        else:
            expires = [section.expires[k] for k in entries] if section.expires else []
            with paused_gc():
                self._insert(list(entries), list(entries.values()), expires, overwrite=True)
        self.report.seconds += time.perf_counter() - started

    def hot(self) -> None:
        """Phase one: the deltas and the last base chunk."""
        started = time.perf_counter()
        chain = self._chain
        for keys, values, expires, deleted in self._decode(self.deltas):
            chain.add(keys, values, deleted, expires)
        hot_keys: list[Any] = []
        hot_values: list[Any] = []
        hot_expires: list[float] = []
        if self.base:
            for keys, values, expires, _ in self._decode(self.base[-1:]):
                hot_keys, hot_values, hot_expires = self._untouched(keys, values, expires)
        if hot_expires or chain.expires:
            # A timed section: every entry carries an expiry (never, if none was saved).
            never = float("inf")
            hot_expires.extend(itertools.repeat(never, len(hot_keys) - len(hot_expires)))
            hot_expires.extend(map(chain.expires.get, chain.upserts, itertools.repeat(never)))
        hot_keys.extend(chain.upserts)
        hot_values.extend(chain.upserts.values())
        self.hot_keys = hot_keys
        self._insert(hot_keys, hot_values, hot_expires, overwrite=True)
        self.report.seconds += time.perf_counter() - started

    def _untouched(
        self, keys: list[Any], values: list[Any], expires: list[float]
    ) -> tuple[list[Any], list[Any], list[float]]:
        """A base chunk's entries the delta chain did not supersede."""
        return _kept(self._chain.keep_mask(keys), keys, values, expires)

    def cold(self, should_stop: Callable[[], bool] = lambda: False) -> bool:
        """Phase two (background): the older base chunks, coldest first.

        Returns False when ``should_stop`` cut it short.
        """
        started = time.perf_counter()
        completed = True
        for keys, values, expires, _ in self._decode(self.base[:-1]):
            if should_stop():
                completed = False
                break
            self._insert(*self._untouched(keys, values, expires), overwrite=False)
        self._retouch_hot()
        self.report.seconds += time.perf_counter() - started
        return completed

    def _retouch_hot(self) -> None:
        """Colder entries were inserted after the hot ones: make the hot ones recent again."""
        container = self.container
        order = getattr(container, "_LRUCache__order", None)
        move = getattr(container, "move_to_end", None) if order is None else order.move_to_end
        if move is None:
            data = dict_behind(container)
            if data is None:
                return
            move = functools.partial(_move_to_end, data)
        log = change_log(container)
        guard = self._background_guard()
        with guard if guard is not None else contextlib.nullcontext():
            keep = log.restorable(self.hot_keys) if log is not None else None
            moved = list(itertools.compress(self.hot_keys, keep or itertools.repeat(True)))
            for key in moved:
                with contextlib.suppress(KeyError):
                    move(key)
        if log is not None:
            log.moved_last(moved)  # last in the order the next base saves, as here

    def _background_guard(self) -> Any:
        """The lock a background write into the container holds (None: none needed).

        A TrackedDict's removals take its change log's lock while a restore
        runs, so the background phase writes under it too: a key it pops and
        puts back to move it (``_move_to_end``) is never removed in between.
        """
        if self.lock is not None:
            return self.lock
        log = change_log(self.container)
        logged = isinstance(self.container, (TrackedDict, LoggedDict))
        return log.lock if log is not None and logged else None

    @property
    def cold_entries(self) -> int:
        """Entries the background phase has to read."""
        return sum(ref.entries for ref in self.base[:-1])


def _kept(
    keep: list[bool] | None, keys: list[Any], values: list[Any], expires: list[float]
) -> tuple[list[Any], list[Any], list[float]]:
    """The entries ``keep`` selects (None: all of them)."""
    if keep is None:
        return keys, values, expires
    return (
        list(itertools.compress(keys, keep)),
        list(itertools.compress(values, keep)),
        list(itertools.compress(expires, keep)) if expires else expires,
    )


def _move_to_end(data: dict[Any, Any], key: Any) -> None:
    """Move ``key`` to the end of a plain dict without losing a concurrent write.

    pop then setdefault: if the live service writes the key in between, its
    value wins (a reader in that instant sees a miss, as for any cache).
    """
    # dict's own methods: on a LoggedDict, the restore's moves are not changes.
    value = dict.pop(data, key, _DELETED)
    if value is not _DELETED:
        dict.setdefault(data, key, value)
