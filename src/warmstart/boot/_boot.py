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

import datetime
import functools
import inspect
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from warmstart._containers import check_container
from warmstart._pacing import Pacer
from warmstart.boot._autotrack import track_attached
from warmstart.boot._background import BackgroundJobs
from warmstart.boot._breaker import CrashLoopBreaker
from warmstart.boot._capture import capture, release
from warmstart.boot._open import open_within
from warmstart.boot._periodic import Periodic
from warmstart.boot._reload import KeyReloader, is_coroutine_function
from warmstart.boot._sections import Attached, AttributeRestore, sections_of
from warmstart.boot._settings import BootSettings
from warmstart.boot._shutdown import ExitHooks, FinalCheckpoint
from warmstart.boot._warm import WarmSpec, spec_of
from warmstart.errors import (
    CheckpointNotFoundError,
    ContractError,
    StoreTimeoutError,
)
from warmstart.metrics import BootReport, CheckpointReport, Metrics, warn_cold_start
from warmstart.store import SectionSpec, Snapshot, Store, check_namespace, is_lock

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


def parse_duration(value: float | datetime.timedelta | str | None) -> float | None:
    """Seconds from a number, a timedelta, or a string such as ``"90s"`` or ``"1h"``.

    >>> import datetime
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

    def __init__(
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
        check_namespace(namespace)
        if store_options:
            # A typo here would otherwise surface as "store unavailable" at open.
            inspect.signature(Store).bind(path_or_store, **store_options)
        self.settings = BootSettings(
            namespace=namespace,
            max_age=parse_duration(max_age),
            validate=validate,
            refresh=refresh,
            progressive=progressive,
            strict=strict,
            checkpoint_on_exit=checkpoint_on_exit,
            interval=interval,
            signals=signals,
            deadline=deadline,
            freeze_gc=freeze_gc,
            watermark=watermark,
            prefetch_concurrency=prefetch_concurrency,
            prefetch_batch=prefetch_batch,
            store_options=dict(store_options or {}),
            clock=clock,
            open_timeout=open_timeout,
            remote=remote,
            remote_deadline=remote_deadline,
        )
        #: "pull": the pull at startup, "push": the latest push (warmstart.remote).
        self.remote_outcomes: dict[str, SyncOutcome] = {}
        self.report = BootReport(namespace=namespace)
        self.metrics = Metrics()
        self.ready = threading.Event()
        self.store: Store | None = None
        self.snapshot: Snapshot | None = None
        self._owns_store = False
        self._attached: list[Attached] = []
        self._sections_seen: set[str] = set()
        self._breaker = CrashLoopBreaker(namespace)
        self._stale = False  # validate() refused the checkpoint; refresh() reloads keys
        self._stop = threading.Event()
        self._periodic = (
            None
            if interval is None
            else Periodic(
                interval, self._tick, name="warmstart-periodic-checkpoint", stop=self._stop
            )
        )
        self._started = 0.0
        self._entered = False
        self._closed = False
        self._final_done = False
        self._shutdown = FinalCheckpoint(
            namespace,
            functools.partial(self._checkpoint, raise_errors=False),
            self._release,
            self._stop,
        )
        self._hooks = ExitHooks(self._final_checkpoint, self._on_signal)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reloader = KeyReloader(
            concurrency=prefetch_concurrency, batch=prefetch_batch, loop=lambda: self._loop
        )
        self._lock = threading.RLock()
        self._background = BackgroundJobs(self._lock, self.ready, self._stop, self._finish_restore)

    # -- decorator ------------------------------------------------------------

    def _recreate(self) -> Boot:
        """A fresh, unused boot with the same settings (one per decorated call)."""
        return Boot(self._target, **msgspec.structs.asdict(self.settings))

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
        if exc_type is None and self.settings.checkpoint_on_exit:
            await asyncio.to_thread(self._final_checkpoint, "exit")
        if self.settings.checkpoint_on_exit or exc_type is not None:
            # Signal handlers can only be restored from the main thread, which
            # runs the loop; close() below runs in a worker thread.
            self._disarm()
            await asyncio.to_thread(self.close)

    def _enter(self) -> None:
        self._open()
        self._capture()

    def _exit(self, *, failed: bool) -> None:
        self._uncapture()
        if not failed and self.settings.checkpoint_on_exit:
            self._final_checkpoint("exit")
        if self.settings.checkpoint_on_exit or failed:
            self.close()

    def _capture(self) -> None:
        capture(self)
        self._arm()

    def _uncapture(self) -> None:
        release(self)
        if self.report.time_to_ready is None:
            self.report.time_to_ready = time.perf_counter() - self._started
        if self._background.idle() and not self.ready.is_set():
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
        if self.settings.remote is not None and not self.store.readonly:
            from warmstart.remote import pull_with_deadline  # noqa: PLC0415

            # Another host may have left newer state: fetch it first, within
            # the deadline; past it the boot goes on with what it has.
            self.remote_outcomes["pull"] = pull_with_deadline(
                self.store,
                self.settings.remote,
                self.settings.namespace,
                deadline=self.settings.remote_deadline,
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

    def _open_store(self) -> Store:
        if isinstance(self._target, Store):
            return self._target
        options = {"clock": self.settings.clock, **self.settings.store_options}
        store = open_within(Path(self._target), options, self.settings.open_timeout)
        self._owns_store = True
        return store

    def _go_cold(
        self, reason: str, exc: BaseException | None = None, *, failure: bool = False
    ) -> None:
        """Start cold; ``exc`` or ``failure`` mark a failure (warned), not a plain miss."""
        if self.settings.strict and exc is not None:
            raise exc
        self.report.status = "cold"
        self.report.reason = reason
        if self.snapshot is not None:
            self.snapshot.close()
            self.snapshot = None
        if failure or (exc is not None and not isinstance(exc, CheckpointNotFoundError)):
            warn_cold_start(
                f"warmstart {self.settings.namespace!r}: cold start, {reason}", stacklevel=4
            )
        else:
            log.info(
                "namespace %r starts cold: %s",
                self.settings.namespace,
                reason,
                extra={"namespace": self.settings.namespace},
            )

    def _pick_generation(self) -> None:
        assert self.store is not None
        crashed = self._breaker.check(self.store, self.report)
        if crashed is not None:
            # Do not risk a second crash on the same data: start cold this once.
            self._go_cold(f"crash-loop breaker: {crashed}", failure=True)
            return
        try:
            snapshot = self.store.load(self.settings.namespace)
        except CheckpointNotFoundError as exc:
            if exc.skipped:  # generations exist, none verifies: damage
                raise
            self._go_cold("no checkpoint yet")
            return
        self.snapshot = snapshot
        report = self.report
        report.generation = snapshot.generation
        report.generation_age = snapshot.age(self.settings.clock())
        report.watermark = snapshot.watermark
        report.fallback = list(snapshot.fallback)
        report.status = "warm"
        report.reason = (
            f"newest generation that verifies ({len(snapshot.fallback)} skipped)"
            if snapshot.fallback
            else "head generation"
        )
        if self.settings.max_age is not None and report.generation_age > self.settings.max_age:
            self._go_cold(
                f"generation {snapshot.generation} is {report.generation_age:.0f}s old, "
                f"max_age is {self.settings.max_age:.0f}s"
            )
            return
        if self.settings.validate is not None and not self._validated(snapshot.watermark):
            stale = f"watermark {snapshot.watermark!r} rejected by validate()"
            if self.settings.refresh is None:
                self._go_cold(stale)
                return
            # Values stay cold, but the keys that were hot are worth reloading.
            self._stale = True
            report.status = "cold"
            report.reason = f"{stale}; refresh() reloads the keys that were hot"
            log.info(
                "namespace %r starts cold: %s",
                self.settings.namespace,
                report.reason,
                extra={"namespace": self.settings.namespace},
            )
        self._set_marker()

    def _set_marker(self) -> None:
        """Say "restoring": a boot that dies before clearing it trips the breaker."""
        assert self.store is not None
        assert self.snapshot is not None
        self._breaker.mark(self.store, self.snapshot.generation, self.settings.clock())

    def _validated(self, watermark: Any) -> bool:
        assert self.settings.validate is not None
        try:
            return bool(self.settings.validate(watermark))
        except Exception as exc:
            if self.settings.strict:
                raise
            log.warning("validate() raised %r; treating the checkpoint as stale", exc)
            return False

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
            lock = getattr(obj, st.lock, None) if st.lock is not None else None
            if st.lock is not None and not is_lock(lock):
                msg = (
                    f"Expected {type(obj).__name__}.{st.lock} to hold the lock named by "
                    f"state(lock=...) for {attr!r}, got {type(lock).__name__}"
                )
                raise ContractError(msg)
        attached = self._register(obj, spec, sections)
        if attached is None:
            return obj
        # Before the restore: periodic checkpoints cost what changed (_autotrack).
        track_attached(obj, spec, periodic=self.settings.interval is not None)
        snapshot = self.snapshot
        if (
            snapshot is not None
            and not self._breaker.marked
            and set(sections.values()) & set(snapshot.sections)
        ):
            self._set_marker()
        restorer = self._restorer()
        try:
            for attr, section in sections.items():
                restorer.attribute(obj, spec.states[attr], attr, section)
        except BaseException:
            # strict=True: an object that failed to restore is not checkpointed.
            with self._lock:
                self._attached.remove(attached)
                self._sections_seen.difference_update(sections.values())
            self._background.end()
            raise
        self.report.time_to_ready = time.perf_counter() - self._started
        self.metrics.set("time_to_ready_seconds", self.report.time_to_ready)
        self._background.end()  # ready once the jobs it queued are done too
        return obj

    def _register(self, obj: object, spec: WarmSpec, sections: dict[str, str]) -> Attached | None:
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
            attached = Attached(obj, spec, sections)
            self._attached.append(attached)
            # Restoring from now on: no checkpoint may save its containers yet.
            self._background.begin()
        return attached

    def _restorer(self) -> AttributeRestore:
        """Restores attributes from the boot's generation, with its current settings."""
        return AttributeRestore(
            self.snapshot,
            store=self.store,
            namespace=self.settings.namespace,
            strict=self.settings.strict,
            stale=self._stale,
            progressive=self.settings.progressive,
            freeze_gc=self.settings.freeze_gc,
            clock=self.settings.clock,
            refresh=self.settings.refresh,
            reloader=self._reloader,
            report=self.report,
            metrics=self.metrics,
            enqueue=self._background.add,
            stopped=self._stop.is_set,
        )

    # -- background phase and readiness ---------------------------------------

    def _finish_restore(self) -> None:
        """Everything queued so far is in place: ready, and no longer restoring."""
        self.report.time_to_warm = time.perf_counter() - self._started
        # Cleared whenever restoring stops, set again by the next attach that
        # restores: a crash in any object's restore trips the breaker, and a
        # kill of the running service does not.
        self._breaker.clear(self.store)
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

    def _sections(self) -> dict[str, SectionSpec]:
        with self._lock:
            attached = list(self._attached)
        return sections_of(attached)

    def checkpoint(self) -> int | None:
        """Save every attached object's state now; return the generation (None if nothing to save).

        Raises:
            StoreError: with ``strict=True`` (otherwise the error is logged,
                counted, and None is returned).
        """
        return self._checkpoint("checkpoint", raise_errors=self.settings.strict)

    def _tick(self) -> None:
        """A periodic checkpoint, from the first attached object on.

        A tick with nothing attached would commit an empty generation over the
        previous one, and a tick during a background restore would save
        half-restored containers: both wait for the next tick.
        """
        if self.store is not None and self._attached and self.ready.is_set():
            self._checkpoint("periodic", raise_errors=False)

    def _lock_when_restored(self) -> bool:
        """Take the boot's lock once no restore is in progress (False: ``deadline`` passed).

        Pending work is checked again under the lock: an attach registers its
        object and counts itself pending in one step under that lock.
        """
        limit = (
            None if self.settings.deadline is None else time.monotonic() + self.settings.deadline
        )
        while True:
            remaining = None if limit is None else max(0.0, limit - time.monotonic())
            if self._background.pending and not self.ready.wait(remaining):
                return False
            self._lock.acquire()
            if not self._background.pending:
                return True
            self._lock.release()
            if limit is not None and time.monotonic() >= limit:
                return False
            time.sleep(0.001)  # ``ready`` is set just after the count drains

    def _checkpoint(self, why: str, *, raise_errors: bool) -> int | None:
        if self.store is None or not self._attached:
            return None
        if not self._lock_when_restored():
            # A checkpoint now would save half-restored containers over a
            # complete generation: keep the previous one instead.
            log.warning(
                "checkpoint of %r skipped: restore still in progress", self.settings.namespace
            )
            return None
        started = time.perf_counter()
        # Measures the save's CPU and its longest stretch between yields (_pacing).
        pacer = Pacer()
        try:
            try:
                # With an interval, untracked mappings keep fingerprints so
                # that each periodic checkpoint is a delta.
                with pacer:
                    generation = self.store.save(
                        self.settings.namespace,
                        self._sections(),
                        watermark=self._watermark_now(),
                        mode="auto" if self.settings.interval is None else "delta",
                    )
            finally:
                self._lock.release()
        except Exception as exc:
            # Never let a checkpoint failure reach the service (unless strict).
            report = CheckpointReport(
                namespace=self.settings.namespace,
                generation=None,
                seconds=time.perf_counter() - started,
                reason=why,
                error=str(exc),
                cpu_seconds=pacer.cpu,
                longest_hold_seconds=pacer.longest,
            )
            self.metrics.record_checkpoint(report)
            self.report.add_checkpoint(report)
            log.warning("%s checkpoint of %r failed: %s", why, self.settings.namespace, exc)
            if raise_errors:
                raise
            return None
        report = CheckpointReport(
            namespace=self.settings.namespace,
            generation=generation,
            seconds=time.perf_counter() - started,
            reason=why,
            cpu_seconds=pacer.cpu,
            longest_hold_seconds=pacer.longest,
        )
        self.metrics.record_checkpoint(report)
        self.report.add_checkpoint(report)
        log.info(
            "%s checkpoint of %r: generation %s in %.3fs (%.1f ms CPU, longest hold %.1f ms)",
            why,
            self.settings.namespace,
            generation,
            report.seconds,
            1000 * report.cpu_seconds,
            1000 * report.longest_hold_seconds,
            extra={
                "namespace": self.settings.namespace,
                "generation": generation,
                "seconds": report.seconds,
                "cpu_seconds": report.cpu_seconds,
                "longest_hold_seconds": report.longest_hold_seconds,
            },
        )
        if self.settings.remote is not None:
            from warmstart.remote import push_with_deadline  # noqa: PLC0415

            self.remote_outcomes["push"] = push_with_deadline(
                self.store,
                self.settings.remote,
                self.settings.namespace,
                deadline=self.settings.remote_deadline,
            )
        return generation

    def _watermark_now(self) -> Any:
        """The watermark for a save; a shutdown checkpoint past its deadline stops here."""
        settings = self.settings
        value = settings.watermark() if settings.watermark is not None else None
        if self._shutdown.abandoned:
            msg = f"Expected the shutdown checkpoint within {settings.deadline}s; it was abandoned"
            raise StoreTimeoutError(msg)
        return value

    def _final_checkpoint(self, why: str) -> None:
        """The shutdown checkpoint: once, within the deadline."""
        with self._lock:
            if self._final_done or self.store is None:
                return
            self._final_done = True
        self._shutdown.run(why, self.settings.deadline)

    # -- signals and exit -----------------------------------------------------

    def _arm(self) -> None:
        if self._periodic is not None and self.store is not None:
            self._periodic.start()
        self._hooks.arm(signals=self.settings.signals)

    def _disarm(self) -> None:
        self._hooks.disarm()

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._hooks.on_signal(signum, frame)

    @property
    def _final(self) -> threading.Thread | None:
        """The shutdown checkpoint's thread, once started (tests join it)."""
        return self._shutdown.thread

    def close(self) -> None:
        """Stop background work and periodic checkpoints, disarm, release the store."""
        if self._closed:
            return
        self._closed = True
        release(self)  # closed by hand inside its own ``with``
        self._stop.set()
        if self._periodic is not None:
            self._periodic.stop(self.settings.deadline)
        self._background.close(self.settings.deadline)
        self._disarm()
        self._release()

    def _release(self) -> None:
        """Close the snapshot and the store, unless a thread past its deadline still uses them."""
        threads = (self._periodic and self._periodic.thread, self._background.thread)
        busy = [t.name for t in threads if t and t.is_alive()]
        if self._shutdown.releases_later():
            # Closing the store under a thread still in it could crash the
            # process: the shutdown checkpoint's thread closes it when done.
            busy.append("warmstart-final-checkpoint")
        if busy:
            log.warning(
                "namespace %r: %s still running; the store stays open",
                self.settings.namespace,
                ", ".join(busy),
            )
            return
        if self.snapshot is not None:
            self.snapshot.close()
            self.snapshot = None
        if self.store is not None and self._owns_store:
            self.store.close()

    @property
    def namespace(self) -> str:
        """The namespace of this service's state."""
        return self.settings.namespace

    def __repr__(self) -> str:
        return f"Boot(namespace={self.settings.namespace!r}, status={self.report.status!r})"


boot = Boot
