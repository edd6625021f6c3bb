"""One public path per name: each namespace claims the objects it exports.

The code lives in the modules of its wing; the name a user imports lives in
one namespace (the top level for the essentials). Setting ``__module__`` to
that namespace makes reprs, tracebacks and the API docs show the path users
import, not the file the code happens to sit in (httpx does the same).

The price: ``typing.get_type_hints`` resolves a class's string annotations
(``from __future__ import annotations``) in the module ``__module__`` names,
where those names do not live. Resolving them all at import would cost about
40 ms of the import budget, so :func:`resolve_annotations` does it on demand:
the docs build calls it, and so can a tool that introspects the classes.
"""

from __future__ import annotations

import importlib
import sys
import typing
from collections.abc import Mapping
from typing import Any

__all__ = ("claim", "load_lazily", "resolve_annotations")

#: (object, the module it is defined in), for every object claimed so far.
_CLAIMED: list[tuple[object, str]] = []


def claim(namespace: str, *objects: object) -> None:
    """Show ``namespace`` as the home of each class and function in ``objects``."""
    for obj in objects:
        if isinstance(obj, type) or callable(obj):
            if obj.__module__ != namespace:
                _CLAIMED.append((obj, obj.__module__))
            obj.__module__ = namespace


def load_lazily(scope: dict[str, Any], lazy: Mapping[str, tuple[str, str]], name: str) -> Any:
    """A namespace's ``__getattr__`` for the names it loads on first use.

    ``lazy`` maps each such name to (the module that defines it, its public
    home): the object is imported, claimed for its home, and kept in
    ``scope`` so the next lookup is a plain attribute.
    """
    where = lazy.get(name)
    if where is None:
        msg = f"module {scope['__name__']!r} has no attribute {name!r}"
        raise AttributeError(msg)
    module, home = where
    value = getattr(importlib.import_module(module), name)
    claim(home, value)
    scope[name] = value
    return value


def resolve_annotations() -> None:
    """Replace the claimed classes' string annotations by the objects they name.

    Evaluated in the module each class is defined in; then
    ``typing.get_type_hints`` works wherever ``__module__`` points.
    """
    import inspect  # noqa: PLC0415 - 4 ms of the import budget, for the docs build only

    for name, module in list(sys.modules.items()):
        if name.partition(".")[0] == "warmstart":
            for public in getattr(module, "__all__", ()):
                getattr(module, public)  # loads (and claims) the names loaded on first use
    for obj, origin in _CLAIMED:
        own = inspect.get_annotations(obj) if isinstance(obj, type) else None
        if not own:
            continue
        scope = vars(sys.modules[origin])
        resolved = {
            # NamedTuples keep ForwardRefs, other classes strings.
            name: typing._eval_type(  # type: ignore[attr-defined]  # noqa: SLF001 - the one evaluator that takes a namespace
                typing.ForwardRef(hint) if isinstance(hint, str) else hint, scope, scope
            )
            if isinstance(hint, (str, typing.ForwardRef))
            else hint
            for name, hint in own.items()
        }
        obj.__annotations__ = resolved
