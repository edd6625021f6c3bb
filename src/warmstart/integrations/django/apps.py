"""The Django app config of ``warmstart.integrations.django`` (chosen by Django by itself).

See :mod:`warmstart.integrations.django`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from django.apps import AppConfig
from django.core.signals import request_finished, request_started

from warmstart.integrations._common import configure, current, start_for_app
from warmstart.integrations.django import _settings

__all__ = ("WarmstartConfig",)


def __dir__() -> tuple[str, ...]:
    return __all__


#: Management commands that serve requests (any other one never boots).
SERVING_COMMANDS = frozenset({"runserver"})


def serving() -> bool:
    """Whether this process will serve requests: not ``migrate``, not the reloader's watcher."""
    program = Path(sys.argv[0]).name if sys.argv else ""
    managed = program in ("manage.py", "django-admin", "django-admin.py") or (
        program == "__main__.py" and Path(sys.argv[0]).parent.name == "django"
    )
    if not managed:
        return True  # a WSGI/ASGI server imported the project
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command not in SERVING_COMMANDS:
        return False
    return os.environ.get("RUN_MAIN") == "true" or "--noreload" in sys.argv


class WarmstartConfig(AppConfig):  # type: ignore[misc] # django ships no types
    """Boots the worker's warm state in ``ready()``; see :mod:`warmstart.integrations.django`."""

    name = "warmstart.integrations.django"
    label = "warmstart"
    verbose_name = "warmstart"
    default = True

    def __init__(self, app_name: str, app_module: Any) -> None:
        super().__init__(app_name, app_module)
        # Not at module level: django.conf.settings is lazy, and tools that
        # inspect this module's globals (doctest) would trip its configuration.
        from django.conf import settings  # noqa: PLC0415

        options = {k: v for k, v in _settings(settings).items() if k != "min_readiness"}
        service = current()
        if service is None or not (service.started or service.deferred):
            if not serving():
                return  # `migrate` and the like: no store, and no setting needed
            service = configure(**options)
        # From now on (models, other apps' ready()), @warm objects are kept.
        service.collect()

    def ready(self) -> None:
        service = current()
        if service is None:  # a management command that does not serve
            return
        start_for_app(service, serving=serving())
        request_started.connect(_started, dispatch_uid="warmstart-start")
        request_finished.connect(_finished, dispatch_uid="warmstart-loaded")


def _started(sender: Any, **kwargs: Any) -> None:  # noqa: ARG001 - a receiver's signature
    """A request in a worker forked from a preloading master: boot now."""
    service = current()
    if service is not None and not service.started and not service.deferred:
        service.start()
    request_started.disconnect(dispatch_uid="warmstart-start")


def _finished(sender: Any, **kwargs: Any) -> None:  # noqa: ARG001 - a receiver's signature
    """The first request is done (its views are imported): stop capturing."""
    service = current()
    if service is not None and service.started:
        service.loaded()
        request_finished.disconnect(dispatch_uid="warmstart-loaded")
