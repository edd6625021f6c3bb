"""Memoized functions kept warm: ``@cached`` and ``@cachedmethod`` (issue 16).

Drop-in behaviour (keys from positional and keyword arguments, cache_info,
cache_clear, LRU and TTL caches, one computation per key for async callers)
and warm behaviour (restored at boot, checkpointed, across real process
restarts, sync and async).
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import cachetools
import msgspec
import pytest

import warmstart
from warmstart import Contract, ContractError
from warmstart.boot import CacheInfo


class Quote(msgspec.Struct, frozen=True):
    symbol: str
    price: float


QUOTES = Contract("quote", Quote, key=tuple[str, int])
BY_SYMBOL = Contract("quote-by-symbol", Quote, key=str)


def boot(path: Path, **options: Any) -> warmstart.Boot:
    options.setdefault("signals", False)
    return warmstart.boot(path, namespace="memo", **options)


class TestKeys:
    def test_keyword_and_default_arguments_hit_one_entry(self) -> None:
        """f(s, 0), f(s, day=0), f(s) and f(symbol=s) are one call: one computation."""
        calls: list[tuple[str, int]] = []

        @warmstart.cached(QUOTES)
        def quote(symbol: str, day: int = 0) -> Quote:
            calls.append((symbol, day))
            return Quote(symbol, 1.0 + day)

        assert quote("a", 0) == quote("a", day=0) == quote("a") == quote(symbol="a")
        assert calls == [("a", 0)]
        assert quote.cache_info() == CacheInfo(hits=3, misses=1, maxsize=128, currsize=1)
        assert list(quote.cache) == [("a", 0)]

    def test_one_argument_is_the_key_itself(self) -> None:
        """With a scalar key type, the argument is the key (no tuple)."""

        @warmstart.cached(BY_SYMBOL)
        def quote(symbol: str) -> Quote:
            return Quote(symbol, 1.0)

        quote("a")
        assert list(quote.cache) == ["a"]

    def test_no_arguments_use_the_empty_key(self) -> None:
        """A function without parameters (settings, say) is one entry under ''."""

        @warmstart.cached(BY_SYMBOL)
        def default() -> Quote:
            return Quote("x", 0.0)

        assert default() is default()
        assert list(default.cache) == [""]

    def test_wrong_calls_raise_what_python_raises(self) -> None:
        """Unknown or missing arguments reach the function itself: the usual TypeError."""

        @warmstart.cached(QUOTES)
        def quote(symbol: str, day: int = 0) -> Quote:
            return Quote(symbol, day)

        with pytest.raises(TypeError, match="unexpected keyword argument 'when'"):
            quote("a", when=1)
        with pytest.raises(TypeError, match="missing 1 required positional argument"):
            quote()
        with pytest.raises(TypeError, match="multiple values for argument 'symbol'"):
            quote("a", symbol="b")

    def test_keyword_only_parameters_stay_keyword_only(self) -> None:
        """f(1, 2) is still a TypeError for f(a, *, b), even once f(1, b=2) is cached."""

        @warmstart.cached(Contract("kw", int, key=tuple[int, int]))
        def f(a: int, *, b: int) -> int:
            return a + b

        assert f(1, b=2) == 3
        assert f(a=1, b=2) == 3
        assert f.cache_info().hits == 1
        with pytest.raises(TypeError, match="positional argument"):
            f(1, 2)  # type: ignore[misc]

    def test_unhashable_arguments_raise_type_error(self) -> None:
        """As with lru_cache: a list argument cannot be a key."""

        @warmstart.cached(Contract("q", Quote, key=tuple[str]))
        def quote(symbols: Any) -> Quote:
            return Quote("a", 1.0)

        with pytest.raises(TypeError, match="unhashable"):
            quote(["a"])

    def test_keys_that_would_not_come_back_are_not_cached(self, caplog: Any) -> None:
        """A float where the key says int, or a bool: computed, returned, counted, not cached."""

        @warmstart.cached(QUOTES)
        def quote(symbol: str, day: int = 0) -> Quote:
            return Quote(symbol, 1.0)

        assert quote("a", 1.5) == Quote("a", 1.0)
        assert quote("a", True) == Quote("a", 1.0)
        assert quote("a", 2**70) == Quote("a", 1.0)
        assert len(quote.cache) == 0
        assert quote.uncached() == 3
        assert "is not cached" in caplog.text

    def test_values_that_would_not_come_back_are_not_cached(self) -> None:
        """A result of another type (None, a subclass) is returned but not cached."""

        class Special(Quote, frozen=True):
            venue: str = ""

        @warmstart.cached(BY_SYMBOL)
        def quote(symbol: str) -> Any:
            return None if symbol == "none" else Special(symbol, 1.0)

        assert quote("none") is None
        assert quote("a") == Special("a", 1.0)
        assert len(quote.cache) == 0
        assert quote.uncached() == 2

    def test_optional_result_with_an_optional_contract(self) -> None:
        """Declare Quote | None to keep "not found" results warm too."""

        @warmstart.cached(Contract("maybe", Quote | None, key=str))
        def find(symbol: str) -> Quote | None:
            return None

        find("x")
        find("x")
        assert find.cache_info().hits == 1

    @pytest.mark.parametrize(
        ("contract", "match"),
        [
            (Contract("q", Quote, key=str), r"tuple of 2 .*key=tuple\[str, int\]\), got str"),
            (Contract("q", Quote, key=tuple[str]), "tuple of 2"),
        ],
    )
    def test_a_key_type_that_does_not_fit_is_refused(self, contract: Any, match: str) -> None:
        """The contract's key must have one element per parameter; the message suggests it."""
        with pytest.raises(ContractError, match=match):

            @warmstart.cached(contract)
            def quote(symbol: str, day: int) -> Quote:
                return Quote(symbol, day)

    def test_variadic_functions_need_a_key_function(self) -> None:
        """*args has no fixed key: key= builds one."""
        with pytest.raises(ContractError, match=r"\*args .* pass key="):

            @warmstart.cached(BY_SYMBOL)
            def total(*args: str) -> Quote:
                return Quote("".join(args), 0.0)

        @warmstart.cached(BY_SYMBOL, key=lambda *args: ",".join(args))
        def joined(*args: str) -> Quote:
            return Quote("".join(args), 0.0)

        joined("a", "b")
        assert list(joined.cache) == ["a,b"]
        assert joined.cache_key("a", "b") == "a,b"

    def test_bad_arguments_are_refused(self) -> None:
        """maxsize, ttl, key and the contract are checked when decorating."""
        with pytest.raises(ContractError, match="maxsize"):
            warmstart.cached(BY_SYMBOL, maxsize=0)
        with pytest.raises(ContractError, match="ttl"):
            warmstart.cached(BY_SYMBOL, ttl=-1)
        with pytest.raises(ContractError, match="Contract"):
            warmstart.cached("quote")  # type: ignore[arg-type]
        with pytest.raises(ContractError, match="key as a callable"):
            warmstart.cached(BY_SYMBOL, key="x")  # type: ignore[arg-type]
        with pytest.raises(ContractError, match="lock as a lock"):
            warmstart.cached(BY_SYMBOL, lock="lock")
        with pytest.raises(ContractError, match="name of an instance attribute"):
            warmstart.cachedmethod(BY_SYMBOL, lock=threading.Lock())  # type: ignore[arg-type]


