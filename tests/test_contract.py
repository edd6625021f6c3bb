"""Contracts: encoding, tolerant decoding across versions, staged exposure, bad entries."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Annotated, Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import warmstart
from strategies import (
    Entries,
    StructSpec,
    contracts,
    entries,
    read_as,
    reorder_dicts,
    spec_of,
    struct_specs,
)
from warmstart import Contract, compatibility
from warmstart.errors import (
    ContractError,
    DecodeError,
    EncodeError,
    IncompatibleVersionError,
    IntegrityError,
)


def encode(contract: Contract[Any], batch: Entries) -> bytes:
    return contract.encode_entries(
        batch.keys,
        batch.values,
        deleted=batch.deleted,
        sequence=batch.sequence,
        expires=batch.expires,
    )


class TestRoundTrip:
    @given(data=st.data(), case=contracts())
    def test_decode_inverts_encode(self, data: st.DataObject, case: Any) -> None:
        """Generated Structs and keys (str, int, bytes, tuples) come back equal, in order."""
        contract, spec, key_type = case
        batch = data.draw(entries(spec, key_type))
        out = contract.decode_entries(encode(contract, batch), contract.write_schema)
        assert out.keys == batch.keys
        assert out.values == batch.values
        assert out.deleted == batch.deleted
        assert out.sequence == batch.sequence
        assert out.expires == batch.expires
        assert (out.dropped, out.upgraded, out.reasons) == (0, 0, [])

    @given(data=st.data(), case=contracts())
    def test_round_trip_through_frames(self, data: st.DataObject, case: Any) -> None:
        """The chunk path (contract -> codec -> codec -> contract) loses nothing."""
        contract, spec, key_type = case
        batch = data.draw(entries(spec, key_type))
        codec = warmstart.codec.Codec(secret=b"k")
        frame = codec.encode(encode(contract, batch))
        out = contract.decode_entries(codec.decode(frame), contract.write_schema)
        assert list(zip(out.keys, out.values)) == list(zip(batch.keys, batch.values))

    def test_empty_batch(self) -> None:
        """An empty batch is a valid chunk with no entries."""
        contract = Contract("empty", spec_of(("a", "int", True)).type)
        out = contract.decode_entries(contract.encode_entries([], []), contract.schema)
        assert (out.keys, out.values, out.deleted, out.sequence) == ([], [], [], 0)


class TestDeterminism:
    @given(data=st.data(), case=contracts())
    def test_same_entries_same_bytes(self, data: st.DataObject, case: Any) -> None:
        """Equal entries encode to equal bytes, whatever the dicts' insertion order."""
        contract, spec, key_type = case
        batch = data.draw(entries(spec, key_type))
        payload = encode(contract, batch)
        twin = Contract("generated", spec.type, key=key_type)
        reordered = dataclasses.replace(batch, values=[reorder_dicts(v) for v in batch.values])
        assert encode(twin, batch) == payload
        assert encode(contract, reordered) == payload

    @given(data=st.data(), case=contracts())
    def test_decoded_entries_reencode_identically(self, data: st.DataObject, case: Any) -> None:
        """Decoding then encoding again gives the same bytes (sets and dicts are sorted)."""
        contract, spec, key_type = case
        batch = data.draw(entries(spec, key_type))
        payload = encode(contract, batch)
        out = contract.decode_entries(payload, contract.schema)
        again = contract.encode_entries(
            out.keys, out.values, deleted=out.deleted, sequence=out.sequence, expires=out.expires
        )
        assert again == payload

    def test_dict_order_changes_bytes_without_sorting(self) -> None:
        """The reordering the determinism test uses does change a naive encoding."""
        spec = spec_of(("a", "dict[str, int]", True))
        value = spec.type(a={"x": 1, "y": 2})
        naive = msgspec.msgpack.encode(value)
        assert msgspec.msgpack.encode(reorder_dicts(value)) != naive


# -- definitions ----------------------------------------------------------------


class Quote(msgspec.Struct):
    """The record most contract tests use."""

    symbol: str
    price: int


class QuoteV0(msgspec.Struct):
    """An older Quote, for write_type."""

    symbol: str


