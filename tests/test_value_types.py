"""Contracts over every value type msgspec encodes (issue 16).

Dataclasses, attrs classes, TypedDicts and NamedTuples are generated whole
(like the Structs of tests/strategies.py) and round-trip, evolve (added,
removed and renamed fields through upgraders) and roll back; builtins and
unions round-trip and evolve as whole values; pydantic v2 models go through
the optional extra. Values that would not come back as themselves (a Struct
subclass, a tuple in an ``Any`` field) are refused at save, and types the
deterministic encoder can never write are refused at definition. Example
counts follow the Hypothesis profile (``HYPOTHESIS_PROFILE=slow`` for more).
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import typing
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NamedTuple, NotRequired, TypedDict

import attrs
import msgspec
import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

import warmstart
from strategies import KINDS_BY_NAME, FieldSpec, StructSpec, ints, keys_of, struct_specs
from warmstart import Contract, ContractError, EncodeError, IncompatibleVersionError

FAMILIES = ("struct", "dataclass", "attrs", "typeddict", "namedtuple")


def make_type(family: str, fields: tuple[FieldSpec, ...]) -> Any:
    """The class of ``family`` with ``fields`` (optional ones take their kind's default)."""
    if family == "struct":
        return StructSpec(fields, _struct(fields)).type
    if family == "dataclass":
        return dataclasses.make_dataclass(
            "Generated",
            [
                (f.name, KINDS_BY_NAME[f.kind].annotation)
                if f.required
                else (
                    f.name,
                    KINDS_BY_NAME[f.kind].annotation,
                    dataclasses.field(default_factory=KINDS_BY_NAME[f.kind].default),
                )
                for f in fields
            ],
            kw_only=True,
        )
    if family == "attrs":
        return attrs.make_class(
            "Generated",
            {
                f.name: attrs.field(type=KINDS_BY_NAME[f.kind].annotation)
                if f.required
                else attrs.field(
                    type=KINDS_BY_NAME[f.kind].annotation, factory=KINDS_BY_NAME[f.kind].default
                )
                for f in fields
            },
            kw_only=True,
        )
    if family == "typeddict":
        return TypedDict(  # type: ignore[operator]
            "Generated",
            {
                f.name: KINDS_BY_NAME[f.kind].annotation
                if f.required
                else NotRequired[KINDS_BY_NAME[f.kind].annotation]
                for f in fields
            },
        )
    # NamedTuple: positional, so the optional fields come last.
    ordered = namedtuple_order(fields)
    nt: Any = NamedTuple(  # type: ignore[misc]
        "Generated", [(f.name, KINDS_BY_NAME[f.kind].annotation) for f in ordered]
    )
    defaults = {f.name: KINDS_BY_NAME[f.kind].default() for f in ordered if not f.required}
    nt.__new__.__defaults__ = tuple(defaults.values()) or None
    nt._field_defaults = defaults
    return nt


def namedtuple_order(fields: tuple[FieldSpec, ...]) -> tuple[FieldSpec, ...]:
    return tuple(f for f in fields if f.required) + tuple(f for f in fields if not f.required)


def _struct(fields: tuple[FieldSpec, ...]) -> Any:
    from strategies import make_struct

    return make_struct(fields)


def build(family: str, tp: Any, data: dict[str, Any]) -> Any:
    """A value of ``tp`` from field data (absent optional fields take defaults)."""
    if family == "typeddict":
        return dict(data)
    return tp(**data)


def fields_of(family: str, value: Any) -> dict[str, Any]:
    if family == "typeddict":
        return dict(value)
    if family == "namedtuple":
        return value._asdict()  # type: ignore[no-any-return]
    if family == "struct":
        return msgspec.structs.asdict(value)
    if family == "attrs":
        return attrs.asdict(value, recurse=False)
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}