class TestCaches:
    def test_lru_evicts_the_least_recent(self) -> None:
        """The default cache is an LRU of maxsize, as lru_cache."""

        @warmstart.cached(BY_SYMBOL, maxsize=2)
        def quote(symbol: str) -> Quote:
            return Quote(symbol, 1.0)

        quote("a")
        quote("b")
        quote("a")  # a is now the most recent
        quote("c")  # evicts b
        assert list(quote.cache) == ["a", "c"]

    def test_maxsize_none_is_unbounded(self) -> None:
        """maxsize=None: a dict, as functools.cache."""

        @warmstart.cached(BY_SYMBOL, maxsize=None)
        def quote(symbol: str) -> Quote:
            return Quote(symbol, 1.0)

        for i in range(300):
            quote(str(i))
        assert type(quote.cache) is dict
        assert quote.cache_info().currsize == 300
        assert quote.cache_parameters() == {"maxsize": None, "typed": True}

    def test_cache_clear(self) -> None:
        """cache_clear empties the cache and resets the counts."""

        @warmstart.cached(BY_SYMBOL)
        def quote(symbol: str) -> Quote:
            return Quote(symbol, 1.0)

        quote("a")
        quote("a")
        quote.cache_clear()
        assert quote.cache_info() == CacheInfo(0, 0, 128, 0)

    def test_a_given_lock_is_used_and_taken_by_checkpoints(self) -> None:
        """lock= guards the cache, as cachetools.cached(lock=...)."""
        lock = threading.RLock()

        @warmstart.cached(BY_SYMBOL, cache=cachetools.LRUCache(10), lock=lock)
        def quote(symbol: str) -> Quote:
            return Quote(symbol, 1.0)

        quote("a")
        assert quote.cache_lock is lock
        assert quote.__warm__.states["cache"].lock == "cache_lock"

    def test_a_cachetools_cache_gets_a_lock(self) -> None:
        """A cachetools cache is used under a lock (checkpoints take it too)."""
        cache = cachetools.LFUCache(maxsize=10)

        @warmstart.cached(BY_SYMBOL, cache=cache)
        def quote(symbol: str) -> Quote:
            return Quote(symbol, 1.0)

        quote("a")
        assert quote.cache is cache
        assert quote.cache_lock is not None
        assert quote.cache_info().maxsize == 10

    def test_ttl_makes_a_ttl_cache(self) -> None:
        """ttl= is a cachetools TTLCache of maxsize."""

        @warmstart.cached(BY_SYMBOL, maxsize=10, ttl=60)
        def quote(symbol: str) -> Quote:
            return Quote(symbol, 1.0)

        quote("a")
        assert isinstance(quote.cache, cachetools.TTLCache)
        assert quote.cache.ttl == 60

    def test_threads_share_the_cache_safely(self) -> None:
        """Eight threads hammering an LRU never see a wrong value or an error."""

        @warmstart.cached(Contract("n", int, key=int), maxsize=50)
        def square(n: int) -> int:
            return n * n

        errors: list[BaseException] = []

        def work(seed: int) -> None:
            try:
                for i in range(3000):
                    n = (i * seed) % 97
                    assert square(n) == n * n
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(s,)) for s in range(1, 9)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(square.cache) <= 50

    def test_wrapper_looks_like_the_function(self) -> None:
        """update_wrapper: name, doc and __wrapped__."""

        def quote(symbol: str) -> Quote:
            """Get a quote."""
            return Quote(symbol, 1.0)

        wrapped = warmstart.cached(BY_SYMBOL)(quote)
        assert wrapped.__name__ == "quote"
        assert wrapped.__doc__ == "Get a quote."
        assert wrapped.__wrapped__ is quote  # type: ignore[attr-defined]