class NotAStruct:
    """A plain class: msgspec cannot encode it."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol


class ArrayQuote(msgspec.Struct, array_like=True):
    """Encoded positionally: field names are not on the wire."""

    symbol: str


class OmittingQuote(msgspec.Struct, omit_defaults=True):
    """Leaves out fields equal to their default."""

    symbol: str
    currency: str = "USD"


class StrictQuote(msgspec.Struct, forbid_unknown_fields=True):
    """Refuses fields a newer writer adds."""

    symbol: str


def identity(data: dict[str, Any]) -> dict[str, Any]:
    return data


class TestDefinition:
    @pytest.mark.parametrize(
        ("args", "kwargs", "match"),
        [
            (("", Quote), {}, "non-empty contract name"),
            (("q", dict), {}, r"got dict\[any, any\] at dict \(it writes only dicts with str keys"),
            (("q", NotAStruct), {}, "NotAStruct at NotAStruct \\(msgspec cannot encode it\\)"),
            (("q", Quote("a", 1)), {}, "Expected a type msgspec can encode, got Quote"),
            (("q", ArrayQuote), {}, "array_like=True"),
            (("q", OmittingQuote), {}, "omit_defaults=True"),
            (("q", StrictQuote), {}, "forbid_unknown_fields=True"),
            (("q", Quote), {"key": float}, "key type of str, int, bytes or a tuple"),
            (("q", Quote), {"key": bool}, "key type"),
            (("q", Quote), {"key": list[str]}, "key type"),
            (("q", Quote), {"key": tuple[str, ...]}, "key type"),
            (("q", Quote), {"key": tuple[str, list[int]]}, "key type"),
            (("q", Quote), {"key": tuple[()]}, "key type"),
            (("q", Quote), {"key": str | None}, "key type"),
            (("q", Quote), {"version": 0}, "version >= 1, got 0"),
            (("q", Quote), {"version": -3}, "version >= 1, got -3"),
            (("q", Quote), {"version": "2"}, "version >= 1, got '2'"),
            (("q", Quote), {"version": True}, "version >= 1, got True"),
            (("q", Quote), {"version": 2, "upgraders": {0: identity}}, "between 1 and 1, got 0"),
            (("q", Quote), {"version": 2, "upgraders": {2: identity}}, "between 1 and 1, got 2"),
            (("q", Quote), {"upgraders": {1: identity}}, "between 1 and 0, got 1"),
            (("q", Quote), {"version": 2, "upgraders": {"1": identity}}, "got '1'"),
            (("q", Quote), {"version": 3, "upgraders": {True: identity}}, "got True"),
            (("q", Quote), {"version": 2, "upgraders": {1: "identity"}}, "callable upgrader"),
            (("q", Quote), {"version": 2, "write_version": 1}, "downgrader and write_type"),
            (
                ("q", Quote),
                {"version": 2, "write_version": 1, "downgrader": lambda q: QuoteV0(q.symbol)},
                "downgrader and write_type",
            ),
            (
                ("q", Quote),
                {"version": 2, "write_version": 1, "write_type": QuoteV0},
                "write_type only with a downgrader",
            ),
            (
                ("q", Quote),
                {"version": 2, "downgrader": lambda q: q, "write_type": QuoteV0},
                "write_version below 2",
            ),
            (
                ("q", Quote),
                {"version": 2, "write_version": 3, "downgrader": identity, "write_type": QuoteV0},
                "write_version below 2",
            ),
            (("q", Quote), {"version": 2, "write_version": 0}, "between 1 and 2, got 0"),
            (("q", Quote), {"version": 2, "write_version": "1"}, "int write_version, got '1'"),
            (
                ("q", Quote),
                {"version": 2, "write_version": 1, "downgrader": identity, "write_type": dict},
                "only dicts with str keys",
            ),
            (("q", Quote), {"deprecated": ["currency"]}, r"unknown \['currency'\]"),
            (("q", Quote), {"on_invalid": "ignore"}, "'drop' or 'fail', got 'ignore'"),
        ],
    )
    def test_bad_definitions_raise_contract_error(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], match: str
    ) -> None:
        """Each wrong definition raises ContractError (a TypeError) saying what was wrong."""
        with pytest.raises(ContractError, match=match):
            Contract(*args, **kwargs)

    @pytest.mark.parametrize(
        "key",
        [str, int, bytes, tuple[str], tuple[str, int, bytes], tuple[str, float, bool, int | None]],
    )
    def test_good_key_types(self, key: Any) -> None:
        """Scalars and fixed tuples of them are valid keys."""
        assert Contract("q", Quote, key=key).key == key

    def test_repr_names_the_contract(self) -> None:
        """repr shows name, type, key, version and a staged write version."""
        staged = Contract(
            "quote",
            Quote,
            key=tuple[str, int],
            version=2,
            upgraders={1: identity},
            write_version=1,
            downgrader=lambda q: QuoteV0(q.symbol),
            write_type=QuoteV0,
        )
        assert (
            repr(staged)
            == "Contract('quote', Quote, key=tuple[str, int], version=2, write_version=1)"
        )
        assert repr(Contract("quote", Quote)) == "Contract('quote', Quote, key=str, version=1)"

    def test_deprecated_fields_are_recorded(self) -> None:
        """Deprecated fields stay in the schema and are listed as deprecated."""
        contract = Contract("quote", Quote, deprecated=["price"])
        assert contract.schema.deprecated == ("price",)
        assert contract.write_schema.field("price") is not None


# -- encoding errors ------------------------------------------------------------


class TestEncodeErrors:
    @pytest.mark.parametrize(
        ("keys", "values", "expires"),
        [(["a", "b"], [Quote("a", 1)], []), (["a"], [], []), (["a"], [Quote("a", 1)], [1.0, 2.0])],
    )
    def test_mismatched_lengths_are_refused(
        self, keys: list[str], values: list[Quote], expires: list[float]
    ) -> None:
        """A batch whose keys, values and expiries disagree is refused, not written unreadable."""
        with pytest.raises(EncodeError, match="as many keys, values and expiries"):
            Contract("quote", Quote).encode_entries(keys, values, expires=expires)

    def test_unencodable_value(self) -> None:
        """A value msgpack cannot hold raises EncodeError naming the contract."""
        with pytest.raises(EncodeError, match="in contract 'quote'"):
            Contract("quote", Quote).encode_entries(["a"], [Quote("a", object())])  # type: ignore[arg-type]

    def test_key_out_of_msgpack_range(self) -> None:
        """An int key beyond 64 bits raises EncodeError, chained to the cause."""
        with pytest.raises(EncodeError) as info:
            Contract("quote", Quote, key=int).encode_entries([2**64], [Quote("a", 1)])
        assert isinstance(info.value.__cause__, OverflowError)


# -- versions --------------------------------------------------------------------


class QuoteV1(msgspec.Struct):
    """Version 1 of the three-version lineage."""

    symbol: str
    name: str
    price: int
    legacy: int = 0


class QuoteV2(msgspec.Struct):
    """v2: adds a required and an optional field, removes ``legacy``."""

    symbol: str
    name: str
    price: int
    region: str
    currency: str = "USD"


class QuoteV3(msgspec.Struct):
    """v3: renames ``name`` to ``title`` and widens ``price`` to float."""

    symbol: str
    title: str
    price: float
    region: str
    currency: str = "USD"


def up1(old: dict[str, Any]) -> dict[str, Any]:
    return {**{k: v for k, v in old.items() if k != "legacy"}, "region": "eu"}


def up2(old: dict[str, Any]) -> dict[str, Any]:
    new = {k: v for k, v in old.items() if k != "name"}
    return {**new, "title": old["name"]}


LINEAGE = {
    1: Contract("quote", QuoteV1),
    2: Contract("quote", QuoteV2, version=2, upgraders={1: up1}),
    3: Contract("quote", QuoteV3, version=3, upgraders={1: up1, 2: up2}),
}
SAMPLES = {
    1: [QuoteV1("AAPL", "Apple", 189, legacy=7), QuoteV1("MSFT", "Microsoft", 410)],
    2: [QuoteV2("AAPL", "Apple", 189, "us"), QuoteV2("SAP", "SAP", 120, "eu", "EUR")],
    3: [QuoteV3("AAPL", "Apple", 189.5, "us"), QuoteV3("SAP", "SAP", 120.25, "eu", "EUR")],
}
#: What each reader makes of each writer's samples, or None when it cannot read them.
EXPECTED: dict[tuple[int, int], list[Any] | None] = {
    (1, 1): SAMPLES[1],
    (2, 2): SAMPLES[2],
    (3, 3): SAMPLES[3],
    (2, 1): [QuoteV2("AAPL", "Apple", 189, "eu"), QuoteV2("MSFT", "Microsoft", 410, "eu")],
    (3, 1): [QuoteV3("AAPL", "Apple", 189.0, "eu"), QuoteV3("MSFT", "Microsoft", 410.0, "eu")],
    (3, 2): [QuoteV3("AAPL", "Apple", 189.0, "us"), QuoteV3("SAP", "SAP", 120.0, "eu", "EUR")],
    (1, 2): [QuoteV1("AAPL", "Apple", 189), QuoteV1("SAP", "SAP", 120)],  # rollback, tolerant
    (1, 3): None,  # v3 no longer writes name, and price is a float
    (2, 3): None,  # v3 no longer writes name
}


class TestLineage:
    @pytest.mark.parametrize(("reader", "writer"), sorted(EXPECTED))
    def test_reader_reads_writer(self, reader: int, writer: int) -> None:
        """Every reader of the v1-v3 lineage reads every writer, or refuses a rollback clearly."""
        source = LINEAGE[writer]
        payload = source.encode_entries(["a", "b"], SAMPLES[writer])
        expected = EXPECTED[reader, writer]
        if expected is None:
            with pytest.raises(IncompatibleVersionError, match="'name' is required by v"):
                LINEAGE[reader].decode_entries(payload, source.write_schema)
            return
        out = LINEAGE[reader].decode_entries(payload, source.write_schema)
        assert out.values == expected
        assert out.keys == ["a", "b"]
        assert out.dropped == 0
        assert out.upgraded == (2 if writer < reader else 0)

    @pytest.mark.parametrize(("old", "new"), [(1, 2), (2, 3), (1, 3)])
    def test_compatibility_agrees_with_decoding(self, old: int, new: int) -> None:
        """compatibility() predicts each direction exactly as decoding turns out."""
        result = compatibility(LINEAGE[old].schema, LINEAGE[new].schema, upgrades=True)
        assert result.backward == (EXPECTED[new, old] is not None)
        assert result.forward == (EXPECTED[old, new] is not None)
        # Without the upgraders, every step here changes the shape: not backward.
        assert not compatibility(LINEAGE[old].schema, LINEAGE[new].schema).backward

    def test_plan_picks_the_path(self) -> None:
        """Same or newer writers are read typed; older ones through the upgraders."""
        assert LINEAGE[3].plan(LINEAGE[1].schema) == "upgrade"
        assert LINEAGE[2].plan(LINEAGE[2].schema) == "typed"
        assert LINEAGE[1].plan(LINEAGE[2].schema) == "typed"


@dataclasses.dataclass(frozen=True)
class Change:
    """One schema change between an old and a new version of a record."""

    name: str
    old: StructSpec
    new: StructSpec
    upgrader: Callable[[dict[str, Any]], dict[str, Any]]
    #: compatibility(old, new).backward without upgraders: old data fits the new shape.
    backward: bool
    #: compatibility(old, new).forward: the old reader reads new data (rollback).
    forward: bool


def _rename(old: dict[str, Any]) -> dict[str, Any]:
    return {"a": old["a"], "c": old["b"]}


CHANGES = [
    Change(
        "add optional field",
        spec_of(("a", "int", True)),
        spec_of(("a", "int", True), ("b", "str", False)),
        identity,
        backward=True,
        forward=True,
    ),
    Change(
        "add required field with upgrader",
        spec_of(("a", "int", True)),
        spec_of(("a", "int", True), ("b", "str", True)),
        lambda old: {**old, "b": "filled"},
        backward=False,
        forward=True,
    ),
    Change(
        "remove optional field",
        spec_of(("a", "int", True), ("b", "str", False)),
        spec_of(("a", "int", True)),
        identity,
        backward=True,
        forward=True,
    ),
    Change(
        "remove required field",
        spec_of(("a", "int", True), ("b", "str", True)),
        spec_of(("a", "int", True)),
        identity,
        backward=True,
        forward=False,
    ),
    Change(
        "rename via upgrader",
        spec_of(("a", "int", True), ("b", "str", True)),
        spec_of(("a", "int", True), ("c", "str", True)),
        _rename,
        backward=False,
        forward=False,
    ),
    Change(
        "type change int -> float (widening)",
        spec_of(("a", "int", True)),
        spec_of(("a", "float", True)),
        identity,
        backward=True,
        forward=False,
    ),
    Change(
        "type change int -> str",
        spec_of(("a", "int", True)),
        spec_of(("a", "str", True)),
        lambda old: {"a": str(old["a"])},
        backward=False,
        forward=False,
    ),
    Change(
        "type change bool -> int",
        spec_of(("a", "bool", True)),
        spec_of(("a", "int", True)),
        lambda old: {"a": int(old["a"])},
        backward=False,
        forward=False,
    ),
    Change(
        "make optional: float -> float | None",
        spec_of(("a", "float", True)),
        spec_of(("a", "float | none", False)),
        identity,
        backward=True,
        forward=False,
    ),
    Change(
        "widen into a union: int -> float | None",
        spec_of(("a", "int", True)),
        spec_of(("a", "float | none", True)),
        identity,
        backward=True,
        forward=False,
    ),
]


def _versions(change: Change, upgrader: Any) -> tuple[Contract[Any], Contract[Any]]:
    old = Contract("change", change.old.type)
    new = Contract("change", change.new.type, version=2, upgraders={1: upgrader})
    return old, new


class TestCompatibilityMatrix:
    @pytest.mark.parametrize("change", CHANGES, ids=lambda c: c.name)
    def test_compatibility_verdict(self, change: Change) -> None:
        """compatibility() gives the documented verdict for each kind of change."""
        old, new = _versions(change, change.upgrader)
        plain = compatibility(old.schema, new.schema)
        assert (plain.backward, plain.forward) == (change.backward, change.forward)
        assert compatibility(old.schema, new.schema, upgrades=True).backward
        assert bool(plain.reasons) == (not plain.ok)

    @pytest.mark.parametrize("change", CHANGES, ids=lambda c: c.name)
    @settings(max_examples=30)
    @given(data=st.data())
    def test_new_reader_reads_old_data(self, change: Change, data: st.DataObject) -> None:
        """With its upgrader a new reader reads all old entries; with none, compatible ones."""
        old_values = data.draw(st.lists(change.old.values(), min_size=1, max_size=5))
        keys = [f"k{i}" for i in range(len(old_values))]
        old, new = _versions(change, change.upgrader)
        payload = old.encode_entries(keys, old_values)
        out = new.decode_entries(payload, old.write_schema)
        expected = [
            msgspec.convert(change.upgrader(msgspec.to_builtins(v)), change.new.type)
            for v in old_values
        ]
        assert (out.values, out.dropped, out.upgraded) == (expected, 0, len(keys))
        # An identity upgrader stands for "no reshaping": then old data reads
        # exactly when compatibility() says the old shape fits the new one.
        _, plain = _versions(change, identity)
        lax = plain.decode_entries(payload, old.write_schema)
        if change.backward:
            assert lax.dropped == 0
            assert lax.values == [read_as(v, change.old, change.new) for v in old_values]
        else:
            assert lax.dropped > 0

    @pytest.mark.parametrize("change", CHANGES, ids=lambda c: c.name)
    @settings(max_examples=30)
    @given(data=st.data())
    def test_old_reader_reads_new_data(self, change: Change, data: st.DataObject) -> None:
        """An old reader reads new data when every field it requires is written, else refuses."""
        new_values = data.draw(st.lists(change.new.values(), min_size=1, max_size=5))
        keys = [f"k{i}" for i in range(len(new_values))]
        old, new = _versions(change, change.upgrader)
        payload = new.encode_entries(keys, new_values)
        if not change.forward:
            with pytest.raises(IncompatibleVersionError, match="Expected data readable"):
                old.decode_entries(payload, new.write_schema)
            return
        out = old.decode_entries(payload, new.write_schema)
        assert out.dropped == 0
        assert out.values == [read_as(v, change.new, change.old) for v in new_values]

    @settings(max_examples=400)
    @given(old_spec=struct_specs(), new_spec=struct_specs(), data=st.data())
    def test_compatibility_is_sound_for_any_pair(
        self, old_spec: StructSpec, new_spec: StructSpec, data: st.DataObject
    ) -> None:
        """For random pairs of Structs, whatever compatibility() allows decodes losslessly."""
        old = Contract("pair", old_spec.type)
        new = Contract("pair", new_spec.type, version=2, upgraders={1: identity})
        verdict = compatibility(old.schema, new.schema)
        old_values = data.draw(st.lists(old_spec.values(), min_size=1, max_size=3))
        new_values = data.draw(st.lists(new_spec.values(), min_size=1, max_size=3))
        if verdict.backward:
            out = new.decode_entries(
                old.encode_entries([str(i) for i in range(len(old_values))], old_values),
                old.schema,
            )
            assert out.dropped == 0, out.reasons
            assert out.values == [read_as(v, old_spec, new_spec) for v in old_values]
        payload = new.encode_entries([str(i) for i in range(len(new_values))], new_values)
        if verdict.forward:
            out = old.decode_entries(payload, new.schema)
            assert out.dropped == 0, out.reasons
            assert out.values == [read_as(v, new_spec, old_spec) for v in new_values]
        else:
            with pytest.raises(IncompatibleVersionError):
                old.decode_entries(payload, new.schema)


class TestUpgraders:
    def test_missing_step_names_the_gap(self) -> None:
        """Data older than the upgrader chain reaches raises IncompatibleVersionError naming it."""
        contract = Contract("quote", QuoteV3, version=3, upgraders={1: up1})
        payload = LINEAGE[2].encode_entries(["a"], SAMPLES[2][:1])
        with pytest.raises(IncompatibleVersionError, match="missing v2->v3 - in contract 'quote'"):
            contract.decode_entries(payload, LINEAGE[2].schema)
        with pytest.raises(IncompatibleVersionError, match="from v1 to v3, missing v2->v3 -"):
            contract.plan(LINEAGE[1].schema)

    def test_every_missing_step_is_named(self) -> None:
        """With no upgraders at all, the message lists each missing step."""
        contract = Contract("quote", QuoteV3, version=3)
        with pytest.raises(IncompatibleVersionError, match="missing v1->v2, v2->v3"):
            contract.plan(LINEAGE[1].schema)

    def test_steps_run_in_order(self) -> None:
        """v1 data goes through upgrader 1 then upgrader 2, each seeing the previous output."""
        calls: list[tuple[int, dict[str, Any]]] = []

        def step(n: int, fn: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
            def run(data: dict[str, Any]) -> dict[str, Any]:
                calls.append((n, dict(data)))
                return fn(data)

            return run

        contract = Contract(
            "quote", QuoteV3, version=3, upgraders={2: step(2, up2), 1: step(1, up1)}
        )
        contract.decode_entries(LINEAGE[1].encode_entries(["a"], SAMPLES[1][:1]), LINEAGE[1].schema)
        assert [n for n, _ in calls] == [1, 2]
        assert "legacy" in calls[0][1]
        assert calls[1][1]["region"] == "eu"

    def test_other_contract_name_is_refused(self) -> None:
        """Data written by another contract is never read, whatever its fields."""
        other = Contract("price", QuoteV1)
        with pytest.raises(IncompatibleVersionError, match=r"contract 'quote', got .* 'price'"):
            LINEAGE[1].plan(other.schema)

    def test_changed_key_type_is_refused_even_with_upgraders(self) -> None:
        """Upgraders reshape values, not keys: an older writer's int keys cannot be read as str."""
        old = Contract("quote", QuoteV1, key=int)
        payload = old.encode_entries([1, 2], SAMPLES[1])
        with pytest.raises(IncompatibleVersionError, match="key type changed from int to str"):
            LINEAGE[2].decode_entries(payload, old.schema)
        assert not compatibility(old.schema, LINEAGE[2].schema, upgrades=True).backward


