"""Pydantic v2 models as contract values (the ``pydantic`` extra).

Private to the core. Imported only when a contract's type is a pydantic
model, so pydantic is already loaded: ``import warmstart`` never imports it.

msgspec does not know pydantic models, so a model is described to it by a
*shadow* Struct with the same fields (nested models replaced by their own
shadows): the writer schema, the check that every field can be encoded and
the ``Any`` checks are derived from it. Values are written as maps of their
fields (``model.__dict__``) and read back through ``Model.model_validate``,
whose lax mode gives tuples, sets, Decimals and enums back their declared
types.
"""

from __future__ import annotations

import types
import typing
from typing import Any

import msgspec
import pydantic

from warmstart.errors import ContractError

__all__ = ("dec_hook", "enc_hook", "shadow_struct")

_SHADOWS: dict[type, type[msgspec.Struct]] = {}


def shadow_struct(model: type[pydantic.BaseModel], contract: str) -> type[msgspec.Struct]:
    """A Struct with ``model``'s fields, for schemas and checks (never for values)."""
    shadow = _SHADOWS.get(model)
    if shadow is not None:
        return shadow
    if model.model_config.get("extra") == "allow":
        msg = (
            f"Expected a pydantic model without extra='allow', got {model.__name__} "
            f"(extra fields are not written) - in contract {contract!r}"
        )
        raise ContractError(msg)
    fields: list[Any] = []
    for name, info in model.model_fields.items():
        annotation = _replace(info.annotation, contract)
        if info.is_required():
            fields.append((name, annotation))
        else:
            fields.append((name, annotation, None))
    shadow = msgspec.defstruct(model.__name__, fields, kw_only=True)
    _SHADOWS[model] = shadow
    return shadow


def _replace(annotation: Any, contract: str) -> Any:
    """``annotation`` with every pydantic model in it replaced by its shadow Struct."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return shadow_struct(annotation, contract)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is None or not args:
        return annotation
    if origin is typing.Annotated:
        return _replace(args[0], contract)
    if origin is typing.Literal:
        return annotation
    replaced = tuple(_replace(a, contract) for a in args)
    if origin in (typing.Union, types.UnionType):
        return typing.Union[replaced]  # noqa: UP007 - built from a tuple
    return origin[replaced]


def enc_hook(obj: Any) -> Any:
    """Encode a model as the map of its fields."""
    if isinstance(obj, pydantic.BaseModel):
        return obj.__dict__
    msg = f"Expected a value msgspec or pydantic can encode, got {type(obj).__name__}"
    raise TypeError(msg)


def dec_hook(tp: Any, obj: Any) -> Any:
    """Validate a decoded map into its model (pydantic's lax mode restores declared types)."""
    if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
        return tp.model_validate(obj)
    msg = f"Expected a pydantic model type, got {tp!r}"
    raise TypeError(msg)
