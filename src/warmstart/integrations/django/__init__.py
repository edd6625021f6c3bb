"""Django: an app to add to ``INSTALLED_APPS``, settings in ``settings.py``, a health view.

.. code-block:: python

    # settings.py
    INSTALLED_APPS = [
        "warmstart.integrations.django",      # first: later apps' ready() is captured
        "catalog",
    ]
    WARMSTART = {"directory": BASE_DIR / "var" / "warm", "namespace": "catalog"}

    # urls.py
    from warmstart.integrations.django import health
    urlpatterns = [path("health", health), ...]

The app config (:class:`warmstart.integrations.django.apps.WarmstartConfig`)
collects the ``@warm`` objects built from the moment Django imports it (app
configs, models), and in ``ready()`` opens the boot of this worker (a slot,
its namespace, the pool) and attaches them; objects built afterwards are
captured (the other apps' ``ready()``, module-level objects of views imported
by the first request) until the first request has finished. It does not boot
for management commands other than ``runserver`` (``migrate`` never opens
the store), nor in ``runserver``'s autoreload watcher, nor in a gunicorn
master importing the app with ``preload_app`` (each worker boots at its first
request, or in ``post_fork`` with the gunicorn hooks, recommended).

``WARMSTART`` takes the integrations' settings (``directory``, ``namespace``,
``mode``, ``workers``, ``slot_wait``) and :func:`warmstart.boot` arguments,
in lower case; unset ones come from the ``WARMSTART_*`` variables. Django has
no shutdown signal: the checkpoint runs on SIGTERM/SIGINT (chained to the
server's handlers) and at interpreter exit, or in ``worker_exit`` with the
gunicorn hooks.
"""

from __future__ import annotations

from typing import Any

from warmstart._api import claim
from warmstart.boot import Boot
from warmstart.integrations._common import current

__all__ = ("current_boot", "health")


def __dir__() -> tuple[str, ...]:
    return __all__


def current_boot() -> Boot | None:
    """This worker's boot, once started (to ``attach()`` an object built elsewhere)."""
    service = current()
    return service.boot if service is not None and service.started else None


def health(request: Any) -> Any:  # noqa: ARG001 - a view's signature
    """A view: 200 when warm (or cold: nothing to wait for), 503 while warming."""
    from django.conf import settings  # noqa: PLC0415 - the django extra
    from django.http import JsonResponse  # noqa: PLC0415

    service = current()
    minimum = float(_settings(settings).get("min_readiness", 1.0))
    code, body = (
        service.status(minimum)
        if service is not None
        else (503, {"status": "starting", "readiness": 0.0})
    )
    response = JsonResponse(body, status=code)
    response["Cache-Control"] = "no-store"
    return response


def _settings(settings: Any) -> dict[str, Any]:
    """``settings.WARMSTART``, keys in lower case."""
    given = getattr(settings, "WARMSTART", None) or {}
    return {str(k).lower(): v for k, v in dict(given).items()}


claim("warmstart.integrations.django", current_boot, health)
