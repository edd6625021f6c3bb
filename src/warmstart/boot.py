"""``boot()``: restore warm state at startup, checkpoint it until shutdown.

>>> import msgspec, tempfile
>>> from warmstart import Contract, boot, warm
>>> class Quote(msgspec.Struct):
...     price: float
>>> @warm(quotes=Contract("quote", Quote))
... class PriceService:
...     def __init__(self) -> None:
...         self.quotes: dict[str, Quote] = {}
>>> path = tempfile.mkdtemp()
>>> with boot(path, namespace="pricing", signals=False) as b:
...     service = PriceService()
...     service.quotes["AAPL"] = Quote(189.5)
>>> b.report.status                       # the first start is cold
'cold'
>>> with boot(path, namespace="pricing", signals=False) as b:
...     service = PriceService()
>>> b.report.status, service.quotes      # the second comes back warm
('warm', {'AAPL': Quote(price=189.5)})

The safety rule: the library never makes startup worse. Any failure to
restore (corrupt store, incompatible contract, missing path, stale
checkpoint) starts that section cold, logs why and records it in the report;
``strict=True`` raises instead.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import functools
import logging
import os
import queue
import re
import signal
import struct
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from warmstart._reload import KeyReloader, is_coroutine_function
from warmstart._restore import SectionRestore
from warmstart.checkpointer import Checkpointer
from warmstart.containers import check_container, entries_of
from warmstart.contract import Contract
from warmstart.delta import TrackedDict
from warmstart.errors import (
    CheckpointNotFoundError,
    ColdStartWarning,
    ContractError,
    StoreTimeoutError,
    WarmstartError,
)
from warmstart.hits import counter_of
from warmstart.metrics import BootReport, CheckpointReport, Metrics, SectionReport
from warmstart.snapshot import Snapshot, paused_gc
from warmstart.store import Store
from warmstart.warm import State, WarmSpec, spec_of

if TYPE_CHECKING:
    import asyncio

    from warmstart.remote import Remote, SyncOutcome

__all__ = ("Boot", "boot", "parse_duration")


def __dir__() -> tuple[str, ...]:
    return __all__


log = logging.getLogger("warmstart.boot")
F = TypeVar("F", bound=Callable[..., Any])

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_CAPTURING: list[Boot] = []
_CAPTURING_LOCK = threading.Lock()
_MARKER = struct.Struct(">Qd")


def parse_duration(value: float | datetime.timedelta | str | None) -> float | None:
    """Seconds from a number, a timedelta, or a string such as ``"90s"`` or ``"1h"``.

    >>> parse_duration("90s"), parse_duration("1h"), parse_duration(datetime.timedelta(minutes=2))
    (90.0, 3600.0, 120.0)
    """
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            msg = f"Expected a duration >= 0, got {value!r}"
            raise ValueError(msg)
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNITS[match.group(2)]
    msg = f"Expected seconds, a timedelta or a string like '90s', '15m', '1h', '2d', got {value!r}"
    raise ValueError(msg)


def _attach_to_capturing(obj: object) -> None:
    """Called by ``@warm`` classes after ``__init__``: attach to the active boot."""
    with _CAPTURING_LOCK:
        current = _CAPTURING[-1] if _CAPTURING else None
    if current is not None:
        current.attach(obj)


class _Attached:
    """One object attached to a boot, and the sections it owns."""

    def __init__(self, obj: object, spec: WarmSpec, sections: dict[str, str]) -> None:
        self.obj = obj
        self.spec = spec
        self.sections = sections  # attribute -> section name


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


class Boot:
    """Restore warm state at startup and checkpoint it until shutdown.

    Use as ``with``, ``async with`` (ASGI lifespans) or as a decorator of a
    sync or async function. Every ``@warm`` object constructed inside it is
    restored right after its ``__init__`` and registered for checkpoints;
    :meth:`attach` does the same for objects made elsewhere.

    Args:
        path_or_store: a store directory, or an open :class:`~warmstart.Store`.
        namespace: the namespace of this service's state.
        max_age: a checkpoint older than this starts cold.
        validate: ``validate(watermark) -> bool`` against the source of truth;
            False starts cold.
        refresh: with ``validate``: when the checkpoint is stale, called in the
            background as ``refresh(section, keys)`` with the keys that were hot,
            so the service can reload them from its source of truth.
        progressive: restore the hot part of each section before going on and
            the rest in the background (see ``ready`` and ``readiness``).
        strict: raise on any restore failure instead of starting cold.
        checkpoint_on_exit: checkpoint when the context exits normally (the
            lifespan pattern); also on SIGTERM/SIGINT and at interpreter exit
            while the boot is open. False keeps the boot open after the
            ``with`` body (the startup-only pattern); call :meth:`close` or rely
            on the signal/atexit checkpoint.
        interval: seconds between periodic delta checkpoints (None: none).
        signals: install SIGTERM/SIGINT handlers (main thread only), chaining
            to the handlers already installed.
        deadline: seconds a shutdown checkpoint may take; past it the previous
            generation stays the head and shutdown goes on.
        open_timeout: seconds opening the store may wait for LMDB's writer
            lock (held by a stopped process, say); past it the boot starts
            cold (``StoreTimeoutError`` with ``strict=True``).
        remote: a remote tier (``redis://...``, ``s3://...``, ``file://...`` or a
            ``warmstart.remote.Remote``): at start, pull a newer generation
            first; after each checkpoint, push. Never blocks beyond
            ``remote_deadline`` seconds per pull or push; outcomes are in
            ``remote_outcomes``.
        freeze_gc: after an eager restore, move restored objects to the
            collector's permanent generation (``gc.freeze()``): no later pause.
        watermark: a callable returning the source-of-truth position to record
            with each checkpoint.
        store_options: keyword arguments for ``Store`` when a path is given.
        clock: the wall clock (injectable for tests).
    """

    def __init__(  # noqa: PLR0915 - one assignment per documented setting
        self,
        path_or_store: str | os.PathLike[str] | Store,
        *,
        namespace: str,
        max_age: float | datetime.timedelta | str | None = None,
        validate: Callable[[Any], bool] | None = None,
        refresh: Callable[[str, list[Any]], Any] | None = None,
        progressive: bool = True,
        strict: bool = False,
        checkpoint_on_exit: bool = True,
        interval: float | None = None,
        signals: bool = True,
        deadline: float = 20.0,
        freeze_gc: bool = False,
        watermark: Callable[[], Any] | None = None,
        prefetch_concurrency: int = 8,
        prefetch_batch: int = 256,
        store_options: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
        open_timeout: float = 5.0,
        remote: str | Remote | None = None,
        remote_deadline: float = 5.0,
    ) -> None:
        self._target = path_or_store
        self.open_timeout = open_timeout
        self.remote = remote  # a URL or a warmstart.remote.Remote
        self.remote_deadline = remote_deadline
        #: "pull": the pull at startup, "push": the latest push (warmstart.remote).
        self.remote_outcomes: dict[str, SyncOutcome] = {}
        self.namespace = namespace
        self.max_age = parse_duration(max_age)
        self.validate = validate
        self.refresh = refresh
        self.progressive = progressive
        self.strict = strict
        self.checkpoint_on_exit = checkpoint_on_exit
        self.interval = interval
        self.signals = signals
        self.deadline = deadline
        self.freeze_gc = freeze_gc
        self.watermark = watermark
        self.prefetch_concurrency = prefetch_concurrency
        self.prefetch_batch = prefetch_batch
        self._store_options = dict(store_options or {})
        self.clock = clock
        self.report = BootReport(namespace=namespace)
        self.metrics = Metrics()
        self.ready = threading.Event()
        self.store: Store | None = None
        self.snapshot: Snapshot | None = None
        self._owns_store = False
        self._attached: list[_Attached] = []
        self._sections_seen: set[str] = set()
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._pending = 0
        self._marked = False  # this boot's "restoring" marker is in the store
        self._abandoned = False  # the shutdown checkpoint missed its deadline
        self._close_later = False  # close() found the shutdown checkpoint still running
        self._final_running = False
        self._release_lock = threading.Lock()
        self._stale = False  # validate() refused the checkpoint; refresh() reloads keys
        self._worker: threading.Thread | None = None
        self._periodic: threading.Thread | None = None
        self._final: threading.Thread | None = None
        self._stop = threading.Event()
        self._started = 0.0
        self._entered = False
        self._closed = False
        self._final_done = False
        self._previous_handlers: dict[int, Any] = {}
        self._checkpointer: Checkpointer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reloader = KeyReloader(
            concurrency=prefetch_concurrency, batch=prefetch_batch, loop=lambda: self._loop
        )
        # pid alone is not unique across restarts (a container's service is
        # often pid 1 every time), so each boot adds a token of its own.
        self._marker = f"restoring-{os.getpid()}-{os.urandom(4).hex()}"
        self._lock = threading.RLock()

    # -- decorator ------------------------------------------------------------

    def _recreate(self) -> Boot:
        """A fresh, unused boot with the same settings (one per decorated call)."""
        return Boot(
            self._target,
            namespace=self.namespace,
            max_age=self.max_age,
            validate=self.validate,
            refresh=self.refresh,
            progressive=self.progressive,
            strict=self.strict,
            checkpoint_on_exit=self.checkpoint_on_exit,
            interval=self.interval,
            signals=self.signals,
            deadline=self.deadline,
            freeze_gc=self.freeze_gc,
            watermark=self.watermark,
            prefetch_concurrency=self.prefetch_concurrency,
            prefetch_batch=self.prefetch_batch,
            store_options=self._store_options,
            clock=self.clock,
            open_timeout=self.open_timeout,
            remote=self.remote,
            remote_deadline=self.remote_deadline,
        )

    def __call__(self, func: F) -> F:
        """Use the boot as a decorator: each call runs inside a fresh boot."""
        if is_coroutine_function(func):

            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                async with self._recreate():
                    return await func(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            with self._recreate():
                return func(*args, **kwargs)

        return run  # type: ignore[return-value]

    # -- entering -------------------------------------------------------------

    def __enter__(self) -> Boot:
        self._enter()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._exit(failed=exc_type is not None)

    async def __aenter__(self) -> Boot:
        import asyncio  # noqa: PLC0415 - asyncio costs ~30 ms to import; only async users pay

        self._loop = asyncio.get_running_loop()
        # Opening and verifying the store is I/O: keep the event loop free.
        await asyncio.to_thread(self._open)
        self._capture()
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        import asyncio  # noqa: PLC0415

        self._uncapture()
        if exc_type is None and self.checkpoint_on_exit:
            await asyncio.to_thread(self._final_checkpoint, "exit")
        if self.checkpoint_on_exit or exc_type is not None:
            # Signal handlers can only be restored from the main thread, which
            # runs the loop; close() below runs in a worker thread.
            self._disarm()
            await asyncio.to_thread(self.close)

    def _enter(self) -> None:
        self._open()
        self._capture()

    def _exit(self, *, failed: bool) -> None:
        self._uncapture()
        if not failed and self.checkpoint_on_exit:
            self._final_checkpoint("exit")
        if self.checkpoint_on_exit or failed:
            self.close()

    def _capture(self) -> None:
        with _CAPTURING_LOCK:
            _CAPTURING.append(self)
        self._arm()

    def _uncapture(self) -> None:
        with _CAPTURING_LOCK:
            if self in _CAPTURING:
                _CAPTURING.remove(self)
        if self.report.time_to_ready is None:
            self.report.time_to_ready = time.perf_counter() - self._started
        with self._lock:
            idle = self._pending == 0
        if idle and not self.ready.is_set():
            self._finish_restore()

    def _open(self) -> None:
        if self._entered:
            msg = "Expected a fresh boot: this one was already entered (use one per startup)"
            raise RuntimeError(msg)
        self._entered = True
        self._started = time.perf_counter()
        try:
            self.store = self._open_store()
        except Exception as exc:
            self._go_cold(f"store unavailable: {exc}", exc)
            return
        if self.remote is not None and not self.store.readonly:
            from warmstart.remote.deadline import pull_with_deadline  # noqa: PLC0415

            # Another host may have left newer state: fetch it first, within
            # the deadline; past it the boot goes on with what it has.
            self.remote_outcomes["pull"] = pull_with_deadline(
                self.store, self.remote, self.namespace, deadline=self.remote_deadline
            )
        try:
            self._pick_generation()
        except Exception as exc:
            try:
                # Also when no generation verifies (CheckpointNotFoundError): a failure.
                self._go_cold(f"checkpoint unreadable: {exc}", exc, failure=True)
            except BaseException:
                self.close()  # strict=True: raise, but release the store first
                raise
        # The boot's own outcome; each section is folded in as it finishes.
        self.metrics.record_boot(self.report)
        if self.interval is not None and self.store is not None:
            self._checkpointer = Checkpointer(
                self.store,
                self.namespace,
                self._sections,
                interval=self.interval,
                watermark=self._watermark_now,
            )

    def _open_store(self) -> Store:
        if isinstance(self._target, Store):
            return self._target
        options = {"clock": self.clock, **self._store_options}
        store = _open_within(Path(self._target), options, self.open_timeout)
        self._owns_store = True
        return store

    def _go_cold(
        self, reason: str, exc: BaseException | None = None, *, failure: bool = False
    ) -> None:
        """Start cold; ``exc`` or ``failure`` mark a failure (warned), not a plain miss."""
        if self.strict and exc is not None:
            raise exc
        self.report.status = "cold"
        self.report.reason = reason
        if self.snapshot is not None:
            self.snapshot.close()
            self.snapshot = None
        if failure or (exc is not None and not isinstance(exc, CheckpointNotFoundError)):
            warnings.warn(
                f"warmstart {self.namespace!r}: cold start, {reason}",
                ColdStartWarning,
                stacklevel=4,
            )
        log.info(
            "namespace %r starts cold: %s",
            self.namespace,
            reason,
            extra={"namespace": self.namespace},
        )

    def _pick_generation(self) -> None:
        assert self.store is not None
        crashed = self._check_crash_loop()
        if crashed is not None:
            # Do not risk a second crash on the same data: start cold this once.
            self._go_cold(f"crash-loop breaker: {crashed}", failure=True)
            return
        try:
            snapshot = self.store.load(self.namespace)
        except CheckpointNotFoundError as exc:
            if "none did" in str(exc):
                raise
            self._go_cold("no checkpoint yet")
            return
        self.snapshot = snapshot
        report = self.report
        report.generation = snapshot.generation
        report.generation_age = snapshot.age(self.clock())
        report.watermark = snapshot.watermark
        report.fallback = list(snapshot.fallback)
        report.status = "warm"
        report.reason = (
            f"newest generation that verifies ({len(snapshot.fallback)} skipped)"
            if snapshot.fallback
            else "head generation"
        )
        if self.max_age is not None and report.generation_age > self.max_age:
            self._go_cold(
                f"generation {snapshot.generation} is {report.generation_age:.0f}s old, "
                f"max_age is {self.max_age:.0f}s"
            )
            return
        if self.validate is not None and not self._validated(snapshot.watermark):
            stale = f"watermark {snapshot.watermark!r} rejected by validate()"
            if self.refresh is None:
                self._go_cold(stale)
                return
            # Values stay cold, but the keys that were hot are worth reloading.
            self._stale = True
            report.status = "cold"
            report.reason = f"{stale}; refresh() reloads the keys that were hot"
            log.info(
                "namespace %r starts cold: %s",
                self.namespace,
                report.reason,
                extra={"namespace": self.namespace},
            )
        self._set_marker()

    def _set_marker(self) -> None:
        """Say "restoring": a boot that dies before clearing it trips the breaker."""
        assert self.store is not None
        assert self.snapshot is not None
        if not self.store.readonly:
            marker = _MARKER.pack(self.snapshot.generation, self.clock())
            self.store.set_marker(self.namespace, self._marker, marker)
            self._marked = True

    def _validated(self, watermark: Any) -> bool:
        assert self.validate is not None
        try:
            return bool(self.validate(watermark))
        except Exception as exc:
            if self.strict:
                raise
            log.warning("validate() raised %r; treating the checkpoint as stale", exc)
            return False

    def _check_crash_loop(self) -> str | None:
        """A boot that died while restoring left its marker: quarantine that generation.

        Returns why this boot must start cold, or None.
        """
        assert self.store is not None
        if self.store.readonly:
            return None
        crashed = None
        for name, value in self.store.markers(self.namespace).items():
            if not name.startswith("restoring-") or len(value) != _MARKER.size:
                continue
            pid = int(name.split("-")[1])
            if pid != os.getpid() and _alive(pid):
                continue  # another worker restoring right now
            generation, _ = _MARKER.unpack(value)
            reason = f"a boot (pid {pid}) died while restoring generation {generation}"
            self.store.quarantine(self.namespace, generation, reason)
            self.store.set_marker(self.namespace, name, None)
            self.report.fallback.append(f"generation {generation} quarantined: {reason}")
            log.warning(
                "namespace %r: %s; it is quarantined for inspection",
                self.namespace,
                reason,
                extra={"namespace": self.namespace, "generation": generation},
            )
            crashed = reason
        return crashed

    # -- attaching and restoring ----------------------------------------------

    def attach(self, obj: object) -> object:
        """Restore ``obj``'s warm state now and register it for checkpoints.

        Returns ``obj``; attaching an attached object again does nothing.

        Raises:
            ContractError: ``obj`` is not a ``@warm`` instance, a warm attribute
                holds an unsupported container, or two instances of one class
                share a section (give them keys).
        """
        spec = spec_of(obj)
        if spec is None:
            msg = f"Expected an instance of a @warmstart.warm class, got {type(obj).__name__}"
            raise ContractError(msg)
        instance_key = spec.instance_key(obj)
        sections = {attr: spec.section_name(attr, instance_key) for attr in spec.states}
        for attr, st in spec.states.items():
            # Checked before registering: a checkpoint must never meet it later.
            if st.keys_only or not isinstance(getattr(obj, attr, None), msgspec.Struct):
                check_container(getattr(obj, attr, None), f"{type(obj).__name__}.{attr}")
        attached = self._register(obj, spec, sections)
        if attached is None:
            return obj
        snapshot = self.snapshot
        if (
            snapshot is not None
            and not self._marked
            and set(sections.values()) & set(snapshot.sections)
        ):
            self._set_marker()
        try:
            for attr, section in sections.items():
                self._restore_attr(obj, spec.states[attr], attr, section)
        except BaseException:
            # strict=True: an object that failed to restore is not checkpointed.
            with self._lock:
                self._attached.remove(attached)
                self._sections_seen.difference_update(sections.values())
            raise
        self.report.time_to_ready = time.perf_counter() - self._started
        self.metrics.set("time_to_ready_seconds", self.report.time_to_ready)
        with self._lock:
            idle = self._pending == 0
        if idle:
            self._finish_restore()
        return obj

    def _register(self, obj: object, spec: WarmSpec, sections: dict[str, str]) -> _Attached | None:
        """Register ``obj`` for checkpoints (None: it already is)."""
        with self._lock:
            if any(item.obj is obj for item in self._attached):
                return None  # made inside the boot and attached again by hand
            clash = self._sections_seen.intersection(sections.values())
            if clash:
                msg = (
                    f"Expected distinct instance keys for instances of {spec.cls.__name__}; "
                    f"sections {sorted(clash)} are taken - pass @warm(key=...) or set warm_key"
                )
                raise ContractError(msg)
            self._sections_seen.update(sections.values())
            attached = _Attached(obj, spec, sections)
            self._attached.append(attached)
        return attached

    def _restore_attr(self, obj: object, st: State, attr: str, section: str) -> None:
        report = SectionReport(section)
        self.report.sections[section] = report
        snapshot = self.snapshot
        if snapshot is None:
            report.reason = self.report.reason or "no checkpoint"
        elif section not in snapshot.sections:
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
                warnings.warn(
                    f"warmstart section {section!r}: cold start, {exc}",
                    ColdStartWarning,
                    stacklevel=5,
                )
                log.warning("section %r starts cold: %s", section, exc, extra={"section": section})
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
        elif self._stale:
            self._refresh_keys(obj, snapshot, st, section, value, report)
        elif isinstance(value, msgspec.Struct):
            self._restore_single(obj, attr, snapshot, st, section, report)
        else:
            self._restore_container(obj, st, section, value, report)

    def _restore_container(
        self, obj: object, st: State, section: str, container: Any, report: SectionReport
    ) -> None:
        assert self.snapshot is not None
        assert st.contract is not None
        lock = getattr(obj, st.lock) if st.lock is not None else None
        restore = SectionRestore(
            self.snapshot, section, st.contract, container, report, lock=lock, now=self.clock
        )
        thread_safe = (
            lock is not None
            or type(container) in (dict, _ordered_dict())
            or isinstance(container, TrackedDict)
        )
        if self.progressive and thread_safe and restore.cold_entries:
            restore.hot()
            # The baseline is what the service sees now: its own writes from
            # here on are changes for the next delta; the background phase
            # only adds entries the generation already holds.
            self._mark_baseline(section, container)
            self._arm_counter(container, final=False)
            report.status = "warming"
            self._enqueue(functools.partial(self._cold_phase, restore))
        else:
            with paused_gc(freeze=self.freeze_gc):
                restore.eager()
            report.status = "warm"
            if self.progressive and not thread_safe and restore.cold_entries:
                report.reason = (
                    "restored eagerly: the container is not thread-safe (pass state(lock=...))"
                )
            self._mark_baseline(section, container)
            self._arm_counter(container, final=True)

    def _cold_phase(self, restore: SectionRestore) -> None:
        report = restore.report
        try:
            completed = restore.cold(self._stop.is_set)
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

    def _mark_baseline(self, section: str, container: Any) -> None:
        if self.store is not None and self.snapshot is not None:
            self.store.mark_baseline(self.namespace, section, container, self.snapshot.generation)

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
        self._enqueue(functools.partial(self._prefetch, owner, st, keys, container, report))

    def _prefetch(
        self, owner: object, st: State, keys: list[Any], container: Any, report: SectionReport
    ) -> None:
        assert st.prefetch is not None
        lock = getattr(owner, st.lock) if st.lock is not None else None
        self._reloader.prefetch(st.prefetch, keys, container, lock, report)
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
        if isinstance(container, msgspec.Struct) or st.contract is None:
            return
        keys = _hot_keys(snapshot, section, st.contract, report)
        report.reason = f"stale checkpoint: refresh() reloads {len(keys)} hot keys"
        self._enqueue(functools.partial(self._refresh, owner, st, section, keys, container, report))

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
        refreshed = self._reloader.refresh(self.refresh, section, keys, container, lock, report)
        report.status = "warm" if refreshed else "cold"
        self.metrics.record_section(report)

    # -- background phase and readiness ---------------------------------------

    def _enqueue(self, job: Callable[[], None]) -> None:
        """Queue background restore work; the worker starts on the first job."""
        with self._lock:
            self._pending += 1
            self.ready.clear()
            self._jobs.put(job)
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._run_background, name="warmstart-restore", daemon=True
                )
                self._worker.start()

    def _run_background(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if not self._stop.is_set():
                try:
                    job()
                except Exception as exc:
                    log.warning("background restore failed: %r", exc)
            with self._lock:
                self._pending -= 1
                idle = self._pending == 0
            if idle:
                self._finish_restore()

    def _finish_restore(self) -> None:
        """Everything queued so far is in place: ready, and no longer restoring."""
        self.report.time_to_warm = time.perf_counter() - self._started
        with self._lock:
            marked, self._marked = self._marked, False
        if marked and self.store is not None:
            # Cleared whenever restoring stops, set again by the next attach that
            # restores: a crash in any object's restore trips the breaker, and a
            # kill of the running service does not.
            with contextlib.suppress(WarmstartError):
                self.store.set_marker(self.namespace, self._marker, None)
        self.metrics.set("restore_seconds", self.report.time_to_warm)
        self.metrics.set("readiness", 1.0)
        self.ready.set()

    @property
    def readiness(self) -> float:
        """Fraction of saved entries in place (1.0 when fully warm or cold)."""
        if self.ready.is_set():
            return 1.0
        saved = sum(s.saved for s in self.report.sections.values())
        if not saved:
            return 0.0
        done = sum(min(s.restored, s.saved) for s in self.report.sections.values())
        return min(done / saved, 0.99)

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the background restore is done; False on timeout."""
        return self.ready.wait(timeout)

    # -- checkpoints ----------------------------------------------------------

    def _sections(self) -> dict[str, tuple[Contract[Any], Any]]:
        sections: dict[str, tuple[Contract[Any], Any]] = {}
        with self._lock:
            attached = list(self._attached)
        for item in attached:
            for attr, section in item.sections.items():
                st = item.spec.states[attr]
                value: Any = getattr(item.obj, attr, None)
                if st.keys_only:
                    keys, _, _ = entries_of(value)
                    if st.max_keys is not None:
                        keys = keys[-st.max_keys :]
                    key_type = st.contract.key if st.contract is not None else str
                    sections[section] = (_keys_contract(key_type), dict.fromkeys(keys, _HOT))
                elif isinstance(value, msgspec.Struct):
                    assert st.contract is not None
                    sections[section] = (
                        st.contract,
                        {_SINGLE_KEYS.get(st.contract.key, ""): value},
                    )
                elif value is not None:
                    assert st.contract is not None
                    sections[section] = (st.contract, value)
        return sections

    def checkpoint(self) -> int | None:
        """Save every attached object's state now; return the generation (None if nothing to save).

        Raises:
            StoreError: with ``strict=True`` (otherwise the error is logged,
                counted, and None is returned).
        """
        return self._checkpoint("checkpoint", raise_errors=self.strict)

    def _run_periodic(self) -> None:
        """Periodic delta checkpoints, from the first attached object on.

        A tick with nothing attached would commit an empty generation over the
        previous one, and a tick during a background restore would save
        half-restored containers: both wait for the next tick.
        """
        assert self.interval is not None
        while not self._stop.wait(self.interval):
            if self._attached and self.ready.is_set():
                self._checkpoint("periodic", raise_errors=False)

    def _checkpoint(self, why: str, *, raise_errors: bool) -> int | None:
        if self.store is None or not self._attached:
            return None
        if self._pending and not self.ready.wait(self.deadline):
            # A checkpoint now would save half-restored containers over a
            # complete generation: keep the previous one instead.
            log.warning("checkpoint of %r skipped: restore still in progress", self.namespace)
            return None
        started = time.perf_counter()
        try:
            with self._lock:
                if self._checkpointer is not None:
                    generation = self._checkpointer.checkpoint()
                else:
                    generation = self.store.save(
                        self.namespace, self._sections(), watermark=self._watermark_now()
                    )
        except Exception as exc:
            # Never let a checkpoint failure reach the service (unless strict).
            report = CheckpointReport(
                self.namespace, None, time.perf_counter() - started, why, str(exc)
            )
            self.metrics.record_checkpoint(report)
            log.warning("%s checkpoint of %r failed: %s", why, self.namespace, exc)
            if raise_errors:
                raise
            return None
        report = CheckpointReport(self.namespace, generation, time.perf_counter() - started, why)
        self.metrics.record_checkpoint(report)
        log.info(
            "%s checkpoint of %r: generation %s in %.3fs",
            why,
            self.namespace,
            generation,
            report.seconds,
            extra={
                "namespace": self.namespace,
                "generation": generation,
                "seconds": report.seconds,
            },
        )
        if self.remote is not None:
            from warmstart.remote.deadline import push_with_deadline  # noqa: PLC0415

            self.remote_outcomes["push"] = push_with_deadline(
                self.store, self.remote, self.namespace, deadline=self.remote_deadline
            )
        return generation

    def _watermark_now(self) -> Any:
        """The watermark for a save; a shutdown checkpoint past its deadline stops here."""
        value = self.watermark() if self.watermark is not None else None
        if self._abandoned:
            msg = f"Expected the shutdown checkpoint within {self.deadline}s; it was abandoned"
            raise StoreTimeoutError(msg)
        return value

    def _final_checkpoint(self, why: str) -> None:
        """The shutdown checkpoint: once, within the deadline."""
        with self._lock:
            if self._final_done or self.store is None:
                return
            self._final_done = True
        done = threading.Event()

        def run() -> None:
            try:
                self._checkpoint(why, raise_errors=False)
            finally:
                done.set()
                with self._release_lock:
                    self._final_running = False
                    later = self._close_later
                if later:
                    self._release()

        worker = threading.Thread(target=run, name="warmstart-final-checkpoint", daemon=True)
        self._final_running = True
        try:
            worker.start()
        except RuntimeError:
            run()  # interpreter shutdown forbids new threads: no deadline then
        else:
            self._final = worker
        finished = done.wait(self.deadline)
        self._stop.set()
        if not finished:
            self._abandoned = True
            log.warning(
                "%s checkpoint of %r did not finish within %.1fs; the previous generation stays",
                why,
                self.namespace,
                self.deadline,
            )

    # -- signals and exit -----------------------------------------------------

    def _arm(self) -> None:
        if self._checkpointer is not None:
            self._periodic = threading.Thread(
                target=self._run_periodic, name="warmstart-periodic-checkpoint", daemon=True
            )
            self._periodic.start()
        atexit.register(self._atexit)
        if not self.signals or threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous_handlers[sig] = signal.getsignal(sig)
            signal.signal(sig, self._on_signal)

    def _disarm(self) -> None:
        atexit.unregister(self._atexit)
        if threading.current_thread() is threading.main_thread():
            for sig, previous in self._previous_handlers.items():
                if signal.getsignal(sig) == self._on_signal:
                    signal.signal(sig, previous)
            # Elsewhere they cannot be restored: kept for a disarm on the main thread.
            self._previous_handlers.clear()

    def _on_signal(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        self._final_checkpoint(name)
        previous = self._previous_handlers.get(signum, signal.SIG_DFL)
        self._disarm()
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            # Let the default behaviour happen: die by the same signal.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def _atexit(self) -> None:
        self._final_checkpoint("exit")

    def close(self) -> None:
        """Stop background work and periodic checkpoints, disarm, release the store."""
        if self._closed:
            return
        self._closed = True
        with _CAPTURING_LOCK:
            if self in _CAPTURING:  # closed by hand inside its own ``with``
                _CAPTURING.remove(self)
        self._stop.set()
        if self._periodic is not None:
            self._periodic.join(self.deadline)
        if self._worker is not None:
            self._jobs.put(None)
            self._worker.join(self.deadline)
        self._disarm()
        self._release()

    def _release(self) -> None:
        """Close the snapshot and the store, unless a thread past its deadline still uses them."""
        with self._release_lock:
            final = self._final_running and threading.current_thread() is not self._final
            busy = [t.name for t in (self._periodic, self._worker) if t and t.is_alive()]
            if final:
                busy.append("warmstart-final-checkpoint")
            # Closing the store under a thread still in it could crash the
            # process: the shutdown checkpoint's thread closes it when done.
            self._close_later = final
        if busy:
            log.warning(
                "namespace %r: %s still running; the store stays open",
                self.namespace,
                ", ".join(busy),
            )
            return
        if self.snapshot is not None:
            self.snapshot.close()
            self.snapshot = None
        if self.store is not None and self._owns_store:
            self.store.close()

    def __repr__(self) -> str:
        return f"Boot(namespace={self.namespace!r}, status={self.report.status!r})"


boot = Boot


def _open_within(path: Path, options: dict[str, Any], timeout: float) -> Store:
    """Open a store, giving up after ``timeout`` seconds.

    Opening a store whose tables exist still takes LMDB's writer lock for a
    moment; a process stopped while holding it (SIGSTOP, a debugger) would
    hang the boot. On timeout the open goes on in its thread and closes the
    store when it finally gets it.
    """
    done = threading.Event()
    box: dict[str, Any] = {}
    abandoned = threading.Event()

    def run() -> None:
        try:
            box["store"] = Store(path, **options)
        except BaseException as exc:
            box["error"] = exc
        finally:
            done.set()
            if abandoned.is_set() and "store" in box:
                box["store"].close()

    threading.Thread(target=run, name="warmstart-open", daemon=True).start()
    if not done.wait(timeout):
        abandoned.set()
        if done.is_set() and "store" in box:  # finished in the meantime
            return box["store"]  # type: ignore[no-any-return]
        msg = f"Expected the store at {str(path)!r} to open within {timeout:g}s; it is locked"
        raise StoreTimeoutError(msg)
    if "error" in box:
        raise box["error"]
    return box["store"]  # type: ignore[no-any-return]


def _hot_keys(
    snapshot: Snapshot, section: str, contract: Contract[Any], report: SectionReport
) -> list[Any]:
    """A section's keys, hottest first (the saved order ends with the most recent)."""
    keys = list(snapshot.read(section, contract).entries)
    keys.reverse()
    report.saved = len(keys)
    report.status = "warming"
    return keys


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ordered_dict() -> type:
    import collections  # noqa: PLC0415

    return collections.OrderedDict
