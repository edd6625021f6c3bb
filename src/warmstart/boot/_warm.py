"""``@warm``: mark the attributes of a class that hold warm state.

The decorator changes nothing about the class outside a boot: same identity,
signature and docstring, and ``__init__`` behaves as before. Inside
``warmstart.boot(...)``, every instance is attached to the boot right after its
``__init__`` returns: its state is restored into the containers ``__init__``
created, and it is registered for checkpoints.

>>> import msgspec
>>> from warmstart import Contract, warm
>>> class Quote(msgspec.Struct):
...     price: float
>>> @warm(quotes=Contract("quote", Quote))
... class PriceService:
...     '''Serves prices.'''
...     def __init__(self) -> None:
...         self.quotes: dict[str, Quote] = {}
>>> PriceService.__doc__, PriceService.warm_info().sections
('Serves prices.', ('PriceService.quotes',))
"""

from __future__ import annotations

import functools
import threading
import types
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar, overload

import msgspec

from warmstart.boot._capture import attach_to_current
from warmstart.contract import Contract
from warmstart.errors import ContractError

__all__ = ("State", "WarmInfo", "state", "warm")


def __dir__() -> tuple[str, ...]:
    return __all__


C = TypeVar("C", bound=type)
Prefetch = Callable[[list[Any]], Any]


class State(msgspec.Struct, frozen=True):
    """How one attribute's warm state is saved and restored.

    Build it with :func:`state`; a bare Contract means ``state(contract)``.
    """

    contract: Contract[Any] | None
    section: str | None = None
    keys_only: bool = False
    prefetch: Prefetch | None = None
    lock: str | None = None
    max_keys: int | None = None
    track: bool | None = None


def state(
    contract: Contract[Any] | None = None,
    *,
    section: str | None = None,
    keys_only: bool = False,
    prefetch: Prefetch | None = None,
    lock: str | None = None,
    max_keys: int | None = None,
    track: bool | None = None,
) -> State:
    """Describe one warm attribute beyond its contract.

    Args:
        contract: the contract of the values (not needed with ``keys_only``).
        section: the section name (default ``ClassName.attr``, or
            ``ClassName[key].attr`` for keyed instances).
        keys_only: remember which keys were hot, not their values; at boot
            ``prefetch(keys)`` is called (in batches, with bounded concurrency)
            to load them from the source of truth. For data that must not be
            persisted or that changes fast, as database buffer-pool dumps do.
        prefetch: called with a list of keys; may return a mapping of
            key -> value to insert, or fill the container itself. A coroutine
            function is awaited on the running event loop.
        lock: name of the instance attribute holding a lock that guards the
            container. With it, the cold part of a progressive restore runs in
            the background, and checkpoints hold it while they read the
            container; without it, containers that are not thread-safe
            (cachetools caches) are restored eagerly.
        max_keys: with ``keys_only``, how many of the hottest keys to keep.
        track: record the container's changes, so that each checkpoint costs
            what changed and reads it a slice at a time (a cachetools cache
            is tracked in place; a plain ``dict`` is replaced by a
            ``LoggedDict``, a ``dict`` subclass holding the same entries, if
            nothing else refers to it). None (the default): when the boot
            checkpoints periodically (``interval``). False: never.

    >>> state(keys_only=True, prefetch=print, max_keys=1000).keys_only
    True
    """
    if keys_only and prefetch is None:
        msg = "Expected a prefetch callable with keys_only=True"
        raise ContractError(msg)
    given: object = prefetch
    if given is not None and not callable(given):
        msg = f"Expected prefetch as a callable, got {given!r}"
        raise ContractError(msg)
    name: object
    for label, name in (("section", section), ("lock", lock)):
        if name is not None and (not isinstance(name, str) or not name):
            msg = f"Expected {label} as a non-empty str, got {name!r}"
            raise ContractError(msg)
    if not keys_only and not isinstance(contract, Contract):
        msg = f"Expected a warmstart.Contract, got {type(contract).__name__}"
        raise ContractError(msg)
    given_track: object = track
    if given_track is not None and not isinstance(given_track, bool):
        msg = f"Expected track as True, False or None, got {given_track!r}"
        raise ContractError(msg)
    return State(contract, section, keys_only, prefetch, lock, max_keys, track)


class WarmInfo(NamedTuple):
    """What ``Class.warm_info()`` reports."""

    attributes: tuple[str, ...]
    sections: tuple[str, ...]
    key: str | Callable[[Any], str] | None


class WarmSpec(msgspec.Struct, frozen=True):
    """Stored on a decorated class as ``__warm__``."""

    cls: type
    states: dict[str, State]
    key: str | Callable[[Any], str] | None

    def instance_key(self, obj: object) -> str | None:
        """The instance key of ``obj`` (None when the class has one instance)."""
        key = self.key
        if key is None:
            value = getattr(obj, "warm_key", None)
        elif callable(key):
            value = key(obj)
        else:
            value = getattr(obj, key)
        return None if value is None else str(value)

    def section_name(self, attr: str, instance_key: str | None) -> str:
        """The section that holds ``attr`` of the instance with that key."""
        explicit = self.states[attr].section
        if explicit is not None:
            return explicit if instance_key is None else f"{explicit}[{instance_key}]"
        owner = (
            self.cls.__name__ if instance_key is None else f"{self.cls.__name__}[{instance_key}]"
        )
        return f"{owner}.{attr}"


