"""Contracts: a record type, its key type and version, and how to read old data.

A contract turns a batch of entries into deterministic msgpack bytes (the
payload of one chunk) and back. Reading adapts to the version that wrote the
data, decided once per section from the stored writer schema:

* same version: typed fast path straight into the Struct;
* older writer: decode to plain data, run the upgraders W -> W+1 -> ... -> R,
  then convert;
* newer writer (a rollback): typed read when every field this reader requires
  is written with a readable type (unknown fields are ignored); otherwise the
  section is incompatible.

An entry that fails validation is dropped and counted (``on_invalid="drop"``)
or fails its section (``on_invalid="fail"``); one bad entry never sinks the
others.

>>> import msgspec
>>> class Quote(msgspec.Struct):
...     symbol: str
...     price: float
...     currency: str = "USD"
>>> QUOTES = Contract("quote", Quote, key=str, version=2,
...                   upgraders={1: lambda old: {**old, "currency": "USD"}})
>>> payload = QUOTES.encode_entries(["AAPL"], [Quote("AAPL", 189.5)])
>>> QUOTES.decode_entries(payload, QUOTES.write_schema).values
[Quote(symbol='AAPL', price=189.5, currency='USD')]
"""

from __future__ import annotations

import builtins
import functools
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, Literal, TypeVar, overload

import msgspec

from warmstart._budget import UNTYPED, Profile, chunk_entries, profile_of
from warmstart._budget import check as check_budget
from warmstart._types import Family, analyse, describe
from warmstart.codec import DECODE_FAILURES
from warmstart.errors import (
    ContractError,
    DecodeError,
    EncodeError,
    IncompatibleVersionError,
    IntegrityError,
)
from warmstart.schema import Schema, read_problems, schema_of

__all__ = ("DecodedEntries",)  # Contract: top level


def __dir__() -> tuple[str, ...]:
    return __all__


T = TypeVar("T")
#: Turns a record of version v into one of v + 1: a dict of fields for types
#: with named fields, the plain value (lists, dicts, scalars) for the others.
Upgrader = Callable[[Any], Any]
OnInvalid = Literal["drop", "fail"]
#: How many validation failures a section keeps word of, for its report.
MAX_REASONS = 5
_KEY_SCALARS = (str, int, bytes)
#: Inside a tuple key (the arguments of a memoized function, say), these too.
_KEY_ELEMENTS = (str, int, bytes, bool, float, type(None))


def _iterable(value: object) -> Iterable[Any]:
    return value if isinstance(value, Iterable) else [value]


def _key_element(arg: Any) -> bool:
    if arg in _KEY_ELEMENTS or arg is None:
        return True
    # An optional argument: str | None, int | float, ...
    members: tuple[Any, ...] = getattr(arg, "__args__", None) or ()
    kind = type(arg).__name__
    return (
        bool(members)
        and kind in ("UnionType", "_UnionGenericAlias")
        and all(m in _KEY_ELEMENTS for m in members)
    )


def _check_key_type(key: Any, name: str) -> None:
    if key in _KEY_SCALARS:
        return
    args: tuple[Any, ...] = getattr(key, "__args__", None) or ()
    tuple_key = getattr(key, "__origin__", None) is tuple and args and Ellipsis not in args
    if tuple_key and all(_key_element(arg) for arg in args):
        return
    msg = (
        f"Expected a key type of str, int, bytes or a tuple of those (tuples may also "
        f"hold bool, float, None and unions of them), got {key!r} - in contract {name!r}"
    )
    raise ContractError(msg)


def _staged_version(write_version: object, version: int, name: str) -> Any:
    """The version to write: ``version``, an older one, or for ``"auto"`` the previous one."""
    if write_version is None:
        return version
    if write_version != "auto":
        return write_version  # checked with the write schema
    if version < 2:
        msg = (
            f"Expected write_version='auto' only from version 2 on (it stages the "
            f"previous version), got version {version} - in contract {name!r}"
        )
        raise ContractError(msg)
    return version - 1


