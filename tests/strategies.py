"""Hypothesis strategies for contracts, records and keys, shared by the test modules.

Records are generated as whole ``msgspec.Struct`` *types* (not only values): a
:class:`StructSpec` draws field names from a small pool and field types from
:data:`KINDS`, so two independently drawn specs often share a field name with a
different type or requiredness, which is what schema-evolution tests need.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import msgspec
from hypothesis import strategies as st

import warmstart

#: msgpack integers: int64 at the bottom, uint64 at the top.
INT_MIN, INT_MAX = -(2**63), 2**64 - 1
ints = st.integers(INT_MIN, INT_MAX)
#: NaN is left out only because NaN != NaN would fail the equality checks.
floats = st.floats(allow_nan=False)
texts = st.text(max_size=12)
blobs = st.binary(max_size=12)
#: Field names are drawn from a small pool so that two specs often collide.
FIELD_NAMES = ("a", "b", "c", "d", "e", "f")


class Point(msgspec.Struct):
    """A nested record, to have a struct-valued field kind."""

    x: int
    y: float = 0.0


@dataclasses.dataclass(frozen=True, eq=False)
class Kind:
    """One field type of the generated Structs: its annotation, values and default."""

    #: The canonical string warmstart's schema renders for ``annotation``.
    name: str
    annotation: Any
    values: st.SearchStrategy[Any]
    default: Callable[[], Any]


KINDS: tuple[Kind, ...] = (
    Kind("int", int, ints, int),
    Kind("float", float, floats, float),
    Kind("str", str, texts, str),
    Kind("bytes", bytes, blobs, bytes),
    Kind("bool", bool, st.booleans(), bool),
    Kind("list[int]", list[int], st.lists(ints, max_size=4), list),
    Kind("set[int]", set[int], st.sets(ints, max_size=4), set),
    Kind("dict[str, int]", dict[str, int], st.dictionaries(texts, ints, max_size=4), dict),
    Kind("none | str", str | None, st.none() | texts, lambda: None),
    Kind("float | none", float | None, st.none() | floats, lambda: None),
    Kind("tuple[int, str]", tuple[int, str], st.tuples(ints, texts), lambda: (0, "")),
    Kind("struct{x: int, y: float}", Point, st.builds(Point, ints, floats), lambda: Point(0)),
)
KINDS_BY_NAME = {kind.name: kind for kind in KINDS}


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """One field of a generated Struct."""

    name: str
    kind: str
    required: bool


@dataclasses.dataclass(frozen=True)
class StructSpec:
    """A generated Struct type and how to draw its values."""

    fields: tuple[FieldSpec, ...]
    type: type[msgspec.Struct]

    def values(self) -> st.SearchStrategy[msgspec.Struct]:
        """Instances with every field drawn (optional ones included)."""
        return st.builds(self.type, **{f.name: KINDS_BY_NAME[f.kind].values for f in self.fields})

    def field(self, name: str) -> FieldSpec | None:
        """The field called ``name``, or None."""
        return next((f for f in self.fields if f.name == name), None)


@functools.cache
def make_struct(fields: tuple[FieldSpec, ...]) -> type[msgspec.Struct]:
    """Build (once per shape) the Struct type with ``fields``, keyword-only."""
    definitions: list[Any] = []
    for f in fields:
        kind = KINDS_BY_NAME[f.kind]
        if f.required:
            definitions.append((f.name, kind.annotation))
        else:
            definitions.append(
                (f.name, kind.annotation, msgspec.field(default_factory=kind.default))
            )
    return msgspec.defstruct("Generated", definitions, kw_only=True)


def spec_of(*fields: tuple[str, str, bool]) -> StructSpec:
    """A spec from ``(name, kind name, required)`` triples."""
    specs = tuple(FieldSpec(*f) for f in fields)
    return StructSpec(specs, make_struct(specs))


@st.composite
def struct_specs(
    draw: st.DrawFn, *, min_fields: int = 1, kinds: tuple[Kind, ...] = KINDS
) -> StructSpec:
    """A Struct type with 1 to 6 fields of the kinds given, some required."""
    names = draw(
        st.lists(
            st.sampled_from(FIELD_NAMES),
            min_size=min_fields,
            max_size=len(FIELD_NAMES),
            unique=True,
        )
    )
    fields = tuple(
        FieldSpec(name, draw(st.sampled_from(kinds)).name, draw(st.booleans())) for name in names
    )
    return StructSpec(fields, make_struct(fields))


_KEY_SCALARS: dict[Any, st.SearchStrategy[Any]] = {str: texts, int: ints, bytes: blobs}


def key_types() -> st.SearchStrategy[Any]:
    """A contract key type: ``str``, ``int``, ``bytes`` or a tuple of 1 to 3 of those."""
    scalars = st.sampled_from(list(_KEY_SCALARS))
    tuples = st.lists(scalars, min_size=1, max_size=3).map(lambda args: tuple[tuple(args)])
    return st.one_of(scalars, tuples)


def keys_of(key_type: Any) -> st.SearchStrategy[Any]:
    """Keys of ``key_type`` (as returned by :func:`key_types`)."""
    if key_type in _KEY_SCALARS:
        return _KEY_SCALARS[key_type]
    return st.tuples(*(keys_of(arg) for arg in key_type.__args__))


@dataclasses.dataclass
class Entries:
    """A batch of entries as a contract encodes them."""

    keys: list[Any]
    values: list[Any]
    deleted: list[Any]
    sequence: int
    expires: list[float]


@st.composite
def entries(draw: st.DrawFn, spec: StructSpec, key_type: Any, *, max_size: int = 6) -> Entries:
    """Unique keys with values of ``spec``, deletions, a sequence and maybe expiries."""
    keys = draw(st.lists(keys_of(key_type), unique=True, max_size=max_size))
    values = draw(st.lists(spec.values(), min_size=len(keys), max_size=len(keys)))
    deleted = draw(st.lists(keys_of(key_type), unique=True, max_size=3))
    sequence = draw(st.integers(0, 2**63 - 1))
    expires = draw(
        st.just([])
        | st.lists(st.floats(0, 4e9, allow_nan=False), min_size=len(keys), max_size=len(keys))
    )
    return Entries(keys, values, deleted, sequence, expires)


@st.composite
def contracts(
    draw: st.DrawFn,
) -> tuple[warmstart.Contract[Any], StructSpec, Any]:
    """A version-1 contract over a generated Struct and key type, with its spec."""
    spec = draw(struct_specs())
    key_type = draw(key_types())
    return warmstart.Contract("generated", spec.type, key=key_type), spec, key_type


def reorder_dicts(value: msgspec.Struct) -> msgspec.Struct:
    """A copy of ``value`` whose dict fields hold the same items inserted in reverse."""
    changes = {
        name: dict(reversed(list(field.items())))
        for name in value.__struct_fields__
        if isinstance(field := getattr(value, name), dict)
    }
    return msgspec.structs.replace(value, **changes)


def widened(value: Any, written: str, reader: str) -> Any:
    """What a ``reader``-typed field holds after reading ``value`` written as ``written``."""
    if written == "int" and reader in ("float", "float | none"):
        return float(value)
    return value


def read_as(value: msgspec.Struct, writer: StructSpec, reader: StructSpec) -> msgspec.Struct:
    """The record a tolerant ``reader`` makes of ``value`` (written with ``writer``).

    Fields both know keep their value (widened); fields only the reader knows
    take their default; fields only the writer knows are ignored.
    """
    fields: dict[str, Any] = {}
    for f in reader.fields:
        written = writer.field(f.name)
        if written is not None:
            fields[f.name] = widened(getattr(value, f.name), written.kind, f.kind)
        else:
            assert not f.required, f"{f.name} is required but not written"
            fields[f.name] = KINDS_BY_NAME[f.kind].default()
    return reader.type(**fields)
