"""Frames: layout, round trips, keyed codecs, and hostile input (the fuzz suite)."""

from __future__ import annotations

import contextlib
import dataclasses
import random
import threading
import tracemalloc
from collections import Counter
from typing import Any

import msgspec
import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

import warmstart
from conftest import RECORDS, Record, make_records
from warmstart.codec import (
    FLAG_MAC,
    FLAG_ZSTD,
    FRAME_VERSION,
    HEADER,
    MAC_SIZE,
    MAGIC,
    MAX_PAYLOAD,
    MIN_COMPRESS,
    Codec,
    digest,
)
from warmstart.errors import DecodeError, EncodeError, IntegrityError

SECRET = b"s3cret-key-for-tests"
COMPRESSIBLE = b"warm state " * 200


def header(frame: bytes) -> tuple[Any, ...]:
    """The seven header fields of a frame."""
    return HEADER.unpack_from(frame)


def with_header(frame: bytes, **fields: int | bytes) -> bytes:
    """``frame`` with some header fields replaced (body and MAC untouched)."""
    names = ("magic", "version", "flags", "reserved", "dict_id", "raw_size", "body_size")
    values = dict(zip(names, header(frame)))
    values.update(fields)
    return HEADER.pack(*values.values()) + frame[HEADER.size :]


def zstd_frame(content: bytes, *, declared: int) -> bytes:
    """A hand-made zstd frame: one raw block holding ``content``, claiming ``declared`` bytes."""
    # magic, descriptor 0xE0 (8-byte content size, single segment), size, last raw block.
    block = ((len(content) << 3) | 1).to_bytes(3, "little")
    return bytes.fromhex("28b52ffd") + b"\xe0" + declared.to_bytes(8, "little") + block + content


def frame_around(body: bytes, *, raw_size: int, flags: int = FLAG_ZSTD) -> bytes:
    """A frame with a valid header around an arbitrary body."""
    return HEADER.pack(MAGIC, FRAME_VERSION, flags, 0, 0, raw_size, len(body)) + body


class TestFrameLayout:
    def test_header_fields(self) -> None:
        """A frame starts with the documented 20-byte little-endian header."""
        frame = Codec().encode(COMPRESSIBLE)
        magic, version, flags, reserved, dict_id, raw_size, body_size = header(frame)
        assert (magic, version, reserved, dict_id) == (b"WSTF", 1, 0, 0)
        assert flags == FLAG_ZSTD
        assert raw_size == len(COMPRESSIBLE)
        assert body_size == len(frame) - HEADER.size < len(COMPRESSIBLE)

    def test_small_payload_is_stored_raw(self) -> None:
        """A payload under MIN_COMPRESS bytes is stored as is, uncompressed."""
        payload = b"x" * (MIN_COMPRESS - 1)
        frame = Codec().encode(payload)
        assert header(frame)[2] == 0
        assert frame[HEADER.size :] == payload

    def test_incompressible_payload_is_stored_raw(self) -> None:
        """A payload that zstd would grow is stored raw, even when large."""
        payload = random.Random(7).randbytes(4096)
        frame = Codec().encode(payload)
        assert header(frame)[2] == 0
        assert len(frame) == HEADER.size + len(payload)

    def test_keyed_frame_ends_with_mac(self) -> None:
        """A keyed codec sets the MAC flag and appends a 32-byte keyed BLAKE2b MAC."""
        frame = Codec(secret=SECRET).encode(COMPRESSIBLE)
        flags, body_size = header(frame)[2], header(frame)[6]
        assert flags == FLAG_ZSTD | FLAG_MAC
        assert len(frame) == HEADER.size + body_size + MAC_SIZE

    def test_digest_is_xxh3_128_of_the_frame(self) -> None:
        """The digest is the 16-byte xxh3-128 of the whole frame."""
        frame = Codec().encode(b"payload")
        assert digest(frame) == xxhash.xxh3_128_digest(frame)
        assert len(digest(frame)) == 16

    def test_keyed_property(self) -> None:
        """``keyed`` says whether the codec writes MACs."""
        assert not Codec().keyed
        assert Codec(secret=SECRET).keyed


