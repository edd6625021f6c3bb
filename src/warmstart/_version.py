"""The installed distribution's version, resolved on first use.

``importlib.metadata`` costs about 50 ms to import: a library that runs at
boot pays it only when the version is asked for (a save records it).
"""

from __future__ import annotations

import functools

__all__ = ("version",)


@functools.cache
def version() -> str:
    """``warmstart``'s version, or ``"0+unknown"`` when running from a bare source tree."""
    from importlib.metadata import PackageNotFoundError  # noqa: PLC0415 - see the module docstring
    from importlib.metadata import version as installed  # noqa: PLC0415

    try:
        return installed("warmstart")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"
