"""The Flask extension: ``Warmstart(app)`` or ``warm.init_app(app)`` in an app factory.

.. code-block:: python

    from flask import Flask
    from warmstart.integrations.flask import Warmstart

    warm = Warmstart()

    def create_app() -> Flask:
        app = Flask(__name__)
        app.config["WARMSTART_NAMESPACE"] = "catalog"   # or $WARMSTART_NAMESPACE
        warm.init_app(app)                             # before the services are built
        app.extensions["catalog"] = Catalog()          # captured: restored, checkpointed
        app.add_url_rule("/health", view_func=warm.health)
        return app

``init_app`` opens the worker's boot where the factory runs: in each
gunicorn worker (no ``preload_app``), under ``flask run``, or in any single
process. With ``preload_app`` the factory runs in gunicorn's master, which
does not serve: the objects it builds are collected and each worker boots at
its first request, or in ``post_fork`` with the gunicorn hooks
(:mod:`warmstart.integrations.gunicorn`, recommended: with them the restore
happens before the worker accepts a request, and SIGHUP reloads hand each
slot over cleanly). The first request also ends the capture: objects built by
requests are not state.

Settings come from the keyword arguments, then ``app.config``
(``WARMSTART_DIR``, ``WARMSTART_NAMESPACE``, ``WARMSTART_MODE``,
``WARMSTART_WORKERS``, ``WARMSTART_SLOT_WAIT``, and ``WARMSTART_BOOT``: a dict
of :func:`warmstart.boot` arguments), then the ``WARMSTART_*`` environment
variables. Flask has no shutdown hook: the shutdown checkpoint runs on
SIGTERM/SIGINT and at interpreter exit (gunicorn's sync and gthread workers
exit through ``sys.exit``), or in ``worker_exit`` with the gunicorn hooks.
Under the development server's reloader only the serving child boots, at its
first request; other ``flask`` commands (``flask shell``) never boot.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from warmstart._api import claim
from warmstart.boot import Boot
from warmstart.integrations._common import WorkerBoot, configure, current, start_for_app

__all__ = ("Warmstart",)


def __dir__() -> tuple[str, ...]:
    return __all__


#: app.config keys and the settings they give.
CONFIG_KEYS = {
    "WARMSTART_DIR": "directory",
    "WARMSTART_NAMESPACE": "namespace",
    "WARMSTART_MODE": "mode",
    "WARMSTART_WORKERS": "workers",
    "WARMSTART_SLOT_WAIT": "slot_wait",
}


def _settings(config: Any) -> dict[str, Any]:
    found = {name: config[key] for key, name in CONFIG_KEYS.items() if config.get(key) is not None}
    found.update(config.get("WARMSTART_BOOT") or {})
    return found


def _not_serving_yet() -> bool:
    """A process that may never serve: boot at its first request, if one comes.

    ``flask run`` with the reloader (this process only watches files; its
    child serves), or another ``flask`` command (``flask shell``, a custom
    one), which builds the app but serves nothing.
    """
    if os.environ.get("FLASK_RUN_FROM_CLI") == "true":
        return os.environ.get("WERKZEUG_RUN_MAIN") != "true"
    program = Path(sys.argv[0]) if sys.argv else Path()
    where = (program.name, program.parent.name)
    return program.name == "flask" or where == ("__main__.py", "flask")


class Warmstart:
    """Keeps a Flask service's warm state across restarts, per worker process.

    Args:
        app: the application (or call :meth:`init_app` later, in a factory).
        min_readiness: :meth:`health` answers 200 from this readiness on.
        **settings: ``directory``, ``namespace``, ``mode``, ``workers``,
            ``slot_wait``, ``capture`` and :func:`warmstart.boot` arguments;
            they win over ``app.config``.
    """

    def __init__(self, app: Any = None, *, min_readiness: float = 1.0, **settings: Any) -> None:
        self.settings = settings
        self.min_readiness = min_readiness
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Any) -> None:
        """Register with ``app`` and boot this process (see the module's docstring).

        Raises:
            ConfigurationError: no directory or namespace, or a bad setting.
        """
        service = current()
        if service is None or not (service.started or service.deferred):
            service = configure(**{**_settings(app.config), **self.settings})
        app.extensions["warmstart"] = self
        start_for_app(service, serving=not _not_serving_yet())
        app.before_request(self._before_request)

    @property
    def service(self) -> WorkerBoot | None:
        """This process's warm service."""
        return current()

    @property
    def boot(self) -> Boot | None:
        """This worker's boot, once started."""
        service = current()
        return service.boot if service is not None and service.started else None

    def _before_request(self) -> None:
        service = current()
        if service is None or service.deferred:
            return
        if not service.started:
            service.start()  # a worker forked from a preloading master, or `flask run`
        service.loaded()

    def health(self) -> tuple[dict[str, Any], int, dict[str, str]]:
        """A view: 200 when warm (or cold: nothing to wait for), 503 while warming.

        ``app.add_url_rule("/health", view_func=warm.health)``.
        """
        service = current()
        if service is None:
            return {"status": "starting", "readiness": 0.0}, 503, {"Cache-Control": "no-store"}
        code, body = service.status(self.min_readiness)
        return body, code, {"Cache-Control": "no-store"}


claim("warmstart.integrations.flask", Warmstart)