def field_data(fields: tuple[FieldSpec, ...]) -> st.SearchStrategy[dict[str, Any]]:
    """Field data with every required field and some optional ones."""
    required = {f.name: KINDS_BY_NAME[f.kind].values for f in fields if f.required}
    optional = {f.name: KINDS_BY_NAME[f.kind].values for f in fields if not f.required}
    return st.fixed_dictionaries(required, optional=optional)


def complete(family: str, fields: tuple[FieldSpec, ...], data: dict[str, Any]) -> dict[str, Any]:
    """What a reader of ``fields`` holds for ``data``: absent optional fields defaulted."""
    known = {f.name: f for f in fields}
    out = {name: value for name, value in data.items() if name in known}
    if family != "typeddict":
        for f in fields:
            out.setdefault(f.name, KINDS_BY_NAME[f.kind].default())
    return out


def widen(
    data: dict[str, Any], writer: tuple[FieldSpec, ...], reader: tuple[FieldSpec, ...]
) -> Any:
    kinds = {f.name: f.kind for f in writer}
    out = dict(data)
    for f in reader:
        if f.name in out and kinds.get(f.name) == "int" and f.kind in ("float", "float | none"):
            out[f.name] = float(out[f.name])
    return out


family_and_spec = st.tuples(st.sampled_from(FAMILIES), struct_specs())
key_strategy = keys_of(str)


class TestRoundTrip:
    @given(case=family_and_spec, data=st.data())
    def test_decode_inverts_encode(self, case: Any, data: st.DataObject) -> None:
        """Every generated dataclass, attrs class, TypedDict and NamedTuple comes back equal."""
        family, spec = case
        tp = make_type(family, spec.fields)
        contract = Contract("generated", tp)
        rows = data.draw(st.lists(field_data(spec.fields), max_size=5))
        values = [build(family, tp, row) for row in rows]
        keys = [str(i) for i in range(len(values))]
        decoded = contract.decode_entries(
            contract.encode_entries(keys, values), contract.write_schema
        )
        assert decoded.values == values
        assert all(type(v) is type(w) for v, w in zip(decoded.values, values))
        assert contract.schema.kind == family

    @given(case=family_and_spec, data=st.data())
    def test_same_values_same_bytes(self, case: Any, data: st.DataObject) -> None:
        """Encoding is deterministic for every family (equal values, equal chunks)."""
        family, spec = case
        tp = make_type(family, spec.fields)
        contract = Contract("generated", tp)
        rows = data.draw(st.lists(field_data(spec.fields), max_size=4))
        first = contract.encode_entries(
            list(map(str, range(len(rows)))), [build(family, tp, r) for r in rows]
        )
        again = contract.encode_entries(
            list(map(str, range(len(rows)))), [build(family, tp, r) for r in rows]
        )
        assert first == again


def evolve(
    fields: tuple[FieldSpec, ...], draw: st.DrawFn
) -> tuple[tuple[FieldSpec, ...], Callable[[dict[str, Any]], dict[str, Any]], dict[str, str]]:
    """v2 of ``fields``: one field renamed, one removed, one optional added; and the upgrader."""
    names = [f.name for f in fields]
    renamed = draw(st.sampled_from(names))
    rest = [n for n in names if n != renamed]
    removed = draw(st.sampled_from(rest)) if rest else None
    new_fields = [
        FieldSpec(f"{f.name}_new", f.kind, f.required) if f.name == renamed else f
        for f in fields
        if f.name != removed
    ]
    added = draw(st.sampled_from(list(KINDS_BY_NAME)))
    new_fields.append(FieldSpec("added", added, False))

    def upgrade(old: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in old.items() if k not in (renamed, removed)}
        if renamed in old:
            out[f"{renamed}_new"] = old[renamed]
        return out

    return tuple(new_fields), upgrade, {renamed: f"{renamed}_new"}


