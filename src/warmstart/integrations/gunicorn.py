"""Hooks for ``gunicorn.conf.py``: each worker restores its slot's warm state and saves it.

.. code-block:: python

    # gunicorn.conf.py
    from warmstart.integrations import gunicorn as warm

    workers = 4
    warm.configure(namespace="catalog")    # directory: directory=... or $WARMSTART_DIR
    post_fork = warm.post_fork
    post_worker_init = warm.post_worker_init
    worker_exit = warm.worker_exit

What happens, and why there (gunicorn 27; the same order since 20):

- ``configure()`` runs in the master when gunicorn reads this file, before
  it imports the application: from then on the master *collects* the
  ``@warm`` objects it builds (with ``preload_app``, the app's import-time
  objects) without opening the store. The master never restores or saves:
  it does not serve, and forking with LMDB open is what issue 14 made safe,
  not what a master should do.
- ``post_fork`` runs in each new worker before it imports the application:
  it claims the lowest free slot of ``workers`` (``server.num_workers``),
  waiting up to ``slot_wait`` seconds (default: a third of gunicorn's
  ``timeout``, at most 10 s) when all are held, which is the case during a
  SIGHUP reload, where gunicorn starts the new workers before the old ones
  have checkpointed and exited: a new worker takes its slot as the old one
  lets go, and restores the old one's final checkpoint. It opens the boot on
  the slot's namespace and attaches the objects the master collected;
  objects the worker builds while importing the app are captured.
- ``post_worker_init`` runs once the worker has loaded the app: the boot
  stops capturing (objects built by requests are not state) and stays open,
  checkpointing every ``interval`` seconds (default 60).
- ``worker_exit`` runs when the worker stops (SIGTERM, SIGQUIT, SIGHUP's
  retirement, ``max_requests``, a timeout's SIGABRT): the shutdown
  checkpoint, within ``deadline`` (default 20 s; keep it under gunicorn's
  ``graceful_timeout``, 30 s), then the slot is released. A worker killed by
  SIGKILL loses what changed since its last periodic checkpoint; its slot is
  free at once and the replacement restores that checkpoint.

Signal handlers are not installed (``signals=False``): gunicorn installs its
own in each worker after ``post_fork``, and ``worker_exit`` covers every
graceful stop. For ASGI apps under ``-k uvicorn_worker.UvicornWorker``, use
the lifespan of :mod:`warmstart.integrations.asgi` as well (uvicorn's worker
does not call ``worker_exit`` on SIGTERM); it finds the boot these hooks
started.
"""

from __future__ import annotations

import logging
from typing import Any

from warmstart.integrations._common import WorkerBoot, current, ensure
from warmstart.integrations._common import configure as _configure

__all__ = ("configure", "post_fork", "post_worker_init", "status", "worker_exit")

log = logging.getLogger("warmstart.integrations")

#: The longest a new worker waits for its slot (gunicorn aborts a worker
#: that does not notify within ``timeout``).
MAX_SLOT_WAIT = 10.0


def __dir__() -> tuple[str, ...]:
    return __all__


def configure(**settings: Any) -> WorkerBoot:
    """Configure the workers' warm boot; call it in gunicorn.conf.py (it runs in the master).

    Takes the settings of the integrations (``directory``, ``namespace``,
    ``mode="pool"|"slot"|"shared"``, ``workers``, ``slot_wait``, ``capture``)
    and any :func:`warmstart.boot` argument (``interval``, ``max_age``,
    ``deadline``, ``store_options``, ...); unset ones come from the
    ``WARMSTART_*`` variables. From this call on, the master collects the
    ``@warm`` objects it builds (``preload_app``) for the workers to attach.

    Raises:
        ConfigurationError: no directory or namespace, or a bad setting.
    """
    settings.setdefault("signals", False)
    service = _configure(**settings)
    service.defer()
    return service


def _service() -> WorkerBoot:
    return ensure(signals=False)


def post_fork(server: Any, worker: Any) -> None:  # noqa: ARG001 - gunicorn checks arity
    """gunicorn ``post_fork``: claim this worker's slot and open its boot."""
    service = current()
    if service is None:
        service = _service()
        if getattr(server.cfg, "preload_app", False):
            log.warning(
                "preload_app is on but warmstart.integrations.gunicorn.configure() was not called "
                "in gunicorn.conf.py: objects the master built while importing the app are not "
                "restored (call configure() there, before the app is imported)"
            )
    wait = service.slot_wait or min(MAX_SLOT_WAIT, float(server.cfg.timeout) / 3)
    service.start(workers=int(server.num_workers), wait=wait)


def post_worker_init(worker: Any) -> None:  # noqa: ARG001 - gunicorn checks arity
    """gunicorn ``post_worker_init``: the app is loaded; stop capturing, stay open."""
    service = current()
    if service is not None:
        service.loaded()


def status(min_readiness: float = 1.0) -> tuple[int, dict[str, Any]]:
    """A readiness probe's answer for this worker: ``(200, body)`` warm, ``(503, body)`` warming.

    For a plain WSGI app's health route; the body is JSON-ready (status,
    readiness, slot, generation, entries restored and pooled).
    """
    service = current()
    if service is None:
        return 503, {"status": "starting", "readiness": 0.0}
    return service.status(min_readiness)


def worker_exit(server: Any, worker: Any) -> None:  # noqa: ARG001 - gunicorn checks arity
    """gunicorn ``worker_exit``: the shutdown checkpoint, then release the slot."""
    service = current()
    if service is not None:
        service.stop()  # a no-op in the master (gunicorn may call it there)