class TestRoundTrip:
    @given(
        payload=st.binary(max_size=2048) | st.binary(max_size=64).map(lambda b: b * 40),
        keyed=st.booleans(),
        level=st.sampled_from([1, 3, 9]),
    )
    def test_decode_inverts_encode(self, payload: bytes, keyed: bool, level: int) -> None:
        """decode(encode(p)) == p, with or without a digest, and the frame verifies."""
        codec = Codec(level=level, secret=SECRET if keyed else None)
        frame = codec.encode(payload)
        assert codec.decode(frame) == payload
        assert codec.decode(frame, digest=digest(frame)) == payload
        assert codec.decode(memoryview(frame), digest=digest(frame)) == payload
        codec.verify(frame, digest=digest(frame))

    @given(payload=st.binary(max_size=1024) | st.binary(max_size=32).map(lambda b: b * 50))
    def test_frames_are_deterministic(self, payload: bytes) -> None:
        """The same payload gives the same frame (and digest) from any codec instance."""
        assert Codec().encode(payload) == Codec().encode(payload)
        assert Codec(secret=SECRET).encode(payload) == Codec(secret=SECRET).encode(payload)

    def test_chunk_round_trip(self) -> None:
        """A contract's chunk survives the frame codec whole."""
        records = make_records(300)
        payload = RECORDS.encode_entries(list(records), list(records.values()))
        codec = Codec()
        frame = codec.encode(payload)
        out = RECORDS.decode_entries(codec.decode(frame, digest=digest(frame)), RECORDS.schema)
        assert dict(zip(out.keys, out.values)) == records

    def test_threads_share_a_codec(self) -> None:
        """Threads encoding and decoding through one codec get the same frames."""
        codec = Codec(secret=SECRET)
        payloads = [COMPRESSIBLE + bytes([i]) for i in range(64)]
        expected = [Codec(secret=SECRET).encode(p) for p in payloads]
        failures: list[int] = []

        def work() -> None:
            for _ in range(20):
                for i, payload in enumerate(payloads):
                    frame = codec.encode(payload)
                    if frame != expected[i] or codec.decode(frame) != payload:
                        failures.append(i)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failures == []


class TestEncodeLimits:
    def test_payload_over_cap_is_refused(self) -> None:
        """encode refuses a payload over MAX_PAYLOAD with an EncodeError naming both sizes."""
        pattern = f"at most {MAX_PAYLOAD} bytes .64 MiB. once encoded, got {MAX_PAYLOAD + 1}"
        with pytest.raises(EncodeError, match=pattern) as info:
            Codec().encode(bytes(MAX_PAYLOAD + 1))
        assert isinstance(info.value, ValueError)  # still caught by `except ValueError`

    def test_empty_secret_is_refused(self) -> None:
        """An empty secret is a mistake, not 'no key'."""
        with pytest.raises(ValueError, match="non-empty secret"):
            Codec(secret=b"")