class TestEvolution:
    @given(case=family_and_spec, data=st.data())
    def test_upgraders_rename_remove_and_add(self, case: Any, data: st.DataObject) -> None:
        """v2 upgrades v1 data: renamed fields keep their values, removed go, added default."""
        family, spec = case
        v1 = make_type(family, spec.fields)
        fields2, upgrade, _ = evolve(spec.fields, data.draw)
        v2 = make_type(family, fields2)
        old = Contract("evolving", v1, version=1)
        new = Contract("evolving", v2, version=2, upgraders={1: upgrade})
        rows = data.draw(st.lists(field_data(spec.fields), min_size=1, max_size=4))
        payload = old.encode_entries(
            list(map(str, range(len(rows)))), [build(family, v1, r) for r in rows]
        )
        assert new.plan(old.write_schema) == "upgrade"
        decoded = new.decode_entries(payload, old.write_schema)
        assert decoded.dropped == 0
        assert decoded.upgraded == len(rows)
        for value, row in zip(decoded.values, rows):
            assert type(value) is (dict if family == "typeddict" else v2)
            written = complete(family, spec.fields, row)
            expected = complete(family, fields2, upgrade(written))
            assert fields_of(family, value) == expected

    @given(case=family_and_spec, data=st.data())
    def test_rollback_reads_a_newer_writer(self, case: Any, data: st.DataObject) -> None:
        """An old reader reads a newer release that added optional fields (ignored or cut off)."""
        family, spec = case
        v1 = make_type(family, spec.fields)
        extra = data.draw(st.sampled_from(list(KINDS_BY_NAME)))
        fields2 = (*spec.fields, FieldSpec("zz_added", extra, False))
        v2 = make_type(family, fields2)
        old = Contract("evolving", v1, version=1)
        new = Contract("evolving", v2, version=2, upgraders={1: dict})
        rows = data.draw(st.lists(field_data(fields2), min_size=1, max_size=4))
        payload = new.encode_entries(
            list(map(str, range(len(rows)))), [build(family, v2, r) for r in rows]
        )
        assert warmstart.compatibility(old.write_schema, new.write_schema, upgrades=True).forward
        decoded = old.decode_entries(payload, new.write_schema)
        assert decoded.dropped == 0
        for value, row in zip(decoded.values, rows):
            assert type(value) is (dict if family == "typeddict" else v1)
            assert fields_of(family, value) == complete(family, spec.fields, row)

    @pytest.mark.parametrize("family", FAMILIES)
    def test_rollback_over_a_removed_required_field_is_refused(self, family: str) -> None:
        """A newer writer without a field the old reader requires is incompatible (schemas say)."""
        v1 = make_type(family, (FieldSpec("a", "int", True), FieldSpec("b", "str", True)))
        v2 = make_type(family, (FieldSpec("a", "int", True),))
        old = Contract("evolving", v1, version=1)
        new = Contract("evolving", v2, version=2, upgraders={1: dict})
        with pytest.raises(IncompatibleVersionError, match="'b'"):
            old.plan(new.write_schema)

    def test_families_with_maps_read_each_other(self) -> None:
        """A Struct, a dataclass and an attrs class with the same fields share the wire format."""

        class AsStruct(msgspec.Struct):
            a: int
            b: str = ""

        @dataclasses.dataclass
        class AsDataclass:
            a: int

        written = Contract("same", AsStruct)
        read = Contract("same", AsDataclass)
        payload = written.encode_entries(["k"], [AsStruct(1, "x")])
        assert read.decode_entries(payload, written.write_schema).values == [AsDataclass(1)]

    def test_a_namedtuple_does_not_read_a_map(self) -> None:
        """An array by position and a map by name are not the same data: incompatible."""

        class Pair(NamedTuple):
            a: int

        @dataclasses.dataclass
        class Mapped:
            a: int

        with pytest.raises(IncompatibleVersionError, match="map by field name"):
            Contract("same", Pair).plan(Contract("same", Mapped).write_schema)

    def test_namedtuple_upgraders_see_fields_by_name(self) -> None:
        """Upgraders of a NamedTuple get a dict keyed by the writer's field names."""

        class V1(NamedTuple):
            price: int

        class V2(NamedTuple):
            cents: int
            currency: str = "USD"

        seen: list[Any] = []

        def upgrade(old: dict[str, Any]) -> dict[str, Any]:
            seen.append(old)
            return {"cents": old["price"] * 100}

        old = Contract("p", V1)
        new = Contract("p", V2, version=2, upgraders={1: upgrade})
        decoded = new.decode_entries(old.encode_entries(["k"], [V1(3)]), old.write_schema)
        assert seen == [{"price": 3}]
        assert decoded.values == [V2(300, "USD")]


