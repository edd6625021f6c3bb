"""One service's warm state in one worker process: what every integration shares.

Private to the integrations wing. Servers differ in where a worker process
starts, where the application is imported and how a worker stops (see the
module of each); what happens in the worker is the same everywhere, and is
:class:`WorkerBoot`:

1. ``collect()`` early (at import, or in a pre-forking master before the
   application is imported): ``@warm`` objects built from then on are kept.
2. ``start()`` in the serving process: claim a worker slot (``mode="pool"``
   or ``"slot"``), open a boot on the slot's namespace (``pool=True`` in pool
   mode), attach the objects collected so far; objects built from then on in
   this context are captured by the boot itself.
3. ``loaded()`` once the application is built: the boot stops capturing
   (per-request objects must not be captured) and stays open, checkpointing
   every ``interval`` seconds.
4. ``stop()`` at shutdown: the shutdown checkpoint within ``deadline``, then
   the slot is released for the next worker.

A process has one current WorkerBoot (:func:`configure`, :func:`current`):
the gunicorn hooks, the Flask extension, the Django app config and the ASGI
lifespan find the same one, so they can be combined (a Flask app under the
gunicorn hooks).

Forks are handled as everywhere else in warmstart, by ``os.register_at_fork``
hooks (issue 14): in a child, the boot's own hook gives an inherited boot
fresh locks and threads; then this module's hook closes that copy without a
checkpoint and forgets it, since its slot is the parent's (the slots' hook
drops the child's copy of the lock), and a master's child is no longer
deferred. The child's ``start()`` claims a slot of its own.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any, Literal

from warmstart.boot import Boot, Collector, environment
from warmstart.errors import ConfigurationError
from warmstart.workers import Pool, WorkerSlot, claim_slot, release_slot

__all__ = ("Mode", "WorkerBoot", "configure", "current", "health_payload", "worker_boot")

log = logging.getLogger("warmstart.integrations")

Mode = Literal["pool", "slot", "shared"]
MODES = ("pool", "slot", "shared")
#: Seconds between periodic checkpoints when neither ``interval`` nor
#: ``$WARMSTART_INTERVAL`` says: a worker killed without a shutdown checkpoint
#: (SIGKILL, an OOM kill) loses at most this much.
DEFAULT_INTERVAL = 60.0


def _check_options(options: dict[str, Any]) -> None:
    """Refuse what boot() would refuse, at configuration time, naming the setting."""
    for name in ("path_or_store", "namespace", "checkpoint_on_exit"):
        if name in options:
            msg = f"Expected {name!r} to be chosen by the integration, got it in the boot options"
            raise ConfigurationError(msg)
    try:
        inspect.signature(Boot).bind(None, **options)
    except TypeError as exc:
        msg = f"Expected boot() options, got {sorted(options)}: {exc}"
        raise ConfigurationError(msg) from None


class WorkerBoot:
    """One service's warm state in this worker process: slot, boot, collected objects.

    Args:
        directory: the store directory (default ``$WARMSTART_DIR``).
        namespace: the service's name (default ``$WARMSTART_NAMESPACE``); a
            worker's state lives in ``"<namespace>/worker-<slot>"``, or in the
            namespace itself with ``mode="shared"``.
        mode: ``"pool"`` (default): each worker restores its own slot, then the
            newest of the other slots' state up to its containers' capacity;
            ``"slot"``: its own slot only; ``"shared"``: one namespace for all
            workers, the last checkpoint wins (warmstart 0.2's behaviour).
        pool: the pool's settings in ``"pool"`` mode (a
            :class:`warmstart.workers.Pool`: ``prefer_own``, ``limit``, ``max_age``).
        workers: the number of worker slots (the server's worker count; the
            gunicorn hooks know it). None: ``$WEB_CONCURRENCY`` if set, else
            the lowest free slot without waiting.
        slot_wait: seconds a starting worker waits for one of the ``workers``
            slots while all are held (its predecessor is still checkpointing),
            before taking one beyond.
        capture: the ``@warm`` classes this service takes (None: any).
        **options: arguments for :func:`warmstart.boot` (``interval``,
            ``max_age``, ``deadline``, ``progressive``, ``store_options``, ...);
            ``interval`` defaults to ``$WARMSTART_INTERVAL``, else 60 s.
    """

    def __init__(
        self,
        *,
        directory: str | os.PathLike[str] | None = None,
        namespace: str | None = None,
        mode: Mode = "pool",
        workers: int | None = None,
        slot_wait: float = 0.0,
        capture: type | tuple[type, ...] | None = None,
        pool: Pool | None = None,
        **options: Any,
    ) -> None:
        env = environment()
        where = directory if directory is not None else env.directory
        if where is None:
            msg = "Expected a store directory: pass directory= or set WARMSTART_DIR"
            raise ConfigurationError(msg)
        service = namespace if namespace is not None else env.namespace
        if service is None:
            msg = "Expected the service's name: pass namespace= or set WARMSTART_NAMESPACE"
            raise ConfigurationError(msg)
        if mode not in MODES:
            msg = f"Expected mode in {MODES}, got {mode!r}"
            raise ConfigurationError(msg)
        if pool is not None and (mode != "pool" or not isinstance(pool, Pool)):
            msg = f"Expected pool= as a warmstart.workers.Pool with mode='pool', got {pool!r}"
            raise ConfigurationError(msg)
        if workers is None and os.environ.get("WEB_CONCURRENCY", "").isdigit():
            workers = int(os.environ["WEB_CONCURRENCY"]) or None
        options.setdefault("interval", env.interval or DEFAULT_INTERVAL)
        _check_options(options)
        self.directory = str(where)
        self.service = service
        self.mode: Mode = mode
        self.pool = pool if pool is not None else Pool()
        self.workers = workers
        self.slot_wait = slot_wait
        self.options = options
        self.collector = Collector(capture)
        if capture is not None:
            options["capture"] = capture
        #: The boot of this process (None until started here).
        self.boot: Boot | None = None
        #: The slot this process holds (None until started, or in shared mode).
        self.slot: WorkerSlot | None = None
        #: A pre-forking master: collect here, boot only in the forked workers.
        self._deferred = False
        self._loaded = False
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return (
            f"WorkerBoot(namespace={self.service!r}, mode={self.mode!r}, "
            f"slot={self.slot.index if self.slot else None}, started={self.started})"
        )

    # -- state ------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """Whether this process has started its boot."""
        return self.boot is not None

    @property
    def deferred(self) -> bool:
        """Whether this process is a pre-forking master: its workers boot, it does not."""
        return self._deferred

    def collect(self) -> None:
        """Keep the ``@warm`` objects built from now on in this context, for ``start()``."""
        if not self.started and not self.collector.collecting:
            self.collector.start()

    def defer(self) -> None:
        """This process is a pre-forking master: collect, and start only in forked workers."""
        self._deferred = True
        self.collect()

    def _forked(self) -> None:
        """In a child of fork() (see the module's docstring): a worker, with no boot yet."""
        self._lock = threading.RLock()  # one a parent thread held stays held in the child
        self._deferred = False
        inherited, self.boot, self.slot, self._loaded = self.boot, None, None, False
        if inherited is not None:
            # The boot hook has reset this copy for the child; the slot and its
            # namespace are the parent's, so it never checkpoints here.
            inherited.close()

    # -- starting ---------------------------------------------------------------

    def _boot(self, workers: int | None, wait: float | None) -> Boot:
        """Claim the slot and make the boot (not entered yet)."""
        slot = None
        namespace = self.service
        if self.mode != "shared":
            slot = claim_slot(
                self.directory,
                self.service,
                workers=workers if workers is not None else self.workers,
                wait=self.slot_wait if wait is None else wait,
            )
            namespace = slot.namespace
        self.slot = slot
        return Boot(
            self.directory,
            namespace=namespace,
            pool=self.pool if self.mode == "pool" else None,
            checkpoint_on_exit=False,
            **self.options,
        )

    def _started(self, boot: Boot) -> None:
        self.boot = boot
        self._loaded = False
        attached = self.collector.hand_over(boot)
        log.info(
            "warm boot of %r in pid %d: %s, %d collected object(s) attached",
            boot.namespace,
            os.getpid(),
            boot.report.status,
            attached,
            extra={"namespace": boot.namespace},
        )

    def start(self, *, workers: int | None = None, wait: float | None = None) -> Boot | None:
        """Start in this process (once): slot, boot, collected objects; None in a master.

        From here until :meth:`loaded`, ``@warm`` objects built in this
        context are captured by the boot.
        """
        with self._lock:
            if self.started:
                return self.boot
            if self.deferred:
                self.collect()
                return None
            boot = self._boot(workers, wait)
            try:
                boot.__enter__()
                self._started(boot)
            except BaseException:
                boot.close()
                self._release()
                raise
            return boot

    async def astart(self, *, workers: int | None = None, wait: float | None = None) -> Boot | None:
        """:meth:`start` for an event loop: the slot wait and the restore run in threads."""
        if self.started or self.deferred:
            return self.start()
        boot = await asyncio.to_thread(self._boot, workers, wait)
        try:
            await boot.__aenter__()
            await asyncio.to_thread(self._started, boot)
        except BaseException:
            boot.close()
            self._release()
            raise
        return boot

    def loaded(self) -> None:
        """The application is built: the boot stops capturing and stays open."""
        boot = self.boot if self.started else None
        if boot is not None and not self._loaded:
            self._loaded = True
            boot.__exit__(None, None, None)  # checkpoint_on_exit=False: it stays open

    # -- stopping ---------------------------------------------------------------

    def stop(self) -> None:
        """The shutdown checkpoint (within ``deadline``), close, release the slot."""
        with self._lock:
            boot = self.boot if self.started else None
            if boot is None:
                return
            try:
                boot.shutdown()
            finally:
                self.boot = None
                self._release()

    async def astop(self) -> None:
        """:meth:`stop` in a thread: the event loop goes on while the checkpoint runs."""
        await asyncio.to_thread(self.stop)

    def _release(self) -> None:
        if self.slot is not None:
            release_slot(self.slot)  # a no-op unless this process holds it
        self.slot = None

    # -- health -----------------------------------------------------------------

    def status(self, min_readiness: float = 1.0) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON body) of a readiness probe: 200 warm, 503 still warming."""
        boot = self.boot if self.started else None
        return health_payload(boot, self.slot, min_readiness)


def health_payload(
    boot: Boot | None, slot: WorkerSlot | None = None, min_readiness: float = 1.0
) -> tuple[int, dict[str, Any]]:
    """200 once ``boot.readiness`` reaches ``min_readiness`` (1.0: fully restored), else 503.

    The body says why: ``status`` is ``"starting"`` (no boot yet), ``"warming"``,
    or the boot's outcome (``"warm"``, ``"partial"``, ``"cold"``: a cold start
    is ready, there is nothing to wait for).
    """
    if boot is None:
        return 503, {"status": "starting", "readiness": 0.0}
    readiness = boot.readiness
    ready = readiness >= min_readiness
    report = boot.report
    body: dict[str, Any] = {
        "status": report.status if ready else "warming",
        "readiness": round(readiness, 4),
        "namespace": boot.namespace,
        "slot": slot.index if slot is not None else None,
        "generation": report.generation,
        "restored": report.restored,
        "pooled": sum(s.pooled for s in report.sections.values()),
        "pid": os.getpid(),
    }
    return (200 if ready else 503), body


_CURRENT: WorkerBoot | None = None
_CURRENT_LOCK = threading.Lock()


def _after_fork_in_child() -> None:
    global _CURRENT_LOCK  # noqa: PLW0603 - a lock a parent thread held stays held in the child
    _CURRENT_LOCK = threading.Lock()
    if _CURRENT is not None:
        _CURRENT._forked()  # noqa: SLF001 - this module's own class


# Registered after warmstart.boot's own hook (imported above), so it runs after it.
os.register_at_fork(after_in_child=_after_fork_in_child)


def in_prefork_master() -> bool:
    """Whether this code runs in a gunicorn master importing the app (``preload_app``).

    The app is imported in ``Arbiter.setup``, before any hook: found on the stack.
    """
    if "gunicorn.arbiter" not in sys.modules:
        return False
    frame = inspect.currentframe()
    while frame is not None:
        code = frame.f_code
        path = Path(code.co_filename)
        if code.co_name in ("setup", "__init__") and path.parts[-2:] == ("gunicorn", "arbiter.py"):
            return True
        frame = frame.f_back
    return False


def start_for_app(service: WorkerBoot, *, serving: bool = True) -> None:
    """Where a framework builds its app (Flask's ``init_app``, Django's ``ready()``).

    Starts the boot now, unless this process will not serve: a gunicorn master
    importing the app with ``preload_app`` (its workers start at their first
    request, or in ``post_fork`` with the gunicorn hooks), or ``serving=False``
    (a dev server's reloader watcher, a management command). Objects built from
    here on are collected meanwhile.
    """
    if service.started or service.deferred:
        return
    if in_prefork_master():
        service.defer()
        return
    if not serving:
        service.collect()
        return
    service.start()


def configure(**settings: Any) -> WorkerBoot:
    """Set this process's WorkerBoot (see :class:`WorkerBoot` for the settings).

    Called again before it started (a gunicorn SIGHUP re-reads gunicorn.conf.py),
    the settings are replaced and the objects collected so far are kept.
    """
    global _CURRENT  # noqa: PLW0603 - one warm service per process
    with _CURRENT_LOCK:
        previous = _CURRENT
        if previous is not None and previous.started:
            log.warning("warmstart is already started in this process; settings unchanged")
            return previous
        made = WorkerBoot(**settings)
        if previous is not None:
            made.collector = previous.collector
            if previous.deferred:
                made.defer()
        _CURRENT = made
        return made


def worker_boot() -> WorkerBoot | None:
    """This process's :class:`WorkerBoot`, once an integration configured one.

    Its ``boot`` is the worker's boot once started (to ``attach()`` an object
    built elsewhere, or read ``boot.report``); ``slot`` is the worker's slot.
    """
    return _CURRENT


current = worker_boot


def ensure(**settings: Any) -> WorkerBoot:
    """The current WorkerBoot, configured with ``settings`` if there is none yet."""
    found = current()
    return found if found is not None else configure(**settings)