class TestKeyed:
    def test_frame_without_mac_is_rejected(self) -> None:
        """A keyed codec rejects an unkeyed frame, by decode and by verify."""
        frame = Codec().encode(COMPRESSIBLE)
        keyed = Codec(secret=SECRET)
        with pytest.raises(IntegrityError, match="Expected a MAC"):
            keyed.decode(frame)
        with pytest.raises(IntegrityError, match="Expected a MAC"):
            keyed.decode(frame, digest=digest(frame))
        with pytest.raises(IntegrityError, match="Expected a MAC"):
            keyed.verify(frame, digest=digest(frame))

    def test_maced_frame_is_rejected_without_key(self) -> None:
        """An unkeyed codec rejects a MAC'd frame: it cannot check it."""
        frame = Codec(secret=SECRET).encode(COMPRESSIBLE)
        unkeyed = Codec()
        with pytest.raises(IntegrityError, match="Expected an unkeyed frame"):
            unkeyed.decode(frame)
        with pytest.raises(IntegrityError, match="Expected an unkeyed frame"):
            unkeyed.verify(frame, digest=digest(frame))

    @pytest.mark.parametrize("payload", [b"tiny", COMPRESSIBLE])
    def test_wrong_key_is_rejected(self, payload: bytes) -> None:
        """A frame MAC'd with one key does not decode or verify under another."""
        frame = Codec(secret=SECRET).encode(payload)
        other = Codec(secret=SECRET + b"!")
        with pytest.raises(IntegrityError, match="Expected a valid MAC"):
            other.decode(frame)
        with pytest.raises(IntegrityError, match="Expected a valid MAC"):
            other.verify(frame, digest=digest(frame))

    def test_long_secrets_are_hashed_not_truncated(self) -> None:
        """Secrets over 64 bytes that differ only after byte 64 are different keys."""
        frame = Codec(secret=b"k" * 64 + b"a").encode(b"payload")
        assert Codec(secret=b"k" * 64 + b"a").decode(frame) == b"payload"
        with pytest.raises(IntegrityError):
            Codec(secret=b"k" * 64 + b"b").decode(frame)

    def test_stripped_mac_is_rejected_even_with_matching_digest(self) -> None:
        """Removing the MAC and its flag does not get a frame past a keyed codec."""
        frame = Codec(secret=SECRET).encode(COMPRESSIBLE)
        stripped = with_header(frame[:-MAC_SIZE], flags=FLAG_ZSTD)
        keyed = Codec(secret=SECRET)
        with pytest.raises(IntegrityError):
            keyed.decode(stripped, digest=digest(stripped))
        with pytest.raises(IntegrityError):
            keyed.verify(stripped, digest=digest(stripped))

    def test_tampered_body_with_recomputed_digest_is_rejected(self) -> None:
        """An attacker who recomputes xxh3 still fails the MAC."""
        frame = bytearray(Codec(secret=SECRET).encode(b"price=100"))
        frame[HEADER.size + 6] ^= 0x01
        with pytest.raises(IntegrityError, match="MAC"):
            Codec(secret=SECRET).decode(bytes(frame), digest=digest(bytes(frame)))


