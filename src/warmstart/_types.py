"""What a contract's value type is, and what of it can be kept exactly.

Private to the core (``contract`` uses it). A contract's type is any type
msgspec encodes and decodes: Structs, dataclasses, attrs classes,
``TypedDict``, ``NamedTuple``, builtins and unions of those (and pydantic v2
models, through :mod:`warmstart._pydantic`). Three questions are answered
here, once, when the contract is defined:

* the **family** of the type: whether it has named fields (tolerant reading
  by field name, per-field evolution) and how it is laid out on the wire
  (``map`` by field name; ``array`` by position for ``NamedTuple``; a plain
  ``value`` for everything else);
* whether the deterministic encoder can **ever** encode it: msgspec's
  ``order="deterministic"`` msgpack encoder writes only dicts with ``str``
  keys and sorts sets, so ``dict[int, ...]`` anywhere, or a set of values
  that do not sort, is refused at definition, naming the field;
* what a **value** must be to come back as itself: its type, exactly (a
  subclass of the declared Struct would come back as the base class), and,
  where the type says ``Any``, only data msgpack gives back unchanged (a
  tuple, set, Decimal or naive datetime would come back as a list or str).

>>> import dataclasses
>>> @dataclasses.dataclass
... class Row:
...     id: int
...     tags: dict[int, str]
>>> try:
...     analyse(Row, "rows")
... except ContractError as exc:
...     print(str(exc).split(" (")[0])
Expected types the deterministic encoder can write, got dict[int, str] at Row.tags
"""

from __future__ import annotations

import datetime
import sys
from collections.abc import Callable
from typing import Any

import msgspec
import msgspec.inspect as mi

from warmstart.errors import ContractError
from warmstart.schema import kind_of, render

__all__ = ("Family", "analyse", "describe")

#: Why a value cannot be kept exactly, or None when it can.
Check = Callable[[Any], "str | None"]


class Family(msgspec.Struct, frozen=True):
    """What :func:`analyse` found out about one value type."""

    #: struct, dataclass, attrs, typeddict, namedtuple, pydantic or value.
    kind: str
    #: The types a value may have at the top (a subclass would not come back);
    #: empty for an ``Any`` at the top, where ``check`` decides.
    exact: frozenset[type]
    #: Why a value cannot come back exactly (``Any`` positions), or None.
    check: Check | None
    #: The type whose fields the writer schema lists (None: no named fields).
    fields_type: Any = None

    @property
    def named(self) -> bool:
        """Values have named fields: evolution is per field."""
        return self.kind != "value"


def describe(tp: Any) -> str:
    """A short name of a type for messages: ``Quote``, ``list[int]``, ``int | None``."""
    if isinstance(tp, type) and not getattr(tp, "__args__", None):
        return tp.__name__
    return repr(tp).replace("typing.", "")


def analyse(tp: Any, contract: str) -> Family:
    """Decide the family of ``tp`` and check that it can be kept; raise ContractError if not."""
    pydantic = _pydantic_model(tp)
    if pydantic is not None:
        from warmstart import _pydantic  # noqa: PLC0415 - only for pydantic models

        shadow = _pydantic.shadow_struct(tp, contract)
        _check_encodable(shadow, contract, describe(tp))
        return Family("pydantic", frozenset({tp}), _checker(mi.type_info(shadow)), shadow)
    if isinstance(tp, msgspec.Struct) or not _is_type_form(tp):
        msg = f"Expected a type msgspec can encode, got {tp!r} - in contract {contract!r}"
        raise ContractError(msg)
    try:
        info = mi.type_info(tp)
    except (TypeError, ValueError) as exc:
        msg = (
            f"Expected a type msgspec can encode, got {describe(tp)} ({exc}) "
            f"- in contract {contract!r}"
        )
        raise ContractError(msg) from None
    if isinstance(info, mi.StructType):
        _check_struct_options(info.cls, contract)
    _check_encodable(tp, contract, describe(tp))
    kind = kind_of(info)
    fields_type = info.cls if kind != "value" else None  # type: ignore[attr-defined]
    exact = _exact(info)
    if object in exact:  # an Any at the top (msgspec reads int | Any as Any)
        exact = frozenset()
    return Family(kind, exact, _checker(info), fields_type)


def _is_type_form(tp: Any) -> bool:
    return isinstance(tp, type) or hasattr(tp, "__origin__") or type(tp).__name__ == "UnionType"


def _pydantic_model(tp: Any) -> Any:
    # Never import pydantic: a model class exists only once pydantic is loaded.
    module = sys.modules.get("pydantic")
    base = getattr(module, "BaseModel", None)
    if base is not None and isinstance(tp, type) and issubclass(tp, base):
        return tp
    return None