class TestAsync:
    def test_one_computation_per_key(self) -> None:
        """Concurrent callers of one key await one computation (async_lru's guarantee)."""
        calls: list[str] = []

        @warmstart.cached(BY_SYMBOL)
        async def quote(symbol: str) -> Quote:
            calls.append(symbol)
            await asyncio.sleep(0.01)
            return Quote(symbol, 1.0)

        async def main() -> list[Quote]:
            return await asyncio.gather(*(quote("a") for _ in range(20)), quote("b"))

        results = asyncio.run(main())
        assert sorted(calls) == ["a", "b"]
        assert results[:20] == [Quote("a", 1.0)] * 20
        assert quote.cache_info().misses == 2
        assert asyncio.run(quote("a")) == Quote("a", 1.0)
        assert calls == ["a", "b"] or sorted(calls) == ["a", "b"]

    def test_exceptions_are_not_cached(self) -> None:
        """A failed computation reaches every waiter and is retried by the next call."""
        attempts: list[int] = []

        @warmstart.cached(BY_SYMBOL)
        async def flaky(symbol: str) -> Quote:
            attempts.append(1)
            await asyncio.sleep(0)
            if len(attempts) == 1:
                raise RuntimeError("down")
            return Quote(symbol, 1.0)

        async def main() -> list[Any]:
            return await asyncio.gather(flaky("a"), flaky("a"), return_exceptions=True)

        first = asyncio.run(main())
        assert [type(r) for r in first] == [RuntimeError, RuntimeError]
        assert asyncio.run(flaky("a")) == Quote("a", 1.0)
        assert len(attempts) == 2

    def test_a_cancelled_caller_does_not_cancel_the_others(self) -> None:
        """The computation runs on for the callers still waiting."""

        @warmstart.cached(BY_SYMBOL)
        async def slow(symbol: str) -> Quote:
            await asyncio.sleep(0.05)
            return Quote(symbol, 2.0)

        async def main() -> Quote:
            first = asyncio.ensure_future(slow("a"))
            second = asyncio.ensure_future(slow("a"))
            await asyncio.sleep(0.01)
            first.cancel()
            return await second

        assert asyncio.run(main()) == Quote("a", 2.0)
        assert list(slow.cache) == ["a"]


