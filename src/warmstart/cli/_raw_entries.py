"""Reading a section's first entries without its contract, for ``warmstart inspect``.

Private; used by ``_cli_inspect``. The command line has no user contract to
decode with, so chunks are decoded as plain msgpack: keys and values come back
as lists, dicts and scalars. The section's delta chain is replayed over its
base, so the entries shown are those a restore would see. This reaches into
the store's tables directly: the public API reads chunks only through a
contract.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from warmstart._budget import UNTYPED, chunk_entries
from warmstart._budget import check as check_budget
from warmstart.codec import DECODE_FAILURES, Codec
from warmstart.delta import FoldedChain
from warmstart.errors import IntegrityError
from warmstart.manifest import SectionManifest
from warmstart.store import Store

__all__ = ()


def first_entries(
    store: Store, namespace: str, section: SectionManifest, limit: int
) -> list[dict[str, Any]]:
    """The first ``limit`` entries of a section once replayed, decoded without its contract.

    Delta chunks are read first (they are small) to know which base keys they
    touch; the base is then streamed only until ``limit`` entries are found.
    """
    payloads = _raw_payloads(store, namespace)
    chain = FoldedChain()  # the same fold a restore does, over plain entries
    for _, keys, values, deleted, expires in payloads(section.deltas):
        entries = [
            _entry(key, value, expires, i) for i, (key, value) in enumerate(zip(keys, values))
        ]
        chain.add(list(map(_hashable, keys)), entries, list(map(_hashable, deleted)), [])
    out: list[dict[str, Any]] = []
    if limit > 0:
        for _, keys, values, _, expires in payloads(section.base):
            keep = chain.keep_mask(list(map(_hashable, keys)))
            for i, (key, value) in enumerate(zip(keys, values)):
                if keep is None or keep[i]:
                    out.append(_entry(key, value, expires, i))
                    if len(out) >= limit:
                        return out
    out.extend(chain.upserts.values())
    return out[:limit]


def _entry(key: Any, value: Any, expires: list[Any], i: int) -> dict[str, Any]:
    entry = {"key": key, "value": value}
    if expires:
        entry["expires"] = expires[i]
    return entry


def _hashable(key: Any) -> Any:
    # Tuple keys come back from untyped msgpack as lists.
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


def _raw_payloads(store: Store, namespace: str) -> Callable[[tuple[Any, ...]], Iterator[list[Any]]]:
    def payloads(refs: tuple[Any, ...]) -> Iterator[list[Any]]:
        codec: Codec = store.codec
        with store.read() as reader:
            for ref, frame in reader.frames(namespace, refs):
                payload = codec.decode(frame, digest=ref.digest)
                where = f"chunk {ref.digest.hex()}"
                # Untyped decoding builds everything: bound it first (issue 17).
                chunk_entries(payload, where, ref.entries)
                check_budget(payload, UNTYPED, where)
                try:
                    decoded = msgspec.msgpack.decode(payload)
                except DECODE_FAILURES as exc:
                    msg = f"Expected a chunk payload in chunk {ref.digest.hex()}, got: {exc}"
                    raise IntegrityError(msg) from exc
                yield _check_payload(decoded, ref.digest.hex())

    return payloads


def _check_payload(decoded: Any, where: str) -> list[Any]:
    ok = (
        isinstance(decoded, list)
        and len(decoded) == 5
        and all(isinstance(part, list) for part in decoded[1:])
        and len(decoded[1]) == len(decoded[2])
        # Expiries: none, or one per key (as a typed read checks them).
        and (not decoded[4] or len(decoded[4]) == len(decoded[1]))
    )
    if not ok:
        msg = (
            f"Expected a chunk payload [sequence, keys, values, deleted, expires] in chunk {where}"
        )
        raise IntegrityError(msg)
    return decoded  # type: ignore[no-any-return]