class TestDamage:
    @pytest.mark.parametrize(
        ("fields", "match"),
        [
            ({"magic": b"WSTG"}, r"Expected frame magic b'WSTF', got b'WSTG'"),
            ({"version": 2}, "Expected frame format version 1, got 2"),
            ({"flags": 0x04 | FLAG_ZSTD}, "flags=0x5"),
            ({"reserved": 1}, "reserved=1"),
            ({"dict_id": 9}, "dictionary=9"),
            ({"raw_size": MAX_PAYLOAD + 1}, f"frame declares {MAX_PAYLOAD + 1}"),
            ({"body_size": 1}, "from its header"),
            ({"raw_size": len(COMPRESSIBLE) + 1}, "it declares"),
        ],
    )
    def test_header_edits_are_rejected(self, fields: dict[str, Any], match: str) -> None:
        """Each header field that disagrees with the frame raises IntegrityError."""
        frame = with_header(Codec().encode(COMPRESSIBLE), **fields)
        with pytest.raises(IntegrityError, match=match):
            Codec().decode(frame)

    @pytest.mark.parametrize("size", range(HEADER.size))
    def test_short_frames_are_rejected(self, size: int) -> None:
        """A frame shorter than its header is damage, whatever its length."""
        frame = Codec().encode(COMPRESSIBLE)[:size]
        with pytest.raises(IntegrityError, match="at least 20 bytes"):
            Codec().decode(frame)

    def test_raw_body_length_must_match(self) -> None:
        """A raw body whose size differs from the payload size is refused."""
        frame = frame_around(b"abc", raw_size=4, flags=0)
        with pytest.raises(IntegrityError, match="raw body of 4 bytes, got 3"):
            Codec().decode(frame)

    def test_truncated_and_extended_frames_are_rejected(self) -> None:
        """Cutting or appending bytes breaks the sizes the header declares."""
        frame = Codec().encode(COMPRESSIBLE)
        with pytest.raises(IntegrityError):
            Codec().decode(frame[:-1])
        with pytest.raises(IntegrityError):
            Codec().decode(frame + b"\x00")

    @pytest.mark.parametrize("tail", [b"garbage!", b"\x00" * 3, None])
    def test_bytes_after_the_zstd_frame_are_rejected(self, tail: bytes | None) -> None:
        """A zstd body followed by anything (None: a second zstd frame) is damage."""
        # Regression: zstd ignores trailing data by default, so a body extended
        # with its header's body length fixed up used to decode fine.
        frame = Codec().encode(COMPRESSIBLE)
        body = frame[HEADER.size :]
        extended = frame_around(body + (body if tail is None else tail), raw_size=len(COMPRESSIBLE))
        with pytest.raises(IntegrityError, match="unused data"):
            Codec().decode(extended)

    def test_corrupt_compressed_body_is_rejected(self) -> None:
        """zstd's content checksum catches a flipped bit inside the compressed body."""
        frame = bytearray(Codec().encode(COMPRESSIBLE))
        frame[-6] ^= 0x10
        with pytest.raises(IntegrityError, match="zstd"):
            Codec().decode(bytes(frame))

    def test_verify_checks_structure_not_body(self) -> None:
        """verify trusts a digest it is given for the body; decode still catches the damage."""
        frame = bytearray(Codec().encode(COMPRESSIBLE))
        frame[-6] ^= 0x10
        damaged = bytes(frame)
        Codec().verify(damaged, digest=digest(damaged))
        with pytest.raises(IntegrityError):
            Codec().decode(damaged, digest=digest(damaged))

    def test_digest_mismatch_names_both_digests(self) -> None:
        """A digest mismatch says which digest was expected and which was found."""
        frame = Codec().encode(b"payload")
        wrong = bytes(16)
        with pytest.raises(IntegrityError, match=f"Expected frame digest {wrong.hex()}, got"):
            Codec().decode(frame, digest=wrong)
        with pytest.raises(IntegrityError, match=digest(frame).hex()):
            Codec().verify(frame, digest=wrong)


class TestAllocationCap:
    @pytest.mark.parametrize("declared", [MAX_PAYLOAD + 1, 2**32 - 1])
    def test_declared_size_over_cap_is_refused_before_allocating(self, declared: int) -> None:
        """A header declaring more than MAX_PAYLOAD is refused without allocating it."""
        frame = frame_around(zstd_frame(b"hello", declared=declared), raw_size=declared)
        tracemalloc.start()
        try:
            with pytest.raises(IntegrityError, match=f"at most {MAX_PAYLOAD} bytes"):
                Codec().decode(frame)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 1024 * 1024

    def test_zstd_size_disagreeing_with_header_is_refused_before_allocating(self) -> None:
        """A zstd body claiming a huge size is refused before zstd allocates it."""
        frame = frame_around(zstd_frame(b"hello", declared=2**40), raw_size=5)
        tracemalloc.start()
        try:
            with pytest.raises(IntegrityError, match=f"it declares {2**40}"):
                Codec().decode(frame)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 1024 * 1024

    def test_hand_made_zstd_frame_is_accepted(self) -> None:
        """The hand-made zstd frame the cap tests use is valid when it tells the truth."""
        frame = frame_around(zstd_frame(b"hello", declared=5), raw_size=5)
        assert Codec().decode(frame) == b"hello"