#: Struct options that defeat reading by field name: positional encoding, fields
#: left out when equal to their default (a writer schema would list them as
#: written), and refusing the fields a newer writer added.
_INTOLERANT = ("array_like", "omit_defaults", "forbid_unknown_fields")


def _check_struct_options(cls: type[msgspec.Struct], contract: str) -> None:
    config = cls.__struct_config__
    options = [f"{option}=True" for option in _INTOLERANT if getattr(config, option)]
    if options:
        msg = (
            f"Expected a Struct read by field name, got {cls.__name__} with "
            f"{', '.join(options)} (tolerant reading needs every field written by name "
            f"and unknown ones ignored) - in contract {contract!r}"
        )
        raise ContractError(msg)


_NONE = type(None)
#: The top-level types of each scalar kind (an int is read back as a float).
_SCALAR_TYPES: dict[type[mi.Type], tuple[type, ...]] = {
    mi.NoneType: (_NONE,),
    mi.BoolType: (bool,),
    mi.IntType: (int,),
    mi.FloatType: (float, int),
    mi.StrType: (str,),
    mi.BytesType: (bytes,),
    mi.ByteArrayType: (bytearray,),
    mi.DateTimeType: (datetime.datetime,),
    mi.DateType: (datetime.date,),
    mi.TimeType: (datetime.time,),
    mi.TimeDeltaType: (datetime.timedelta,),
    mi.ListType: (list,),
    mi.SetType: (set,),
    mi.FrozenSetType: (frozenset,),
    mi.VarTupleType: (tuple,),
    mi.TupleType: (tuple,),
    mi.DictType: (dict,),
    mi.TypedDictType: (dict,),
}


def _exact(info: mi.Type) -> frozenset[type]:
    """The types a top-level value may have and still come back as that type."""
    if isinstance(info, mi.UnionType):
        return frozenset().union(*(_exact(member) for member in info.types))
    if isinstance(info, (mi.StructType, mi.DataclassType, mi.NamedTupleType, mi.EnumType)):
        return frozenset({info.cls})
    if isinstance(info, mi.LiteralType):
        return frozenset(type(v) for v in info.values)
    if isinstance(info, mi.UUIDType):
        import uuid  # noqa: PLC0415 - rare; uuid is not loaded by warmstart otherwise

        return frozenset({uuid.UUID})
    if isinstance(info, mi.DecimalType):
        import decimal  # noqa: PLC0415

        return frozenset({decimal.Decimal})
    return frozenset(_SCALAR_TYPES.get(type(info), (object,)))


# -- what the deterministic encoder can never write ----------------------------

_SORTABLE = (mi.IntType, mi.FloatType, mi.StrType, mi.BytesType, mi.DateTimeType, mi.DateType)


def _check_encodable(tp: Any, contract: str, name: str) -> None:
    problem = _unencodable(mi.type_info(tp), name, set())
    if problem is not None:
        msg = (
            f"Expected types the deterministic encoder can write, got {problem} "
            f"- in contract {contract!r}"
        )
        raise ContractError(msg)


def _unencodable(info: mi.Type, where: str, seen: set[int]) -> str | None:  # noqa: C901, PLR0911, PLR0912
    """Where and why ``info`` can never be encoded with ``order="deterministic"``."""
    if isinstance(info, mi.CustomType):
        return f"{describe(info.cls)} at {where} (msgspec cannot encode it)"
    if isinstance(info, mi.DictType):
        if not _str_keys(info.key_type):
            return (
                f"dict[{_name(info.key_type)}, {_name(info.value_type)}] at {where} "
                "(it writes only dicts with str keys: use dict[str, ...] or a list of pairs)"
            )
        return _unencodable(info.value_type, f"{where}[...]", seen)
    if isinstance(info, (mi.SetType, mi.FrozenSetType)):
        if not _sortable(info.item_type):
            return (
                f"a set of {_name(info.item_type)} at {where} (it sorts sets, and those "
                "values do not sort: use a list)"
            )
        return _unencodable(info.item_type, f"{where}[...]", seen)
    if isinstance(info, (mi.ListType, mi.VarTupleType)):
        return _unencodable(info.item_type, f"{where}[...]", seen)
    if isinstance(info, mi.TupleType):
        for i, item in enumerate(info.item_types):
            problem = _unencodable(item, f"{where}[{i}]", seen)
            if problem:
                return problem
        return None
    if isinstance(info, mi.UnionType):
        for member in info.types:
            problem = _unencodable(member, where, seen)
            if problem:
                return problem
        return None
    if isinstance(info, (mi.StructType, mi.DataclassType, mi.TypedDictType, mi.NamedTupleType)):
        if id(info.cls) in seen:
            return None
        seen.add(id(info.cls))
        for f in info.fields:
            problem = _unencodable(f.type, f"{info.cls.__name__}.{f.name}", seen)
            if problem:
                return problem
    return None


