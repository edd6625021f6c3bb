"""Writer schemas: canonical type strings, storage, and the compatibility rules."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import uuid
from typing import Any, Literal, NamedTuple, TypedDict

import msgspec
import pytest
from hypothesis import given

import warmstart
from strategies import KINDS, Kind, StructSpec, spec_of, struct_specs
from warmstart.schema import (
    Compatibility,
    FieldSchema,
    Schema,
    compatibility,
    read_problems,
    render_type,
    schema_of,
    type_readable,
)


class Color(enum.Enum):
    """An enum field type."""

    RED = "red"
    BLUE = "blue"


class Inner(msgspec.Struct, rename="camel"):
    """A nested Struct with renamed fields."""

    first_name: str


@dataclasses.dataclass
class Pair:
    """A dataclass field type."""

    left: int
    right: str


class Span(TypedDict):
    """A TypedDict field type."""

    start: int


class Range(NamedTuple):
    """A NamedTuple field type."""

    low: int
    high: int


class Node(msgspec.Struct):
    """A recursive record: a tree of nodes."""

    name: str
    children: list[Node] = []
    parent: Node | None = None


class Forest(msgspec.Struct):
    """A record holding a recursive one: references count from the inner Struct."""

    trees: list[Node]


class TestRender:
    @pytest.mark.parametrize(
        ("tp", "rendered"),
        [
            (int, "int"),
            (float, "float"),
            (str, "str"),
            (bytes, "bytes"),
            (bytearray, "bytearray"),
            (bool, "bool"),
            (Any, "any"),
            (None, "none"),
            (datetime.datetime, "datetime"),
            (datetime.date, "date"),
            (datetime.time, "time"),
            (datetime.timedelta, "timedelta"),
            (uuid.UUID, "uuid"),
            (decimal.Decimal, "decimal"),
            (msgspec.Raw, "raw"),
            (list[int], "list[int]"),
            (set[str], "set[str]"),
            (frozenset[int], "frozenset[int]"),
            (tuple[int, ...], "tuple[int, ...]"),
            (tuple[int], "tuple[int]"),
            (tuple[int, str], "tuple[int, str]"),
            (dict[str, list[float]], "dict[str, list[float]]"),
            (int | None, "int | none"),
            (None | str | int, "int | none | str"),
            (Literal["b", "a"], "literal['a', 'b']"),
            (Color, "enum['blue', 'red']"),
            (Inner, "struct{firstName: str}"),
            (Pair, "struct{left: int, right: str}"),
            (Span, "struct{start: int}"),
            (Range, "struct{low: int, high: int}"),
        ],
    )
    def test_canonical_strings(self, tp: Any, rendered: str) -> None:
        """Each type renders to one canonical string, whatever the spelling."""
        assert render_type(tp) == rendered

    def test_union_order_does_not_matter(self) -> None:
        """``str | None`` and ``None | str`` are the same schema type."""
        assert render_type(str | None) == render_type(None | str)

    def test_variadic_tuple_differs_from_single(self) -> None:
        """``tuple[int, ...]`` and ``tuple[int]`` are different types and render differently."""
        # Regression: both rendered "tuple[int]", so the schemas looked compatible.
        assert render_type(tuple[int, ...]) != render_type(tuple[int])
        assert not type_readable(render_type(tuple[int, ...]), render_type(tuple[int]))

    def test_recursive_struct(self) -> None:
        """A recursive Struct renders with back-references instead of recursing forever."""
        # Regression: RecursionError at Contract creation.
        schema = warmstart.Contract("tree", Node).schema
        assert [(f.name, f.type) for f in schema.fields] == [
            ("name", "str"),
            ("children", "list[ref[0]]"),
            ("parent", "none | ref[0]"),
        ]
        nested = schema_of(Forest, version=1).fields[0].type
        assert nested == ("list[struct{name: str, children: list[ref[0]], parent: none | ref[0]}]")

    def test_recursive_struct_round_trips(self) -> None:
        """A contract over a recursive Struct encodes and decodes a tree."""
        contract = warmstart.Contract("tree", Node)
        root = Node("root", [Node("a"), Node("b", [Node("c")])])
        out = contract.decode_entries(contract.encode_entries(["t"], [root]), contract.schema)
        assert out.values == [root]

    def test_wire_names(self) -> None:
        """A schema lists fields by their encoded names (rename=...)."""
        schema = schema_of(Inner, version=1)
        assert schema.fields == (FieldSchema("firstName", "str", required=True),)

    @pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
    def test_strategy_kinds_render_as_named(self, kind: Kind) -> None:
        """The strategies' field kinds are named exactly as the schema renders them."""
        assert render_type(kind.annotation) == kind.name


