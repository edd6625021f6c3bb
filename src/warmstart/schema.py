"""Writer schemas and the compatibility check between two of them.

Every section a checkpoint holds carries the schema of the contract that wrote
it: field names (as encoded), a canonical type string, and whether each field
is required. That makes a checkpoint self-describing (a tool can show its
fields without the service's code) and lets a reader decide *from the two
schemas*, not by trying, whether it can read data written by another release.

>>> import msgspec
>>> class V1(msgspec.Struct):
...     symbol: str
>>> class V2(msgspec.Struct):
...     symbol: str
...     currency: str = "USD"
>>> result = compatibility(schema_of(V1, version=1), schema_of(V2, version=2))
>>> result.backward, result.forward
(True, True)
"""

from __future__ import annotations

from typing import Any

import msgspec
import msgspec.inspect as mi

__all__ = ("Compatibility", "FieldSchema", "Schema", "schema_of")  # compatibility: top level


def __dir__() -> tuple[str, ...]:
    return __all__


class FieldSchema(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """One field of a writer schema: its wire name, type and requiredness."""

    name: str
    type: str
    required: bool


class Schema(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """The schema a section was written with (stored in every manifest)."""

    contract: str
    version: int
    key: str
    fields: tuple[FieldSchema, ...]
    #: Field names still read but no longer written with a meaningful value.
    deprecated: tuple[str, ...] = ()
    #: The value family: ``struct``, ``dataclass``, ``attrs``, ``typeddict`` and
    #: ``pydantic`` are maps by field name on the wire, ``namedtuple`` is an
    #: array by position, ``value`` is anything without named fields.
    kind: str = "struct"
    #: For ``kind="value"``: the whole value type, rendered (``list[int]``).
    value: str = ""

    def field(self, name: str) -> FieldSchema | None:
        """Return the field with wire name ``name``, or None."""
        for f in self.fields:
            if f.name == name:
                return f
        return None


class Compatibility(msgspec.Struct, frozen=True):
    """Whether data can flow between two schema versions, and why not.

    ``backward``: a reader of ``new`` reads data written with ``old`` (an
    upgrade deploy). ``forward``: a reader of ``old`` reads data written with
    ``new`` (a rollback, or replicas still on the old release).
    """

    backward: bool
    forward: bool
    reasons: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Both directions are compatible."""
        return self.backward and self.forward


_SCALARS: dict[type[mi.Type], str] = {
    mi.AnyType: "any",
    mi.NoneType: "none",
    mi.BoolType: "bool",
    mi.IntType: "int",
    mi.FloatType: "float",
    mi.StrType: "str",
    mi.BytesType: "bytes",
    mi.ByteArrayType: "bytearray",
    mi.MemoryViewType: "memoryview",
    mi.DateTimeType: "datetime",
    mi.DateType: "date",
    mi.TimeType: "time",
    mi.TimeDeltaType: "timedelta",
    mi.UUIDType: "uuid",
    mi.DecimalType: "decimal",
    mi.RawType: "raw",
}


#: Kinds whose values are maps keyed by field name: one reads another's data.
MAP_KINDS = frozenset({"struct", "dataclass", "attrs", "typeddict", "pydantic"})


def _render(  # noqa: PLR0911 - one return per type family
    t: mi.Type, outer: tuple[type, ...] = (), *, tags: bool = False
) -> str:
    """Render an inspected type as a canonical, release-independent string.

    ``outer`` holds the classes of the enclosing structured types: a recursive
    type (a tree node listing its children) refers back to one of them, and is
    rendered ``ref[n]`` (n levels up) instead of recursing forever. ``tags``
    adds a tagged Struct's tag (``struct[type='quote']{...}``): whole-value
    schemas (new in 0.2) show it, field types keep the 0.1 rendering so that
    stored schemas still compare equal.
    """
    name = _SCALARS.get(type(t))
    if name is not None:
        return name
    if isinstance(t, (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)):
        kind = {
            mi.ListType: "list",
            mi.SetType: "set",
            mi.FrozenSetType: "frozenset",
            # "tuple[int, ...]": "tuple[int]" is a tuple of exactly one int.
            mi.VarTupleType: "tuple",
        }
        rest = ", ..." if isinstance(t, mi.VarTupleType) else ""
        return f"{kind[type(t)]}[{_render(t.item_type, outer, tags=tags)}{rest}]"
    if isinstance(t, mi.TupleType):
        return f"tuple[{', '.join(_render(i, outer, tags=tags) for i in t.item_types)}]"
    if isinstance(t, mi.DictType):
        key, value = _render(t.key_type, outer, tags=tags), _render(t.value_type, outer, tags=tags)
        return f"dict[{key}, {value}]"
    if isinstance(t, mi.UnionType):
        return " | ".join(sorted(_render(i, outer, tags=tags) for i in t.types))
    if isinstance(t, mi.LiteralType):
        return f"literal[{', '.join(sorted(repr(v) for v in t.values))}]"
    if isinstance(t, mi.EnumType):
        return f"enum[{', '.join(sorted(repr(m.value) for m in t.cls))}]"
    if isinstance(t, (mi.StructType, mi.DataclassType, mi.TypedDictType, mi.NamedTupleType)):
        if t.cls in outer:
            # By depth, not by class name: renaming a class must not change it.
            return f"ref[{len(outer) - 1 - outer.index(t.cls)}]"
        inner = ", ".join(
            f"{f.encode_name if hasattr(f, 'encode_name') else f.name}: "
            f"{_render(f.type, (*outer, t.cls), tags=tags)}"
            for f in t.fields
        )
        tag = getattr(t, "tag", None) if tags else None
        return f"struct{{{inner}}}" if tag is None else f"struct[{t.tag_field}={tag!r}]{{{inner}}}"  # type: ignore[union-attr]
    return "any"


_NAMED = (mi.StructType, mi.DataclassType, mi.TypedDictType, mi.NamedTupleType)


def _field_schemas(info: mi.Type) -> tuple[FieldSchema, ...]:
    assert isinstance(info, _NAMED)
    return tuple(
        FieldSchema(
            name=getattr(f, "encode_name", f.name),
            type=_render(f.type, (info.cls,)),
            required=f.required,
        )
        for f in info.fields
    )


def render(info: mi.Type) -> str:
    """Render an inspected type (``msgspec.inspect.type_info``) canonically."""
    return _render(info, tags=True)


def render_type(tp: Any) -> str:
    """Render any type msgspec understands (a key type, say) canonically."""
    return _render(mi.type_info(tp))


def kind_of(info: mi.Type) -> str:
    """The family of an inspected type (see :attr:`Schema.kind`)."""
    if isinstance(info, mi.StructType):
        return "struct"
    if isinstance(info, mi.DataclassType):
        return "attrs" if hasattr(info.cls, "__attrs_attrs__") else "dataclass"
    if isinstance(info, mi.TypedDictType):
        return "typeddict"
    if isinstance(info, mi.NamedTupleType):
        return "namedtuple"
    return "value"


def schema_of(
    value_type: Any,
    *,
    version: int,
    name: str | None = None,
    key: Any = str,
    deprecated: tuple[str, ...] = (),
    kind: str | None = None,
) -> Schema:
    """Derive the writer schema of a value type (with ``msgspec.inspect``).

    A type with named fields (Struct, dataclass, attrs class, ``TypedDict``,
    ``NamedTuple``) lists them; any other type (``int``, ``list[str]``, a
    union) is recorded whole, as ``value``. ``kind`` overrides the family
    (``"pydantic"``: ``value_type`` is then the model's equivalent Struct).
    """
    info = mi.type_info(value_type)
    found = kind_of(info)
    named = found != "value"
    return Schema(
        contract=name or str(getattr(value_type, "__name__", "value")),
        version=version,
        key=render_type(key),
        fields=_field_schemas(info) if named else (),
        deprecated=deprecated,
        kind=kind or found,
        value="" if named else render(info),
    )


# Reading a value written as the first type into the second never fails.
# (Not bool -> int: msgspec refuses a bool where an int is expected.)
_WIDENINGS = {("int", "float")}


def _members(rendered: str) -> list[str]:
    """Split a rendered type at its top-level ``|`` (not inside brackets)."""
    members: list[str] = []
    depth = start = 0
    for i, char in enumerate(rendered):
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif depth == 0 and rendered.startswith(" | ", i):
            members.append(rendered[start:i])
            start = i + 3
    members.append(rendered[start:])
    return members


def type_readable(written: str, reader: str) -> bool:
    """Whether a value written as type ``written`` decodes as type ``reader``."""
    if reader in (written, "any") or (written, reader) in _WIDENINGS:
        return True
    readers = _members(reader)
    # A union reader accepts each member it lists, widened (adding "| None" is
    # safe, and so is int -> float | None).
    return all(
        any(r in (w, "any") or (w, r) in _WIDENINGS for r in readers) for w in _members(written)
    )


def read_problems(writer: Schema, reader: Schema, *, fields: bool = True) -> list[str]:  # noqa: C901
    """Why a reader of ``reader`` cannot decode data written with ``writer``.

    Decided from the two schemas: every field the reader requires must be
    written, and every field both know must be of a readable type. Fields the
    reader does not know are ignored (tolerant reader). With ``fields=False``
    only the key type is checked (upgraders reshape values, never keys).
    """
    problems: list[str] = []
    if not type_readable(writer.key, reader.key):
        problems.append(f"key type changed from {writer.key} to {reader.key}")
    if not fields:
        return problems
    if _shape(writer) != _shape(reader):
        problems.append(
            f"values changed from {writer.kind} (v{writer.version}) to {reader.kind} "
            f"(v{reader.version}): {_shape(writer)} and {_shape(reader)} are read differently"
        )
        return problems
    if reader.kind == "value":
        if not type_readable(writer.value, reader.value):
            problems.append(
                f"value type changed from {writer.value} (v{writer.version}) "
                f"to {reader.value} (v{reader.version})"
            )
        return problems
    if reader.kind == "namedtuple":
        return problems + _positional_problems(writer, reader)
    for field in reader.fields:
        written = writer.field(field.name)
        if written is None:
            if field.required:
                problems.append(
                    f"field {field.name!r} is required by v{reader.version} "
                    f"but not written by v{writer.version}"
                )
        elif not type_readable(written.type, field.type):
            problems.append(
                f"field {field.name!r} changed type from {written.type} (v{writer.version}) "
                f"to {field.type} (v{reader.version})"
            )
    return problems


def _shape(schema: Schema) -> str:
    return (
        "a map by field name"
        if schema.kind in MAP_KINDS
        else ("an array by position" if schema.kind == "namedtuple" else "a whole value")
    )


def _positional_problems(writer: Schema, reader: Schema) -> list[str]:
    """NamedTuples are arrays: fields match by position (a rename changes nothing on the wire).

    A newer writer's extra trailing fields are cut off by the reader; fields
    the writer lacks must be optional for the reader.
    """
    problems: list[str] = []
    for i, field in enumerate(reader.fields):
        if i >= len(writer.fields):
            if field.required:
                problems.append(
                    f"field {field.name!r} (position {i}) is required by v{reader.version} "
                    f"but not written by v{writer.version}"
                )
        elif not type_readable(writer.fields[i].type, field.type):
            problems.append(
                f"field {field.name!r} (position {i}) changed type from "
                f"{writer.fields[i].type} (v{writer.version}) to {field.type} (v{reader.version})"
            )
    return problems


def compatibility(old: Schema, new: Schema, *, upgrades: bool = False) -> Compatibility:
    """Say whether each direction between two schemas is compatible, and why.

    Args:
        old: the schema in service now (or stored in a checkpoint).
        new: the schema about to be deployed.
        upgrades: the new contract has an upgrader chain from ``old``'s version;
            then a new reader can read old data whatever the fields, since the
            upgraders produce the new shape (but not a changed key type:
            upgraders see values only).

    Rules, in the spirit of Avro/Protobuf resolution: an added optional field
    is compatible both ways; an added required field is backward compatible
    only with an upgrader (old data lacks it) and stays forward compatible
    (the old reader ignores it); removing a field the old reader requires
    breaks forward; a changed type breaks a direction unless it is a widening
    there (int to float, X to X | None).

    A :class:`~warmstart.Contract` reads an older version only through its
    upgrader chain (a version bump may change what a field means, not only its
    shape), so ``backward`` without ``upgrades`` says whether an identity
    upgrader (``lambda old: old``) would do.
    """
    given: list[object] = [old, new]
    for one in given:
        if not isinstance(one, Schema):
            msg = (
                f"Expected schemas (a contract's .write_schema, or a stored one), "
                f"got {type(one).__name__}"
            )
            raise TypeError(msg)
    reasons: list[str] = []
    back = read_problems(old, new, fields=not upgrades)
    reasons.extend(f"backward: {p}" for p in back)
    fwd = read_problems(new, old)
    reasons.extend(f"forward: {p}" for p in fwd)
    return Compatibility(backward=not back, forward=not fwd, reasons=tuple(reasons))
