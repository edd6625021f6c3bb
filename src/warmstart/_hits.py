"""Counting how many lookups restored entries serve.

The point of a warm start is that lookups after a restart hit restored
entries instead of the source of truth. :func:`counted` wraps a container in
place so that every lookup is counted, and a lookup of a key that came back
from the checkpoint (and has not been rewritten since) counts as a *warm
hit*. A boot reports the fraction in ``boot.metrics.warm_hit_fraction`` and
the ``warm_hits_total`` / ``lookups_total`` counters.

Counting is opt-in: it costs a set of the restored keys and a little work per
lookup.

>>> import cachetools
>>> cache = counted(cachetools.LRUCache(maxsize=10))
>>> cache["a"] = 1
>>> counter = counter_of(cache)
>>> counter.arm(["b"])             # what a restore brought back
>>> cache["b"] = 2; counter.arm(["b"])
>>> _ = cache["b"], cache["a"], cache.get("missing")
>>> counter.hits, counter.lookups
(1, 3)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any, TypeVar

from warmstart.errors import ContractError

__all__ = ("HitCounter", "counted", "counter_of")

#: Where a counted mapping keeps its counter: an attribute of the service's own
#: object (or the slot TrackedDict reserves for it).
_COUNTER_ATTRIBUTE = "_warm_hits"


def __dir__() -> tuple[str, ...]:
    return __all__


M = TypeVar("M", bound=MutableMapping[Any, Any])


class HitCounter:
    """Lookups, and lookups served by restored entries, of one container."""

    __slots__ = ("_restoring", "hits", "lookups", "restored", "written")

    def __init__(self) -> None:
        self.hits = 0
        self.lookups = 0
        #: Keys restored and not rewritten since (None until a restore arms it).
        self.restored: set[Any] | None = None
        #: Keys the service wrote while a restore is in progress.
        self.written: set[Any] | None = set()
        self._restoring = False

    @contextlib.contextmanager
    def restoring(self) -> Iterator[None]:
        """Inside, writes are the restore's own, not the service's."""
        self._restoring = True
        try:
            yield
        finally:
            self._restoring = False

    def arm(self, keys: Iterable[Any], *, final: bool = True) -> None:
        """Count warm hits for ``keys``, less those the service rewrote meanwhile.

        A progressive restore arms the hot part first (``final=False``) and
        the rest when the background phase ends; until the final call, writes
        are remembered so that a rewritten key never counts as restored.
        """
        written = self.written if self.written is not None else set()
        restored = set(keys) - written
        if self.restored is not None:
            restored |= self.restored
        self.restored = restored
        if final:
            self.written = None

    def wrote(self, key: Any) -> None:
        """The service wrote ``key``: its value is no longer the restored one."""
        if self._restoring:
            return
        if self.written is not None:
            self.written.add(key)
        if self.restored is not None:
            self.restored.discard(key)

    def looked_up(self, key: Any, found: bool) -> None:
        self.lookups += 1
        if found and self.restored is not None and key in self.restored:
            self.hits += 1

    @property
    def fraction(self) -> float:
        """Warm hits over lookups (0.0 before any lookup)."""
        return self.hits / self.lookups if self.lookups else 0.0


_COUNTING: dict[Any, type] = {}


def _counting_class(cls: Any) -> type:
    cached = _COUNTING.get(cls)
    if cached is not None:
        return cached

    def __getitem__(self: Any, key: Any) -> Any:  # noqa: N807
        counter: HitCounter = self._warm_hits
        try:
            value = cls.__getitem__(self, key)
        except KeyError:
            counter.looked_up(key, found=False)
            raise
        counter.looked_up(key, found=True)
        return value

    def get(self: Any, key: Any, default: Any = None) -> Any:
        # Through __getitem__, so each get counts once, whatever cls.get does.
        try:
            return self[key]
        except KeyError:
            return default

    def __setitem__(self: Any, key: Any, value: Any) -> None:  # noqa: N807
        cls.__setitem__(self, key, value)
        self._warm_hits.wrote(key)

    namespace = {
        "__module__": __name__,
        "__qualname__": f"Counted{cls.__name__}",
        "__getitem__": __getitem__,
        "get": get,
        "__setitem__": __setitem__,
        "__slots__": (),
    }
    counting = type(f"Counted{cls.__name__}", (cls,), namespace)
    _COUNTING[cls] = counting
    return counting


def counted(mapping: M) -> M:
    """Count lookups of ``mapping`` in place, and return it.

    Works for Python-level mappings: ``cachetools`` caches (tracked or not)
    and :class:`~warmstart.TrackedDict`. A plain ``dict`` cannot be changed in
    place: use a ``TrackedDict`` where you want counts.

    Raises:
        ContractError: the mapping's class cannot be extended in place.
    """
    if counter_of(mapping) is not None:
        return mapping
    cls = type(mapping)
    # The counter lives in the instance: a __dict__ (cachetools) or the slot
    # TrackedDict reserves for it. A dict has neither.
    extendable = hasattr(mapping, "_warm_hits_slot") or hasattr(mapping, "__dict__")
    if isinstance(mapping, dict) or not extendable:
        msg = (
            f"Expected a cachetools cache or a warmstart.TrackedDict to count hits, "
            f"got {cls.__name__}"
        )
        raise ContractError(msg)
    try:
        mapping.__class__ = _counting_class(cls)
    except TypeError as exc:
        msg = f"Expected a mapping whose class can be extended in place, got {cls.__name__}"
        raise ContractError(msg) from exc
    setattr(mapping, _COUNTER_ATTRIBUTE, HitCounter())
    return mapping


def counter_of(mapping: object) -> HitCounter | None:
    """The hit counter of a counted mapping, or None."""
    counter = getattr(mapping, _COUNTER_ATTRIBUTE, None)
    return counter if isinstance(counter, HitCounter) else None
