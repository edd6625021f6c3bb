"""Codec: a million records through contract + frames and back, against pickle.

The warmstart path is the one a save and a restore take, minus LMDB:
``Contract.encode_entries`` per chunk and ``Codec.encode`` (zstd level 1, frame
header) with each frame's xxh3-128 digest (``_chunks.encode_chunks``), then
``Codec.decode`` (digest check, decompress) and ``Contract.decode_entries``
back into a dict. pickle protocol 5 handles the same records as plain dicts.
Both run in one process, interleaved, with the collector on as a user has it.
"""

from __future__ import annotations

import gc
import pickle
from functools import partial
from typing import Any

from benchmarks._common import Check, Report, Table, frozen_inputs, median, mib, timed
from benchmarks.generate_data import RECORDS, as_dicts, make_records
from warmstart._containers import entries_of
from warmstart.codec import Codec
from warmstart.store._chunks import encode_chunks


def codec_encode(codec: Codec, records: dict[str, Any]) -> list[tuple[Any, bytes]]:
    keys, values, expires = entries_of(records)
    return encode_chunks(RECORDS, codec, keys, values, expires=expires)


def codec_decode(codec: Codec, frames: list[tuple[Any, bytes]]) -> dict[str, Any]:
    schema = RECORDS.write_schema
    out: dict[str, Any] = {}
    for ref, frame in frames:
        decoded = RECORDS.decode_entries(codec.decode(frame, digest=ref.digest), schema)
        out.update(zip(decoded.keys, decoded.values))
    return out


def _paused(fn: Any) -> Any:
    def run() -> Any:
        gc.disable()
        try:
            return fn()
        finally:
            gc.enable()

    return run


def bench_codec(n: int, repeats: int) -> Report:
    records = make_records(n)
    plain = as_dicts(records)
    codec = Codec(level=1)
    times: dict[str, list[float]] = {}

    def note(name: str, seconds: float) -> None:
        times.setdefault(name, []).append(seconds)

    frames: list[tuple[Any, bytes]] = []
    blob = b""
    with frozen_inputs():
        for _ in range(repeats):
            seconds, frames = timed(partial(codec_encode, codec, records))
            note("ws_encode", seconds)
            seconds, blob = timed(partial(pickle.dumps, plain, protocol=5))
            note("pickle_encode", seconds)
            seconds, out = timed(partial(codec_decode, codec, frames))
            assert len(out) == n
            del out
            note("ws_decode", seconds)
            seconds, out = timed(partial(pickle.loads, blob))
            assert len(out) == n
            del out
            note("pickle_decode", seconds)
            # The same decodes with the collector paused (what Snapshot.read does).
            seconds, out = timed(_paused(partial(codec_decode, codec, frames)))
            del out
            note("ws_decode_paused", seconds)
            seconds, out = timed(_paused(partial(pickle.loads, blob)))
            del out
            note("pickle_decode_paused", seconds)
            gc.collect()
    m = {k: median(v) for k, v in times.items()}
    ws_bytes = sum(len(f) for _, f in frames)
    table = Table(
        f"Codec: {n:,} records, median of {repeats}, one process",
        ["path", "encode s", "decode s", "decode s (GC paused)", "bytes MiB"],
        [
            [
                "contract + frames (zstd1, xxh3), chunked",
                m["ws_encode"],
                m["ws_decode"],
                m["ws_decode_paused"],
                mib(ws_bytes),
            ],
            [
                "pickle protocol 5 (values as dicts)",
                m["pickle_encode"],
                m["pickle_decode"],
                m["pickle_decode_paused"],
                mib(len(blob)),
            ],
        ],
        note=(
            f"{len(frames)} chunks. Decode ends with the dict rebuilt. The inputs are "
            "frozen out of the collector's sight (gc.freeze) so collections cost what "
            "they would in a process holding only the measured objects."
        ),
    )
    enc = m["ws_encode"] / m["pickle_encode"]
    dec = m["ws_decode"] / m["pickle_decode"]
    checks = [
        Check("codec encode / pickle.dumps", enc, "<= 1.0", enc <= 1.0),
        Check("codec decode / pickle.loads (GC on)", dec, "<= 1.0", dec <= 1.0),
    ]
    return Report("Codec", [table], checks, raw={"times": times, "bytes": ws_bytes})