class TestWarm:
    def test_defined_inside_a_boot_it_is_restored_and_checkpointed(self, store_path: Path) -> None:
        """The innermost open boot captures a @cached function defined inside it."""
        calls: list[str] = []

        def define() -> Any:
            @warmstart.cached(BY_SYMBOL, section="quotes")
            def quote(symbol: str) -> Quote:
                calls.append(symbol)
                return Quote(symbol, 1.0)

            return quote

        with boot(store_path):
            quote = define()
            quote("a")
            quote("b")
        with boot(store_path) as second:
            quote = define()
        assert second.report.sections["quotes"].restored == 2
        assert quote("a") == Quote("a", 1.0)
        assert calls == ["a", "b"]
        assert quote.cache_info().hits == 1

    def test_module_level_functions_are_attached_by_hand(self, store_path: Path) -> None:
        """A function defined before the boot is attached with boot.attach(func)."""

        @warmstart.cached(QUOTES, maxsize=10)
        def quote(symbol: str, day: int = 0) -> Quote:
            return Quote(symbol, float(day))

        quote("a", 1)
        quote("b", day=2)
        with boot(store_path) as first:
            first.attach(quote)
        quote.cache_clear()
        with boot(store_path) as second:
            assert second.attach(quote) is quote
        assert dict(quote.cache) == {("a", 1): Quote("a", 1.0), ("b", 2): Quote("b", 2.0)}
        assert next(iter(second.report.sections)).endswith("quote")

    def test_the_lru_order_survives(self, store_path: Path) -> None:
        """The most recent entries stay the most recent after a restore."""

        @warmstart.cached(BY_SYMBOL, maxsize=3, section="lru")
        def quote(symbol: str) -> Quote:
            return Quote(symbol, 1.0)

        for s in "abcda":
            quote(s)
        with boot(store_path) as first:
            first.attach(quote)
        quote.cache_clear()
        with boot(store_path) as second:
            second.attach(quote)
        assert list(quote.cache) == ["c", "d", "a"]

    def test_a_ttl_cache_keeps_remaining_lifetime(self, store_path: Path) -> None:
        """An entry with 10 s left when saved has about 10 s left after the restore."""
        clock = [1000.0]

        def make() -> Any:
            cache = cachetools.TTLCache(maxsize=10, ttl=60, timer=lambda: clock[0])

            @warmstart.cached(BY_SYMBOL, cache=cache, section="ttl")
            def quote(symbol: str) -> Quote:
                return Quote(symbol, 1.0)

            return quote

        quote = make()
        quote("a")
        clock[0] += 50  # 10 s left
        with boot(store_path) as first:
            first.attach(quote)
        again = make()
        with boot(store_path) as second:
            second.attach(again)
        assert "a" in again.cache
        clock[0] += 9
        assert "a" in again.cache
        clock[0] += 2
        assert "a" not in again.cache

    def test_attaching_something_else_is_refused(self, store_path: Path) -> None:
        """A plain function is neither @warm nor @cached: a clear error."""
        with (
            boot(store_path) as b,
            pytest.raises(ContractError, match=r"@warmstart\.cached function"),
        ):
            b.attach(len)


@warmstart.warm
class PriceService:
    def __init__(self, currency: str = "USD") -> None:
        self.currency = currency
        self.calls = 0

    @warmstart.cachedmethod(BY_SYMBOL, maxsize=100)
    def quote(self, symbol: str) -> Quote:
        self.calls += 1
        return Quote(symbol, 1.0)

    @warmstart.cachedmethod(Contract("async-quote", Quote, key=str), cache="fx_quotes")
    async def fx(self, symbol: str) -> Quote:
        self.calls += 1
        await asyncio.sleep(0)
        return Quote(symbol, 2.0)


