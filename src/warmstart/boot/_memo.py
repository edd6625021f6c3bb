"""``@cached`` and ``@cachedmethod``: memoized functions whose cache stays warm.

Drop-in replacements for ``functools.lru_cache``/``cache``,
``cachetools.cached``/``cachedmethod`` and ``async_lru.alru_cache``, sync or
async. The cache is an ordinary warm container (an ``OrderedDict`` kept as an
LRU, a ``dict``, or any cachetools cache, TTL caches included), saved and
restored under the function's contract like any ``@warm`` attribute:

- a ``@cached`` function defined while a boot is open is attached to it (the
  innermost, as for ``@warm`` objects built inside it); one defined at import,
  before any boot, is attached with ``boot.attach(func)``;
- a ``@cachedmethod`` keeps one cache per instance, in an instance attribute
  that ``@warm`` on the class discovers: instances built inside a boot are
  restored and checkpointed with it.

Keys are made of the arguments: one argument is the key itself (``key=str``),
several are a tuple (``key=tuple[str, int]``), keyword arguments and
defaults are bound to their positions first, so ``f(1, b=2)``, ``f(1, 2)``
and ``f(1)`` (with ``b=2`` the default) are one entry, and a key read back
after a restart is equal to the one the same call builds: it still hits.
A key or a value that would not come back as itself (a ``float`` where the
contract says ``int``, a subclass, a tuple in an ``Any`` field) is computed
and returned but not cached, and counted.

>>> import msgspec, warmstart
>>> class Quote(msgspec.Struct):
...     price: float
>>> @warmstart.cached(warmstart.Contract("quote", Quote, key=tuple[str, int]), maxsize=1000)
... def quote(symbol: str, day: int = 0) -> Quote:
...     return Quote(189.5)
>>> quote("AAPL"), quote("AAPL", day=0), quote.cache_info()
(Quote(price=189.5), Quote(price=189.5), CacheInfo(hits=1, misses=1, maxsize=1000, currsize=1))
"""

from __future__ import annotations

import collections
import enum
import functools
import inspect
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

from warmstart._containers import check_container
from warmstart.boot._capture import attach_to_current
from warmstart.boot._warm import MethodMemo, State, WarmSpec
from warmstart.contract import Contract
from warmstart.delta import TrackedDict
from warmstart.errors import ContractError

__all__ = ("CacheInfo", "cached", "cachedmethod")

log = logging.getLogger("warmstart.memo")
F = TypeVar("F", bound=Callable[..., Any])


class CacheInfo(NamedTuple):
    """What ``cache_info()`` reports, as ``functools.lru_cache`` does."""

    hits: int
    misses: int
    maxsize: int | None
    currsize: int


class _Missing(enum.Enum):
    MISSING = 0


_MISS = _Missing.MISSING
#: msgpack writes integers of 64 bits, signed or not.
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
_ELEMENT_TYPES: dict[Any, frozenset[type]] = {
    str: frozenset({str}),
    bytes: frozenset({bytes}),
    int: frozenset({int}),
    bool: frozenset({bool}),
    float: frozenset({float, int}),
    type(None): frozenset({type(None)}),
    None: frozenset({type(None)}),
}


# -- keys ---------------------------------------------------------------------


