"""The ``warmstart`` command: every subcommand, thin over the public API."""

from __future__ import annotations

from warmstart.cli._main import main

__all__ = ("main",)


def __dir__() -> tuple[str, ...]:
    return __all__
