"""Frames: the unit of bytes that the store keeps and verifies.

A frame wraps one encoded payload (msgpack produced by a contract) as::

    offset size  field
    0      4     magic b"WSTF"
    4      1     frame format version (1)
    5      1     flags: bit 0 zstd-compressed, bit 1 MAC present
    6      2     reserved, zero
    8      4     zstd dictionary id (0: none; reserved for a later format)
    12     4     payload length once decompressed (capped, see MAX_PAYLOAD)
    16     4     body length (bytes that follow the header)
    20     n     body: zstd frame (with its own content checksum) or raw payload
    20+n   32    keyed BLAKE2b MAC over bytes [0, 20+n), only when flag bit 1

A frame's identity is the xxh3-128 digest of all of its bytes; the store keys
chunks by it. xxhash only guards against accidents; a store opened with a
secret also writes and requires the MAC, which guards against tampering. The
small records that are not frames (heads, quarantine records, markers) are
*sealed* by a keyed codec: the value is followed by a BLAKE2b MAC over the
record's purpose, key and value (:meth:`Codec.seal`).

Frames are untrusted input: every malformed, truncated, extended or hostile
frame raises :class:`~warmstart.errors.IntegrityError` and nothing else, and
the declared sizes are checked against the cap *before* anything is allocated.

>>> codec = Codec()
>>> frame = codec.encode(b"hello" * 100)
>>> codec.decode(frame, digest=digest(frame)) == b"hello" * 100
True
"""

from __future__ import annotations

import struct
import threading
from typing import Any

import msgspec
import xxhash
import zstandard

from warmstart.errors import EncodeError, IntegrityError

__all__ = ("MAX_PAYLOAD", "Codec", "digest")

#: What a msgspec decoder may raise for bytes it cannot read. Which class one
#: bad string raises is the dependency's detail (UnicodeDecodeError before
#: msgspec 0.23, DecodeError since): catch both wherever untrusted bytes decode.
#: Containers nested past the interpreter's recursion limit raise RecursionError.
DECODE_FAILURES = (msgspec.MsgspecError, UnicodeDecodeError, RecursionError)


def decode_record(decoder: Any, data: bytes | memoryview, what: str) -> Any:
    """``decoder.decode(data)`` for an untrusted record: malformed data is ``IntegrityError``.

    ``what`` completes "Expected ..." in the message (``"a manifest"``).
    """
    try:
        return decoder.decode(data)
    except DECODE_FAILURES as exc:
        msg = f"Expected {what}, got malformed data: {exc}"
        raise IntegrityError(msg) from exc


def __dir__() -> tuple[str, ...]:
    return __all__


MAGIC = b"WSTF"
FRAME_VERSION = 1
FLAG_ZSTD = 0x01
FLAG_MAC = 0x02
KNOWN_FLAGS = FLAG_ZSTD | FLAG_MAC
HEADER = struct.Struct("<4sBBHIII")
MAC_SIZE = 32
#: Largest payload a frame may declare. Chunks are cut far below this (about
#: 1 MiB), so anything larger is damage or hostility, refused before allocating.
MAX_PAYLOAD = 64 * 1024 * 1024
# Payloads smaller than this are stored raw: zstd's frame overhead would win.
MIN_COMPRESS = 64
#: What a sealed record is (BLAKE2b personalisation, at most 16 bytes): a
#: MAC made for one kind of record never passes for another.
SEAL_HEAD = b"warmstart-head"
SEAL_QUARANTINE = b"warmstart-quar"
SEAL_MARKER = b"warmstart-marker"
SEAL_READER = b"warmstart-reader"


def _blake2b(data: bytes | memoryview, **kwargs: Any) -> Any:
    # hashlib loads OpenSSL (~3 ms): only keyed stores pay for it.
    import hashlib  # noqa: PLC0415

    return hashlib.blake2b(data, **kwargs)


def _compare_digest(a: bytes, b: bytes | memoryview) -> bool:
    import hmac  # noqa: PLC0415

    return hmac.compare_digest(a, b)


def digest(frame: bytes | memoryview) -> bytes:
    """Return the 16-byte xxh3-128 identity of a frame (its key in the store).

    >>> len(digest(b"any bytes"))
    16
    """
    return xxhash.xxh3_128_digest(frame)


