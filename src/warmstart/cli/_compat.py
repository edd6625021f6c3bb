"""The ``warmstart compat`` command: can two contract versions read each other's data?

Private; used by ``cli``. Each side is a ``module:attribute`` naming a
``Contract`` or ``Schema``, or a stored ``PATH:NAMESPACE:SECTION`` (the schema
the head generation was written with). Backward means the new side reads what
the old one wrote, forward the reverse; a contract refuses an older version
without a complete chain of upgraders, whatever the fields say, and so does
this check.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

from warmstart.cli import _format as fmt
from warmstart.cli._common import EXIT_OK, EXIT_PROBLEM, UsageError, open_store
from warmstart.contract import Contract
from warmstart.errors import CheckpointNotFoundError
from warmstart.schema import Schema, compatibility

__all__ = ()


class _Side:
    """One side of a compatibility check: what it writes and what it reads."""

    def __init__(
        self, spec: str, writer: Schema, reader: Schema, contract: Contract[Any] | None
    ) -> None:
        self.spec = spec
        self.writer = writer
        self.reader = reader
        self.contract = contract

    @property
    def checked(self) -> Contract[Any] | Schema:
        """What :func:`warmstart.compatibility` is given for this side."""
        return self.contract if self.contract is not None else self.writer

    def describe(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "contract": self.reader.contract,
            "version": self.reader.version,
            "write_version": self.writer.version,
            "key": self.reader.key,
        }


def cmd_compat(args: argparse.Namespace) -> int:
    old = _resolve(args, args.old)
    new = _resolve(args, args.new)
    # The library's own check: what a Contract would decide at a restore.
    result = compatibility(old.checked, new.checked)
    backward = [r.removeprefix("backward: ") for r in result.reasons if r.startswith("backward")]
    forward = [r.removeprefix("forward: ") for r in result.reasons if r.startswith("forward")]
    reasons = list(result.reasons)
    wanted = {"both": (True, True), "backward": (True, False), "forward": (False, True)}
    need_back, need_fwd = wanted[args.direction]
    ok = not (need_back and backward) and not (need_fwd and forward)
    if args.json:
        fmt.emit_json(
            {
                "old": old.describe(),
                "new": new.describe(),
                "backward": not backward,
                "forward": not forward,
                "direction": args.direction,
                "ok": ok,
                "reasons": reasons,
            }
        )
        return EXIT_OK if ok else EXIT_PROBLEM
    for label, side in (("old", old), ("new", new)):
        staged = (
            f", writes v{side.writer.version}" if side.writer.version != side.reader.version else ""
        )
        print(
            f"{label}  {side.reader.contract} v{side.reader.version}{staged} "
            f"(key {side.reader.key})  from {side.spec}"
        )
    for name, problems, what in (
        ("backward", backward, "new reads old data"),
        ("forward ", forward, "old reads new data"),
    ):
        print(f"{name} ({what}): {'INCOMPATIBLE' if problems else 'compatible'}")
        for problem in problems:
            print(f"  - {problem}")
    return EXIT_OK if ok else EXIT_PROBLEM


def _resolve(args: argparse.Namespace, spec: str) -> _Side:
    """A ``module:attribute`` contract or schema, or a stored ``PATH:NAMESPACE:SECTION``."""
    for i, char in enumerate(spec):
        # The store path may itself hold colons: the first prefix that is a store wins.
        if char == ":" and (Path(spec[:i]) / "data.mdb").is_file():
            return _stored_side(args, spec, spec[:i], spec[i + 1 :])
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute or ":" in attribute:
        msg = f"Expected module:attribute or PATH:NAMESPACE:SECTION (PATH a store), got {spec!r}"
        raise UsageError(msg)
    # A console script's sys.path lacks the working directory; a project's
    # contracts are usually importable from there.
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    obj: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            msg = f"Expected attribute {attribute!r} in module {module_name!r}, found none"
            raise UsageError(msg) from None
    if isinstance(obj, Contract):
        return _Side(spec, obj.write_schema, obj.schema, obj)
    if isinstance(obj, Schema):
        return _Side(spec, obj, obj, None)
    msg = f"Expected a warmstart.Contract or Schema at {spec!r}, got {type(obj).__name__}"
    raise UsageError(msg)


def _stored_side(args: argparse.Namespace, spec: str, path: str, rest: str) -> _Side:
    namespace, sep, section = rest.rpartition(":")
    if not sep or not namespace or not section:
        msg = f"Expected PATH:NAMESPACE:SECTION, got {spec!r}"
        raise UsageError(msg)
    with open_store(args, path) as store:
        found = store.manifest(namespace).section(section)
    if found is None:
        msg = (
            f"Expected section {section!r} in the head of namespace {namespace!r} of "
            f"{path!r}, found none"
        )
        raise CheckpointNotFoundError(msg)
    return _Side(spec, found.schema, found.schema, None)
