"""Release 1 of a pricing service: quotes without a currency.

``python release_v1.py STORE [SYMBOL=PRICE ...]`` boots, prints the report and
the quotes it came back with (``booted``), writes the given quotes, and
checkpoints at exit. Warnings are reported in the ``booted`` line.
"""

from __future__ import annotations

import sys
import warnings

import cachetools
import msgspec

import warmstart
from _common import boot_fields, emit

NAMESPACE = "pricing"


class Quote(msgspec.Struct):
    """Version 1."""

    symbol: str
    price: float


class Settings(msgspec.Struct):
    """One record, in a section of its own; unchanged across releases."""

    greeting: str = "hello"


QUOTES = warmstart.Contract("quote", Quote, key=str, version=1)
SETTINGS = warmstart.Contract("settings", Settings, key=str)


@warmstart.warm(quotes=QUOTES, settings=SETTINGS)
class PriceService:
    """Quotes in an LRU cache, and settings."""

    def __init__(self) -> None:
        self.quotes: cachetools.LRUCache[str, Quote] = cachetools.LRUCache(maxsize=1000)
        self.settings = Settings()


def main() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with warmstart.boot(sys.argv[1], namespace=NAMESPACE) as boot:
            service = PriceService()
            emit(
                "booted",
                release=1,
                quotes={k: [q.price] for k, q in service.quotes.items()},
                settings=service.settings.greeting,
                warnings=[f"{w.category.__name__}: {w.message}" for w in caught],
                **boot_fields(boot),
            )
            for arg in sys.argv[2:]:
                symbol, price = arg.split("=")
                service.quotes[symbol] = Quote(symbol, float(price))
            service.settings = Settings("hello from v1")
    emit("bye")


if __name__ == "__main__":
    main()
