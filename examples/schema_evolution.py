"""Round-trip a checkpoint of versioned records and print what happened.

Release 1 writes quotes without a currency; release 2 adds the field with an
upgrader and reads release 1's checkpoint; then release 1 (a rollback) reads
release 2's checkpoint, ignoring the field it does not know.
"""

from __future__ import annotations

import tempfile
import time

import msgspec

import warmstart


class QuoteV1(msgspec.Struct):
    symbol: str
    price: float


class QuoteV2(msgspec.Struct):
    symbol: str
    price: float
    currency: str = "USD"


V1 = warmstart.Contract("quote", QuoteV1, key=str, version=1)
V2 = warmstart.Contract(
    "quote", QuoteV2, key=str, version=2, upgraders={1: lambda old: {**old, "currency": "USD"}}
)


def main() -> None:
    path = tempfile.mkdtemp(prefix="warmstart-demo-")
    quotes = {f"SYM{i}": QuoteV1(f"SYM{i}", 100 + i / 100) for i in range(100_000)}
    with warmstart.Store(path) as store:
        started = time.perf_counter()
        generation = store.save("pricing", {"quotes": (V1, quotes)})
        print(
            f"release 1 saved {len(quotes):,} quotes as generation {generation} "
            f"in {time.perf_counter() - started:.3f}s"
        )
    with warmstart.Store(path) as store, store.load("pricing") as snapshot:
        started = time.perf_counter()
        section = snapshot.read("quotes", V2)
        print(
            f"release 2 restored {section.stats.restored:,} quotes "
            f"({section.stats.upgraded:,} upgraded from v1) in "
            f"{time.perf_counter() - started:.3f}s; SYM7 -> {section.entries['SYM7']}"
        )
        generation = store.save("pricing", {"quotes": (V2, section.entries)})
    with warmstart.Store(path) as store, store.load("pricing") as snapshot:
        rolled_back = snapshot.section("quotes", V1)
        print(
            f"release 1 (rollback) read generation {snapshot.generation} written by v2: "
            f"{len(rolled_back):,} quotes, SYM7 -> {rolled_back['SYM7']}"
        )
        report = store.verify()
        print(f"verify: ok={report.ok}, {report.chunks} chunks in {report.generations} generations")


if __name__ == "__main__":
    main()