# -- staged exposure -----------------------------------------------------------


class Item(msgspec.Struct):
    """v1 of a record; the release in service."""

    sku: str
    name: str


class ItemV2(msgspec.Struct):
    """v2: ``name`` renamed ``title`` (a v1 reader cannot read v2 data)."""

    sku: str
    title: str


ITEM_V1 = Contract("item", Item)
ITEM_V2_STAGED = Contract(
    "item",
    ItemV2,
    version=2,
    upgraders={1: lambda old: {"sku": old["sku"], "title": old["name"]}},
    write_version=1,
    downgrader=lambda new: Item(new.sku, new.title),
    write_type=Item,
)
ITEMS = [ItemV2("A1", "anvil"), ItemV2("B2", "bolt")]


class TestStagedExposure:
    def test_staged_contract_writes_the_old_version(self) -> None:
        """A contract staged at write_version=1 writes data that a v1 reader reads."""
        assert ITEM_V2_STAGED.write_schema == ITEM_V1.schema
        payload = ITEM_V2_STAGED.encode_entries(["a", "b"], ITEMS)
        out = ITEM_V1.decode_entries(payload, ITEM_V2_STAGED.write_schema)
        assert out.values == [Item("A1", "anvil"), Item("B2", "bolt")]

    def test_staged_contract_reads_its_own_writes(self) -> None:
        """The new release reads what it wrote at the old version, through its upgrader."""
        payload = ITEM_V2_STAGED.encode_entries(["a", "b"], ITEMS)
        out = ITEM_V2_STAGED.decode_entries(payload, ITEM_V2_STAGED.write_schema)
        assert out.values == ITEMS

    def test_flipping_writes_the_new_version(self) -> None:
        """with_write_version(None) writes v2, which v1 readers then refuse."""
        flipped = ITEM_V2_STAGED.with_write_version(None)
        assert flipped.write_version == 2
        assert flipped.write_schema == flipped.schema
        payload = flipped.encode_entries(["a", "b"], ITEMS)
        assert flipped.decode_entries(payload, flipped.write_schema).values == ITEMS
        with pytest.raises(IncompatibleVersionError, match="'name' is required"):
            ITEM_V1.decode_entries(payload, flipped.write_schema)

    def test_flip_is_a_copy_and_reversible(self) -> None:
        """Flipping leaves the original staged, and flipping back stages again."""
        flipped = ITEM_V2_STAGED.with_write_version(None)
        assert ITEM_V2_STAGED.write_version == 1
        back = flipped.with_write_version(1)
        assert back.write_schema == ITEM_V1.schema
        assert back.encode_entries(["a"], ITEMS[:1]) == ITEM_V2_STAGED.encode_entries(
            ["a"], ITEMS[:1]
        )

    @pytest.mark.parametrize("target", [0, 3, 5])
    def test_unknown_write_version_is_refused(self, target: int) -> None:
        """Only the contract's version or its staged one can be written."""
        with pytest.raises(ContractError, match=f"the staged one, got {target}"):
            ITEM_V2_STAGED.with_write_version(target)

    def test_failing_downgrader_raises_encode_error(self) -> None:
        """A downgrader that raises fails the encode with EncodeError, chained to its error."""
        # Regression: the downgrader's own exception escaped encode_entries.
        staged = Contract(
            "item",
            ItemV2,
            version=2,
            upgraders={1: identity},
            write_version=1,
            downgrader=lambda new: Item(new.sku, new.missing),  # type: ignore[attr-defined]
            write_type=Item,
        )
        with pytest.raises(
            EncodeError, match="downgrader turns into v1, got AttributeError"
        ) as info:
            staged.encode_entries(["a"], ITEMS[:1])
        assert isinstance(info.value.__cause__, AttributeError)

    def test_unstaged_contract_cannot_stage(self) -> None:
        """A contract without a downgrader cannot start writing an older version."""
        with pytest.raises(ContractError):
            LINEAGE[2].with_write_version(1)