class TestSchema:
    def test_schema_of_describes_fields(self) -> None:
        """schema_of lists name, type and requiredness of each field, in order."""
        spec = spec_of(("b", "int", True), ("a", "none | str", False))
        schema = schema_of(spec.type, version=3, name="thing", key=tuple[str, int])
        assert schema == Schema(
            contract="thing",
            version=3,
            key="tuple[str, int]",
            fields=(FieldSchema("b", "int", True), FieldSchema("a", "none | str", False)),
        )

    def test_name_defaults_to_the_type(self) -> None:
        """Without a contract name, the schema uses the Struct's name."""
        assert schema_of(Node, version=1).contract == "Node"

    def test_field_lookup(self) -> None:
        """Schema.field finds a field by wire name, or returns None."""
        schema = schema_of(Inner, version=1)
        assert schema.field("firstName") == FieldSchema("firstName", "str", True)
        assert schema.field("first_name") is None

    @given(spec=struct_specs())
    def test_schemas_round_trip_through_msgpack(self, spec: StructSpec) -> None:
        """A schema stored in a manifest reads back equal."""
        schema = schema_of(spec.type, version=2, key=tuple[int, bytes], deprecated=("a",))
        assert msgspec.msgpack.decode(msgspec.msgpack.encode(schema), type=Schema) == schema

    def test_schemas_from_newer_releases_are_read(self) -> None:
        """A stored schema with fields this release does not know still decodes."""
        stored = {
            "contract": "q",
            "version": 1,
            "key": "str",
            "fields": [{"name": "a", "type": "int", "required": True, "doc": "new"}],
            "owner": "future release",
        }
        schema = msgspec.msgpack.decode(msgspec.msgpack.encode(stored), type=Schema)
        assert schema.fields == (FieldSchema("a", "int", True),)


class TestTypeReadable:
    @pytest.mark.parametrize(
        ("written", "reader", "readable"),
        [
            ("int", "int", True),
            ("int", "any", True),
            ("int", "float", True),
            ("float", "int", False),
            ("bool", "int", False),  # msgspec refuses a bool for an int
            ("int", "bool", False),
            ("str", "none | str", True),
            ("none | str", "str", False),
            ("int", "float | none", True),
            ("int | none", "float | none", True),
            ("int | str", "float | none", False),
            ("list[int]", "list[int] | none", True),
            ("list[int | str]", "list[int | str] | none", True),
            ("list[int | str]", "list[int] | str", False),
            ("dict[str, int | none]", "dict[str, int | none] | int", True),
            ("tuple[int]", "tuple[int, ...]", False),
        ],
    )
    def test_table(self, written: str, reader: str, readable: bool) -> None:
        """Readability follows msgspec's decoding: equal, any, int widening, union members."""
        assert type_readable(written, reader) is readable

    @pytest.mark.parametrize(
        ("written", "value", "reader"),
        [
            (bool, True, int),
            (int, 3, bool),
            (int, 3, float),
            (float, 1.5, int),
            (int, 3, float | None),
            (int | None, None, float | None),
            (str, "x", str | None),
            (str | None, None, str),
            (int, 3, str),
            (int, 3, Any),
            (list[int], [1, 2], list[int] | None),
            (tuple[int, ...], (1, 2), tuple[int]),
        ],
    )
    def test_agrees_with_msgspec(self, written: Any, value: Any, reader: Any) -> None:
        """type_readable says yes exactly when msgspec decodes such a value as the reader type."""
        try:
            msgspec.msgpack.decode(msgspec.msgpack.encode(value), type=reader)
        except msgspec.ValidationError:
            decodes = False
        else:
            decodes = True
        assert type_readable(render_type(written), render_type(reader)) is decodes


