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
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from warmstart._containers import check_container
from warmstart.boot._agent import Agent
from warmstart.boot._attachments import Attached, Attachments
from warmstart.boot._autotrack import track_attached
from warmstart.boot._background import BackgroundJobs
from warmstart.boot._breaker import CrashLoopBreaker
from warmstart.boot._capture import capture, release
from warmstart.boot._choose import choose_generation
from warmstart.boot._environment import Environment, environment, parse_duration
from warmstart.boot._handoff import HandoffReport, ask_predecessors
from warmstart.boot._open import open_within
from warmstart.boot._periodic import Periodic
from warmstart.boot._pooling import merge_pool
from warmstart.boot._pristine import Pristine
from warmstart.boot._reload import KeyReloader, is_coroutine_function
from warmstart.boot._saver import Saver
from warmstart.boot._sections import AttributeRestore, is_single
from warmstart.boot._settings import BootSettings
from warmstart.boot._shutdown import ExitHooks, FinalCheckpoint
from warmstart.boot._warm import WarmSpec, spec_of
from warmstart.contract import Contract
from warmstart.errors import (
    CheckpointNotFoundError,
    ConfigurationError,
    ContractError,
    StoreTimeoutError,
)
from warmstart.metrics import BootReport, CheckpointReport, Metrics, warn_cold_start
from warmstart.store import Snapshot, Store, check_namespace, is_lock

if TYPE_CHECKING:
    import asyncio

    from warmstart.remote import Remote, SyncOutcome
    from warmstart.workers import Pool

__all__ = ("Boot", "boot")


def __dir__() -> tuple[str, ...]:
    return __all__


log = logging.getLogger("warmstart.boot")
F = TypeVar("F", bound=Callable[..., Any])

#: Boots open in this process: after fork(), each child's copies start over (issue 14).
_OPEN_BOOTS: weakref.WeakSet[Boot] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for opened in list(_OPEN_BOOTS):
        opened._forked()  # noqa: SLF001 - this module's own class


os.register_at_fork(after_in_child=_after_fork_in_child)


def _located(
    env: Environment, target: str | os.PathLike[str] | Store | None, namespace: str | None
) -> tuple[str | os.PathLike[str] | Store, str]:
    """The store and namespace a boot uses: the arguments, else their ``WARMSTART_*`` variables."""
    if target is None:
        if env.directory is None:
            msg = "Expected a store directory: pass boot(path, ...) or set WARMSTART_DIR"
            raise ConfigurationError(msg)
        target = env.directory
    if namespace is None:
        if env.namespace is None:
            msg = "Expected a namespace: pass boot(namespace=...) or set WARMSTART_NAMESPACE"
            raise ConfigurationError(msg)
        namespace = env.namespace
    return target, namespace


def _check_seconds(name: str, seconds: float | None) -> None:
    if seconds is not None and not (
        isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and seconds > 0
    ):
        msg = f"Expected {name} as seconds > 0 or None, got {seconds!r}"
        raise ValueError(msg)


def _classes(capture: type | tuple[type, ...] | None) -> tuple[type, ...] | None:
    """``capture=`` as a tuple of classes, checked (a typo must not capture nothing silently)."""
    if capture is None:
        return None
    classes = capture if isinstance(capture, tuple) else (capture,)
    if not classes or not all(isinstance(c, type) for c in classes):
        msg = f"Expected capture as a class or a tuple of classes, got {capture!r}"
        raise TypeError(msg)
    return classes


