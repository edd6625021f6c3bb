"""Structure-aware mutations of archives and remote objects, for the fuzz campaign (issue 17).

A mutation knows the layout it damages: it decodes the archive's header, the
manifest, the remote head record or a chunk payload, changes one field or
shape to a hostile value (lengths, counts, generation numbers, namespace
fields, payload shapes), and re-encodes it with every digest recomputed, as an
attacker without a secret can. So the damage reaches the code behind the
digest checks, which a flipped bit would not.
"""

from __future__ import annotations

import random
from typing import Any

import msgspec

import forge
from warmstart.codec import Codec, digest
from warmstart.manifest import ChunkRef, Manifest, decode_manifest, encode_manifest
from warmstart.remote import RemoteHead
from warmstart.remote._layout import manifest_name

CODEC = Codec()

INTS = [0, -1, 1, 2, 7, 255, 2**16, 2**31 - 1, 2**32, 2**48 + 1, 2**63 - 1, 2**64 - 1, -(2**63)]
STRS = ["", "\x00", "a\x00b", "svc", "other", "x" * 256, "é" * 128, "../up", "@ws", "%2E"]
ODD = [None, True, 1.5, float("nan"), float("inf"), b"\xff\xfe", [1, [2, [3]]], {"k": {}}]


def any_value(rng: random.Random) -> Any:
    pool = rng.choice([INTS, STRS, ODD])
    return rng.choice(pool)


# -- chunk payloads ----------------------------------------------------------------


