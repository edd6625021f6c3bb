"""Cutting a section's entries into chunks and encoding them as frames.

Private. Chunks are cut in the mapping's own order, so a restore can stream
them and the last chunk holds the most recent entries (hot-first restore reads
it first). Their size adapts to the entries: the first chunk measures bytes per
entry and the rest aim at ``TARGET_RAW`` payload bytes, large enough for zstd
and bulk decoding to pay, small enough to bound memory and time to first key.
The cut depends only on the entries, so the same entries give the same chunks.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterator, Sequence
from typing import Any

import msgspec

from warmstart._pacing import SLICE, helper_thread, pace
from warmstart.codec import Codec, digest
from warmstart.contract import Contract
from warmstart.errors import EncodeError
from warmstart.manifest import ChunkRef

__all__ = ()

TARGET_RAW = 512 * 1024
FIRST_CHUNK = 2048
MIN_CHUNK = 16
MAX_CHUNK = 32768
#: Up to this many entries (a periodic delta, a small section) chunks are
#: compressed in the calling thread: starting a worker costs more than the
#: overlap gains (7,500 records: 3.2-3.5 ms serial, 3.8-4.6 ms with a worker;
#: the worker pays from about 20,000 on).
SERIAL_MAX = 8 * FIRST_CHUNK


def _payloads(
    contract: Contract[Any],
    keys: Collection[Any],
    values: Collection[Any],
    deleted: Sequence[Any],
    sequence: int,
    expires: Sequence[float],
) -> Iterator[tuple[int, bytes]]:
    """Yield (entry count, payload) per chunk; deletions ride in the first.

    Entries are taken a chunk at a time from iterators, and each chunk is
    checked and encoded while its objects are still in the CPU cache: at a
    million entries, 50 ms less than listing everything first and then
    checking and slicing it (benchmarks/hotpaths.py).
    """
    total = len(keys)
    if total == 0:
        if deleted:
            yield 0, contract.encode_entries((), (), deleted=deleted, sequence=sequence)
        return
    key_iter, value_iter = iter(keys), iter(values)
    start, size = 0, FIRST_CHUNK
    while start < total:
        end = min(start + size, total)
        chunk_keys, chunk_values = _checked(contract, key_iter, value_iter, end - start)
        payload = contract.encode_entries(
            chunk_keys,
            chunk_values,
            deleted=deleted if start == 0 else (),
            sequence=sequence,
            expires=expires[start:end],
            step=pace,  # a chunk's values in a few steps
        )
        yield end - start, payload
        pace()  # one chunk is one step: let the service's threads run
        per_entry = max(len(payload) / (end - start), 1.0)
        size = max(MIN_CHUNK, min(MAX_CHUNK, int(TARGET_RAW / per_entry)))
        start = end


def _checked(
    contract: Contract[Any], key_iter: Iterator[Any], value_iter: Iterator[Any], count: int
) -> tuple[list[Any], list[Any]]:
    """The next ``count`` entries, checked a slice a step (pacing after each).

    A chunk holds up to ``MAX_CHUNK`` entries: listed and checked in one
    step, a chunk of scattered values held the GIL for 5-8 ms at a million
    entries (issue 15).
    """
    keys: list[Any] = []
    values: list[Any] = []
    while len(keys) < count:
        step = min(SLICE, count - len(keys))
        part_keys = list(itertools.islice(key_iter, step))
        part_values = list(itertools.islice(value_iter, step))
        check_keys(contract, part_keys)
        check_values(contract, part_values)
        keys += part_keys
        values += part_values
        pace()
        if len(part_keys) < step:
            break  # fewer entries than counted: the caller's lengths decide
    return keys, values


_SCALAR_KEYS = (str, int, bytes)


def check_keys(contract: Contract[Any], keys: Sequence[Any]) -> None:
    """Refuse keys the contract's key type cannot read back.

    They would encode, and then every entry under them would be dropped at
    load as unreadable: a head that loads empty. ``bool`` is not an ``int``
    key (msgpack writes ``true``).
    """
    key_type = contract.key
    kinds = set(map(type, keys))
    if key_type in _SCALAR_KEYS:
        bad = [t for t in kinds if t is bool or not issubclass(t, key_type)]
    else:  # a tuple[...] of scalars: the elements are checked by msgspec
        bad = [t for t in kinds if not issubclass(t, tuple)]
        if not bad:
            try:
                msgspec.convert(keys, list[key_type])  # type: ignore[valid-type]
            except msgspec.ValidationError as exc:
                msg = f"Expected keys of type {key_type}: {exc} - in contract {contract.name!r}"
                raise EncodeError(msg) from exc
    if bad:
        got = ", ".join(sorted(t.__name__ for t in bad))
        msg = (
            f"Expected keys of type {getattr(key_type, '__name__', key_type)}, got {got} "
            f"- in contract {contract.name!r}"
        )
        raise EncodeError(msg)


def check_values(contract: Contract[Any], values: Sequence[Any]) -> None:
    """Refuse values that would not come back as themselves, before they are encoded."""
    contract.check_values(values)


def encode_chunks(
    contract: Contract[Any],
    codec: Codec,
    keys: Collection[Any],
    values: Collection[Any],
    *,
    deleted: Sequence[Any] = (),
    sequence: int = 0,
    expires: Sequence[float] = (),
) -> list[tuple[ChunkRef, bytes]]:
    """Encode entries (and deletions) into frames, with their chunk references.

    ``keys`` and ``values`` are iterated once, in step, a chunk at a time
    (pacing between chunks: each is one bounded step). Nothing is
    written: a value of the wrong type raises :class:`EncodeError` before the
    commit. msgpack encoding holds the GIL but zstd releases it, so for a
    section of more than ``SERIAL_MAX`` entries the compression of chunk i
    overlaps the encoding of chunk i+1 in a worker thread.
    """
    if len(keys) != len(values):
        msg = f"Expected as many keys as values, got {len(keys)} and {len(values)}"
        raise EncodeError(msg)
    payloads = _payloads(contract, keys, values, deleted, sequence, expires)
    if len(keys) <= SERIAL_MAX:
        return [_ref(n, p, codec.encode(p), sequence) for n, p in payloads]
    import concurrent.futures  # noqa: PLC0415 - only large sections pay its import

    out: list[tuple[ChunkRef, bytes]] = []
    try:
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        pool.submit(int).result()
    except RuntimeError:
        # At interpreter shutdown (an atexit checkpoint) no thread can start.
        return [_ref(n, p, codec.encode(p), sequence) for n, p in payloads]
    with helper_thread(), pool:
        pending: list[tuple[int, bytes, concurrent.futures.Future[bytes]]] = []
        for n, payload in payloads:
            pending.append((n, payload, pool.submit(codec.encode, payload)))
            # Keep at most two chunks in flight: memory stays bounded.
            while len(pending) > 2:
                m, p, fut = pending.pop(0)
                out.append(_ref(m, p, fut.result(), sequence))
        out.extend(_ref(m, p, fut.result(), sequence) for m, p, fut in pending)
    return out


def _ref(entries: int, payload: bytes, frame: bytes, sequence: int) -> tuple[ChunkRef, bytes]:
    ref = ChunkRef(
        digest=digest(frame),
        entries=entries,
        raw_bytes=len(payload),
        stored_bytes=len(frame),
        sequence=sequence,
    )
    return ref, frame