# -- fuzzing -----------------------------------------------------------------


class OldRecord(msgspec.Struct):
    """Version 1 of Record: before score, tags, active and kind existed."""

    id: int
    name: str


RECORDS_FAIL = warmstart.Contract("record", Record, on_invalid="fail")
RECORDS_V2 = warmstart.Contract(
    "record",
    Record,
    version=2,
    upgraders={1: lambda old: {**old, "score": 0.0, "tags": [], "active": True, "kind": "a"}},
)
OLD_RECORDS = warmstart.Contract("record", OldRecord)
PAIRS = warmstart.Contract("pairs", Record, key=tuple[str, int])


@dataclasses.dataclass(frozen=True)
class Base:
    """A valid frame and how to read the chunk inside it."""

    codec: Codec
    frame: bytes
    payload: bytes
    reader: warmstart.Contract[Any]
    writer: warmstart.schema.Schema


def _bases() -> list[Base]:
    small = make_records(2)
    large = make_records(150)
    chunks: list[tuple[warmstart.Contract[Any], warmstart.schema.Schema, bytes]] = []
    for n, records in ((2, small), (150, large)):
        payload = RECORDS.encode_entries(
            list(records), list(records.values()), deleted=["gone"], sequence=n, expires=[]
        )
        chunks.append((RECORDS, RECORDS.schema, payload))
        chunks.append((RECORDS_FAIL, RECORDS.schema, payload))
    chunks.append((RECORDS, RECORDS.schema, RECORDS.encode_entries([], [], deleted=["k1"])))
    old = OLD_RECORDS.encode_entries(
        [f"k{i}" for i in range(20)],
        [OldRecord(i, f"n{i}") for i in range(20)],
        expires=[1.5] * 20,
    )
    chunks.append((RECORDS_V2, OLD_RECORDS.schema, old))
    chunks.append(
        (PAIRS, PAIRS.schema, PAIRS.encode_entries([("a", 1), ("b", 2)], list(small.values())))
    )
    codecs = [Codec(), Codec(secret=SECRET)]
    return [
        Base(codec, codec.encode(payload), payload, reader, writer)
        for codec in codecs
        for reader, writer, payload in chunks
    ]


BASES = _bases()
#: Values worth writing into a 32-bit header size field.
EDGE_SIZES = (0, 1, 19, 20, 64, MAX_PAYLOAD, MAX_PAYLOAD + 1, 2**31, 2**32 - 1)


def _fix_body_size(frame: bytearray) -> None:
    """Make the header's body size agree with the frame's length, so deeper checks run."""
    if len(frame) >= HEADER.size:
        mac = MAC_SIZE if frame[5] & FLAG_MAC else 0
        frame[16:20] = max(len(frame) - HEADER.size - mac, 0).to_bytes(4, "little")


Mutation = tuple[str, bytes, bool]