class MethodMemo:
    """What ``@warm`` learns from a ``@cachedmethod``: where each instance keeps its cache."""

    def __init__(
        self,
        contract: Contract[Any],
        attr: str | None,
        lock_attr: str | None,
        make: Callable[[], Any],
    ) -> None:
        self.contract = contract
        #: The instance attribute holding the cache (None: the caller's cache=).
        self.attr = attr
        self.lock_attr = lock_attr
        self.make = make

    def prepare(self, obj: object) -> None:
        """Give ``obj`` its cache (and lock) if ``__init__`` did not."""
        if self.attr is None:
            return
        if getattr(obj, self.attr, None) is None:
            setattr(obj, self.attr, self.make())
        if self.lock_attr is not None and getattr(obj, self.lock_attr, None) is None:
            setattr(obj, self.lock_attr, threading.RLock())


def method_memos(cls: type) -> dict[str, MethodMemo]:
    """The ``@cachedmethod`` caches of a class (and its bases), by instance attribute."""
    found: dict[str, MethodMemo] = {}
    for klass in reversed(getattr(cls, "__mro__", ())):
        for value in vars(klass).values():
            spec = getattr(value, "__warm_method__", None)
            if isinstance(spec, MethodMemo) and spec.attr is not None:
                found[spec.attr] = spec
    return found


_RESERVED = frozenset({"warm_info", "warm_clear", "warm_store", "warm_key", "__warm__"})


@overload
def warm(maybe_cls: C, /) -> C: ...
@overload
def warm(
    maybe_cls: None = None, /, *, key: str | Callable[[Any], str] | None = None, **states: Any
) -> Callable[[C], C]: ...
def warm(
    maybe_cls: C | None = None,
    /,
    *,
    key: str | Callable[[Any], str] | None = None,
    **states: Any,
) -> C | Callable[[C], C]:
    """Declare which attributes of a class hold warm state.

    Args:
        key: instance key, for classes with several instances in one boot:
            the name of an attribute, or a callable of the instance. Without it,
            an instance attribute ``warm_key`` is used when present.
        **states: attribute name -> :class:`~warmstart.Contract` or :func:`state`.

    Usable with or without parentheses; without arguments, the class must
    define ``__warm_states__`` (a dict like ``states``).

    Raises:
        ContractError: a state is not a Contract/State, or a name is reserved.
    """

    def decorate(cls: C) -> C:
        given = states or dict(getattr(cls, "__warm_states__", {}))
        return _decorate(cls, key, given, method_memos(cls))

    if maybe_cls is not None:
        return decorate(maybe_cls)
    return decorate


def _decorate(  # noqa: C901 - builds the class's warm API in one place
    cls: C,
    key: str | Callable[[Any], str] | None,
    raw: dict[str, Any],
    methods: dict[str, MethodMemo],
) -> C:
    if not _is_class(cls):
        msg = f"Expected @warm on a class, got {cls!r}"
        raise ContractError(msg)
    for attr, memo in methods.items():
        # A @cachedmethod's cache is a warm attribute like any other.
        raw.setdefault(attr, State(memo.contract, lock=memo.lock_attr))
    if not raw:
        msg = f"Expected at least one warm attribute on {cls.__name__}, e.g. @warm(cache=CONTRACT)"
        raise ContractError(msg)
    states: dict[str, State] = {}
    for attr, spec in raw.items():
        if attr in _RESERVED or attr.startswith("__"):
            msg = f"Expected a plain attribute name, got reserved {attr!r} - on {cls.__name__}"
            raise ContractError(msg)
        states[attr] = spec if isinstance(spec, State) else state(spec)
    spec = WarmSpec(cls, states, key)
    # Explicit names and default ones ("Class.attr") together: two attributes
    # in one section would overwrite each other's checkpoints.
    sections = [spec.section_name(a, None) for a in states]
    if len(sections) != len(set(sections)):
        msg = f"Expected distinct section names on {cls.__name__}, got {sections}"
        raise ContractError(msg)
    original_init: Callable[..., None] = cls.__init__  # type: ignore[misc]

    @functools.wraps(original_init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807
        original_init(self, *args, **kwargs)
        for memo in methods.values():
            memo.prepare(self)
        # Only the outermost decorated __init__ attaches (subclass chains).
        if type(self).__init__ is __init__ or getattr(type(self), "__warm__", None) is spec:
            attach_to_current(self)

    if original_init is object.__init__:
        # wraps() would show object.__init__'s (*args, **kwargs): keep "()".
        import inspect  # noqa: PLC0415 - kept off the import path (~4 ms)

        self_only = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
        __init__.__signature__ = inspect.Signature([self_only])  # type: ignore[attr-defined]
    cls.__init__ = __init__  # type: ignore[misc]
    cls.__warm__ = spec  # type: ignore[attr-defined]

    def warm_info(_cls: type = cls) -> WarmInfo:
        return WarmInfo(
            attributes=tuple(states),
            sections=tuple(spec.section_name(a, None) for a in states),
            key=key,
        )

    def warm_clear(self: Any) -> None:
        """Empty every warm container of this instance (a cold start by hand)."""
        for attr in states:
            value: Any = getattr(self, attr, None)
            if hasattr(value, "clear"):
                value.clear()

    cls.warm_info = staticmethod(warm_info)  # type: ignore[attr-defined]
    cls.warm_clear = warm_clear  # type: ignore[attr-defined]
    return cls


def _is_class(candidate: object) -> bool:
    return isinstance(candidate, type)


def spec_of(obj: object) -> WarmSpec | None:
    """The warm spec of an instance's class or of a ``@cached`` function, or None."""
    spec = getattr(type(obj), "__warm__", None)
    if spec is None and isinstance(obj, types.FunctionType):
        spec = getattr(obj, "__warm__", None)  # a @cached function's own
    return spec if isinstance(spec, WarmSpec) else None
