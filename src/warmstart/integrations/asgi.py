"""ASGI lifespans (Starlette, FastAPI; uvicorn ``--workers N``) and a readiness endpoint.

.. code-block:: python

    from starlette.applications import Starlette
    from starlette.routing import Route
    from warmstart.integrations.asgi import WarmLifespan

    warm = WarmLifespan(namespace="catalog")      # directory: directory=... or $WARMSTART_DIR
    catalog = Catalog()                           # built at import: collected
    app = Starlette(routes=[Route("/health", warm.health)], lifespan=warm)

    # FastAPI: app = FastAPI(lifespan=warm); app.add_route("/health", warm.health)

- Made at import, a :class:`WarmLifespan` starts collecting the ``@warm``
  objects built afterwards in the same context (uvicorn imports the app in
  each worker before the lifespan starts, so a service object built at
  import exists before any boot).
- Lifespan startup, in each worker process: claim the lowest free worker
  slot (the slot wait and the restore run in threads: the event loop stays
  free), open the boot on the slot's namespace, attach the collected objects;
  objects built by an inner lifespan (``WarmLifespan(inner)``) are captured.
  In the default ``"pool"`` mode each worker also merges the other slots'
  newest state.
- Lifespan shutdown (uvicorn runs it after draining, on SIGTERM, SIGINT and
  ``--limit-max-requests``): the shutdown checkpoint within ``deadline``. No
  signal handlers are installed: uvicorn turns both signals into the
  lifespan shutdown, and restores its own handlers afterwards anyway.
- :meth:`WarmLifespan.health` answers 200 once ``boot.readiness`` reaches
  ``min_readiness`` (1.0: the whole checkpoint is back) and 503 while the
  background restore runs, with a JSON body (status, readiness, slot, ...).

uvicorn numbers no workers, so ``workers`` is unknown unless given (or
``$WEB_CONCURRENCY``): a worker takes the lowest free slot at once. Its
rolling SIGHUP restart (0.51 and later) starts each replacement before
stopping its predecessor: the replacement takes the next free slot (N for the
first one, then the slots the old workers free); in pool mode every worker
still gets the union of the slots' newest state.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from warmstart._api import claim
from warmstart.boot import Boot
from warmstart.integrations._common import WorkerBoot, configure, ensure

__all__ = ("WarmLifespan",)


def __dir__() -> tuple[str, ...]:
    return __all__


class WarmLifespan:
    """An ASGI lifespan (``lifespan=`` of Starlette and FastAPI) that boots each worker warm.

    Args:
        inner: the application's own lifespan (``app -> async context
            manager``), run inside; objects it builds are captured, and the
            state it yields is the lifespan's state.
        min_readiness: :meth:`health` answers 200 from this readiness on.
        **settings: ``directory``, ``namespace``, ``mode``, ``workers``,
            ``slot_wait``, ``capture`` and :func:`warmstart.boot` arguments,
            as for the other integrations (unset: the ``WARMSTART_*``
            variables). Without any, the process's current configuration is
            used (the gunicorn hooks', under ``UvicornWorker``).
    """

    def __init__(
        self,
        inner: Callable[[Any], contextlib.AbstractAsyncContextManager[Any]] | None = None,
        *,
        min_readiness: float = 1.0,
        **settings: Any,
    ) -> None:
        explicit = bool(settings)
        settings.setdefault("signals", False)
        self.inner = inner
        self.min_readiness = min_readiness
        self.service: WorkerBoot = configure(**settings) if explicit else ensure(**settings)
        self.service.collect()

    @property
    def boot(self) -> Boot | None:
        """This worker's boot, once the lifespan has started."""
        return self.service.boot if self.service.started else None

    def __call__(self, app: Any) -> contextlib.AbstractAsyncContextManager[Any]:
        """The lifespan of ``app`` (what Starlette and FastAPI call)."""
        return self._run(app)

    @contextlib.asynccontextmanager
    async def _run(self, app: Any) -> AsyncIterator[Any]:
        await self.service.astart()
        try:
            if self.inner is None:
                self.service.loaded()
                yield None
            else:
                async with self.inner(app) as state:
                    self.service.loaded()
                    yield state
        finally:
            await self.service.astop()

    async def health(self, request: Any) -> Any:  # noqa: ARG002 - an endpoint's signature
        """A Starlette/FastAPI endpoint: 200 when warm (or cold: nothing to wait for), 503 warming.

        Mount it with ``Route("/health", warm.health)``, or in FastAPI with
        ``app.add_route("/health", warm.health)``.
        """
        from starlette.responses import JSONResponse  # noqa: PLC0415 - the starlette extra

        code, body = self.service.status(self.min_readiness)
        return JSONResponse(body, status_code=code, headers={"Cache-Control": "no-store"})


claim("warmstart.integrations.asgi", WarmLifespan)