class TestCachedMethod:
    def test_each_instance_has_its_cache(self) -> None:
        """Keys leave self out; each instance keeps its own cache attribute."""
        one, two = PriceService(), PriceService()
        one.quote("a")
        one.quote("a")
        two.quote("a")
        assert (one.calls, two.calls) == (1, 1)
        assert list(one.quote_cache) == ["a"]  # type: ignore[attr-defined]
        assert PriceService.quote.cache_info(one).currsize == 1  # type: ignore[attr-defined]
        PriceService.quote.cache_clear(one)  # type: ignore[attr-defined]
        assert len(one.quote_cache) == 0  # type: ignore[attr-defined]

    def test_warm_discovers_the_caches(self) -> None:
        """@warm lists each cachedmethod's cache as a warm attribute."""
        assert PriceService.warm_info().sections == (  # type: ignore[attr-defined]
            "PriceService.quote_cache",
            "PriceService.fx_quotes",
        )

    def test_restored_with_the_instance(self, store_path: Path) -> None:
        """Instances built in a boot come back with their method caches warm, sync and async."""
        with boot(store_path):
            service = PriceService()
            service.quote("a")
            asyncio.run(service.fx("b"))
        with boot(store_path):
            again = PriceService()
        assert again.quote("a") == Quote("a", 1.0)
        assert asyncio.run(again.fx("b")) == Quote("b", 2.0)
        assert again.calls == 0

    def test_cachetools_style_callables(self) -> None:
        """cache= and lock= as functions of the instance, as cachetools.cachedmethod takes them."""

        @dataclasses.dataclass
        class Holder:
            cache: Any = dataclasses.field(default_factory=lambda: cachetools.LRUCache(10))
            lock: Any = dataclasses.field(default_factory=threading.Lock)

            @warmstart.cachedmethod(
                BY_SYMBOL, cache=lambda self: self.cache, lock=lambda self: self.lock
            )
            def quote(self, symbol: str) -> Quote:
                return Quote(symbol, 3.0)

        holder = Holder()
        holder.quote("a")
        assert list(holder.cache) == ["a"]


SCRIPT = """
import asyncio, sys, msgspec, warmstart

class Quote(msgspec.Struct):
    symbol: str
    price: float

CALLS = []

@warmstart.cached(warmstart.Contract("quote", Quote, key=tuple[str, int]), maxsize=1000)
def quote(symbol: str, day: int = 0) -> Quote:
    CALLS.append(symbol)
    return Quote(symbol, 100.0 + day)

@warmstart.cached(warmstart.Contract("aquote", Quote, key=str))
async def aquote(symbol: str) -> Quote:
    CALLS.append("async:" + symbol)
    return Quote(symbol, 7.0)

async def serve():
    async with warmstart.boot(sys.argv[1], namespace="svc", signals=False) as b:
        b.attach(quote)
        b.attach(aquote)
        results = [quote("AAPL"), quote("MSFT", day=1), quote(symbol="AAPL")]
        results.append(await aquote("NVDA"))
        results += await asyncio.gather(aquote("TSLA"), aquote("TSLA"))
    print(b.report.status, len(CALLS), ",".join(CALLS), [r.price for r in results], sep="|")

asyncio.run(serve())
"""


class TestAcrossProcesses:
    def test_memoized_functions_survive_a_restart(self, tmp_path: Path) -> None:
        """A second process finds every result, sync and async: nothing is computed again."""
        script = tmp_path / "service.py"
        script.write_text(textwrap.dedent(SCRIPT))
        store = tmp_path / "store"

        def run() -> list[str]:
            done = subprocess.run(
                [sys.executable, str(script), str(store)],
                capture_output=True,
                text=True,
                check=True,
                timeout=120,
            )
            return done.stdout.strip().split("|")

        status, calls, names, prices = run()
        assert (status, calls) == ("cold", "4")
        assert names == "AAPL,MSFT,async:NVDA,async:TSLA"
        status, calls, _, again = run()
        assert (status, calls) == ("warm", "0")
        assert again == prices