def _str_keys(info: mi.Type) -> bool:
    if isinstance(info, mi.StrType):
        return True
    if isinstance(info, mi.LiteralType):
        return all(isinstance(v, str) for v in info.values)
    if isinstance(info, mi.EnumType):
        return issubclass(info.cls, str)
    return False


def _sortable(info: mi.Type) -> bool:
    if isinstance(info, _SORTABLE):
        return True
    if isinstance(info, mi.UnionType):
        # Numbers compare with each other; anything else mixed does not.
        return all(isinstance(m, (mi.IntType, mi.FloatType)) for m in info.types)
    if isinstance(info, mi.TupleType):
        return all(_sortable(i) for i in info.item_types)
    if isinstance(info, mi.LiteralType):
        return len({type(v) for v in info.values}) == 1
    if isinstance(info, mi.StructType):
        return bool(info.cls.__struct_config__.order)
    return False


def _name(info: mi.Type) -> str:
    return render(info)


# -- Any-typed positions: only data msgpack gives back unchanged ------------------

_PLAIN = frozenset({str, int, float, bool, bytes, _NONE})
_STR = frozenset({str})


def plain_problem(value: Any) -> str | None:
    """Why ``value`` (in an ``Any`` position) would not come back as itself, or None."""
    tp = type(value)
    if tp in _PLAIN:
        return None
    if tp is list:
        items: Any = value
    elif tp is dict:
        if not set(map(type, value)) <= _STR:
            bad = next(k for k in value if type(k) is not str)
            return f"a dict key of type {type(bad).__name__} (only str keys can be written)"
        items = value.values()
    elif tp is datetime.datetime and value.tzinfo is datetime.timezone.utc:
        return None
    else:
        return _changed(tp)
    for item in items:
        if type(item) not in _PLAIN:
            problem = plain_problem(item)
            if problem is not None:
                return problem
    return None


def _changed(tp: type) -> str:
    back = {
        tuple: "list",
        set: "list",
        frozenset: "list",
        datetime.datetime: "str (only UTC datetimes come back as datetime)",
        datetime.date: "str",
        bytearray: "bytes",
    }.get(tp, "plain data (dict, list or str)")
    return f"a {tp.__name__} (it would come back as {back})"


def _checker(info: mi.Type, seen: frozenset[int] = frozenset()) -> Check | None:  # noqa: C901, PLR0911, PLR0912
    """A check of the ``Any`` positions under ``info`` (None: it has none)."""
    if isinstance(info, mi.AnyType):
        return plain_problem
    if isinstance(info, (mi.StructType, mi.DataclassType, mi.TypedDictType, mi.NamedTupleType)):
        if id(info.cls) in seen:
            return None  # a recursive type: its other fields are checked
        inner = seen | {id(info.cls)}
        parts = [
            (f.name, i, c) for i, f in enumerate(info.fields) if (c := _checker(f.type, inner))
        ]
        if not parts:
            return None
        if isinstance(info, mi.TypedDictType):
            return _fields(parts, lambda v, name, _: v.get(name))
        if isinstance(info, mi.NamedTupleType):
            return _fields(parts, lambda v, _, i: v[i])
        return _fields(parts, lambda v, name, _: getattr(v, name, None))
    if isinstance(info, (mi.ListType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)):
        item = _checker(info.item_type, seen)
        return None if item is None else _items(item)
    if isinstance(info, mi.DictType):
        item = _checker(info.value_type, seen)
        return None if item is None else lambda v: _items(item)(v.values())
    if isinstance(info, mi.TupleType):
        checks = [(i, c) for i, t in enumerate(info.item_types) if (c := _checker(t, seen))]
        if not checks:
            return None
        return lambda v: next((p for i, c in checks if (p := c(v[i])) is not None), None)
    if isinstance(info, mi.UnionType):
        members = [(m, c) for m in info.types if (c := _checker(m, seen))]
        if not members:
            return None
        if any(isinstance(m, mi.AnyType) for m, _ in members):
            return plain_problem
        by_type = {t: c for m, c in members for t in _exact(m)}
        return _dispatch(by_type)
    return None


def _dispatch(by_type: dict[type, Check]) -> Check:
    """In a union, the check of the member the value is of."""

    def check(value: Any) -> str | None:
        inner = by_type.get(type(value))
        return None if inner is None else inner(value)

    return check


def _fields(parts: list[tuple[str, int, Check]], get: Callable[[Any, str, int], Any]) -> Check:
    def check(value: Any) -> str | None:
        for name, i, inner in parts:
            problem = inner(get(value, name, i))
            if problem is not None:
                return f"{problem} in field {name!r}"
        return None

    return check


def _items(inner: Check) -> Check:
    def check(values: Any) -> str | None:
        for item in values:
            problem = inner(item)
            if problem is not None:
                return problem
        return None

    return check