# -- bad entries ----------------------------------------------------------------


class Price(msgspec.Struct):
    """A reader that only accepts non-negative prices."""

    symbol: str
    cents: Annotated[int, msgspec.Meta(ge=0)]


class LaxPrice(msgspec.Struct):
    """A writer that never checked: same schema, looser values."""

    symbol: str
    cents: int


PRICES = Contract("price", Price)
PRICES_FAIL = Contract("price", Price, on_invalid="fail")
LAX = Contract("price", LaxPrice)


class TestInvalidEntries:
    def test_schemas_match(self) -> None:
        """The lax writer's schema is the reader's: constraints are not part of a schema."""
        assert LAX.schema == PRICES.schema

    def test_invalid_entries_are_dropped_and_counted(self) -> None:
        """Entries failing validation are dropped with reasons; the rest keep order and expiry."""
        values = [LaxPrice("a", 1), LaxPrice("b", -1), LaxPrice("c", 3), LaxPrice("d", -4)]
        payload = LAX.encode_entries(
            ["a", "b", "c", "d"], values, expires=[10.0, 20.0, 30.0, 40.0], sequence=9
        )
        out = PRICES.decode_entries(payload, LAX.schema)
        assert out.keys == ["a", "c"]
        assert out.values == [Price("a", 1), Price("c", 3)]
        assert out.expires == [10.0, 30.0]
        assert out.sequence == 9
        assert out.dropped == 2
        assert len(out.reasons) == 2
        assert all(r.startswith("ValidationError: Expected `int` >= 0") for r in out.reasons)

    def test_reasons_are_capped_but_drops_are_not(self) -> None:
        """A section keeps five reasons however many entries it drops."""
        values = [LaxPrice(str(i), -i - 1) for i in range(12)] + [LaxPrice("ok", 1)]
        payload = LAX.encode_entries([v.symbol for v in values], values)
        out = PRICES.decode_entries(payload, LAX.schema)
        assert (out.dropped, len(out.reasons), out.keys) == (12, 5, ["ok"])

    def test_fail_policy_fails_the_section(self) -> None:
        """With on_invalid='fail', one invalid entry raises DecodeError (not IntegrityError)."""
        payload = LAX.encode_entries(["a", "b"], [LaxPrice("a", 1), LaxPrice("b", -1)])
        with pytest.raises(DecodeError, match="Expected valid entries of contract 'price'") as info:
            PRICES_FAIL.decode_entries(payload, LAX.schema)
        assert not isinstance(info.value, IntegrityError)
        assert isinstance(info.value.__cause__, msgspec.ValidationError)

    def test_raising_upgrader_drops_only_that_entry(self) -> None:
        """An upgrader that raises for one entry loses that entry only."""

        def upgrade(old: dict[str, Any]) -> dict[str, Any]:
            if old["name"] == "bad":
                msg = "cannot upgrade this one"
                raise ValueError(msg)
            return {"sku": old["sku"], "title": old["name"].upper()}

        contract = Contract("item", ItemV2, version=2, upgraders={1: upgrade})
        payload = ITEM_V1.encode_entries(
            ["a", "b", "c"], [Item("1", "x"), Item("2", "bad"), Item("3", "z")]
        )
        out = contract.decode_entries(payload, ITEM_V1.schema)
        assert out.values == [ItemV2("1", "X"), ItemV2("3", "Z")]
        assert (out.keys, out.upgraded, out.dropped) == (["a", "c"], 2, 1)
        assert out.reasons == ["ValueError: cannot upgrade this one"]
        failing = Contract("item", ItemV2, version=2, upgraders={1: upgrade}, on_invalid="fail")
        with pytest.raises(DecodeError, match="cannot upgrade this one") as info:
            failing.decode_entries(payload, ITEM_V1.schema)
        assert isinstance(info.value.__cause__, ValueError)

    def test_upgrader_returning_a_bad_shape_drops_the_entry(self) -> None:
        """An upgrader whose output does not convert to the Struct drops that entry."""
        contract = Contract(
            "item",
            ItemV2,
            version=2,
            upgraders={1: lambda old: old if old["sku"] == "2" else {**old, "title": old["name"]}},
        )
        payload = ITEM_V1.encode_entries(["a", "b"], [Item("1", "x"), Item("2", "y")])
        out = contract.decode_entries(payload, ITEM_V1.schema)
        assert (out.keys, out.dropped) == (["a"], 1)
        assert "missing required field `title`" in out.reasons[0]

    def test_invalid_utf8_drops_only_that_entry(self) -> None:
        """A string that is not UTF-8 drops its entry, not the chunk."""
        # Regression: msgspec < 0.23 raises UnicodeDecodeError (which once escaped
        # decode_entries), 0.23 raises DecodeError (which once refused the whole
        # chunk). Either way only the entry is dropped.
        payload = PRICES.encode_entries(["a", "b"], [Price("a", 1), Price("zz", 2)])
        damaged = payload.replace(b"\xa2zz", b"\xa2\xff\xfe")
        assert damaged != payload
        out = PRICES.decode_entries(damaged, PRICES.schema)
        assert (out.keys, out.values, out.dropped) == (["a"], [Price("a", 1)], 1)
        assert "utf-8" in out.reasons[0].lower()
        with pytest.raises(DecodeError):
            PRICES_FAIL.decode_entries(damaged, PRICES.schema)

    def test_invalid_utf8_key_is_dropped(self) -> None:
        """A key that is not UTF-8 drops its entry; a deleted one is dropped from deletions."""
        payload = PRICES.encode_entries(
            ["k1", "k2"], [Price("a", 1), Price("b", 2)], deleted=["k3"]
        )
        damaged = payload.replace(b"\xa2k2", b"\xa2\xc3\x28").replace(b"\xa2k3", b"\xa2\xe2\x82")
        out = PRICES.decode_entries(damaged, PRICES.schema)
        assert (out.keys, out.deleted, out.dropped) == (["k1"], [], 2)

    def test_invalid_deleted_key_is_dropped(self) -> None:
        """A deletion whose key is not of the key type is dropped and counted."""
        payload = msgspec.msgpack.encode((0, [], [], ["ok", 5], []))
        out = PRICES.decode_entries(payload, PRICES.schema)
        assert (out.deleted, out.dropped) == (["ok"], 1)