class TestMoreCases:
    def test_a_locked_cache_hits_and_skips_values_too_large(self) -> None:
        """A cachetools cache: hits under the lock; a value larger than the cache is not kept."""
        cache = cachetools.LRUCache(maxsize=10, getsizeof=lambda q: 20 if q.symbol == "big" else 1)

        @warmstart.cached(BY_SYMBOL, cache=cache)
        def quote(symbol: str) -> Quote:
            return Quote(symbol, 1.0)

        quote("a")
        quote("a")
        quote(symbol="a")
        assert quote("big") == Quote("big", 1.0)
        assert list(cache) == ["a"]
        assert quote.cache_info().hits == 2

    def test_a_key_function_hits(self) -> None:
        """key= builds the key; calls with equal keys hit."""

        @warmstart.cached(BY_SYMBOL, key=lambda obj: obj["symbol"])
        def quote(obj: dict[str, str]) -> Quote:
            return Quote(obj["symbol"], 1.0)

        quote({"symbol": "a"})
        quote({"symbol": "a"})
        assert quote.cache_info() == CacheInfo(1, 1, 128, 1)

    def test_optional_arguments_in_tuple_keys(self) -> None:
        """int | None in a key: None and ints are both kept."""

        @warmstart.cached(Contract("opt", int, key=tuple[str, int | None]))
        def f(name: str, limit: int | None = None) -> int:
            return 0 if limit is None else limit

        f("a")
        f("a", 3)
        assert set(f.cache) == {("a", None), ("a", 3)}

    def test_the_suggested_key_type_uses_the_annotations(self) -> None:
        """Unannotated parameters show as ... in the suggestion."""
        with pytest.raises(ContractError, match=r"key=tuple\[int, \.\.\.\]"):

            @warmstart.cached(BY_SYMBOL)
            def f(a: int, b) -> Quote:  # type: ignore[no-untyped-def]
                return Quote("x", 0.0)

    def test_async_with_a_locked_cache_and_bad_calls(self) -> None:
        """An async function over a cachetools cache; a call that does not bind raises TypeError."""

        @warmstart.cached(BY_SYMBOL, cache=cachetools.LRUCache(10))
        async def quote(symbol: str) -> Quote:
            return Quote(symbol, 1.0)

        async def main() -> None:
            await quote("a")
            assert await quote("a") == Quote("a", 1.0)
            with pytest.raises(TypeError):
                await quote("a", "b")  # type: ignore[call-arg]

        asyncio.run(main())
        assert quote.cache_info().hits == 1

    def test_cachedmethod_without_warm_and_with_ttl(self) -> None:
        """A class without @warm still memoizes (cache made at first call); ttl= gets a lock."""

        class Plain:
            @warmstart.cachedmethod(BY_SYMBOL, ttl=30)
            def quote(self, symbol: str) -> Quote:
                return Quote(symbol, 1.0)

        obj = Plain()
        obj.quote("a")
        obj.quote("a")
        assert isinstance(obj.quote_cache, cachetools.TTLCache)  # type: ignore[attr-defined]
        assert obj.quote_cache_lock is not None  # type: ignore[attr-defined]
        with pytest.raises(TypeError):
            obj.quote()  # type: ignore[call-arg]

    def test_async_cachedmethod_shares_one_computation(self) -> None:
        """Concurrent awaits of one instance's key compute once."""

        @warmstart.warm
        class Svc:
            def __init__(self) -> None:
                self.calls = 0

            @warmstart.cachedmethod(BY_SYMBOL)
            async def quote(self, symbol: str) -> Quote:
                self.calls += 1
                await asyncio.sleep(0.01)
                return Quote(symbol, 1.0)

        svc = Svc()

        async def main() -> None:
            await asyncio.gather(*(svc.quote("a") for _ in range(5)))
            with pytest.raises(TypeError):
                await svc.quote()  # type: ignore[call-arg]

        asyncio.run(main())
        assert svc.calls == 1

    def test_the_cache_attribute_cannot_be_the_method(self) -> None:
        """cache='quote' on the method quote would hide it: refused."""
        with pytest.raises(ContractError, match="other than the method's name"):

            class Bad:
                @warmstart.cachedmethod(BY_SYMBOL, cache="quote")
                def quote(self, symbol: str) -> Quote:
                    return Quote(symbol, 1.0)