def _flip_bits(rng: random.Random, frame: bytearray, base: Base) -> Mutation:
    flips = rng.randint(1, 8)
    for _ in range(flips):
        bit = rng.randrange(len(frame) * 8)
        frame[bit // 8] ^= 1 << (bit % 8)
    return f"flip {flips} bits", bytes(frame), False


def _truncate(rng: random.Random, frame: bytearray, base: Base) -> Mutation:
    cut = rng.randrange(len(frame))
    return f"truncate to {cut}", bytes(frame[:cut]), False


def _extend(rng: random.Random, frame: bytearray, base: Base) -> Mutation:
    extra = rng.randbytes(rng.randint(1, 64))
    frame += extra
    fix = rng.random() < 0.5
    if fix:
        _fix_body_size(frame)
    return f"extend by {len(extra)} (size fixed: {fix})", bytes(frame), False


def _edit_header(rng: random.Random, frame: bytearray, base: Base) -> Mutation:
    offset, size = rng.choice([(0, 4), (4, 1), (5, 1), (6, 2), (8, 4), (12, 4), (16, 4)])
    edge = size == 4 and rng.random() < 0.5
    value = rng.choice(EDGE_SIZES) if edge else rng.randrange(256**size)
    frame[offset : offset + size] = (value % 256**size).to_bytes(size, "little")
    return f"header[{offset}:{offset + size}] = {value}", bytes(frame), False


def _garbage(rng: random.Random, frame: bytearray, base: Base) -> Mutation:
    garbage = bytearray(rng.randbytes(rng.randint(0, 200)))
    if rng.random() < 0.5 and len(garbage) >= HEADER.size:
        garbage[:6] = frame[:6]  # a plausible start gets past the first checks
        _fix_body_size(garbage)
    return f"garbage of {len(garbage)} bytes", bytes(garbage), False


def _splice(rng: random.Random, frame: bytearray, base: Base) -> Mutation:
    at = rng.randrange(min(HEADER.size, len(frame)), len(frame) + 1)
    if rng.random() < 0.5:
        frame[at:at] = rng.randbytes(rng.randint(1, 8))
    else:
        del frame[at : at + rng.randint(1, 8)]
    _fix_body_size(frame)
    return f"splice at {at}", bytes(frame), False


def _mac_games(rng: random.Random, frame: bytearray, base: Base) -> Mutation:
    if len(frame) >= HEADER.size + MAC_SIZE and frame[5] & FLAG_MAC:
        frame = frame[:-MAC_SIZE]
        frame[5] &= ~FLAG_MAC
        return "strip MAC", bytes(frame), False
    if len(frame) > 5:
        frame[5] |= FLAG_MAC
    return "add fake MAC", bytes(frame + rng.randbytes(MAC_SIZE)), False


def _toggle_zstd(rng: random.Random, frame: bytearray, base: Base) -> Mutation:
    if len(frame) >= HEADER.size:
        frame[5] ^= FLAG_ZSTD
        frame[12:16] = len(frame[HEADER.size :]).to_bytes(4, "little")
    return "toggle zstd flag", bytes(frame), False


def _reframe(rng: random.Random, frame: bytearray, base: Base) -> Mutation:
    # Hostile payloads inside valid frames: what a writer bug or a key holder makes.
    payload = bytearray(base.payload)
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        if op < 0.7 and payload:  # mostly keeps the msgpack structure: reaches the entries
            payload[rng.randrange(len(payload))] = rng.randrange(256)
        elif op < 0.8:
            del payload[rng.randrange(len(payload) + 1) :]
        else:
            at = rng.randrange(len(payload) + 1)
            payload[at:at] = rng.randbytes(rng.randint(1, 6))
    return "re-framed hostile payload", base.codec.encode(bytes(payload)), True


MUTATIONS = (
    _flip_bits,
    _truncate,
    _extend,
    _edit_header,
    _garbage,
    _splice,
    _mac_games,
    _toggle_zstd,
    _reframe,
    _reframe,  # twice as likely: it is what reaches the chunk decoder
)


def _mutate(rng: random.Random, base: Base, frame: bytes) -> Mutation:
    """Return (description, mutated frame, authentic): authentic frames are validly framed."""
    mutation = rng.choice(MUTATIONS) if frame else _garbage
    return mutation(rng, bytearray(frame), base)


def _key_ok(key: Any, key_type: Any) -> bool:
    if key_type in (str, int, bytes):
        return type(key) is key_type
    return (
        type(key) is tuple
        and len(key) == len(key_type.__args__)
        and all(_key_ok(k, t) for k, t in zip(key, key_type.__args__))
    )


def _check_case(base: Base, mutated: bytes, authentic: bool, seen: Counter[str]) -> None:
    """Run every decoding entry point on one mutated frame and check what comes out."""
    codec, expected = base.codec, digest(base.frame)
    changed = mutated != base.frame
    # Codec.decode without a digest: bytes or IntegrityError; a keyed codec
    # accepts nothing it did not frame itself.
    try:
        payload: bytes | None = codec.decode(mutated)
        seen["decode ok"] += 1
    except IntegrityError:
        payload = None
        seen["decode refused"] += 1
    if codec.keyed and not authentic:
        assert payload is None or not changed, "a keyed codec accepted a tampered frame"
    # With the digest the store keys the chunk by, any change is caught.
    for check in (
        lambda: codec.decode(mutated, digest=expected),
        lambda: codec.verify(mutated, digest=expected),
    ):
        try:
            check()
        except IntegrityError:
            seen["digest refused"] += 1
        else:
            assert not changed, "a changed frame passed its digest check"
    # A digest recomputed over the damage proves nothing, but still only IntegrityError.
    for check in (
        lambda: codec.decode(mutated, digest=digest(mutated)),
        lambda: codec.verify(mutated, digest=digest(mutated)),
    ):
        with contextlib.suppress(IntegrityError):
            check()
    if payload is None:
        return
    # The full chunk path: entries (some maybe dropped), or a DecodeError.
    reader = base.reader
    allowed = IntegrityError if reader.on_invalid == "drop" else DecodeError
    try:
        out = reader.decode_entries(payload, base.writer)
    except allowed:
        seen["chunk refused"] += 1
        return
    seen["chunk ok"] += 1
    seen["chunk with drops"] += out.dropped > 0
    assert len(out.keys) == len(out.values)
    assert not out.expires or len(out.expires) == len(out.keys)
    assert all(isinstance(v, reader.type) for v in out.values)
    assert all(_key_ok(k, reader.key) for k in out.keys + out.deleted)
    assert len(out.reasons) == min(out.dropped, 5)


def _fuzz(cases: int, seed: int) -> Counter[str]:
    rng = random.Random(seed)
    seen: Counter[str] = Counter()
    for case in range(cases):
        base = rng.choice(BASES)
        description, mutated, framed = _mutate(rng, base, base.frame)
        genuine = {base.frame, mutated} if framed else {base.frame}
        for _ in range(rng.randrange(3)):  # sometimes stack a second or third mutation
            more, mutated, framed = _mutate(rng, base, mutated)
            description += f", {more}"
            if framed:
                genuine.add(mutated)
        # A later mutation may undo an earlier one (write a byte's own value back).
        authentic = mutated in genuine
        try:
            _check_case(base, mutated, authentic, seen)
        except Exception as exc:
            msg = (
                f"fuzz case {case} (seed {seed}, keyed={base.codec.keyed}, "
                f"reader={base.reader!r}): {description}\nframe: {mutated.hex()}\n"
                f"{type(exc).__name__}: {exc}"
            )
            raise AssertionError(msg) from exc
    return seen


class TestFuzz:
    def test_fuzz_bases_are_valid(self) -> None:
        """Every unmutated fuzz base decodes, verifies, and reads back without drops."""
        for base in BASES:
            payload = base.codec.decode(base.frame, digest=digest(base.frame))
            assert payload == base.payload
            out = base.reader.decode_entries(payload, base.writer)
            assert out.dropped == 0

    def test_only_integrity_errors_escape(self) -> None:
        """50,000 mutated frames raise nothing but IntegrityError (or DecodeError for a chunk)."""
        seen = _fuzz(50_000, seed=20240601)
        # The run is not vacuous: every outcome happened many times over.
        for outcome in (
            "decode ok",
            "decode refused",
            "digest refused",
            "chunk ok",
            "chunk refused",
            "chunk with drops",
        ):
            assert seen[outcome] >= 50, (outcome, seen)

    @pytest.mark.slow
    def test_only_integrity_errors_escape_long(self) -> None:
        """200,000 mutated frames (another seed) raise nothing but IntegrityError."""
        seen = _fuzz(200_000, seed=7)
        assert seen["chunk with drops"] >= 500, seen