class DecodedEntries(msgspec.Struct, Generic[T]):
    """What one chunk decoded to: entries in saved order, deletions, and counts."""

    keys: list[Any]
    values: list[T]
    deleted: list[Any]
    sequence: int
    #: Wall-clock expiry per entry (TTL caches), or empty.
    expires: list[float] = msgspec.field(default_factory=list)
    upgraded: int = 0
    dropped: int = 0
    reasons: list[str] = msgspec.field(default_factory=list)


class Contract(Generic[T]):
    """The versioned shape of one piece of warm state.

    Args:
        name: stable name of the contract, recorded with the data.
        type: the type of each value: a ``msgspec.Struct``, a dataclass, an
            attrs class, a ``TypedDict``, a ``NamedTuple``, a pydantic v2
            model, a builtin (``str``, ``bytes``, ``int``, ``float``,
            ``bool``, ``list[...]``, ``dict[str, ...]``, ``tuple[...]``) or a
            union of those. Checked now: a type the deterministic encoder can
            never write (``dict[int, ...]`` somewhere) is refused here.
        key: the key type: ``str``, ``int``, ``bytes`` or a ``tuple[...]`` of
            those (tuples may also hold ``bool``, ``float``, ``None`` and
            unions of them, as a memoized function's arguments do).
        version: the version this release reads (and, by default, writes).
        upgraders: ``{v: fn}`` where ``fn`` turns a plain-data record of
            version ``v`` into one of version ``v + 1``: a dict of fields for
            types with named fields (a NamedTuple's too), the plain value
            (lists, dicts, scalars) for the others.
        downgrader: with ``write_version``: turns a current record into an
            instance of ``write_type`` (the previous release's type).
        write_version: staged exposure: write this older version until every
            replica reads the new one; flipping it is a flag, not a deploy.
            ``"auto"`` stages the previous version (``version - 1``) and lets
            a boot flip by itself: it writes the newest version every live
            reader of its namespace can read (see ``warmstart.exposure``);
            outside a boot such a contract writes the previous version.
        write_type: the type of ``write_version`` (needed with ``downgrader``).
        deprecated: field names still read but reported as deprecated.
        on_invalid: ``"drop"`` (count and skip) or ``"fail"`` (fail the section).

    Raises:
        ContractError: when the definition itself is wrong.
    """

    @overload
    def __init__(
        self: Contract[T],
        name: str,
        type: builtins.type[T],
        *,
        key: Any = ...,
        version: int = ...,
        upgraders: Mapping[int, Upgrader] | None = ...,
        downgrader: Callable[[T], Any] | None = ...,
        write_version: int | None = ...,
        write_type: Any = ...,
        deprecated: Sequence[str] = ...,
        on_invalid: OnInvalid = ...,
    ) -> None: ...
    @overload
    def __init__(
        self: Contract[Any],
        name: str,
        type: Any,
        *,
        key: Any = ...,
        version: int = ...,
        upgraders: Mapping[int, Upgrader] | None = ...,
        downgrader: Callable[[Any], Any] | None = ...,
        write_version: int | None = ...,
        write_type: Any = ...,
        deprecated: Sequence[str] = ...,
        on_invalid: OnInvalid = ...,
    ) -> None: ...
    def __init__(  # noqa: C901, PLR0915 - checks every argument in one place
        self,
        name: str,
        type: Any,  # noqa: A002 - the issue's public signature
        *,
        key: Any = str,
        version: int = 1,
        upgraders: Mapping[int, Upgrader] | None = None,
        downgrader: Callable[[Any], Any] | None = None,
        write_version: int | Literal["auto"] | None = None,
        write_type: Any = None,
        deprecated: Sequence[str] = (),
        on_invalid: OnInvalid = "drop",
    ) -> None:
        if not name or not isinstance(name, str):
            msg = f"Expected a non-empty contract name, got {name!r}"
            raise ContractError(msg)
        self.family: Family = analyse(type, name)
        if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version < 1 << 32:
            msg = f"Expected a contract version >= 1, got {version!r} - in contract {name!r}"
            raise ContractError(msg)
        _check_key_type(key, name)
        if on_invalid not in ("drop", "fail"):
            msg = f"Expected on_invalid 'drop' or 'fail', got {on_invalid!r}"
            raise ContractError(msg)
        self.name = name
        self.type = type
        self.key = key
        self.version = version
        # Typed loosely on purpose: contracts are often built from configuration.
        raw_upgraders: object = upgraders
        if raw_upgraders is not None and not isinstance(raw_upgraders, Mapping):
            msg = f"Expected upgraders as a mapping of version -> callable, got {raw_upgraders!r}"
            raise ContractError(msg)
        names = _iterable(deprecated)
        if isinstance(deprecated, str) or not all(isinstance(f, str) for f in names):
            msg = f"Expected deprecated as a sequence of field names, got {deprecated!r}"
            raise ContractError(msg)
        given: dict[Any, Any] = dict(upgraders or {})
        for step, upgrader in given.items():
            # A str or bool step would never match a stored version: refuse it here.
            if builtins.type(step) is not int or not 1 <= step < version:
                msg = (
                    f"Expected upgrader steps between 1 and {version - 1}, got {step!r} "
                    f"- in contract {name!r}"
                )
                raise ContractError(msg)
            if not callable(upgrader):
                msg = (
                    f"Expected a callable upgrader for v{step}->v{step + 1}, got "
                    f"{upgrader!r} - in contract {name!r}"
                )
                raise ContractError(msg)
        self.upgraders: dict[int, Upgrader] = given
        self.deprecated = tuple(deprecated)
        self.on_invalid: OnInvalid = on_invalid
        self.schema = _schema(self.family, type, version, name, key, self.deprecated)
        unknown = set(self.deprecated) - {f.name for f in self.schema.fields}
        if unknown:
            msg = f"Expected deprecated fields of {describe(type)}, got unknown {sorted(unknown)}"
            raise ContractError(msg)
        #: Whether a boot picks the version to write from its live readers.
        self.auto = write_version == "auto"
        self.write_version: int = _staged_version(write_version, version, name)
        self.downgrader = downgrader
        self.write_schema = self._write_schema(write_type)
        # Built once and reused: encoders and decoders are the hot path.
        hooks: dict[str, Any] = {}
        if self.family.kind == "pydantic":
            from warmstart import _pydantic  # noqa: PLC0415 - pydantic is loaded already

            self._encoder = msgspec.msgpack.Encoder(
                order="deterministic", enc_hook=_pydantic.enc_hook
            )
            hooks["dec_hook"] = _pydantic.dec_hook
        else:
            self._encoder = msgspec.msgpack.Encoder(order="deterministic")
        self._hooks = hooks
        chunk_type: Any = tuple[int, list[key], list[type], list[key], list[float]]
        self._typed = msgspec.msgpack.Decoder(chunk_type, **hooks)
        self._raw = msgspec.msgpack.Decoder(
            tuple[int, list[msgspec.Raw], list[msgspec.Raw], list[msgspec.Raw], list[float]]
        )
        self._key_decoder = msgspec.msgpack.Decoder(key)
        self._value_decoder = msgspec.msgpack.Decoder(type, **hooks)
        self._plain_decoder = msgspec.msgpack.Decoder()
        # A newer NamedTuple writer's trailing fields are cut off (arrays are read by position).
        self._width = len(self.schema.fields) if self.family.kind == "namedtuple" else None

    @functools.cached_property
    def _profile(self) -> Profile:
        """What decoding this contract's chunks may cost, per element (``_budget``)."""
        pair: Any = tuple.__class_getitem__((self.key, self.type))  # keys and values
        return profile_of(pair)

    @functools.cached_property
    def _plain_profile(self) -> Profile:
        """The same, decoding values as plain data first (older versions, upgraders)."""
        typed = self._profile
        return UNTYPED._replace(
            small_int=max(UNTYPED.small_int, typed.small_int),
            number=max(UNTYPED.number, typed.number),
            string=max(UNTYPED.string, typed.string),
            array=max(UNTYPED.array, typed.array),
            array_item=max(UNTYPED.array_item, typed.array_item),
            map_min=typed.map_min,
        )

    def _write_schema(self, write_type: Any) -> Schema:
        self._staged_schema: Schema | None = None
        if builtins.type(self.write_version) is not int:
            msg = (
                f"Expected an int write_version, got {self.write_version!r} "
                f"- in contract {self.name!r}"
            )
            raise ContractError(msg)
        if write_type is not None:
            family = analyse(write_type, self.name)
            if self.downgrader is None or self.write_version >= self.version:
                msg = (
                    f"Expected write_type only with a downgrader and a write_version "
                    f"below {self.version} - in contract {self.name!r}"
                )
                raise ContractError(msg)
            self._staged_schema = _schema(
                family, write_type, self.write_version, self.name, self.key, ()
            )
        if self.write_version == self.version:
            return self.schema
        if not 1 <= self.write_version < self.version:
            msg = (
                f"Expected write_version between 1 and {self.version}, got "
                f"{self.write_version} - in contract {self.name!r}"
            )
            raise ContractError(msg)
        if self._staged_schema is None:
            msg = (
                f"Expected a downgrader and write_type to write v{self.write_version} "
                f"while reading v{self.version} - in contract {self.name!r}"
            )
            raise ContractError(msg)
        return self._staged_schema

    def __repr__(self) -> str:
        staged = (
            "" if self.write_version == self.version else f", write_version={self.write_version}"
        )
        if self.auto:
            staged = ", write_version='auto'"
        return (
            f"Contract({self.name!r}, {describe(self.type)}, key={self.schema.key}, "
            f"version={self.version}{staged})"
        )

    def with_write_version(self, write_version: int | None) -> Contract[T]:
        """Return a copy of this contract that writes ``write_version``.

        This is the staged-exposure flag: once every replica reads the new
        version, flip to ``None`` (write this contract's own version). The
        copy writes that version whatever the live readers (it is not
        ``"auto"``).
        """
        target = self.version if write_version is None else write_version
        if target == self.version:
            schema = self.schema
        elif self._staged_schema is not None and target == self._staged_schema.version:
            schema = self._staged_schema
        else:
            msg = (
                f"Expected write_version {self.version} or the staged one, got "
                f"{write_version} - in contract {self.name!r}"
            )
            raise ContractError(msg)
        clone: Contract[T] = Contract.__new__(Contract)
        clone.__dict__.update(self.__dict__)
        clone.write_version = target
        clone.write_schema = schema
        clone.auto = False
        return clone

    # -- encoding -----------------------------------------------------------

    def encode_entries(
        self,
        keys: Sequence[Any],
        values: Sequence[T],
        *,
        deleted: Sequence[Any] = (),
        sequence: int = 0,
        expires: Sequence[float] = (),
        step: Callable[[], None] | None = None,
    ) -> bytes:
        """Encode a batch of entries (and deletions, for a delta) deterministically.

        The payload is ``[sequence, keys, values, deleted, expires]``; ``expires``
        is empty or holds one wall-clock expiry per entry (TTL caches). With
        ``step``, the values are encoded ``VALUES_STEP`` at a time and ``step()``
        is called between them (a checkpoint lets other threads run); the
        bytes are the same.
        """
        if len(keys) != len(values) or (expires and len(expires) != len(keys)):
            # Such a chunk could never be read back (decode refuses it as damage).
            msg = (
                f"Expected as many keys, values and expiries, got {len(keys)}, "
                f"{len(values)} and {len(expires)} - in contract {self.name!r}"
            )
            raise EncodeError(msg)
        if self.write_version != self.version:
            assert self.downgrader is not None
            try:
                written: Iterable[Any] = [self.downgrader(v) for v in values]
            except Exception as exc:
                # User code: a checkpoint reports it like any other bad value.
                msg = (
                    f"Expected values the downgrader turns into v{self.write_version}, got "
                    f"{type(exc).__name__}: {exc} - in contract {self.name!r}"
                )
                raise EncodeError(msg) from exc
        else:
            written = values
        try:
            if step is None or len(values) <= VALUES_STEP:
                return self._encoder.encode((sequence, keys, written, deleted, expires))
            return self._encode_in_steps(sequence, keys, written, deleted, expires, step)
        except (TypeError, ValueError, OverflowError) as exc:
            msg = (
                f"Expected entries encodable as {describe(self.type)}, got: {exc} "
                f"- in contract {self.name!r}"
            )
            raise EncodeError(msg) from exc

    def _encode_in_steps(
        self,
        sequence: int,
        keys: Sequence[Any],
        values: Iterable[Any],
        deleted: Sequence[Any],
        expires: Sequence[float],
        step: Callable[[], None],
    ) -> bytes:
        """``encode((sequence, keys, values, deleted, expires))``, a slice of keys or values a step.

        A msgpack array is its header, then its items one after another: the
        slices' items, each slice encoded as an array and its header cut off,
        join into the bytes of the whole. The keys too: a chunk of 32,768
        keys encoded in one call was one step of 2-4 ms.
        """
        encode = self._encoder.encode
        items = values if isinstance(values, list) else list(values)
        parts = [b"\x95", encode(sequence)]
        for array in (keys, items):
            parts.append(_array_header(len(array)))
            for start in range(0, len(array), VALUES_STEP):
                chunk = array[start : start + VALUES_STEP]
                parts.append(encode(chunk)[len(_array_header(len(chunk))) :])
                step()
        parts += [encode(deleted), encode(expires)]
        return b"".join(parts)

    @property
    def encode_value(self) -> Callable[[T], bytes]:
        """Encode one value, deterministically (used for hash-diff change detection).

        The bound C method itself, not a Python wrapper around it: a hash diff
        calls it once per entry, and the wrapper doubled that cost.
        """
        return self._encoder.encode

    # -- decoding -----------------------------------------------------------

    def plan(self, writer: Schema) -> Literal["typed", "upgrade"]:
        """Decide how to read data written with ``writer`` (from the schemas only).

        Raises:
            IncompatibleVersionError: no upgrade path, or a newer writer lacks a
                field this reader requires.
        """
        if writer.contract != self.name:
            msg = (
                f"Expected contract {self.name!r}, got data written by contract {writer.contract!r}"
            )
            raise IncompatibleVersionError(msg)
        if writer.version < self.version:
            missing = [v for v in range(writer.version, self.version) if v not in self.upgraders]
            if missing:
                gaps = ", ".join(f"v{v}->v{v + 1}" for v in missing)
                msg = (
                    f"Expected upgraders from v{writer.version} to v{self.version}, "
                    f"missing {gaps} - in contract {self.name!r}"
                )
                raise IncompatibleVersionError(msg)
            # Upgraders reshape values only: a changed key type cannot be read.
            problems = read_problems(writer, self.schema, fields=False)
            if problems:
                msg = (
                    f"Expected data readable by contract {self.name!r} v{self.version}, "
                    f"got v{writer.version}: {'; '.join(problems)}"
                )
                raise IncompatibleVersionError(msg)
            return "upgrade"
        problems = read_problems(writer, self.schema)
        if problems:
            got = (
                "data of the same version with another schema"
                if writer.version == self.version
                else f"v{writer.version}"
            )
            msg = (
                f"Expected data readable by contract {self.name!r} v{self.version}, "
                f"got {got}: {'; '.join(problems)}"
            )
            raise IncompatibleVersionError(msg)
        return "typed"

    def decode_entries(
        self,
        payload: bytes,
        writer: Schema,
        *,
        entries: int | None = None,
        where: str = "a chunk",
    ) -> DecodedEntries[T]:
        """Decode one chunk payload written with ``writer``.

        Before anything is built, the payload is held to what it claims and
        to a memory bound (issue 17): the number of keys its header declares
        must be ``entries`` (the manifest's count, when given), and decoding
        it may not build more than ``_budget.MAX_DECODED`` bytes of objects.

        Raises:
            IntegrityError: the payload is not a chunk at all (malformed), does
                not hold ``entries`` entries, or would take more memory than
                the bound allows.
            IncompatibleVersionError: see :meth:`plan`.
            DecodeError: an entry is invalid and ``on_invalid="fail"``.
        """
        plan = self.plan(writer)
        chunk_entries(payload, where, entries)
        typed = plan == "typed" and not self._cuts(writer)
        # The slow path decodes values as plain data first (upgraders see those).
        check_budget(payload, self._profile if typed else self._plain_profile, where)
        if typed:
            try:
                seq, keys, values, deleted, expires = self._typed.decode(payload)
            except DECODE_FAILURES:
                # Which exception one bad entry raises is the decoder's detail
                # (a str that is not UTF-8 raised UnicodeDecodeError before
                # msgspec 0.23, DecodeError since). Whether the chunk or one
                # entry is bad is decided by reading the chunk's envelope
                # with every entry left raw, then entry by entry.
                return self._decode_each(payload, writer)
            if len(values) != len(keys) or (expires and len(expires) != len(keys)):
                msg = (
                    f"Expected as many keys, values and expiries, got {len(keys)}, "
                    f"{len(values)} and {len(expires)}"
                )
                raise IntegrityError(msg)
            return DecodedEntries(keys, values, deleted, seq, expires)
        return self._decode_each(payload, writer)

    def _decode_each(self, payload: bytes, writer: Schema) -> DecodedEntries[T]:
        """The slow path: one entry at a time, upgrading and dropping as needed."""
        try:
            seq, raw_keys, raw_values, raw_deleted, expires = self._raw.decode(payload)
        except DECODE_FAILURES as exc:
            msg = f"Expected a chunk of contract {self.name!r}, got malformed data: {exc}"
            raise IntegrityError(msg) from exc
        if len(raw_keys) != len(raw_values) or (expires and len(expires) != len(raw_keys)):
            msg = (
                f"Expected as many keys, values and expiries, got {len(raw_keys)}, "
                f"{len(raw_values)} and {len(expires)}"
            )
            raise IntegrityError(msg)
        out: DecodedEntries[T] = DecodedEntries(keys=[], values=[], deleted=[], sequence=seq)
        upgrade = writer.version < self.version
        cut = self._cuts(writer)
        for i, (raw_key, raw_value) in enumerate(zip(raw_keys, raw_values)):
            try:
                key = self._key_decoder.decode(raw_key)
                if upgrade:
                    value = self._upgrade(self._plain_decoder.decode(raw_value), writer)
                elif cut:
                    value = self._cut(self._plain_decoder.decode(raw_value))
                else:
                    value = self._value_decoder.decode(raw_value)
            except Exception as exc:
                self._invalid(out, exc)
                continue
            out.keys.append(key)
            out.values.append(value)
            if expires:
                out.expires.append(expires[i])
            out.upgraded += upgrade
        for raw_key in raw_deleted:
            try:
                out.deleted.append(self._key_decoder.decode(raw_key))
            except DECODE_FAILURES as exc:
                self._invalid(out, exc)
        return out

    def _cuts(self, writer: Schema) -> bool:
        """A newer NamedTuple writer added trailing fields: this reader cuts them off."""
        return (
            self._width is not None
            and writer.kind == "namedtuple"
            and len(writer.fields) > self._width
        )

    def _cut(self, data: Any) -> T:
        if type(data) is not list:
            msg = f"Expected an array, got {builtins.type(data).__name__}"
            raise TypeError(msg)
        return msgspec.convert(data[: self._width], self.type)  # type: ignore[no-any-return]

    def _upgrade(self, data: Any, writer: Schema) -> T:
        """Plain data written by an older ``writer`` -> upgraders -> this contract's type."""
        if writer.kind == "namedtuple":
            if type(data) is not list:
                msg = f"Expected an array, got {builtins.type(data).__name__}"
                raise TypeError(msg)
            # Upgraders see fields by name, as for every type with named fields.
            data = {f.name: v for f, v in zip(writer.fields, data)}
        elif writer.kind != "value" and type(data) is not dict:
            msg = f"Expected a map of fields, got {builtins.type(data).__name__}"
            raise TypeError(msg)
        for step in range(writer.version, self.version):
            data = self.upgraders[step](data)
        if self.family.kind == "namedtuple" and isinstance(data, dict):
            names = [f.name for f in self.schema.fields]
            given = list(itertools.takewhile(lambda name: name in data, names))
            data = [data[name] for name in given]
        return msgspec.convert(data, self.type, **self._hooks)  # type: ignore[no-any-return]

    def check_values(self, values: Iterable[Any]) -> None:
        """Refuse, before encoding, values that would not come back as themselves.

        A value must be of the contract's type exactly (a subclass would come
        back as its base class, without its extra fields), and data in an
        ``Any``-typed position must be plain (a tuple would come back as a list).

        Raises:
            EncodeError: naming the first value that would not come back.
        """
        exact = self.family.exact
        values = values if isinstance(values, (list, tuple)) else list(values)
        wrong = set(map(builtins.type, values)) - exact if exact else set()
        if wrong:
            got = sorted(describe(t) for t in wrong)
            subclass = any(issubclass(t, base) for t in wrong for base in exact)
            why = " (a subclass would come back as its base class)" if subclass else ""
            msg = (
                f"Expected values of type {describe(self.type)}, got {', '.join(got)}{why} "
                f"- in contract {self.name!r}"
            )
            raise EncodeError(msg)
        check = self.family.check
        if check is not None:
            for value in values:
                problem = check(value)
                if problem is not None:
                    msg = (
                        f"Expected values that come back as they are, got {problem} "
                        f"- in contract {self.name!r}"
                    )
                    raise EncodeError(msg)

    def admits(self, value: Any) -> bool:
        """Whether ``value`` would come back as itself (what :meth:`check_values` checks)."""
        exact = self.family.exact
        if exact and builtins.type(value) not in exact:
            return False
        check = self.family.check
        return check is None or check(value) is None

    def _invalid(self, out: DecodedEntries[T], exc: Exception) -> None:
        if self.on_invalid == "fail":
            msg = f"Expected valid entries of contract {self.name!r}, got: {exc}"
            raise DecodeError(msg) from exc
        out.dropped += 1
        if len(out.reasons) < MAX_REASONS:
            out.reasons.append(f"{type(exc).__name__}: {exc}")


def _schema(
    family: Family, tp: Any, version: int, name: str, key: Any, deprecated: tuple[str, ...]
) -> Schema:
    """The writer schema of a value type of ``family``."""
    if family.kind == "pydantic":
        return schema_of(
            family.fields_type,
            version=version,
            name=name,
            key=key,
            deprecated=deprecated,
            kind="pydantic",
        )
    return schema_of(tp, version=version, name=name, key=key, deprecated=deprecated)


#: Values encoded in one step by ``encode_entries(..., step=...)``: 0.3-0.8 ms of small records.
VALUES_STEP = 2048


def _array_header(length: int) -> bytes:
    """The msgpack header of an array of ``length`` items."""
    if length < 16:
        return bytes((0x90 | length,))
    if length < 1 << 16:
        return b"\xdc" + length.to_bytes(2, "big")
    return b"\xdd" + length.to_bytes(4, "big")
