"""The exception tree: one root, the right builtins, and messages that say what was wrong."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

import warmstart
from warmstart import errors
from warmstart.codec import HEADER, Codec, digest
from warmstart.errors import (
    CheckpointNotFoundError,
    ColdStartWarning,
    ContractError,
    DecodeError,
    EncodeError,
    IncompatibleVersionError,
    IntegrityError,
    MissingExtraError,
    ReadOnlyStoreError,
    StoreError,
    StoreFormatError,
    StoreFullError,
    StoreTimeoutError,
    WarmstartError,
)

#: Every error class errors.py defines (the main ones are exported at the top level).
ERRORS = [
    value
    for value in vars(errors).values()
    if isinstance(value, type) and issubclass(value, WarmstartError)
]


class TestHierarchy:
    @pytest.mark.parametrize(
        ("error", "builtin"),
        [
            (ContractError, TypeError),
            (CheckpointNotFoundError, KeyError),
            (StoreTimeoutError, TimeoutError),
            (ReadOnlyStoreError, PermissionError),
            (StoreFullError, OSError),
            (MissingExtraError, ImportError),
            (EncodeError, ValueError),
            (DecodeError, ValueError),
        ],
    )
    def test_each_error_is_also_its_builtin(
        self, error: type[WarmstartError], builtin: type[Exception]
    ) -> None:
        """Code catching the builtin also catches warmstart's error."""
        assert issubclass(error, builtin)
        with pytest.raises(builtin):
            raise error("Expected something, got something else")

    @pytest.mark.parametrize(
        ("error", "parent"),
        [
            (IntegrityError, DecodeError),
            (IncompatibleVersionError, DecodeError),
            (CheckpointNotFoundError, StoreError),
            (StoreFormatError, StoreError),
            (StoreFullError, StoreError),
            (ReadOnlyStoreError, StoreError),
            (StoreTimeoutError, StoreError),
        ],
    )
    def test_branches(self, error: type[WarmstartError], parent: type[WarmstartError]) -> None:
        """Errors sit on the decode and store branches the design names."""
        assert issubclass(error, parent)

    def test_every_error_has_one_root(self) -> None:
        """Every exception warmstart defines derives from WarmstartError."""
        assert len(ERRORS) == 13
        assert all(issubclass(e, WarmstartError) for e in ERRORS)
        assert issubclass(WarmstartError, Exception)

    def test_damage_is_not_incompatibility(self) -> None:
        """IntegrityError and IncompatibleVersionError are separate: one is damage, one is age."""
        assert not issubclass(IntegrityError, IncompatibleVersionError)
        assert not issubclass(IncompatibleVersionError, IntegrityError)

    def test_cold_start_warning_is_a_warning(self) -> None:
        """ColdStartWarning is a UserWarning, never raised as an error by default."""
        assert issubclass(ColdStartWarning, UserWarning)
        assert not issubclass(ColdStartWarning, WarmstartError)

    def test_exported_once(self) -> None:
        """One public path per error: the top level for the main ones, else warmstart.errors."""
        for error in ERRORS:
            home = warmstart if error.__name__ in warmstart.__all__ else errors
            assert error.__name__ in home.__all__
            assert error.__module__ == home.__name__


class TestDocumentation:
    @pytest.mark.parametrize("name", errors.__all__)
    def test_documented_with_version(self, name: str) -> None:
        """Every exception says what it means and when it was added."""
        doc = inspect.getdoc(getattr(errors, name))
        assert doc
        assert ".. versionadded:: 0.1.0" in doc

    def test_module_exports_only_exceptions(self) -> None:
        """errors.py holds the exception tree and nothing else public."""
        public = {
            name
            for name, value in vars(errors).items()
            if not name.startswith("_")
            and isinstance(value, type)
            and value.__module__ == errors.__name__
        }
        assert public == set(errors.__all__)
        assert dir(errors) == sorted(errors.__all__)


class TestCheckpointNotFound:
    def test_message_is_not_quoted(self) -> None:
        """Unlike KeyError, the message reads as a sentence."""
        assert str(CheckpointNotFoundError("Expected namespace 'x', found none")) == (
            "Expected namespace 'x', found none"
        )
        assert str(KeyError("Expected namespace 'x', found none")).startswith('"')
        assert str(CheckpointNotFoundError()) == ""

    def test_store_raises_it_as_a_key_error(self, store: warmstart.Store) -> None:
        """Loading a namespace that was never saved raises it; ``except KeyError`` catches it."""
        with pytest.raises(KeyError) as info:
            store.load("never-saved")
        assert isinstance(info.value, CheckpointNotFoundError)
        assert "never-saved" in str(info.value)
        assert str(info.value).startswith("Expected")


