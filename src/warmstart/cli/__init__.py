"""The ``warmstart`` command: every subcommand, thin over the public API."""

from __future__ import annotations

from warmstart._api import claim
from warmstart.cli._main import main

__all__ = ("main",)

claim("warmstart.cli", main)


def __dir__() -> tuple[str, ...]:
    return __all__