BUILTINS: list[tuple[Any, st.SearchStrategy[Any]]] = [
    (str, st.text(max_size=8)),
    (bytes, st.binary(max_size=8)),
    (int, st.integers(-(2**63), 2**64 - 1)),
    (float, st.floats(allow_nan=False)),
    (bool, st.booleans()),
    (list[int], st.lists(st.integers(-5, 5), max_size=4)),
    (dict[str, int], st.dictionaries(st.text(max_size=4), ints, max_size=4)),
    (tuple[int, str], st.tuples(ints, st.text(max_size=4))),
    (tuple[int, ...], st.lists(ints, max_size=4).map(tuple)),
    (int | None, st.none() | ints),
    (str | list[str], st.text(max_size=4) | st.lists(st.text(max_size=4), max_size=3)),
    (dict[str, Any], st.dictionaries(st.text(max_size=4), st.none() | ints | st.text(max_size=4))),
    (datetime.datetime, st.datetimes(timezones=st.just(datetime.timezone.utc))),
    (decimal.Decimal, st.decimals(allow_nan=False, allow_infinity=False, places=2)),
]


class TestWholeValues:
    @pytest.mark.parametrize(("tp", "values"), BUILTINS, ids=[repr(t) for t, _ in BUILTINS])
    @given(data=st.data())
    def test_builtins_and_unions_round_trip(
        self, tp: Any, values: Any, data: st.DataObject
    ) -> None:
        """Builtins and unions come back equal and of their declared type."""
        contract = Contract("value", tp)
        batch = data.draw(st.lists(values, max_size=5))
        decoded = contract.decode_entries(
            contract.encode_entries(list(map(str, range(len(batch)))), batch), contract.write_schema
        )
        assert decoded.values == batch
        assert [type(v) for v in decoded.values] == [type(v) for v in batch]
        assert contract.schema.kind == "value"

    def test_evolution_of_a_whole_value_is_a_version_bump(self) -> None:
        """Without named fields, a changed type needs an upgrader over the plain value."""
        v1 = Contract("scores", list[int])
        v2 = Contract(
            "scores", dict[str, int], version=2, upgraders={1: lambda old: {"sum": sum(old)}}
        )
        payload = v1.encode_entries(["a"], [[1, 2, 3]])
        assert v2.decode_entries(payload, v1.write_schema).values == [{"sum": 6}]
        with pytest.raises(IncompatibleVersionError, match="value type changed"):
            v1.plan(v2.write_schema)

    def test_widening_a_whole_value_is_backward_compatible(self) -> None:
        """int -> int | None: the new reader reads old data, as for a field."""
        v1 = Contract("count", int)
        v2 = Contract("count", int | None, version=2, upgraders={1: lambda old: old})
        verdict = warmstart.compatibility(v1.write_schema, v2.write_schema, upgrades=True)
        assert verdict.backward
        assert not verdict.forward  # an int reader cannot read a None
        payload = v1.encode_entries(["a"], [3])
        assert v2.decode_entries(payload, v1.write_schema).values == [3]

    def test_tagged_union_of_structs_round_trips_each_member(self) -> None:
        """A hierarchy kept exactly is a tagged union: each value comes back as its own class."""

        class Base(msgspec.Struct, tag=True):
            id: int

        class Special(Base, tag=True):
            extra: str = ""

        contract = Contract("union", Base | Special)
        values = [Base(1), Special(2, "x")]
        decoded = contract.decode_entries(
            contract.encode_entries(["a", "b"], values), contract.write_schema
        )
        assert decoded.values == values
        assert [type(v) for v in decoded.values] == [Base, Special]
        assert "struct[type='Special']" in contract.schema.value

    def test_repr_names_the_type(self) -> None:
        """repr shows unions and generics as written."""
        assert repr(Contract("v", int | None)) == "Contract('v', int | None, key=str, version=1)"
        assert repr(Contract("v", list[int])) == "Contract('v', list[int], key=str, version=1)"


