"""Warm attributes as store sections, by kind: what a checkpoint saves, how a restore fills them.

Private; used by ``boot``. Each warm attribute of an attached object is one
section, saved in one of three shapes and restored the matching way:

- a container: its entries; restored eagerly, or its hot part first and the
  rest in the background when the container is thread-safe (``_restore``);
- a single value (a Struct, a dataclass, any value of the contract's type
  that is not a mapping): one entry, under the key type's empty value; set
  back on the object;
- a key-only container (``state(keys_only=True)``): its keys, most recent
  last, each with an empty value; handed hottest first to the service's
  ``prefetch`` (``_reload``).

When ``validate`` found the checkpoint stale, no value is restored: the hot
keys of each container go to ``refresh`` instead.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec

from warmstart._containers import dict_of, entries_of
from warmstart._hits import counter_of
from warmstart._sliced import keys_of
from warmstart.boot._attachments import Attached
from warmstart.boot._reload import KeyReloader
from warmstart.boot._restore import SectionRestore
from warmstart.boot._warm import State
from warmstart.contract import Contract
from warmstart.delta import (
    LoggedDict,
    TrackedDict,
    change_log,
    deeply_immutable,
    watch_reads,
)
from warmstart.metrics import BootReport, Metrics, SectionReport, warn_cold_start
from warmstart.store import SectionSpec, Snapshot, Store, paused_gc

__all__ = ()

log = logging.getLogger("warmstart.boot")


class _HotKey(msgspec.Struct, frozen=True):
    """The value stored for every key of a key-only section."""


_HOT = _HotKey()
_KEY_CONTRACTS: dict[Any, Contract[Any]] = {}


def _keys_contract(key_type: Any) -> Contract[Any]:
    contract = _KEY_CONTRACTS.get(key_type)
    if contract is None:
        contract = Contract("warmstart.hot-keys", _HotKey, key=key_type)
        _KEY_CONTRACTS[key_type] = contract
    return contract


_SINGLE_KEYS: dict[Any, Any] = {str: "", int: 0, bytes: b""}


def is_single(value: object, contract: Contract[Any] | None) -> bool:
    """Whether a warm attribute holds one value of its contract, not a container of entries."""
    if isinstance(value, msgspec.Struct):
        return True
    return (
        contract is not None
        and type(value) in contract.family.exact
        and not isinstance(value, Mapping)
    )


def sections_of(attached: Iterable[Attached]) -> dict[str, SectionSpec]:
    """What a checkpoint saves: each section's contract and entries."""
    sections: dict[str, SectionSpec] = {}
    for item in attached:
        obj = item.obj
        for attr, section in item.sections.items():
            st = item.spec.states[attr]
            value: Any = getattr(obj, attr, None)
            # The service's lock for this container, held while a save reads it.
            lock = getattr(obj, st.lock) if st.lock is not None else None
            if st.keys_only:
                keys = keys_of(value, lock)  # a slice at a time, each under the lock
                if st.max_keys is not None:
                    keys = keys[-st.max_keys :]
                key_type = st.contract.key if st.contract is not None else str
                sections[section] = (_keys_contract(key_type), dict.fromkeys(keys, _HOT))
            elif is_single(value, st.contract):
                assert st.contract is not None
                sections[section] = (
                    st.contract,
                    {_SINGLE_KEYS.get(st.contract.key, ""): value},
                )
            elif value is not None:
                assert st.contract is not None
                sections[section] = (st.contract, value, lock)
    return sections