def schema(*fields: tuple[str, str, bool], version: int = 1, key: str = "str") -> Schema:
    return Schema("c", version, key, tuple(FieldSchema(*f) for f in fields))


class TestCompatibility:
    def test_docstring_example(self) -> None:
        """Adding an optional field is compatible both ways."""
        old = schema(("symbol", "str", True))
        new = schema(("symbol", "str", True), ("currency", "str", False), version=2)
        assert compatibility(old, new) == Compatibility(backward=True, forward=True)
        assert compatibility(old, new).ok

    def test_added_required_field(self) -> None:
        """An added required field needs an upgrader for old data; old readers ignore it."""
        old = schema(("a", "int", True))
        new = schema(("a", "int", True), ("b", "str", True), version=2)
        result = compatibility(old, new)
        assert (result.backward, result.forward, result.ok) == (False, True, False)
        assert result.reasons == ("backward: field 'b' is required by v2 but not written by v1",)
        assert compatibility(old, new, upgrades=True).ok

    def test_removed_required_field(self) -> None:
        """Removing a field the old reader requires breaks rollbacks only."""
        old = schema(("a", "int", True), ("b", "str", True))
        new = schema(("a", "int", True), version=2)
        result = compatibility(old, new)
        assert (result.backward, result.forward) == (True, False)
        assert result.reasons == ("forward: field 'b' is required by v1 but not written by v2",)

    def test_type_change_reasons(self) -> None:
        """A changed type names the field, both types and both versions."""
        old = schema(("a", "int", True))
        new = schema(("a", "str", True), version=2)
        assert compatibility(old, new).reasons == (
            "backward: field 'a' changed type from int (v1) to str (v2)",
            "forward: field 'a' changed type from str (v2) to int (v1)",
        )

    def test_widening_is_one_way(self) -> None:
        """int -> float reads old data, but old readers cannot read floats."""
        result = compatibility(schema(("a", "int", True)), schema(("a", "float", True)))
        assert (result.backward, result.forward) == (True, False)

    def test_key_type_change_survives_upgrades(self) -> None:
        """Upgraders do not make a changed key type readable."""
        # Regression: upgrades=True cleared every backward problem, keys included.
        old = schema(("a", "int", True), key="int")
        new = schema(("a", "int", True), version=2)
        result = compatibility(old, new, upgrades=True)
        assert not result.backward
        assert result.reasons[0] == "backward: key type changed from int to str"

    def test_read_problems_fields_flag(self) -> None:
        """read_problems(fields=False) checks the key only."""
        old = schema(("a", "int", True), key="int")
        new = schema(("b", "int", True), version=2)
        assert len(read_problems(old, new)) == 2
        assert read_problems(old, new, fields=False) == ["key type changed from int to str"]

    @given(spec=struct_specs())
    def test_a_schema_is_compatible_with_itself(self, spec: StructSpec) -> None:
        """Any schema is compatible both ways with itself."""
        s = schema_of(spec.type, version=1)
        assert compatibility(s, s).ok

    @given(old=struct_specs(), new=struct_specs())
    def test_directions_mirror(self, old: StructSpec, new: StructSpec) -> None:
        """backward of (old, new) is forward of (new, old), and reasons match the verdict."""
        a, b = schema_of(old.type, version=1), schema_of(new.type, version=2)
        there, back = compatibility(a, b), compatibility(b, a)
        assert there.backward == back.forward
        assert there.forward == back.backward
        assert bool(there.reasons) == (not there.ok)