class Quote(msgspec.Struct):
    symbol: str
    price: float


class SpecialQuote(Quote):
    venue: str = ""


class Meta(msgspec.Struct):
    symbol: str
    meta: dict[str, Any]


@dataclasses.dataclass
class Row:
    id: int
    extra: Any = None


class TestExactValues:
    def test_a_struct_subclass_is_refused_at_save(self) -> None:
        """It would come back as the base class without its extra fields: refused, saying so."""
        contract = Contract("quote", Quote)
        with pytest.raises(
            EncodeError, match="got SpecialQuote \\(a subclass would come back as its base class\\)"
        ):
            contract.check_values([Quote("a", 1), SpecialQuote("b", 2, "x")])

    def test_a_subclass_is_refused_by_the_store(self, tmp_path: Path) -> None:
        """Store.save refuses the section before anything is written."""
        with warmstart.Store(tmp_path / "s") as store:
            with pytest.raises(EncodeError, match="subclass"):
                store.save("ns", {"q": (Contract("quote", Quote), {"b": SpecialQuote("b", 2)})})
            assert store.generations("ns") == []

    @pytest.mark.parametrize(
        ("value", "match"),
        [
            ((1, 2), "a tuple \\(it would come back as list\\) in field 'meta'"),
            ({1, 2}, "a set"),
            (decimal.Decimal("1.5"), "a Decimal"),
            (datetime.datetime(2024, 1, 1), "only UTC datetimes"),  # noqa: DTZ001 - naive on purpose
            (datetime.date(2024, 1, 1), "a date"),
            ({"nested": [1, (2,)]}, "a tuple"),
            ({1: "int key"}, "a dict key of type int"),
            (Quote("a", 1), "a Quote"),
        ],
    )
    def test_any_fields_hold_only_data_that_comes_back(self, value: Any, match: str) -> None:
        """In an Any-typed position, what msgpack would hand back changed is refused at save."""
        contract = Contract("meta", Meta)
        with pytest.raises(EncodeError, match=match):
            contract.check_values([Meta("a", {"x": value})])

    @pytest.mark.parametrize(
        "value",
        [
            None,
            1,
            1.5,
            "s",
            b"b",
            True,
            [1, "a", None],
            {"k": {"j": [1.5]}},
            datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
        ],
    )
    def test_plain_data_in_any_fields_round_trips(self, value: Any) -> None:
        """JSON-like data (and UTC datetimes) in Any fields come back equal, of the same types."""
        contract = Contract("row", Row)
        decoded = contract.decode_entries(
            contract.encode_entries(["k"], [Row(1, value)]), contract.write_schema
        )
        assert decoded.values == [Row(1, value)]
        assert type(decoded.values[0].extra) is type(value)

    def test_admits_is_the_same_check(self) -> None:
        """The per-value form used by memoized functions agrees with check_values."""
        contract = Contract("row", Row)
        assert contract.admits(Row(1, [1]))
        assert not contract.admits(Row(1, (1,)))
        assert not contract.admits(SpecialQuote("a", 1))

    def test_int_is_read_back_as_float_for_a_float_contract(self) -> None:
        """An int saved under float comes back as the declared type (float), equal."""
        contract = Contract("f", float)
        decoded = contract.decode_entries(
            contract.encode_entries(["a"], [3]), contract.write_schema
        )
        assert decoded.values == [3.0]
        assert type(decoded.values[0]) is float

    @pytest.mark.parametrize(
        ("tp", "value"), [(int, True), (str, b"x"), (list[int], (1, 2)), (dict[str, int], [])]
    )
    def test_other_top_level_types_are_refused(self, tp: Any, value: Any) -> None:
        """A bool under int, a tuple under list: refused rather than changed."""
        with pytest.raises(EncodeError, match="Expected values of type"):
            Contract("v", tp).check_values([value])


