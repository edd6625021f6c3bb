"""An ASGI (Starlette) service whose lifespan is ``async with warmstart.boot(...)``.

Driven two ways: through ``starlette.testclient.TestClient`` used as a context
manager (the app runs on a portal thread), and through a small ASGI lifespan
driver on the test's own event loop, with requests sent by ``httpx``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import warmstart

with warnings.catch_warnings():
    # starlette 1.x asks for httpx2 and warns once at import when it finds httpx.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

NS = "web"


class Quote(msgspec.Struct):
    """One price."""

    price: float


QUOTES = warmstart.Contract("quote", Quote, key=str)


def make_app(store: Path, *, gate: asyncio.Event | None = None, **options: Any) -> Starlette:
    """A quote service; with ``gate``, its hot-symbol prefetch waits for it (on the app's loop)."""

    async def prefetch(symbols: list[str]) -> dict[str, Quote]:
        if gate is not None:
            await gate.wait()
        return {s: Quote(float(len(s))) for s in symbols}

    @warmstart.warm(
        quotes=QUOTES,
        hot=warmstart.state(QUOTES, keys_only=True, prefetch=prefetch),
    )
    class QuoteService:
        """Quotes restored from the checkpoint; hot symbols prefetched from the source."""

        def __init__(self) -> None:
            self.quotes: dict[str, Quote] = {}
            self.hot: dict[str, Quote] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with warmstart.boot(store, namespace=NS, **options) as boot:
            app.state.boot = boot
            app.state.service = QuoteService()
            yield

    async def get_quote(request: Request) -> JSONResponse:
        symbol = request.path_params["symbol"]
        quote = request.app.state.service.quotes.get(symbol)
        return JSONResponse(None if quote is None else quote.price)

    async def put_quote(request: Request) -> JSONResponse:
        service = request.app.state.service
        symbol = request.path_params["symbol"]
        service.quotes[symbol] = Quote(float(await request.json()))
        service.hot[symbol] = service.quotes[symbol]
        return JSONResponse(True)

    async def health(request: Request) -> JSONResponse:
        boot: warmstart.Boot = request.app.state.boot
        hot = request.app.state.service.hot
        return JSONResponse(
            {
                "status": boot.report.status,
                "ready": boot.ready.is_set(),
                "readiness": boot.readiness,
                "hot": sorted(hot),
            }
        )

    return Starlette(
        routes=[
            Route("/quotes/{symbol}", get_quote, methods=["GET"]),
            Route("/quotes/{symbol}", put_quote, methods=["PUT"]),
            Route("/health", health),
        ],
        lifespan=lifespan,
    )


@contextlib.asynccontextmanager
async def lifespan_of(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """Run an ASGI app's lifespan on this loop (startup, then shutdown) around a client."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(app(scope, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        yield client
    await inbox.put({"type": "lifespan.shutdown"})
    assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
    await task


class TestTestClient:
    """The lifespan driven by Starlette's TestClient."""

    def test_restart_comes_back_warm(self, store_path: Path) -> None:
        """A quote written before a shutdown is served after the restart."""
        with TestClient(make_app(store_path)) as client:
            assert client.get("/health").json()["status"] == "cold"
            assert client.get("/quotes/AAPL").json() is None
            assert client.put("/quotes/AAPL", json=189.5).json() is True
        with TestClient(make_app(store_path)) as client:
            health = client.get("/health").json()
            assert health["status"] == "warm"
            assert client.get("/quotes/AAPL").json() == 189.5
            client.put("/quotes/MSFT", json=410.0)
            assert client.app.state.boot.wait_ready(10)  # type: ignore[attr-defined]
            assert client.get("/health").json()["hot"] == ["AAPL", "MSFT"]
        with TestClient(make_app(store_path)) as client:
            assert client.get("/quotes/MSFT").json() == 410.0
            boot = client.app.state.boot  # type: ignore[attr-defined]
            assert boot.report.generation == 2


class TestLifespanDriver:
    """The lifespan driven on the test's own event loop, requests through httpx."""

    def test_warming_then_warm_on_the_apps_loop(self, store_path: Path) -> None:
        """Hot keys are prefetched on the app's loop in the background; health shows warming."""

        async def first() -> None:
            async with lifespan_of(make_app(store_path)) as client:
                for symbol, price in (("AAPL", 1), ("MSFT", 2), ("GOOG", 3)):
                    await client.put(f"/quotes/{symbol}", json=price)

        async def second() -> None:
            gate = asyncio.Event()
            async with lifespan_of(make_app(store_path, gate=gate)) as client:
                health = (await client.get("/health")).json()
                assert health["status"] == "warm"
                assert (health["ready"], health["hot"]) == (False, [])
                assert health["readiness"] < 1
                assert (await client.get("/quotes/GOOG")).json() == 3  # values are back
                gate.set()  # the source of truth answers the prefetch
                for _ in range(200):
                    health = (await client.get("/health")).json()
                    if health["ready"]:
                        break
                    await asyncio.sleep(0.01)
                assert health == {
                    "status": "warm",
                    "ready": True,
                    "readiness": 1.0,
                    "hot": ["AAPL", "GOOG", "MSFT"],
                }

        asyncio.run(first())
        asyncio.run(second())

    def test_signal_handlers_are_armed_for_the_lifespan_only(self, store_path: Path) -> None:
        """On the main thread, the lifespan's boot chains SIGTERM and restores it at shutdown."""
        before = signal.getsignal(signal.SIGTERM)

        async def serve() -> Any:
            async with lifespan_of(make_app(store_path, signals=True)) as client:
                await client.put("/quotes/X", json=1)
                return signal.getsignal(signal.SIGTERM)

        during = asyncio.run(serve())
        assert during != before
        assert getattr(during, "__self__", None).__class__ is warmstart.Boot
        assert signal.getsignal(signal.SIGTERM) == before

    def test_a_failing_startup_saves_nothing(self, store_path: Path) -> None:
        """A lifespan whose startup fails after the boot entered leaves the store as it was."""

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            async with warmstart.boot(store_path, namespace=NS, signals=False):
                msg = "database unreachable"
                raise RuntimeError(msg)
            yield  # pragma: no cover

        app = Starlette(lifespan=lifespan)

        async def start() -> str:
            inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            await inbox.put({"type": "lifespan.startup"})
            scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
            with contextlib.suppress(RuntimeError):
                await app(scope, inbox.get, outbox.put)
            return str((await outbox.get())["type"])

        assert asyncio.run(start()) == "lifespan.startup.failed"
        with warmstart.Store(store_path) as store:
            assert store.namespaces() == []


@pytest.fixture(autouse=True)
def _no_signals_left(store_path: Path) -> Any:
    """Every test leaves the process's signal handlers as it found them."""
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    yield
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
