"""Does a trained zstd dictionary pay for warmstart's chunks? (issue: foundation)

Trains a dictionary on 2,000 small chunks of the benchmark records and
compares compressed sizes at level 1, with and without it, for chunk sizes
from a tiny delta (16 entries) to a full 512 KiB base chunk.

Run: .venv/bin/python -m benchmarks.zstd_dictionary
"""

from __future__ import annotations

import random

import msgspec
import zstandard


class Record(msgspec.Struct):
    id: int
    name: str
    score: float
    tags: list[int]
    active: bool
    kind: str


_encoder = msgspec.msgpack.Encoder()


def chunk(n: int, offset: int) -> bytes:
    keys = [f"k{i}" for i in range(offset, offset + n)]
    values = [
        Record(i, f"n{i}", i * 0.5, [i, i + 1, i + 2], i % 2 == 0, "abc"[i % 3])
        for i in range(offset, offset + n)
    ]
    return _encoder.encode((0, keys, values, [], []))


def measure(sizes: tuple[int, ...] = (16, 64, 256, 6500)) -> list[tuple[int, int, int, int]]:
    """(entries, payload bytes, zstd bytes, zstd+dictionary bytes) per chunk size."""
    rng = random.Random(0)
    samples = [chunk(64, rng.randrange(10**6)) for _ in range(2000)]
    dictionary = zstandard.train_dictionary(112_640, samples)
    plain = zstandard.ZstdCompressor(level=1)
    trained = zstandard.ZstdCompressor(level=1, dict_data=dictionary)
    rows = []
    for n in sizes:
        payload = chunk(n, 500_000)
        rows.append((n, len(payload), len(plain.compress(payload)), len(trained.compress(payload))))
    return rows


def main() -> None:
    print("| entries | payload bytes | zstd-1 bytes | zstd-1 + dictionary | ratio |")
    print("|---|---|---|---|---|")
    for n, raw, plain, trained in measure():
        print(f"| {n:,} | {raw:,} | {plain:,} | {trained:,} | {trained / plain:.2f} |")


if __name__ == "__main__":
    main()