class TestMalformedChunks:
    @pytest.mark.parametrize(
        "payload",
        [
            b"",
            b"\xc1",
            msgspec.msgpack.encode([0, [], []]),
            msgspec.msgpack.encode(["seq", [], [], [], []]),
            msgspec.msgpack.encode([0, "keys", [], [], []]),
            msgspec.msgpack.encode([0, ["a", "b"], [{"symbol": "a", "cents": 1}], [], []]),
            msgspec.msgpack.encode([0, ["a"], [{"symbol": "a", "cents": 1}], [], [1.0, 2.0]]),
            msgspec.msgpack.encode([0, [], [], [], []]) + b"\x00",
        ],
    )
    @pytest.mark.parametrize(
        ("contract", "writer"),
        [(PRICES, PRICES.schema), (PRICES_FAIL, PRICES.schema), (ITEM_V2_STAGED, ITEM_V1.schema)],
        ids=["typed", "typed-fail", "upgrade"],
    )
    def test_not_a_chunk_raises_integrity_error(
        self, payload: bytes, contract: Contract[Any], writer: warmstart.schema.Schema
    ) -> None:
        """A payload that is not a chunk at all is damage, on the typed and the upgrade path."""
        with pytest.raises(IntegrityError, match="Expected"):
            contract.decode_entries(payload, writer)


class _Paced(msgspec.Struct):
    name: str
    tags: list[int]


@pytest.mark.parametrize("n", [0, 1, 15, 16, 2047, 2048, 2049, 5000, 70_000])
def test_entries_encoded_in_steps_are_the_same_bytes(n: int) -> None:
    """A checkpoint encodes a chunk's keys and values a slice at a time (issue 15): same payload."""
    contract = Contract("paced", _Paced, key=int)
    keys = list(range(n))
    values = [_Paced(f"v{i}", [i, -i]) for i in range(n)]
    steps: list[None] = []
    stepped = contract.encode_entries(
        keys, values, deleted=[-1], sequence=3, step=lambda: steps.append(None)
    )
    assert stepped == contract.encode_entries(keys, values, deleted=[-1], sequence=3)
    assert len(steps) == (0 if n <= 2048 else 2 * -(-n // 2048))  # keys, then values
    assert contract.decode_entries(stepped, contract.write_schema).keys == keys