class Codec:
    """Turns payload bytes into frames and back; one per store.

    Args:
        level: zstd level. Level 1 compresses small records as well as level 3
            at half the cost (see docs/benchmarks.md).
        secret: when given, frames carry a keyed BLAKE2b MAC and frames without
            a valid one are rejected.

    Thread-safe: zstd contexts are kept per thread.
    """

    __slots__ = ("_level", "_local", "_mac_key")

    def __init__(self, *, level: int = 1, secret: bytes | None = None) -> None:
        if secret is not None and not secret:
            msg = "Expected a non-empty secret (bytes) or None, got b''"
            raise ValueError(msg)
        self._level = level
        # BLAKE2b takes at most 64 key bytes; longer secrets are hashed down.
        self._mac_key = (
            None
            if secret is None
            else secret
            if len(secret) <= 64
            else _blake2b(secret, digest_size=64).digest()
        )
        self._local = threading.local()

    @property
    def keyed(self) -> bool:
        """Whether frames written by this codec carry a MAC."""
        return self._mac_key is not None

    def _compressor(self) -> zstandard.ZstdCompressor:
        try:
            return self._local.cctx  # type: ignore[no-any-return]
        except AttributeError:
            cctx = zstandard.ZstdCompressor(
                level=self._level, write_checksum=True, write_content_size=True
            )
            self._local.cctx = cctx
            return cctx

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        try:
            return self._local.dctx  # type: ignore[no-any-return]
        except AttributeError:
            dctx = zstandard.ZstdDecompressor()
            self._local.dctx = dctx
            return dctx

    def _mac(self, data: bytes | memoryview) -> bytes:
        assert self._mac_key is not None
        mac: bytes = _blake2b(data, key=self._mac_key, digest_size=MAC_SIZE).digest()
        return mac

    def encode(self, payload: bytes) -> bytes:
        """Wrap ``payload`` in a frame (compressed when it pays, MAC'd when keyed).

        Raises:
            EncodeError: the payload is over :data:`MAX_PAYLOAD` (a value, a
                chunk, a watermark or tags too large for one frame).
        """
        size = len(payload)
        if size > MAX_PAYLOAD:
            msg = (
                f"Expected a payload of at most {MAX_PAYLOAD} bytes (64 MiB) once encoded, "
                f"got {size}: a value, a chunk of values, a watermark or tags too large "
                f"for one frame"
            )
            raise EncodeError(msg)
        flags = 0
        body = payload
        if size >= MIN_COMPRESS:
            compressed = self._compressor().compress(payload)
            if len(compressed) < size:
                body, flags = compressed, FLAG_ZSTD
        if self._mac_key is not None:
            flags |= FLAG_MAC
        head = HEADER.pack(MAGIC, FRAME_VERSION, flags, 0, 0, size, len(body))
        if self._mac_key is None:
            return head + body
        framed = head + body
        return framed + self._mac(framed)

    def decode(self, frame: bytes | memoryview, *, digest: bytes | None = None) -> bytes:
        """Verify a frame and return its payload.

        Args:
            frame: the frame's bytes (a memoryview from LMDB is not copied).
            digest: the expected xxh3-128 digest, when the caller knows it
                (the store always does: it is the chunk's key).

        Raises:
            IntegrityError: for any damage: digest or MAC mismatch, bad magic,
                unknown version or flags, sizes that disagree or exceed the cap,
                a corrupt compressed body.
        """
        view = memoryview(frame)
        if digest is not None:
            self.verify(view, digest=digest)
            flags, raw_size, body_size = self._check_header(view)
        else:
            flags, raw_size, body_size = self._check_header(view)
            if flags & FLAG_MAC:
                self._check_mac(view, HEADER.size + body_size)
            elif self._mac_key is not None:
                msg = "Expected a MAC on every frame of a keyed store, found none"
                raise IntegrityError(msg)
        body = view[HEADER.size : HEADER.size + body_size]
        if not flags & FLAG_ZSTD:
            if body_size != raw_size:
                msg = f"Expected a raw body of {raw_size} bytes, got {body_size}"
                raise IntegrityError(msg)
            return bytes(body)
        return self._decompress(body, raw_size)

    def verify(self, frame: bytes | memoryview, *, digest: bytes) -> None:
        """Check a frame's digest, header and MAC without decompressing it.

        Raises:
            IntegrityError: as :meth:`decode` would, for everything but a
                corrupt compressed body (which the digest covers anyway).
        """
        view = memoryview(frame)
        if xxhash.xxh3_128_digest(view) != digest:
            msg = (
                f"Expected frame digest {digest.hex()}, got "
                f"{xxhash.xxh3_128_digest(view).hex()} - the frame is damaged"
            )
            raise IntegrityError(msg)
        flags, _, body_size = self._check_header(view)
        if flags & FLAG_MAC:
            self._check_mac(view, HEADER.size + body_size)
        elif self._mac_key is not None:
            msg = "Expected a MAC on every frame of a keyed store, found none"
            raise IntegrityError(msg)

    # -- sealed records --------------------------------------------------------

    def seal(self, purpose: bytes, key: bytes, value: bytes) -> bytes:
        """``value`` followed by its MAC, bound to ``purpose`` and ``key``; unkeyed: ``value``.

        For the small records that decide what a load returns (heads,
        quarantine records, the boot's markers): the MAC covers the record's
        key too, so a record moved under another key (another namespace,
        another generation) fails, and ``purpose`` (BLAKE2b's personalisation)
        keeps a MAC made for one kind of record from passing for another.

        >>> codec = Codec(secret=b"k")
        >>> sealed = codec.seal(SEAL_HEAD, b"svc", b"value")
        >>> codec.unseal(SEAL_HEAD, b"svc", sealed)
        b'value'
        >>> codec.unseal(SEAL_HEAD, b"other", sealed)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        warmstart.IntegrityError: Expected a record MAC'd with this store's secret, ...
        """
        if self._mac_key is None:
            return value
        return value + self._seal_mac(purpose, key, value)

    def unseal(self, purpose: bytes, key: bytes, stored: bytes | memoryview) -> bytes:
        """The value of a record made by :meth:`seal`, its MAC checked; unkeyed: ``stored``.

        Raises:
            IntegrityError: the MAC is missing or does not match.
        """
        raw = bytes(stored)
        if self._mac_key is None:
            return raw
        if len(raw) < MAC_SIZE:
            msg = (
                f"Expected a record MAC'd with this store's secret ({MAC_SIZE} bytes or more), "
                f"got {len(raw)} bytes: it was forged, or written without the secret"
            )
            raise IntegrityError(msg)
        value, mac = raw[:-MAC_SIZE], raw[-MAC_SIZE:]
        if not _compare_digest(self._seal_mac(purpose, key, value), mac):
            msg = (
                "Expected a record MAC'd with this store's secret, got a mismatch: it was "
                "forged, moved from another key, or written without the secret"
            )
            raise IntegrityError(msg)
        return value

    def _seal_mac(self, purpose: bytes, key: bytes, value: bytes) -> bytes:
        assert self._mac_key is not None
        h = _blake2b(
            len(key).to_bytes(4, "big"), key=self._mac_key, digest_size=MAC_SIZE, person=purpose
        )
        h.update(key)
        h.update(value)
        mac: bytes = h.digest()
        return mac

    def _check_header(self, view: memoryview) -> tuple[int, int, int]:
        if len(view) < HEADER.size:
            msg = f"Expected a frame of at least {HEADER.size} bytes, got {len(view)}"
            raise IntegrityError(msg)
        magic, version, flags, reserved, dict_id, raw_size, body_size = HEADER.unpack_from(view)
        if magic != MAGIC:
            msg = f"Expected frame magic {MAGIC!r}, got {bytes(magic)!r}"
            raise IntegrityError(msg)
        if version != FRAME_VERSION:
            msg = f"Expected frame format version {FRAME_VERSION}, got {version}"
            raise IntegrityError(msg)
        if flags & ~KNOWN_FLAGS or reserved or dict_id:
            msg = (
                f"Expected known flags and zero reserved fields, got flags={flags:#x} "
                f"reserved={reserved} dictionary={dict_id}"
            )
            raise IntegrityError(msg)
        if raw_size > MAX_PAYLOAD:
            msg = f"Expected a payload of at most {MAX_PAYLOAD} bytes, frame declares {raw_size}"
            raise IntegrityError(msg)
        expected = HEADER.size + body_size + (MAC_SIZE if flags & FLAG_MAC else 0)
        if expected != len(view):
            msg = f"Expected a frame of {expected} bytes from its header, got {len(view)}"
            raise IntegrityError(msg)
        return flags, raw_size, body_size

    def _check_mac(self, view: memoryview, body_end: int) -> None:
        if self._mac_key is None:
            msg = "Expected an unkeyed frame, got a MAC'd one: open the store with its secret"
            raise IntegrityError(msg)
        if not _compare_digest(self._mac(view[:body_end]), view[body_end:]):
            msg = "Expected a valid MAC, got a mismatch - the frame was altered or the key differs"
            raise IntegrityError(msg)

    def _decompress(self, body: memoryview, raw_size: int) -> bytes:
        # zstd trusts the content size in its own header and would allocate it
        # whole, so compare it with our capped one before decompressing.
        try:
            declared = zstandard.frame_content_size(body)
        except zstandard.ZstdError as exc:
            msg = f"Expected a zstd body, got damage: {exc}"
            raise IntegrityError(msg) from exc
        if declared != raw_size:
            msg = f"Expected a zstd body of {raw_size} bytes, it declares {declared}"
            raise IntegrityError(msg)
        try:
            # allow_extra_data=False: bytes after the zstd frame are damage too
            # (zstd ignores them by default, so an extended body would pass).
            payload = self._decompressor().decompress(
                body, max_output_size=raw_size, allow_extra_data=False
            )
        except zstandard.ZstdError as exc:
            msg = f"Expected a valid zstd body, got damage: {exc}"
            raise IntegrityError(msg) from exc
        if len(payload) != raw_size:
            msg = f"Expected {raw_size} payload bytes, got {len(payload)}"
            raise IntegrityError(msg)
        return payload
