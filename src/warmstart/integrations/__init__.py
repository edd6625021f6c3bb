"""Framework and server integrations, one module each, imported on first use.

- ``warmstart.integrations.gunicorn``: hooks for ``gunicorn.conf.py``;
- ``warmstart.integrations.asgi``: a lifespan and a health endpoint for
  Starlette, FastAPI and any ASGI app under uvicorn (``--workers N``);
- ``warmstart.integrations.flask``: the ``Warmstart`` extension (``init_app``);
- ``warmstart.integrations.django``: ``INSTALLED_APPS`` entry (its app
  config boots in ``ready()``) and a health view.

Each worker process claims a stable slot (``warmstart.workers``), restores
its predecessor's state and, in the default ``"pool"`` mode, the newest of the
other workers' state up to its containers' capacity. The settings come from
arguments, the framework's own configuration, or the ``WARMSTART_*``
variables (``warmstart.boot.environment``). Install the extra of the
framework: ``pip install 'warmstart[gunicorn]'`` (or ``uvicorn``, ``starlette``,
``fastapi``, ``flask``, ``django``).

Every integration drives this process's :class:`WorkerBoot` (one per
process, :func:`worker_boot`), so they combine: a Flask app under the
gunicorn hooks, a FastAPI lifespan under gunicorn's ``UvicornWorker``.
"""

from __future__ import annotations

from warmstart._api import claim
from warmstart.integrations._common import WorkerBoot, worker_boot

__all__ = ("WorkerBoot", "worker_boot")

claim("warmstart.integrations", WorkerBoot, worker_boot)


def __dir__() -> tuple[str, ...]:
    return __all__