class Boot:
    """Restore warm state at startup and checkpoint it until shutdown.

    Use as ``with``, ``async with`` (ASGI lifespans) or as a decorator of a
    sync or async function. Every ``@warm`` object constructed inside it is
    restored right after its ``__init__`` and registered for checkpoints;
    :meth:`attach` does the same for objects made elsewhere.

    Args:
        path_or_store: a store directory, or an open :class:`~warmstart.Store`
            (default: ``$WARMSTART_DIR``).
        namespace: the namespace of this service's state (default:
            ``$WARMSTART_NAMESPACE``).
        max_age: a checkpoint older than this starts cold (default:
            ``$WARMSTART_MAX_AGE``, else none).
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
        interval: seconds between periodic delta checkpoints (default:
            ``$WARMSTART_INTERVAL``, else none).
        signals: install SIGTERM/SIGINT handlers (main thread only), chaining
            to the handlers already installed.
        deadline: seconds a shutdown checkpoint may take; past it the previous
            generation stays the head and shutdown goes on.
        open_timeout: seconds opening the store may wait for LMDB's writer
            lock (held by a stopped process, say); past it the boot starts
            cold (``StoreTimeoutError`` with ``strict=True``).
        remote: a remote tier (``redis://...``, ``s3://...``, ``file://...`` or a
            ``warmstart.remote.Remote``; default ``$WARMSTART_REMOTE``): at
            start, pull a newer generation
            first; after each checkpoint, push. Never blocks beyond
            ``remote_deadline`` seconds per pull or push; outcomes are in
            ``remote_outcomes``.
        freeze_gc: after an eager restore, move restored objects to the
            collector's permanent generation (``gc.freeze()``): no later pause.
        watermark: a callable returning the source-of-truth position to record
            with each checkpoint.
        store_options: keyword arguments for ``Store`` when a path is given;
            without ``secret``, ``$WARMSTART_SECRET`` or the file named by
            ``$WARMSTART_SECRET_FILE`` gives it.
        clock: the wall clock (injectable for tests).
        capture: the ``@warm`` classes whose instances this boot captures
            (None: any). With several boots open, an instance goes to the
            innermost boot that accepts it.
        carry_forward: keep, in each new generation, the sections of the
            restored one that no object claims in this run (an object built
            lazily, or not at all), by reference. ``forget()`` lets one go.
        pool: the shared warm pool of a service's workers (True, or a
            :class:`warmstart.workers.Pool`): after an object's own restore,
            merge the other worker slots' newest state into its containers,
            most recent first, up to their capacity. The namespace must be a
            slot's (``warmstart.workers.claim_slot``).
        handoff: rolling deploys: before restoring, ask the running instances
            of this namespace (on this host through the store directory,
            across hosts through a Redis ``remote``) for a fresh checkpoint,
            and wait for it at most this many seconds (none running: no
            wait); ``handoff_report`` says what came. The boot also answers
            such requests from its successors while it runs.
        heartbeat: seconds between refreshes of this instance's reader record
            (which contract versions it reads), in the store and the remote;
            ``write_version="auto"`` contracts write what every live reader
            reads. None: no record.

    The store path, ``namespace``, the store's secret, ``remote``,
    ``interval`` and ``max_age``, left out (None), are read from their
    ``WARMSTART_*`` variables (:func:`warmstart.boot.environment`); an
    argument given wins. A malformed
    variable raises :class:`~warmstart.errors.ConfigurationError`.

    The boot captures the ``@warm`` objects built in its own context (its
    ``with`` body and what that awaits), not those built by requests in other
    tasks or threads; ``attach()`` attaches anything else. ``checkpoint()``
    returns a :class:`~warmstart.metrics.CheckpointReport`.
    """

    def __init__(
        self,
        path_or_store: str | os.PathLike[str] | Store | None = None,
        *,
        namespace: str | None = None,
        max_age: float | datetime.timedelta | str | None = None,
        validate: Callable[[Any], bool] | None = None,
        refresh: Callable[[str, list[Any]], Any] | None = None,
        progressive: bool = True,
        strict: bool = False,
        checkpoint_on_exit: bool = True,
        interval: float | datetime.timedelta | str | None = None,
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
        capture: type | tuple[type, ...] | None = None,
        carry_forward: bool = True,
        pool: Pool | bool | None = None,
        handoff: float | None = None,
        heartbeat: float | None = 10.0,
    ) -> None:
        env = environment()
        path_or_store, namespace = _located(env, path_or_store, namespace)
        self._target = path_or_store
        check_namespace(namespace)
        options = dict(store_options or {})
        if (
            env.secret is not None
            and "secret" not in options
            and not isinstance(path_or_store, Store)
        ):
            options["secret"] = env.secret
        if options:
            # A typo here would otherwise surface as "store unavailable" at open.
            import inspect  # noqa: PLC0415 - kept off the import path (~4 ms)

            inspect.signature(Store).bind(path_or_store, **options)
        _check_seconds("handoff", handoff)
        _check_seconds("heartbeat", heartbeat)
        self.settings = BootSettings(
            namespace=namespace,
            max_age=parse_duration(max_age) if max_age is not None else env.max_age,
            validate=validate,
            refresh=refresh,
            progressive=progressive,
            strict=strict,
            checkpoint_on_exit=checkpoint_on_exit,
            interval=parse_duration(interval) if interval is not None else env.interval,
            signals=signals,
            deadline=deadline,
            freeze_gc=freeze_gc,
            watermark=watermark,
            prefetch_concurrency=prefetch_concurrency,
            prefetch_batch=prefetch_batch,
            store_options=options,
            clock=clock,
            open_timeout=open_timeout,
            remote=remote if remote is not None else env.remote,
            remote_deadline=remote_deadline,
            capture=_classes(capture),
            carry_forward=carry_forward,
            pool=None if pool is None or pool is False else _checked_pool(pool, namespace),
            handoff=handoff,
            heartbeat=heartbeat,
        )
        interval = self.settings.interval
        #: "pull": the pull at startup, "push": the latest push (warmstart.remote).
        self.remote_outcomes: dict[str, SyncOutcome] = {}
        #: What the hand-off request got (``handoff=``), before the generation was picked.
        self.handoff_report: HandoffReport | None = None
        self._agent: Agent | None = None
        self._specs: dict[int, WarmSpec] = {}  # the @warm classes attached: what it reads
        self.report = BootReport(namespace=namespace)
        self.metrics = Metrics()
        self.ready = threading.Event()
        self.store: Store | None = None
        self.snapshot: Snapshot | None = None
        self._owns_store = False
        self._lock = threading.RLock()
        self._attached = Attachments(self._lock)
        self._capturing = False
        #: The generation restored from (None: cold); a late attach reopens it.
        self._generation: int | None = None
        self._incomplete = False  # forked during a restore: this copy must not save
        self._restoring: set[int] = set()  # threads inside an attach's own restore
        self._unnoted: list[Attached] = []  # attached since the last _finish_restore
        self._saver = Saver(
            self.settings, self.metrics, self.report, self._watermark_now, self.remote_outcomes
        )
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
        self._capturing = True
        capture(self)
        self._arm()

    def _uncapture(self) -> None:
        release(self)
        self._capturing = False
        if self.report.time_to_ready is None:
            self.report.time_to_ready = time.perf_counter() - self._started
        if self._background.idle() and not self.ready.is_set():
            self._finish_restore()
        self._release_snapshot()

    def accepts(self, obj: object) -> bool:
        """Whether this boot captures ``obj`` (see ``capture=``)."""
        wanted = self.settings.capture
        return self._capturing and not self._closed and (wanted is None or isinstance(obj, wanted))

    def capture_object(self, obj: object) -> None:
        """Called for a ``@warm`` object built in this boot's context: attach it."""
        self._attach(obj, captured=True)

    def _open(self) -> None:
        if self._entered:
            msg = "Expected a fresh boot: this one was already entered (use one per startup)"
            raise RuntimeError(msg)
        self._entered = True
        self._started = time.perf_counter()
        _OPEN_BOOTS.add(self)
        try:
            self.store = self._open_store()
        except Exception as exc:
            self._go_cold(f"store unavailable: {exc}", exc)
            return
        settings = self.settings
        if settings.handoff is not None and not self.store.readonly:
            # Running instances checkpoint (and push) now: the fresh state
            # comes in through the store, or the remote pull below.
            self.handoff_report = ask_predecessors(
                self.store.path, settings.namespace, settings.handoff, settings.remote
            )
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
        self._generation = None
        self._saver.restored_sections = frozenset()  # a generation not used is not carried
        self._saver.pristine = None
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
        choice = choose_generation(self.store, self.settings, self._breaker, self.report)
        snapshot = choice.snapshot
        if snapshot is not None:
            self.snapshot = snapshot
            self._generation = snapshot.generation
            self._saver.pristine = Pristine(snapshot.generation)
            # Stale: the values are cold, so not carried forward either.
            self._saver.restored_sections = (
                frozenset() if choice.stale else frozenset(snapshot.sections)
            )
        self._stale = choice.stale
        if choice.cold is not None:
            self._go_cold(choice.cold, failure=choice.failure)
        # No "restoring" marker yet: start-up code between here and the first
        # attach (connecting to a database, say) is not a restore, and a stop
        # there is not a crash in one (issue 14).

    # -- attaching and restoring ----------------------------------------------

    def attach(self, obj: object) -> object:
        """Restore ``obj``'s warm state now and register it for checkpoints.

        For objects the boot does not capture by itself: built before it
        opened (at import time, say), or while another boot captured. Returns
        ``obj``; attaching an attached object again does nothing. Held
        strongly until the boot closes.

        A ``@cached`` function defined before the boot (at import) is
        attached this way: ``boot.attach(quote)``.

        Raises:
            ContractError: ``obj`` is not a ``@warm`` instance or a ``@cached``
                function, a warm attribute holds an unsupported container, or a
                live object already owns one of its sections (give instances keys).
        """
        return self._attach(obj, captured=False)

    def forget(self, *sections: str) -> None:
        """Let sections of the restored generation go: later checkpoints no longer carry them.

        Only sections no attached object claims are carried forward in the
        first place (``carry_forward``); this drops state of objects that
        will not come back (a class removed, a tenant gone).
        """
        self._saver.forgotten.update(sections)

    def _attach(self, obj: object, *, captured: bool) -> object:
        spec = spec_of(obj)
        if spec is None:
            msg = (
                f"Expected an instance of a @warmstart.warm class or a @warmstart.cached "
                f"function, got {type(obj).__name__}"
            )
            raise ContractError(msg)
        instance_key = spec.instance_key(obj)
        sections = {attr: spec.section_name(attr, instance_key) for attr in spec.states}
        for attr, st in spec.states.items():
            # Checked before registering: a checkpoint must never meet it later.
            if st.keys_only or not is_single(getattr(obj, attr, None), st.contract):
                check_container(getattr(obj, attr, None), f"{type(obj).__name__}.{attr}")
            lock = getattr(obj, st.lock, None) if st.lock is not None else None
            if st.lock is not None and not is_lock(lock):
                msg = (
                    f"Expected {type(obj).__name__}.{st.lock} to hold the lock named by "
                    f"state(lock=...) for {attr!r}, got {type(lock).__name__}"
                )
                raise ContractError(msg)
        with self._lock:
            attached = self._attached.add(obj, spec, sections, captured=captured)
            if attached is None:
                return obj
            self._unnoted.append(attached)
            # Restoring from now on: no checkpoint may save its containers yet.
            self._background.begin()
        # Before the restore: periodic checkpoints cost what changed (_autotrack).
        track_attached(obj, spec, periodic=self.settings.interval is not None)
        if id(spec) not in self._specs:
            self._specs[id(spec)] = spec
            if self._agent is not None:
                self._agent.poke()  # new contracts: say what this instance reads
        self._restoring.add(threading.get_ident())
        try:
            snapshot = self._snapshot_for(sections.values())
            restorer = self._restorer(snapshot)
            for attr, section in sections.items():
                restorer.attribute(obj, spec.states[attr], attr, section)
            merge_pool(
                obj,
                spec,
                sections,
                settings=self.settings,
                store=self.store,
                stale=self._stale,
                report=self.report,
                enqueue=self._background.add,
            )
        except BaseException:
            # strict=True (or a signal's KeyboardInterrupt): an object that
            # failed to restore is not checkpointed.
            self._attached.remove(attached)
            self._background.end()
            raise
        finally:
            self._restoring.discard(threading.get_ident())
        self.report.time_to_ready = time.perf_counter() - self._started
        self.metrics.set("time_to_ready_seconds", self.report.time_to_ready)
        self._background.end()  # ready once the jobs it queued are done too
        return obj

    def _snapshot_for(self, sections: Iterable[str]) -> Snapshot | None:
        """The generation to restore from, reopened for a late attach; marks "restoring".

        The boot's read transaction ends once no restore needs it (an open one
        keeps LMDB from reusing pages freed after it: the file would grow by
        a checkpoint's bytes at every checkpoint). An attach after that opens
        the restored generation again, or the head when retention dropped it
        (the head carries unclaimed sections forward unchanged).
        """
        with self._lock:
            if self.snapshot is None and self._generation is not None and self.store is not None:
                try:
                    self.snapshot = self.store.load(
                        self.settings.namespace, generation=self._generation
                    )
                except CheckpointNotFoundError:
                    self.snapshot = self.store.load(self.settings.namespace)
            snapshot = self.snapshot
            if (
                snapshot is not None
                and self.store is not None
                and not self._breaker.marked
                and any(map(snapshot.has_section, sections))
            ):
                # Say "restoring": a boot that dies before clearing it trips the breaker.
                self._breaker.mark(self.store, snapshot.generation, self.settings.clock())
            return snapshot

    def _release_snapshot(self, *, force: bool = False) -> None:
        """End the read transaction when no restore needs it (see :meth:`_snapshot_for`).

        While the boot captures (its ``with`` body) the transaction stays for
        the next object, unless ``force``: a checkpoint ends it, so that a
        boot that captures for the service's whole life (an ASGI lifespan)
        holds it only until its first checkpoint.
        """
        with self._lock:
            if self._background.pending or (self._capturing and not force):
                return
            snapshot, self.snapshot = self.snapshot, None
        if snapshot is not None:
            snapshot.close()

    def _restorer(self, snapshot: Snapshot | None) -> AttributeRestore:
        """Restores attributes from ``snapshot``, with the boot's current settings."""
        return AttributeRestore(
            snapshot,
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
        pristine = self._saver.pristine
        with self._lock:
            unnoted, self._unnoted = self._unnoted, []
        if pristine is not None:
            pristine.note(unnoted)
        self.ready.set()
        self._release_snapshot()

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

    def checkpoint(self) -> CheckpointReport:
        """Save every attached object's state now, and say what was saved.

        Never raises unless ``strict=True``: the report's ``status`` is
        ``"saved"``, ``"partial"`` (a section failed: its previous state is
        kept, the others are saved), ``"failed"``, ``"skipped"`` or
        ``"nothing"``, with ``generation``, ``saved``, ``carried``, ``failed``
        and ``error``.

        Raises:
            StoreError: with ``strict=True``.
        """
        return self._checkpoint("checkpoint", raise_errors=self.settings.strict)

    def _tick(self) -> None:
        """A periodic checkpoint, from the first attached object on.

        A tick with nothing attached would commit an empty generation over the
        previous one, and a tick during a background restore would save
        half-restored containers: both wait for the next tick.
        """
        if self.store is not None and len(self._attached) and self.ready.is_set():
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

    def _checkpoint(self, why: str, *, raise_errors: bool) -> CheckpointReport:
        started = time.perf_counter()
        saver = self._saver
        if self.store is None or self._closed:
            reason = "the boot is closed" if self._closed else self.report.reason or "no store"
            return saver.report(why, "failed", started, generation=None, error=reason)
        if self._incomplete:
            # Forked while restoring: this copy holds half-restored containers.
            error = "this process was forked during a restore; its state is incomplete"
            return saver.report(why, "skipped", started, generation=None, error=error)
        attached = self._attached.live()
        if not attached:
            return saver.nothing_attached(why, started)
        if not self._lock_when_restored():
            # A checkpoint now would save half-restored containers over a
            # complete generation: keep the previous one instead.
            error = "restore still in progress; the previous generation stays the head"
            log.warning("%s checkpoint of %r skipped: %s", why, self.settings.namespace, error)
            return saver.report(why, "skipped", started, generation=None, error=error)
        try:
            self._release_snapshot(force=True)
            return saver.save(self.store, attached, why, raise_errors=raise_errors)
        finally:
            self._lock.release()

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
        if threading.get_ident() in self._restoring:
            # A signal interrupted a restore on this very thread: its containers
            # are half restored, and waiting for the restore would only wait
            # out the deadline (it resumes after the handler). The previous
            # generation stays the head.
            log.warning(
                "%s during the restore of %r: no shutdown checkpoint; the previous "
                "generation stays the head",
                why,
                self.settings.namespace,
            )
            return
        self._shutdown.run(why, self.settings.deadline)
        # Successors asking from now on are answered "closed": the head is
        # this shutdown checkpoint. This instance no longer counts as a reader.
        self._stop_agent()

    # -- signals and exit -----------------------------------------------------

    def _arm(self) -> None:
        if self._periodic is not None and self.store is not None:
            self._periodic.start()
        self._start_agent()
        self._hooks.arm(signals=self.settings.signals)

    def _start_agent(self) -> None:
        """Reader records and hand-off answers (``_agent``), on a writable store."""
        settings = self.settings
        if (
            self._agent is not None
            or self.store is None
            or self.store.readonly
            or (settings.heartbeat is None and settings.handoff is None)
        ):
            return
        agent = Agent(
            self.store,
            settings,
            checkpoint=functools.partial(self._checkpoint, raise_errors=False),
            contracts=self._contracts,
            metrics=self.metrics,
        )
        agent.start()
        self._agent = agent
        self._saver.expose = agent.expose

    def _stop_agent(self) -> None:
        if self._agent is not None:
            self._agent.stop(min(self.settings.deadline, 5.0))

    def _contracts(self) -> list[Contract[Any]]:
        """The contracts of the attached objects' values, each once (what this boot reads)."""
        contracts: dict[int, Contract[Any]] = {}
        for spec in list(self._specs.values()):
            for st in spec.states.values():
                if st.contract is not None and not st.keys_only:
                    contracts.setdefault(id(st.contract), st.contract)
        return list(contracts.values())

    def _disarm(self) -> None:
        self._hooks.disarm()

    def _on_signal(self, signum: int, frame: Any) -> None:
        # A stop asked for is not a crash: whatever restore it interrupts, the
        # crash-loop breaker must not quarantine that generation (issue 14).
        self._breaker.clear(self.store)
        self._hooks.on_signal(signum, frame)

    def _forked(self) -> None:
        """This is a child of the process that opened the boot: start over in it.

        Threads do not survive fork() and locks a parent thread held stay
        held: the child gets fresh ones, its own periodic thread, and none of
        the parent's read transaction (LMDB forbids using it here). A child
        forked in the middle of a restore holds half-restored containers: it
        never checkpoints them.
        """
        self._lock = threading.RLock()
        self._attached.relock(self._lock)
        if self._background.pending:
            self._incomplete = True
            log.warning(
                "namespace %r: forked while restoring; this process will not checkpoint "
                "(fork after boot.wait_ready())",
                self.settings.namespace,
            )
        self._background = BackgroundJobs(self._lock, self.ready, self._stop, self._finish_restore)
        self._restoring = set()
        self.snapshot = None  # the parent's transaction: abandoned, never aborted here
        self._breaker = CrashLoopBreaker(self.settings.namespace)
        self._shutdown.forked()
        if self._agent is not None:
            # The parent's socket and records are its own: this child gets its own.
            self._agent.forked()
            self._agent = None
            self._saver.expose = None
            if not self._closed:
                self._start_agent()
        if self._periodic is not None and self._periodic.thread is not None:
            self._periodic.thread = None
            if not self._closed:
                self._periodic.start()

    @property
    def _final(self) -> threading.Thread | None:
        """The shutdown checkpoint's thread, once started (tests join it)."""
        return self._shutdown.thread

    def shutdown(self) -> None:
        """Take the shutdown checkpoint (once, within ``deadline``), then close.

        What leaving the ``with`` does with ``checkpoint_on_exit=True``. For a
        boot kept open past its ``with`` (``checkpoint_on_exit=False``): call
        it from the server's exit hook (gunicorn's ``worker_exit``, an ASGI
        lifespan's shutdown) instead of waiting for ``atexit``.
        """
        if self._capturing:
            self._uncapture()
        self._final_checkpoint("exit")
        self.close()

    def close(self) -> None:
        """Stop background work and periodic checkpoints, disarm, release the store."""
        if self._closed:
            return
        self._closed = True
        _OPEN_BOOTS.discard(self)
        release(self)  # closed by hand inside its own ``with``
        self._stop.set()
        if self._periodic is not None:
            self._periodic.stop(self.settings.deadline)
        self._background.close(self.settings.deadline)
        self._stop_agent()
        self._disarm()
        self._breaker.close(self.store)
        self._release()

    def _release(self) -> None:
        """Close the snapshot and the store, unless a thread past its deadline still uses them."""
        threads = (
            self._periodic and self._periodic.thread,
            self._background.thread,
            self._agent and self._agent.thread,
        )
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


def _checked_pool(pool: Pool | bool, namespace: str) -> Pool | None:
    """``pool=`` checked (``warmstart.workers`` is imported only by boots that pool)."""
    from warmstart.workers import check_pool  # noqa: PLC0415 - ~1 ms of every import

    return check_pool(pool, namespace)
