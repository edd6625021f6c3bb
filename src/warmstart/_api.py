"""One public path per name: each namespace claims the objects it exports.

The code lives in the modules of its wing; the name a user imports lives in
one namespace (the top level for the essentials). Setting ``__module__`` to
that namespace makes reprs, tracebacks and the API docs show the path users
import, not the file the code happens to sit in (httpx does the same).
"""

from __future__ import annotations

__all__ = ("claim",)


def claim(namespace: str, *objects: object) -> None:
    """Show ``namespace`` as the home of each class and function in ``objects``."""
    for obj in objects:
        if isinstance(obj, type) or callable(obj):
            obj.__module__ = namespace