@dataclasses.dataclass
class Inner:
    counts: dict[int, int]


class Outer(TypedDict):
    items: list[Inner]


class Color(enum.Enum):
    RED = 1


class TestDefinitionChecks:
    @pytest.mark.parametrize(
        ("tp", "match"),
        [
            (dict[int, str], "dict\\[int, str\\] at dict\\[int, str\\]"),
            (list[dict[bytes, int]], "dict\\[bytes, int\\]"),
            (set[int | str], "a set of int \\| str"),
            (set[Quote], "a set of struct"),
        ],
    )
    def test_unencodable_types_are_refused(self, tp: Any, match: str) -> None:
        """The deterministic encoder writes str-keyed dicts and sortable sets only: refused."""
        with pytest.raises(ContractError, match=match):
            Contract("bad", tp)

    def test_the_field_is_named(self) -> None:
        """A Struct with a dict[int, ...] field is refused naming the field and why."""

        class Prices(msgspec.Struct):
            symbol: str
            by_day: dict[int, float]

        with pytest.raises(
            ContractError, match=r"at Prices.by_day \(it writes only dicts with str keys"
        ):
            Contract("prices", Prices)

    def test_nested_fields_are_checked(self) -> None:
        """A dataclass inside a TypedDict inside a list is checked too."""
        with pytest.raises(ContractError, match=r"Inner\.counts"):
            Contract("nested", Outer)

    @pytest.mark.parametrize(
        "tp",
        [
            dict[Literal["a", "b"], int],
            set[str],
            frozenset[int],
            set[tuple[int, str]],
            dict[str, Color],
        ],
    )
    def test_encodable_types_are_accepted(self, tp: Any) -> None:
        """str-like keys and sortable sets are fine."""
        Contract("ok", tp)

    def test_a_plain_class_is_refused(self) -> None:
        """msgspec cannot encode an arbitrary class: said at definition."""

        class Plain:
            pass

        with pytest.raises(ContractError, match="Plain at Plain \\(msgspec cannot encode it\\)"):
            Contract("plain", Plain)


class Address(pydantic.BaseModel):
    city: str
    zip: str = ""


class Customer(pydantic.BaseModel):
    id: int
    name: str
    tags: tuple[str, ...] = ()
    since: datetime.date | None = None
    address: Address | None = None


class Labelled(pydantic.BaseModel):
    name: typing.Annotated[str, pydantic.Field(min_length=1)]
    level: Literal["low", "high"] = "low"
    scores: list[typing.Annotated[int, pydantic.Field(ge=0)]] = []