class _Keys:
    """How one function's arguments become a key of its contract's key type."""

    def __init__(self, func: Callable[..., Any], contract: Contract[Any], *, method: bool) -> None:
        params = list(inspect.signature(func).parameters.values())
        if method:
            params = params[1:]  # self
        where = f"{getattr(func, '__qualname__', func)}()"
        variadic = [p.name for p in params if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if variadic:
            msg = (
                f"Expected named parameters only, got *{variadic[0]} in {where}: pass key= "
                f"(a function of the arguments returning a {contract.schema.key} key) "
                f"- in contract {contract.name!r}"
            )
            raise ContractError(msg)
        self.names = [p.name for p in params]
        self.index = {p.name: i for i, p in enumerate(params) if p.kind is not p.POSITIONAL_ONLY}
        self.positional = sum(p.kind is not p.KEYWORD_ONLY for p in params)
        self.defaults: list[Any] = [_MISS if p.default is p.empty else p.default for p in params]
        key_args: tuple[Any, ...] = getattr(contract.key, "__args__", ())
        self.tuple = getattr(contract.key, "__origin__", None) is tuple
        n = len(params)
        if self.tuple and len(key_args) != n:
            self._refuse(contract, where, params, f"a tuple of {n}")
        if not self.tuple and n > 1:
            self._refuse(contract, where, params, f"a tuple of {n}")
        #: Calls with exactly this many positional arguments and no keywords
        #: use them as the key as they are (no binding): the fast path.
        self.fast = n if n and self.positional == n else -1
        #: The key of a function without parameters: the key type's empty value.
        self.const: Any = {str: "", int: 0, bytes: b""}.get(contract.key) if not n else None
        self.allowed: list[frozenset[type]] = (
            [_element_types(a) for a in key_args]
            if self.tuple
            else [_ELEMENT_TYPES.get(contract.key, frozenset())]
        )

    @staticmethod
    def _refuse(
        contract: Contract[Any], where: str, params: list[inspect.Parameter], shape: str
    ) -> None:
        hint = ", ".join(_annotation_name(p.annotation) for p in params)
        msg = (
            f"Expected a contract key of {shape} for {where} (one element per argument: "
            f"key=tuple[{hint}]), got {contract.schema.key} - in contract {contract.name!r}"
        )
        raise ContractError(msg)

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The key of a call that is not on the fast path (keywords, defaults)."""
        if len(args) > self.positional:
            raise _Unbound
        values = list(args)
        values.extend(self.defaults[len(args) :])
        for name, value in kwargs.items():
            i = self.index.get(name)
            if i is None or i < len(args):
                raise _Unbound
            values[i] = value
        if any(v is _MISS for v in values):
            raise _Unbound
        if not values:
            return self.const
        return tuple(values) if self.tuple else values[0]

    def admits(self, key: Any) -> bool:
        """Whether ``key`` is of the key type, so that it would come back equal."""
        return _key_admitted(key, as_tuple=self.tuple, allowed=self.allowed)


def _key_admitted(key: Any, *, as_tuple: bool, allowed: list[frozenset[type]]) -> bool:
    if as_tuple:
        if type(key) is not tuple or len(key) != len(allowed):
            return False
        parts: Any = key
    else:
        parts = (key,)
    for part, types in zip(parts, allowed):
        kind = type(part)
        if kind not in types or (kind is int and not _INT_MIN <= part <= _INT_MAX):
            return False
    return True


class _Unbound(Exception):  # noqa: N818 - internal signal, never escapes
    """The arguments do not bind: the function itself raises the right TypeError."""


def _element_types(arg: Any) -> frozenset[type]:
    members = getattr(arg, "__args__", None)
    if members and type(arg).__name__ in ("UnionType", "_UnionGenericAlias"):
        return frozenset().union(*(_ELEMENT_TYPES.get(m, frozenset()) for m in members))
    return _ELEMENT_TYPES.get(arg, frozenset())


def _annotation_name(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return "..."
    if isinstance(annotation, str):
        return annotation
    return getattr(annotation, "__name__", repr(annotation))


# -- containers ---------------------------------------------------------------


def _new_container(maxsize: int | None, ttl: float | None) -> Any:
    if ttl is not None:
        try:
            import cachetools  # noqa: PLC0415 - optional: only TTL memos need it
        except ImportError:
            msg = "Expected cachetools for ttl= (pip install cachetools), it is not installed"
            raise ImportError(msg) from None
        return cachetools.TTLCache(maxsize=sys.maxsize if maxsize is None else maxsize, ttl=ttl)
    return {} if maxsize is None else collections.OrderedDict()


def _lock_free(container: Any) -> bool:
    """dict, OrderedDict and TrackedDict operations are atomic: no lock needed."""
    return type(container) in (dict, collections.OrderedDict) or isinstance(container, TrackedDict)


class _Ops:
    """Lookups and inserts into one container, with the LRU bookkeeping an OrderedDict needs."""

    def __init__(self, data: Any, lock: Any, maxsize: int | None) -> None:
        self.data = data
        self.lock = lock
        self.lru = maxsize if type(data) is collections.OrderedDict else None

    def get(self, key: Any) -> Any:
        data = self.data
        if self.lock is not None:
            with self.lock:
                try:
                    return data[key]
                except KeyError:
                    return _MISS
        value = data.get(key, _MISS)
        if value is not _MISS and self.lru is not None:
            try:  # noqa: SIM105 - suppress() is a call per hit
                data.move_to_end(key)
            except KeyError:  # evicted by another thread meanwhile
                pass
        return value

    def put(self, key: Any, value: Any) -> None:
        data = self.data
        if self.lock is not None:
            with self.lock:
                try:  # noqa: SIM105 - suppress() is a call per hit
                    data[key] = value
                except ValueError:  # larger than the whole cache (cachetools)
                    pass
            return
        data[key] = value
        if self.lru is not None:
            while len(data) > self.lru:
                try:
                    data.popitem(last=False)
                except KeyError:
                    break

    def clear(self) -> None:
        if self.lock is not None:
            with self.lock:
                self.data.clear()
        else:
            self.data.clear()


# -- the memo ---------------------------------------------------------------------


class _Memo:
    """The state of one memoized function (or method): counts, in-flight calls, checks."""

    def __init__(
        self, func: Callable[..., Any], contract: Contract[Any], keys: _Keys | _CallerKeys
    ) -> None:
        self.func = func
        self.contract = contract
        self.keys = keys
        self.hits = 0
        self.misses = 0
        #: Results computed but not cached: their key or value would not come back.
        self.uncached = 0
        self.inflight: dict[Any, Any] = {}
        self.exact = contract.family.exact
        self.check = contract.family.check

    def admit(self, key: Any, value: Any) -> bool:
        if (
            (type(value) in self.exact or not self.exact)
            and (self.check is None or self.check(value) is None)
            and self.keys.admits(key)
        ):
            return True
        self.uncached += 1
        if self.uncached == 1:
            log.warning(
                "%s: a result is not cached: its key %r or value of type %s would not "
                "come back from a checkpoint as it is (contract %r)",
                getattr(self.func, "__qualname__", self.func),
                key,
                type(value).__name__,
                self.contract.name,
            )
        return False


def _check_arguments(
    contract: object, maxsize: object, ttl: object, key: object, lock: object, *, method: bool
) -> None:
    if not isinstance(contract, Contract):
        msg = f"Expected a warmstart.Contract, got {type(contract).__name__}"
        raise ContractError(msg)
    if maxsize is not None and (
        not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 1
    ):
        msg = f"Expected maxsize as an int >= 1 or None, got {maxsize!r}"
        raise ContractError(msg)
    if ttl is not None and (not isinstance(ttl, (int, float)) or ttl <= 0):
        msg = f"Expected ttl as seconds > 0, got {ttl!r}"
        raise ContractError(msg)
    if key is not None and not callable(key):
        msg = f"Expected key as a callable of the arguments, got {key!r}"
        raise ContractError(msg)
    if lock is None:
        return
    if method and (not (isinstance(lock, str) or callable(lock)) or _is_lock(lock)):
        msg = (
            f"Expected lock as the name of an instance attribute or a function of the "
            f"instance, got {type(lock).__name__}"
        )
        raise ContractError(msg)
    if not method and not _is_lock(lock):
        msg = f"Expected lock as a lock (a context manager), got {type(lock).__name__}"
        raise ContractError(msg)


def _is_lock(candidate: object) -> bool:
    return hasattr(candidate, "__enter__") and hasattr(candidate, "__exit__")


def cached(
    contract: Contract[Any],
    cache: Any = None,
    *,
    maxsize: int | None = 128,
    ttl: float | None = None,
    key: Callable[..., Any] | None = None,
    lock: Any = None,
    section: str | None = None,
) -> Callable[[F], F]:
    """Memoize a function (sync or ``async def``) in a cache that survives restarts.

    Args:
        contract: the contract of the results; its key type is the key of a
            call: the argument itself for one argument (``key=str``), a
            ``tuple[...]`` with one element per argument for several.
        cache: the container: a ``dict`` (unbounded), an ``OrderedDict`` (an
            LRU of ``maxsize``), a cachetools cache (its own policy, TTL
            included) or a ``TrackedDict``. Default: an LRU of ``maxsize``
            (``maxsize=None``: a dict, as ``functools.cache``).
        maxsize: the LRU's size, as ``functools.lru_cache(maxsize)``.
        ttl: seconds each result lives (a cachetools ``TTLCache`` of
            ``maxsize``; restored entries keep their remaining lifetime).
        key: a function of the call's arguments returning its key (for
            ``*args`` or arguments that are not keys themselves).
        lock: the lock guarding a cache that is not thread-safe (cachetools
            caches get one of their own by default); checkpoints take it too.
        section: the section name (default ``module.qualname``).

    The wrapper has ``cache_info()``, ``cache_clear()``, ``cache_parameters()``
    (functools), ``cache``, ``cache_key`` and ``cache_lock`` (cachetools),
    and ``__wrapped__``. Async callers of one key share one computation.

    Raises:
        ContractError: the contract's key type does not fit the parameters.
    """
    _check_arguments(contract, maxsize, ttl, key, lock, method=False)

    def decorate(func: F) -> F:
        keys = _Keys(func, contract, method=False) if key is None else None
        container = _new_container(maxsize, ttl) if cache is None else cache
        check_container(container, f"@cached {getattr(func, '__qualname__', func)}")
        guard = lock if lock is not None else None if _lock_free(container) else threading.Lock()
        reported = (
            maxsize if cache is None and ttl is None else getattr(container, "maxsize", maxsize)
        )
        wrapper = _wrap(func, contract, keys, key, _Ops(container, guard, maxsize), reported)
        name = section or f"{func.__module__}.{func.__qualname__}"
        states = {
            "cache": State(contract, section=name, lock=None if guard is None else "cache_lock")
        }
        wrapper.__warm__ = WarmSpec(type(wrapper), states, None)
        attach_to_current(wrapper)
        return wrapper  # type: ignore[no-any-return]

    return decorate


def _wrap(
    func: Callable[..., Any],
    contract: Contract[Any],
    keys: _Keys | None,
    key: Callable[..., Any] | None,
    ops: _Ops,
    maxsize: int | None,
) -> Any:
    """The wrapper of ``func``, with the functools and cachetools attributes."""
    memo = _Memo(func, contract, keys or _CallerKeys(contract))
    make_key = _key_function(keys, key)
    wrapper: Any
    if inspect.iscoroutinefunction(func):
        wrapper = _async_wrapper(func, memo, make_key, ops)
    else:
        wrapper = _sync_wrapper(func, memo, keys, make_key, ops)
    functools.update_wrapper(wrapper, func)

    def cache_info() -> CacheInfo:
        """Hits, misses, maxsize and current size, as ``functools.lru_cache``."""
        return CacheInfo(memo.hits, memo.misses, maxsize, len(ops.data))

    def cache_clear() -> None:
        """Empty the cache and reset the counts."""
        ops.clear()
        memo.hits = memo.misses = 0

    wrapper.cache_info = cache_info
    wrapper.cache_clear = cache_clear
    wrapper.cache_parameters = lambda: {"maxsize": maxsize, "typed": True}
    wrapper.cache = ops.data
    wrapper.cache_lock = ops.lock
    wrapper.cache_key = make_key
    wrapper.contract = contract
    wrapper.uncached = lambda: memo.uncached
    return wrapper


class _CallerKeys:
    """Key checks for a caller's ``key=`` function: the contract's key type."""

    def __init__(self, contract: Contract[Any]) -> None:
        self.tuple = getattr(contract.key, "__origin__", None) is tuple
        args: tuple[Any, ...] = getattr(contract.key, "__args__", ())
        self.allowed = (
            [_element_types(a) for a in args]
            if self.tuple
            else [_ELEMENT_TYPES.get(contract.key, frozenset())]
        )

    def admits(self, key: Any) -> bool:
        """Whether ``key`` (from the caller's ``key=``) is of the key type."""
        return _key_admitted(key, as_tuple=self.tuple, allowed=self.allowed)


def _key_function(keys: _Keys | None, key: Callable[..., Any] | None) -> Callable[..., Any]:
    if key is not None:
        return key
    assert keys is not None

    def make_key(*args: Any, **kwargs: Any) -> Any:
        if not kwargs and len(args) == keys.fast:
            return args if keys.tuple else args[0]
        return keys.bind(args, kwargs)

    return make_key


def _sync_wrapper(  # noqa: C901, PLR0915 - one specialised closure per container kind
    func: Callable[..., Any],
    memo: _Memo,
    keys: _Keys | None,
    make_key: Callable[..., Any],
    ops: _Ops,
) -> Callable[..., Any]:
    get, put, admit = ops.get, ops.put, memo.admit
    if keys is None:

        def keyed(*args: Any, **kwargs: Any) -> Any:
            k = make_key(*args, **kwargs)
            value = get(k)
            if value is not _MISS:
                memo.hits += 1
                return value
            memo.misses += 1
            value = func(*args, **kwargs)
            if admit(k, value):
                put(k, value)
            return value

        return keyed
    fast, as_tuple, bind = keys.fast, keys.tuple, keys.bind
    if ops.lock is not None:
        lock, cache = ops.lock, ops.data

        def locked(*args: Any, **kwargs: Any) -> Any:
            if not kwargs and len(args) == fast:
                k = args if as_tuple else args[0]
            else:
                try:
                    k = bind(args, kwargs)
                except _Unbound:
                    return func(*args, **kwargs)  # raises the TypeError Python would
            with lock:
                try:
                    value = cache[k]
                except KeyError:
                    value = _MISS
            if value is not _MISS:
                memo.hits += 1
                return value
            memo.misses += 1
            value = func(*args, **kwargs)
            if admit(k, value):
                with lock:
                    try:  # noqa: SIM105 - suppress() is a call per miss
                        cache[k] = value
                    except ValueError:  # larger than the whole cache (cachetools)
                        pass
            return value

        return locked
    # Lock-free (dict, OrderedDict, TrackedDict): the hot path is inlined.
    data = ops.data
    lookup = data.get
    touch = data.move_to_end if ops.lru is not None else None

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not kwargs and len(args) == fast:
            k = args if as_tuple else args[0]
        else:
            try:
                k = bind(args, kwargs)
            except _Unbound:
                return func(*args, **kwargs)  # raises the TypeError Python would
        value = lookup(k, _MISS)
        if value is not _MISS:
            if touch is not None:
                try:  # noqa: SIM105 - suppress() is a call per hit
                    touch(k)
                except KeyError:  # evicted by another thread meanwhile
                    pass
            memo.hits += 1
            return value
        memo.misses += 1
        value = func(*args, **kwargs)
        if admit(k, value):
            put(k, value)
        return value

    return wrapper


def _async_wrapper(
    func: Callable[..., Any], memo: _Memo, make_key: Callable[..., Any], ops: _Ops
) -> Callable[..., Any]:
    import asyncio  # noqa: PLC0415 - only async memos pay for asyncio

    get, put, admit, inflight = ops.get, ops.put, memo.admit, memo.inflight

    def finished(k: Any, task: asyncio.Future[Any]) -> None:
        if inflight.get(k) is task:
            del inflight[k]
        if not task.cancelled() and task.exception() is None:
            result = task.result()
            if admit(k, result):
                put(k, result)

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            k = make_key(*args, **kwargs)
        except _Unbound:
            return await func(*args, **kwargs)  # raises the TypeError Python would
        value = get(k)
        if value is not _MISS:
            memo.hits += 1
            return value
        task = inflight.get(k)
        if task is None:
            memo.misses += 1
            # One computation per key: later callers await the same task. A
            # caller cancelled while waiting does not cancel it for the others.
            task = asyncio.ensure_future(func(*args, **kwargs))
            inflight[k] = task
            task.add_done_callback(functools.partial(finished, k))
        else:
            memo.hits += 1
        return await asyncio.shield(task)

    return wrapper


# -- methods ------------------------------------------------------------------------


def cachedmethod(
    contract: Contract[Any],
    cache: str | Callable[[Any], Any] | None = None,
    *,
    maxsize: int | None = 128,
    ttl: float | None = None,
    key: Callable[..., Any] | None = None,
    lock: str | Callable[[Any], Any] | None = None,
) -> Callable[[F], F]:
    """Memoize a method (sync or ``async def``) in a per-instance cache that survives restarts.

    Args:
        contract: as for :func:`cached` (the key leaves ``self`` out).
        cache: the instance attribute holding the cache (default
            ``<method>_cache``), created with ``maxsize``/``ttl`` when the
            instance has none; or, as ``cachetools.cachedmethod``, a function
            of the instance returning it (then declare it in ``@warm``).
        maxsize, ttl: the cache made for each instance (see :func:`cached`).
        key: a function of the arguments (without ``self``) returning the key.
        lock: the instance attribute (or a function of the instance) holding
            the lock of a cache that is not thread-safe; by default
            ``<cache>_lock`` is made for cachetools caches.

    ``@warm`` on the class finds the method and keeps ``<cache>`` warm: no
    need to list it. ``Class.method.cache_info(obj)`` and
    ``Class.method.cache_clear(obj)`` take the instance, as in cachetools.
    """
    _check_arguments(contract, maxsize, ttl, key, lock, method=True)

    def decorate(method: F) -> F:
        keys = _Keys(method, contract, method=True) if key is None else None
        attr = None if callable(cache) else cache or f"{method.__name__}_cache"
        if attr == method.__name__:
            msg = f"Expected a cache attribute other than the method's name, got {attr!r}"
            raise ContractError(msg)
        sample = _new_container(maxsize, ttl)
        lock_attr = lock if isinstance(lock, str) else None
        if lock is None and attr is not None and not _lock_free(sample):
            lock_attr = f"{attr}_lock"
        spec = MethodMemo(contract, attr, lock_attr, lambda: _new_container(maxsize, ttl))
        memo = _Memo(method, contract, keys or _CallerKeys(contract))
        make_key = _key_function(keys, key)

        def ops_of(obj: Any) -> _Ops:
            data = cache(obj) if callable(cache) else getattr(obj, attr or "", None)
            if data is None:
                spec.prepare(obj)
                data = getattr(obj, attr or "")
            guard = lock(obj) if callable(lock) else getattr(obj, lock_attr) if lock_attr else None
            return _Ops(data, guard, maxsize)

        wrapper = _method_wrapper(method, memo, make_key, ops_of)
        functools.update_wrapper(wrapper, method)
        wrapper.__warm_method__ = spec  # type: ignore[attr-defined]
        wrapper.cache_info = lambda obj: CacheInfo(  # type: ignore[attr-defined]
            memo.hits, memo.misses, maxsize, len(ops_of(obj).data)
        )

        def cache_clear(obj: Any) -> None:
            ops_of(obj).clear()

        wrapper.cache_clear = cache_clear  # type: ignore[attr-defined]
        wrapper.cache_key = make_key  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def _method_wrapper(  # noqa: C901 - the sync and async forms side by side
    method: Callable[..., Any],
    memo: _Memo,
    make_key: Callable[..., Any],
    ops_of: Callable[[Any], _Ops],
) -> Callable[..., Any]:
    admit = memo.admit
    if inspect.iscoroutinefunction(method):
        import asyncio  # noqa: PLC0415 - only async memos pay for asyncio

        def finished(ops: _Ops, k: Any, task: asyncio.Future[Any]) -> None:
            if memo.inflight.get((id(ops.data), k)) is task:
                del memo.inflight[(id(ops.data), k)]
            if not task.cancelled() and task.exception() is None:
                value = task.result()
                if admit(k, value):
                    ops.put(k, value)

        async def async_method(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                k = make_key(*args, **kwargs)
            except _Unbound:
                return await method(self, *args, **kwargs)
            ops = ops_of(self)
            value = ops.get(k)
            if value is not _MISS:
                memo.hits += 1
                return value
            slot = (id(ops.data), k)
            task = memo.inflight.get(slot)
            if task is None:
                memo.misses += 1
                task = asyncio.ensure_future(method(self, *args, **kwargs))
                memo.inflight[slot] = task
                task.add_done_callback(functools.partial(finished, ops, k))
            else:
                memo.hits += 1
            return await asyncio.shield(task)

        return async_method

    def sync_method(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            k = make_key(*args, **kwargs)
        except _Unbound:
            return method(self, *args, **kwargs)
        ops = ops_of(self)
        value = ops.get(k)
        if value is not _MISS:
            memo.hits += 1
            return value
        memo.misses += 1
        value = method(self, *args, **kwargs)
        if admit(k, value):
            ops.put(k, value)
        return value

    return sync_method
