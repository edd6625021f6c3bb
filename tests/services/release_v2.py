"""Release 2 of the pricing service: quotes carry a currency.

``python release_v2.py STORE [--crash exit|kill] [--renamed] [SYMBOL=PRICE:CUR ...]``

Version 2 adds ``currency`` (default ``"USD"``; the v1->v2 upgrader fills it).
``--renamed`` runs a later release (version 3) that renamed ``price`` to
``amount``: release 1 can no longer read what it writes. ``--crash`` makes the
v1->v2 upgrader kill the process in the middle of the restore (``os._exit``
or SIGKILL), as a bug in a native extension or an OOM kill would.
"""

from __future__ import annotations

import argparse
import os
import signal
import warnings
from typing import Any

import cachetools
import msgspec

import warmstart
from _common import boot_fields, emit

NAMESPACE = "pricing"
CRASH: str | None = None


class Quote(msgspec.Struct):
    """Version 2."""

    symbol: str
    price: float
    currency: str = "USD"


class QuoteV3(msgspec.Struct):
    """Version 3: ``price`` renamed to ``amount``."""

    symbol: str
    amount: float
    currency: str = "USD"


class Settings(msgspec.Struct):
    """Unchanged since release 1."""

    greeting: str = "hello"


def v1_to_v2(old: dict[str, Any]) -> dict[str, Any]:
    if CRASH == "exit":
        os._exit(3)
    if CRASH == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    return {**old, "currency": "USD"}


def v2_to_v3(old: dict[str, Any]) -> dict[str, Any]:
    new = {k: v for k, v in old.items() if k != "price"}
    return {**new, "amount": old["price"]}


QUOTES = warmstart.Contract("quote", Quote, key=str, version=2, upgraders={1: v1_to_v2})
QUOTES_V3 = warmstart.Contract(
    "quote", QuoteV3, key=str, version=3, upgraders={1: v1_to_v2, 2: v2_to_v3}
)
SETTINGS = warmstart.Contract("settings", Settings, key=str)


def main() -> None:
    global CRASH  # noqa: PLW0603 - a flag read by the upgrader
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("--crash", choices=["exit", "kill"], default=None)
    parser.add_argument("--renamed", action="store_true")
    parser.add_argument("quotes", nargs="*")
    args = parser.parse_intermixed_args()
    CRASH = args.crash
    struct: Any = QuoteV3 if args.renamed else Quote

    @warmstart.warm(quotes=QUOTES_V3 if args.renamed else QUOTES, settings=SETTINGS)
    class PriceService:
        """Quotes in an LRU cache, and settings."""

        def __init__(self) -> None:
            self.quotes: cachetools.LRUCache[str, Any] = cachetools.LRUCache(maxsize=1000)
            self.settings = Settings()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with warmstart.boot(args.store, namespace=NAMESPACE) as boot:
            service = PriceService()
            emit(
                "booted",
                release=3 if args.renamed else 2,
                quotes={
                    k: [q.amount if args.renamed else q.price, q.currency]
                    for k, q in service.quotes.items()
                },
                settings=service.settings.greeting,
                warnings=[f"{w.category.__name__}: {w.message}" for w in caught],
                **boot_fields(boot),
            )
            for arg in args.quotes:
                symbol, rest = arg.split("=")
                price, currency = rest.split(":")
                service.quotes[symbol] = struct(symbol, float(price), currency)
    emit("bye")


if __name__ == "__main__":
    main()