class Quote(msgspec.Struct):
    """A record for the message tests."""

    symbol: str
    price: int


QUOTES = warmstart.Contract("quote", Quote)


class SpecialQuote(Quote):
    """A subclass: it would come back as a Quote."""

    venue: str = ""


def _bad_magic() -> None:
    frame = Codec().encode(b"x" * 10)
    Codec().decode(b"XXXX" + frame[4:])


def _short_frame() -> None:
    Codec().decode(b"WSTF")


def _bad_digest() -> None:
    frame = Codec().encode(b"payload")
    Codec().decode(frame, digest=digest(b"other"))


def _size_mismatch() -> None:
    frame = Codec().encode(b"payload")
    Codec().decode(frame + b"!")


def _unkeyed_frame_in_keyed_store() -> None:
    Codec(secret=b"k").decode(Codec().encode(b"payload"))


def _raw_size_lie() -> None:
    frame = Codec().encode(b"payload")
    head = HEADER.unpack_from(frame)
    Codec().decode(HEADER.pack(*head[:5], 8, head[6]) + frame[HEADER.size :])


def _bad_version() -> None:
    warmstart.Contract("quote", Quote, version=0)


def _bad_key() -> None:
    warmstart.Contract("quote", Quote, key=float)


def _not_encodable() -> None:
    warmstart.Contract("quote", dict[int, str])


def _subclass_value() -> None:
    QUOTES.check_values([SpecialQuote("a", 1)])


def _bad_batch() -> None:
    QUOTES.encode_entries(["a", "b"], [Quote("a", 1)])


def _missing_upgrader() -> None:
    newer = warmstart.Contract("quote", Quote, version=3, upgraders={1: dict})
    newer.plan(QUOTES.schema)


def _rollback() -> None:
    class Older(msgspec.Struct):
        symbol: str
        name: str

    warmstart.Contract("quote", Older).plan(msgspec.structs.replace(QUOTES.schema, version=2))


def _invalid_entry() -> None:
    strict = warmstart.Contract("quote", Quote, on_invalid="fail")
    strict.decode_entries(
        msgspec.msgpack.encode((0, ["a"], [{"symbol": 1}], [], [])), QUOTES.schema
    )


def _malformed_chunk() -> None:
    QUOTES.decode_entries(b"\x93\x00", QUOTES.schema)


class TestMessages:
    @pytest.mark.parametrize(
        ("trigger", "error", "found"),
        [
            (_bad_magic, IntegrityError, "got b'XXXX'"),
            (_short_frame, IntegrityError, "got 4"),
            (_bad_digest, IntegrityError, "got "),
            (_size_mismatch, IntegrityError, "got 28"),
            (_unkeyed_frame_in_keyed_store, IntegrityError, "found none"),
            (_raw_size_lie, IntegrityError, "got 7"),
            (_bad_version, ContractError, "got 0 - in contract 'quote'"),
            (_bad_key, ContractError, "got <class 'float'> - in contract 'quote'"),
            (_not_encodable, ContractError, "got dict[int, str] at dict[int, str] ("),
            (_bad_batch, EncodeError, "got 2, 1 and 0 - in contract 'quote'"),
            (_subclass_value, EncodeError, "got SpecialQuote (a subclass would come back"),
            (_missing_upgrader, IncompatibleVersionError, "missing v2->v3 - in contract 'quote'"),
            (_rollback, IncompatibleVersionError, "got v2: field 'name' is required by v1"),
            (_invalid_entry, DecodeError, "got: Expected `str`, got `int` - at `$.symbol`"),
            (_malformed_chunk, IntegrityError, "got malformed data"),
        ],
        ids=lambda v: v.__name__.strip("_") if callable(v) else None,
    )
    def test_message_says_expected_and_found(
        self, trigger: Callable[[], Any], error: type[WarmstartError], found: str
    ) -> None:
        """A message starts with what was expected and goes on to what was found (and where)."""
        with pytest.raises(error) as info:
            trigger()
        message = str(info.value)
        assert message.startswith("Expected "), message
        assert found in message, message
        assert re.search(r"\b(got|found|missing)\b", message), message