class TestPydantic:
    def test_models_round_trip(self) -> None:
        """Models, nested models, tuples and dates come back equal and of their declared types."""
        contract = Contract("customer", Customer)
        values = [
            Customer(id=1, name="a"),
            Customer(
                id=2,
                name="b",
                tags=("x", "y"),
                since=datetime.date(2024, 5, 1),
                address=Address(city="Oslo"),
            ),
        ]
        decoded = contract.decode_entries(
            contract.encode_entries(["1", "2"], values), contract.write_schema
        )
        assert decoded.values == values
        assert type(decoded.values[1].tags) is tuple
        assert type(decoded.values[1].address) is Address
        assert contract.schema.kind == "pydantic"
        assert [f.name for f in contract.schema.fields] == [
            "id",
            "name",
            "tags",
            "since",
            "address",
        ]

    def test_an_invalid_entry_is_dropped_and_counted(self) -> None:
        """pydantic's validation error drops one entry, not the chunk."""
        contract = Contract("customer", Customer)
        raw = msgspec.msgpack.encode(
            (0, ["1", "2"], [{"id": 1, "name": "a"}, {"id": "x", "name": "b"}], [], [])
        )
        decoded = contract.decode_entries(raw, contract.write_schema)
        assert decoded.values == [Customer(id=1, name="a")]
        assert decoded.dropped == 1

    def test_upgraders_and_rollback(self) -> None:
        """Models evolve by field like Structs: upgraders forward, unknown fields ignored back."""

        class V1(pydantic.BaseModel):
            id: int
            full_name: str

        class V2(pydantic.BaseModel):
            id: int
            name: str
            vip: bool = False

        old = Contract("c", V1)
        new = Contract(
            "c", V2, version=2, upgraders={1: lambda d: {"id": d["id"], "name": d["full_name"]}}
        )
        up = new.decode_entries(
            old.encode_entries(["k"], [V1(id=1, full_name="Ann")]), old.write_schema
        )
        assert up.values == [V2(id=1, name="Ann")]
        with pytest.raises(IncompatibleVersionError, match="'full_name'"):
            old.plan(new.write_schema)

    def test_annotated_and_literal_fields(self) -> None:
        """Annotated constraints and Literals are described to msgspec and round-trip."""
        contract = Contract("tagged", Labelled)
        value = Labelled(name="ab", level="high", scores=[1])
        decoded = contract.decode_entries(contract.encode_entries(["k"], [value]), contract.schema)
        assert decoded.values == [value]
        assert contract.schema.field("level").type == "literal['high', 'low']"  # type: ignore[union-attr]

    def test_extra_allow_is_refused(self) -> None:
        """Extra fields are not written: a model that keeps them is refused at definition."""

        class Loose(pydantic.BaseModel, extra="allow"):
            id: int

        with pytest.raises(ContractError, match="extra='allow'"):
            Contract("loose", Loose)

    def test_a_submodel_is_refused_at_save(self) -> None:
        """As for Structs: a subclass would come back as the declared model."""

        class Gold(Customer):
            level: int = 1

        with pytest.raises(EncodeError, match="subclass"):
            Contract("customer", Customer).check_values([Gold(id=1, name="a")])


class TestThroughTheStore:
    @pytest.mark.parametrize("family", FAMILIES)
    def test_saved_and_loaded(self, family: str, tmp_path: Path) -> None:
        """Each family saves and loads through a real store, in saved order."""
        fields = (FieldSpec("a", "int", True), FieldSpec("b", "list[int]", False))
        tp = make_type(family, fields)
        contract = Contract("rows", tp)
        data = {str(i): build(family, tp, {"a": i, "b": [i]}) for i in range(50)}
        with warmstart.Store(tmp_path / "s") as store:
            store.save("ns", {"rows": (contract, data)})
            with store.load("ns") as snapshot:
                assert snapshot.read("rows", contract).entries == data

    def test_a_memo_key_tuple_round_trips(self, tmp_path: Path) -> None:
        """Tuple keys with bool, float and None elements come back equal (they still hit)."""
        contract = Contract("k", int, key=tuple[str, bool, float, int | None])
        data = {("a", True, 1.5, None): 1, ("b", False, 2.0, 3): 2}
        with warmstart.Store(tmp_path / "s") as store:
            store.save("ns", {"k": (contract, data)})
            with store.load("ns") as snapshot:
                assert snapshot.read("k", contract).entries == data


def test_typing_module_names_are_shown_plainly() -> None:
    """Messages show typing.Optional as it reads."""
    assert "typing." not in repr(Contract("v", typing.Optional[int]))  # noqa: UP045


@dataclasses.dataclass
class Settings:
    """A single value kept warm (not a container of entries)."""

    region: str
    limits: list[int]


SETTINGS = Contract("settings", Settings)
ROWS = Contract("rows", Row, key=int)


@warmstart.warm(settings=SETTINGS, rows=ROWS)
class Service:
    def __init__(self) -> None:
        self.settings = Settings("eu", [])
        self.rows: dict[int, Row] = {}


