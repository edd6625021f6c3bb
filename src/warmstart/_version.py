"""The library's version: one constant, which the build reads too.

pyproject.toml takes it from here (``[tool.hatch.version]``). Not read from
``importlib.metadata`` at run time: importing that costs 30-50 ms, all of it
holding the GIL, and the first save of a process asked for it inside a
periodic checkpoint's commit (a 33 ms hold measured in the latency
benchmark's service, issue 15).
"""

from __future__ import annotations

__all__ = ("__version__", "version")

__version__ = "0.2.0"


def version() -> str:
    """``warmstart``'s version."""
    return __version__