class AttributeRestore:
    """Restores warm attributes from a boot's generation, each the way its kind was saved.

    Work that does not have to happen before the service goes on (the cold
    part of a progressive restore, prefetch, refresh) is handed to ``enqueue``.
    """

    def __init__(
        self,
        snapshot: Snapshot | None,
        *,
        store: Store | None,
        namespace: str,
        strict: bool,
        stale: bool,
        progressive: bool,
        freeze_gc: bool,
        clock: Callable[[], float],
        refresh: Callable[[str, list[Any]], Any] | None,
        reloader: KeyReloader,
        report: BootReport,
        metrics: Metrics,
        enqueue: Callable[..., None],
        stopped: Callable[[], bool],
    ) -> None:
        self.snapshot = snapshot
        self.store = store
        self.namespace = namespace
        self.strict = strict
        self.stale = stale  # validate() refused the checkpoint; refresh() reloads keys
        self.progressive = progressive
        self.freeze_gc = freeze_gc
        self.clock = clock
        self.refresh = refresh
        self.reloader = reloader
        self.report = report  # the boot's
        self.metrics = metrics
        self.enqueue = enqueue
        self.stopped = stopped  # the boot is shutting down

    def attribute(self, obj: object, st: State, attr: str, section: str) -> None:
        """Restore ``obj.<attr>`` from ``section``; a failure starts it cold (``strict``: raises).

        Called by ``Boot.attach`` itself: the warning's ``stacklevel`` counts on it.
        """
        report = SectionReport(section)
        self.report.sections[section] = report
        snapshot = self.snapshot
        if snapshot is None:
            report.reason = self.report.reason or "no checkpoint"
        elif not snapshot.has_section(section):
            report.reason = f"not in generation {snapshot.generation}"
        else:
            try:
                self._restore_from(snapshot, obj, st, attr, section, report)
            except Exception as exc:
                if self.strict:
                    raise
                report.status = "cold"
                report.reason = str(exc)
                if self.report.status == "warm":
                    self.report.status = "partial"
                warn_cold_start(f"warmstart section {section!r}: cold start, {exc}", stacklevel=5)
        if report.status != "warming":
            self.metrics.record_section(report)

    def _restore_from(
        self,
        snapshot: Snapshot,
        obj: object,
        st: State,
        attr: str,
        section: str,
        report: SectionReport,
    ) -> None:
        value = getattr(obj, attr, None)
        if st.keys_only:
            # Hot keys are not stale: their values come from prefetch anyway.
            self._restore_keys(obj, snapshot, st, section, value, report)
        elif self.stale:
            self._refresh_keys(obj, snapshot, st, section, value, report)
        elif is_single(value, st.contract):
            self._restore_single(obj, attr, snapshot, st, section, report)
        else:
            self._restore_container(obj, snapshot, st, section, value, report)

    # -- containers -----------------------------------------------------------

    def _restore_container(
        self,
        obj: object,
        snapshot: Snapshot,
        st: State,
        section: str,
        container: Any,
        report: SectionReport,
    ) -> None:
        assert st.contract is not None
        # Values that can change in place: from now on, reads count as writes.
        watch_reads(container, not deeply_immutable(st.contract.type))
        lock = getattr(obj, st.lock) if st.lock is not None else None
        restore = SectionRestore(
            snapshot, section, st.contract, container, report, lock=lock, now=self.clock
        )
        thread_safe = (
            lock is not None
            or type(container) in (dict, _ordered_dict())
            or isinstance(container, (TrackedDict, LoggedDict))
        )
        if self.progressive and thread_safe and restore.cold_entries:
            changes_log = change_log(container)
            if changes_log is not None:
                # From now until the background phase ends, what the service
                # removes stays removed (an object may be shared already).
                changes_log.begin_restore()
            try:
                restore.hot()
            except BaseException:
                if changes_log is not None:
                    changes_log.end_restore()
                raise
            # The baseline is what the service sees now: its own writes from
            # here on are changes for the next delta; the background phase
            # only adds entries the generation already holds.
            self._mark_baseline(section, container, snapshot.generation, lock)
            self._arm_counter(container, final=False)
            report.status = "warming"
            cancel = changes_log.end_restore if changes_log is not None else None
            self.enqueue(functools.partial(self._cold_phase, restore), cancel)
        else:
            with paused_gc(freeze=self.freeze_gc):
                restore.eager()
            report.status = "warm"
            if self.progressive and not thread_safe and restore.cold_entries:
                report.reason = (
                    "restored eagerly: the container is not thread-safe (pass state(lock=...))"
                )
            self._mark_baseline(section, container, snapshot.generation, lock)
            self._arm_counter(container, final=True)

    def _cold_phase(self, restore: SectionRestore) -> None:
        report = restore.report
        try:
            completed = restore.cold(self.stopped)
        except Exception as exc:
            # The hot part is in place and the service is using it: keep it.
            report.status = "partial"
            report.reason = f"background restore failed: {exc}"
            if self.report.status == "warm":
                self.report.status = "partial"
            log.warning(
                "section %r: background restore failed, the rest starts cold: %s",
                restore.name,
                exc,
                extra={"section": restore.name},
            )
        else:
            report.status = "warm" if completed else "partial"
            if not completed:
                report.reason = "background restore stopped by shutdown"
        finally:
            changes_log = change_log(restore.container)
            if changes_log is not None:
                changes_log.end_restore()
        self._arm_counter(restore.container, final=True)
        self.metrics.record_section(report)

    def _arm_counter(self, container: Any, *, final: bool) -> None:
        """For a counted container: lookups of what was restored are warm hits."""
        counter = counter_of(container)
        if counter is None:
            return
        keys, _, _ = entries_of(container)
        counter.arm(keys, final=final)
        self.metrics.watch(counter)

    def _mark_baseline(self, section: str, container: Any, generation: int, lock: Any) -> None:
        if self.store is not None:
            self.store.mark_baseline(self.namespace, section, container, generation)
        changes_log = change_log(container)
        if changes_log is not None:
            # What the restore put in, in order: the keys the next base folds
            # later changes into, instead of listing the container.
            with lock if lock is not None else contextlib.nullcontext():
                changes_log.rebase(dict_of(container))

    # -- single Structs -------------------------------------------------------

    def _restore_single(
        self,
        obj: object,
        attr: str,
        snapshot: Snapshot,
        st: State,
        section: str,
        report: SectionReport,
    ) -> None:
        assert st.contract is not None
        read = snapshot.read(section, st.contract)
        report.saved = len(read.entries)
        report.upgraded = read.stats.upgraded
        report.dropped_invalid = read.stats.dropped_invalid
        report.bytes = read.stats.bytes
        report.seconds = read.stats.seconds
        if read.entries:
            setattr(obj, attr, next(iter(read.entries.values())))
            report.restored = 1
        report.status = "warm"

    # -- hot keys: prefetch and refresh ---------------------------------------

    def _restore_keys(
        self,
        owner: object,
        snapshot: Snapshot,
        st: State,
        section: str,
        container: Any,
        report: SectionReport,
    ) -> None:
        key_type = st.contract.key if st.contract is not None else str
        keys = _hot_keys(snapshot, section, _keys_contract(key_type), report)
        assert st.prefetch is not None
        self.enqueue(functools.partial(self._prefetch, owner, st, keys, container, report))

    def _prefetch(
        self, owner: object, st: State, keys: list[Any], container: Any, report: SectionReport
    ) -> None:
        assert st.prefetch is not None
        lock = getattr(owner, st.lock) if st.lock is not None else None
        self.reloader.prefetch(st.prefetch, keys, container, lock, report)
        report.status = "warm"
        self.metrics.record_section(report)

    def _refresh_keys(
        self,
        owner: object,
        snapshot: Snapshot,
        st: State,
        section: str,
        container: Any,
        report: SectionReport,
    ) -> None:
        """A stale checkpoint: no value is restored; ``refresh`` reloads the hot keys."""
        report.reason = "stale checkpoint: not restored"
        if st.contract is None or is_single(container, st.contract):
            return
        keys = _hot_keys(snapshot, section, st.contract, report)
        report.reason = f"stale checkpoint: refresh() reloads {len(keys)} hot keys"
        self.enqueue(functools.partial(self._refresh, owner, st, section, keys, container, report))

    def _refresh(
        self,
        owner: object,
        st: State,
        section: str,
        keys: list[Any],
        container: Any,
        report: SectionReport,
    ) -> None:
        assert self.refresh is not None
        lock = getattr(owner, st.lock) if st.lock is not None else None
        refreshed = self.reloader.refresh(self.refresh, section, keys, container, lock, report)
        report.status = "warm" if refreshed else "cold"
        self.metrics.record_section(report)


def _hot_keys(
    snapshot: Snapshot, section: str, contract: Contract[Any], report: SectionReport
) -> list[Any]:
    """A section's keys, hottest first (the saved order ends with the most recent)."""
    keys = list(snapshot.read(section, contract).entries)
    keys.reverse()
    report.saved = len(keys)
    report.status = "warming"
    return keys


def _ordered_dict() -> type:
    import collections  # noqa: PLC0415

    return collections.OrderedDict