class TestInABoot:
    def test_single_values_and_containers_of_dataclasses(self, tmp_path: Path) -> None:
        """A dataclass attribute comes back set on the object; a dict of them fills the dict."""
        path = tmp_path / "store"
        with warmstart.boot(path, namespace="svc", signals=False):
            service = Service()
            service.settings = Settings("us", [1, 2])
            service.rows[1] = Row(1, {"a": [1]})
        with warmstart.boot(path, namespace="svc", signals=False) as again:
            restored = Service()
        assert again.report.status == "warm"
        assert restored.settings == Settings("us", [1, 2])
        assert restored.rows == {1: Row(1, {"a": [1]})}


class AnyTD(TypedDict):
    id: int
    extra: Any


class AnyNT(NamedTuple):
    id: int
    extra: Any


class Tagged(msgspec.Struct, tag=True):
    payload: Any


class Plain2(msgspec.Struct, tag=True):
    n: int


class Status(str, enum.Enum):
    OK = "ok"


class TestAnyPositions:
    @pytest.mark.parametrize(
        ("tp", "good", "bad"),
        [
            (AnyTD, {"id": 1, "extra": [1]}, {"id": 1, "extra": (1,)}),
            (AnyNT, AnyNT(1, [1]), AnyNT(1, {2})),
            (tuple[int, Any], (1, "x"), (1, (2,))),
            (list[Any], [1, "x", None], [1, (2,)]),
            (Tagged | Plain2, Tagged([1]), Tagged((1,))),
            (int | Any, [1], (1,)),
            (dict[str, list[Any]], {"a": [1]}, {"a": [frozenset()]}),
            (Any, {"a": [1, None]}, {"a": (1,)}),
        ],
        ids=["typeddict", "namedtuple", "tuple", "list", "union", "any-union", "nested", "any"],
    )
    def test_every_container_of_any_is_checked(self, tp: Any, good: Any, bad: Any) -> None:
        """Any positions inside TypedDicts, NamedTuples, tuples, lists and unions are checked."""
        contract = Contract("any", tp)
        contract.check_values([good])
        with pytest.raises(EncodeError, match="would come back as"):
            contract.check_values([bad])

    @pytest.mark.parametrize(
        ("tp", "good", "bad"),
        [
            (Literal["a", "b"], "a", b"a"),
            (uuid.UUID, uuid.uuid4(), str(uuid.uuid4())),
            (decimal.Decimal, decimal.Decimal("1.5"), 1.5),
            (Status, Status.OK, "ok"),
            (dict[Status, int], {Status.OK: 1}, [("ok", 1)]),
        ],
    )
    def test_exact_types_of_scalars(self, tp: Any, good: Any, bad: Any) -> None:
        """Literals, UUIDs, Decimals and enums are kept as their own types."""
        contract = Contract("scalar", tp)
        decoded = contract.decode_entries(contract.encode_entries(["k"], [good]), contract.schema)
        assert decoded.values == [good]
        assert type(decoded.values[0]) is type(good)
        with pytest.raises(EncodeError, match="Expected values of type"):
            contract.check_values([bad])

    def test_a_set_of_literals_of_one_type_sorts(self) -> None:
        """set[Literal['a', 'b']] is fine; mixed literal types are refused."""
        Contract("ok", set[Literal["a", "b"]])
        # msgspec 0.18 sorts the literals itself while inspecting the type, so
        # there the refusal quotes its comparison error (make test-deps, lowest).
        with pytest.raises(ContractError, match=r"do not sort|not supported between"):
            Contract("bad", set[Literal["a", 1]])

    def test_a_generic_msgspec_cannot_inspect_is_refused(self) -> None:
        """An unsupported annotation is a ContractError naming the type."""
        with pytest.raises(ContractError, match="Expected a type msgspec can encode"):
            Contract("bad", list[int, str])  # type: ignore[misc]