def payload_shapes(rng: random.Random, entries: int) -> tuple[bytes, int]:  # noqa: PLR0912 - a branch per shape
    """A hostile chunk payload and the entry count a manifest would claim for it."""
    n = rng.choice([0, 1, entries, entries + 1, 1000, 50_000, 300_000, 2_000_000])
    kind = rng.randrange(16)
    raw: bytes
    if kind == 0:  # the issue's: millions of empty maps
        raw = forge.payload(list(range(n)), [{}] * n)
    elif kind == 1:  # keys and values disagree
        raw = forge.payload([f"k{i}" for i in range(n)], [{}] * rng.choice([0, n // 2, n + 3]))
    elif kind == 2:  # nested deeper than any decoder allows
        depth = rng.choice([100, 600, 5000, 100_000])
        raw = b"\x95\x00\x91\xa1k\x91\x81\xa4body" + b"\x91" * depth + b"\xc0\x90\x90"
    elif kind == 3:  # one value holding millions of empty containers
        inner = rng.choice([b"\x80", b"\x90", b"\x81\x00\x00", b"\xa2ab"])
        count = rng.choice([100_000, 3_000_000])
        body = b"\xdd" + count.to_bytes(4, "big") + inner * count
        raw = b"\x95\x00\x91\xa1k\x91\x81\xa4body" + body + b"\x90\x90"
    elif kind == 4:  # not an envelope at all
        raw = msgspec.msgpack.encode(rng.choice([{}, [], [0, [], []], "x" * 10, None, [0] * 7]))
    elif kind == 5:  # keys of the wrong type, duplicated
        raw = forge.payload([n] * max(n, 1), [{"id": 1}] * max(n, 1))
    elif kind == 6:  # values of the wrong types
        raw = forge.payload([f"k{i}" for i in range(n)], [rng.choice(STRS + INTS)] * n)
    elif kind == 7:  # expiries that lie
        raw = forge.payload(["a", "b"], [{}, {}], expires=rng.choice([[1.0], [float("nan")] * 2]))
    elif kind == 8:  # a huge deletion list
        raw = forge.payload([], [], deleted=[f"d{i}" for i in range(n)])
    elif kind == 9:  # big strings
        raw = forge.payload(["a"], [{"name": "s" * rng.choice([10, 4 << 20])}])
    elif kind == 10:  # a declared length past the end
        raw = b"\x95\x00\xdd\xff\xff\xff\xff\x00"
    elif kind == 11:  # extension types and bins where values go
        raw = forge.payload(["a"], [msgspec.msgpack.Ext(5, b"x" * 10)])
    elif kind == 12:  # a huge sequence number
        raw = forge.payload(["a"], [{}], sequence=rng.choice([2**64 - 1, -(2**63)]))
    elif kind == 13:  # empty
        raw = b""
    elif kind == 14:  # random bytes
        raw = rng.randbytes(rng.choice([1, 100, 10_000]))
    else:  # the never-used byte, and truncation
        raw = b"\x95\x00\x91\xc1" if rng.random() < 0.5 else forge.payload(["a"], [{}])[:-2]
    claimed = rng.choice([n, entries, 0, 1, 2**31, n + 1])
    return raw, claimed


# -- manifests ------------------------------------------------------------------------


def mutate_manifest(  # noqa: PLR0911, PLR0912 - a branch per mutation
    rng: random.Random, manifest: Manifest, frames: dict[bytes, bytes]
) -> tuple[Manifest, dict[bytes, bytes], str]:
    """A manifest changed in one field (and the chunk frames it now needs)."""
    frames = dict(frames)
    choice = rng.randrange(10)
    if choice == 0:
        field = rng.choice(["namespace", "lineage", "host", "library_version", "kind"])
        value = rng.choice(STRS)
        return msgspec.structs.replace(manifest, **{field: value}), frames, f"manifest.{field}"
    if choice == 1:
        field = rng.choice(["generation", "pid", "parent", "format"])
        return (
            msgspec.structs.replace(manifest, **{field: rng.choice(INTS)}),
            frames,
            f"manifest.{field}",
        )
    if choice == 2:
        created = rng.choice([float("nan"), float("inf"), -1.0, 1e300, 0.0])
        return msgspec.structs.replace(manifest, created_at=created), frames, "created_at"
    if choice == 3:
        mark = rng.choice([[[[[[]]]]], {"x" * 100: list(range(1000))}, "w" * 100_000, 2**64 - 1])
        return msgspec.structs.replace(manifest, watermark=mark), frames, "watermark"
    if choice == 4:
        tags = rng.choice([{"": ""}, {"\x00": "x" * 10_000}, {str(i): "t" for i in range(5000)}])
        return msgspec.structs.replace(manifest, tags=tags), frames, "tags"
    sections = list(manifest.sections)
    if not sections:
        return manifest, frames, "none"
    index = rng.randrange(len(sections))
    section = sections[index]
    if choice == 5:  # the schema it claims
        schema = section.schema
        field = rng.choice(["contract", "version", "key"])
        value = rng.choice(INTS[:8]) if field == "version" else rng.choice(STRS)
        sections[index] = msgspec.structs.replace(
            section, schema=msgspec.structs.replace(schema, **{field: value})
        )
        what = f"schema.{field}"
    elif choice in (6, 7):  # a chunk reference's numbers
        refs = list(section.chunks)
        if not refs:
            return manifest, frames, "none"
        i = rng.randrange(len(refs))
        field = rng.choice(["entries", "raw_bytes", "stored_bytes", "sequence"])
        refs[i] = msgspec.structs.replace(refs[i], **{field: rng.choice(INTS)})
        base = tuple(refs[: len(section.base)])
        sections[index] = msgspec.structs.replace(
            section, base=base, deltas=tuple(refs[len(base) :])
        )
        what = f"ref.{field}"
    elif choice == 8:  # references that go nowhere, twice, or not at all
        refs = list(section.base)
        op = rng.randrange(3)
        if op == 0 and refs:
            refs.append(refs[0])
        elif op == 1:
            refs.append(ChunkRef(digest=rng.randbytes(16), entries=1, raw_bytes=1, stored_bytes=1))
        else:
            refs = []
        sections[index] = msgspec.structs.replace(section, base=tuple(refs))
        what = "refs"
    else:  # a chunk whose payload is hostile
        raw, claimed = payload_shapes(rng, section.entries)
        if len(raw) > 60 << 20:
            raw = raw[: 60 << 20]
        ref, frame = forge.chunk(raw, claimed)
        frames[ref.digest] = frame
        sections[index] = msgspec.structs.replace(section, base=(ref,), deltas=(), entries=claimed)
        what = f"payload[{len(raw)}]"
    return msgspec.structs.replace(manifest, sections=tuple(sections)), frames, what


def needed(manifest: Manifest, frames: dict[bytes, bytes]) -> list[bytes]:
    """The frames a manifest references that are known, in replay order."""
    seen: dict[bytes, bytes] = {}
    for section in manifest.sections:
        for ref in section.chunks:
            if ref.digest in frames:
                seen.setdefault(ref.digest, frames[ref.digest])
    return list(seen.values())


# -- archives ------------------------------------------------------------------------------


def mutate_archive(rng: random.Random, data: bytes) -> tuple[bytes, str]:  # noqa: PLR0911
    """An archive mutated at one structural level; (bytes, what was done)."""
    level = rng.randrange(4)
    header = forge.header_of(data)
    chunks = forge.chunks_of(data)
    if level == 0:  # one header field, any value
        field = rng.choice([*header, "unknown"])
        header[field] = any_value(rng)
        body = msgspec.msgpack.encode(header)
        return forge.build([(b"H", body), *((b"C", c) for c in chunks)]), f"header.{field}"
    if level in (1, 2):  # the manifest, re-encoded (the header kept consistent mostly)
        manifest = decode_manifest(CODEC, header["manifest"])
        frames = {digest(c): c for c in chunks}
        changed, frames, what = mutate_manifest(rng, manifest, frames)
        try:
            stored = _stored_manifest(changed)
        except (TypeError, ValueError, OverflowError):
            return data, f"{what} (not encodable)"
        if rng.random() < 0.8:
            header.update(
                namespace=changed.namespace,
                generation=changed.generation,
                lineage=changed.lineage,
            )
        header["manifest"] = stored
        shipped = needed(changed, frames)
        header["chunks"] = len(shipped)
        body = msgspec.msgpack.encode(header)
        return forge.build([(b"H", body), *((b"C", c) for c in shipped)]), what
    # Records: lengths, counts and order, with digests recomputed or not.
    parts = forge.records(data)[:-1]
    op = rng.randrange(6)
    if op == 0 and len(parts) > 1:
        parts.append(parts[1])  # a chunk twice
    elif op == 1 and len(parts) > 2:
        parts[1], parts[2] = parts[2], parts[1]
    elif op == 2:
        parts.append((rng.choice([b"X", b"H", b"E"]), rng.randbytes(20)))
    elif op == 3:
        return forge.build(parts, count=rng.choice(INTS[:9])), "trailer.count"
    elif op == 4:  # a record whose declared length lies (digest of what follows kept)
        out = bytearray(forge.build(parts))
        at = 8 + 21 + len(parts[0][1]) if len(parts) > 1 else 8
        out[at + 1 : at + 5] = rng.choice([0, 1, 2**31, 2**32 - 1]).to_bytes(4, "big")
        return bytes(out), "record.length"
    else:
        return data[: rng.randrange(len(data))], "truncated"
    return forge.build(parts), f"records.{op}"


def _stored_manifest(manifest: Manifest) -> bytes:
    return encode_manifest(CODEC, manifest)


# -- remote objects --------------------------------------------------------------------------


def mutate_remote(  # noqa: PLR0912 - a branch per mutation
    rng: random.Random, head: RemoteHead, manifest: Manifest, frames: dict[bytes, bytes]
) -> tuple[dict[str, bytes], bytes | None, str]:
    """({key suffix: value} to write, new head record or None, what) for one remote case.

    Keys are relative to the namespace directory (``manifests/...``, ``chunks/...``).
    """
    level = rng.randrange(3)
    if level == 0:  # the head record
        field = rng.choice(
            ["generation", "namespace", "manifest", "keyed", "signature", "history", "format"]
        )
        value: Any
        if field == "history":
            value = rng.choice([(), ((2**64 - 1, "x"),), tuple((i, "m") for i in range(50_000))])
        elif field in ("generation", "format"):
            value = rng.choice(INTS)
        elif field == "keyed":
            value = not head.keyed
        else:
            value = rng.choice(STRS)
        try:
            raw = msgspec.msgpack.encode(msgspec.structs.replace(head, **{field: value}))
        except (TypeError, ValueError, OverflowError):
            raw = rng.randbytes(40)
        if rng.random() < 0.1:
            raw = b"\x80" * rng.choice([100, 5 << 20])  # an oversized or odd head
        return {}, raw, f"head.{field}"
    if level == 1:  # the manifest object, and the head naming it
        known = set(frames)
        changed, frames, what = mutate_manifest(rng, manifest, frames)
        try:
            stored = _stored_manifest(changed)
        except (TypeError, ValueError, OverflowError):
            return {}, None, f"{what} (not encodable)"
        name = manifest_name(head.generation, stored[:16])
        objects = {f"manifests/{name}": stored}
        objects.update({f"chunks/{d.hex()}": f for d, f in frames.items() if d not in known})
        new_head = msgspec.structs.replace(
            head, manifest=name, signature=changed.signature(), lineage=changed.lineage
        )
        return objects, msgspec.msgpack.encode(new_head), f"remote {what}"
    # A chunk object replaced: hostile payload, wrong size, oversized.
    digests = sorted(manifest.digests())
    if not digests:
        return {}, None, "none"
    target = rng.choice(digests)
    op = rng.randrange(3)
    if op == 0:
        raw, _ = payload_shapes(rng, 10)
        value = Codec().encode(raw[: 60 << 20])
    elif op == 1:
        value = frames[target][: rng.randrange(len(frames[target]))]
    else:
        value = b"\x00" * rng.choice([1 << 20, 70 << 20])
    return {f"chunks/{target.hex()}": value}, None, f"chunk.{op}"
