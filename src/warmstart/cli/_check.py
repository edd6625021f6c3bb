"""The ``warmstart check`` command: would a new release read the stored state?

Private; used by ``cli``. ``warmstart check STORE NAMESPACE --contracts
module:attr ...`` runs :func:`warmstart.conformance.check`: the stored head
read through the given contracts, upgraders included, without writing
anything (STORE may be an export archive). Each ``module:attr`` names a
``Contract``, a ``@warm`` class (its contracts), or a list, tuple or dict of
those (a dict maps section names to contracts). Exit 1 when an entry would
be dropped or a section would not be readable (or, with
``--require-rollback``, when the release in service could not read what the
new one writes).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from warmstart.cli import _format as fmt
from warmstart.cli._common import EXIT_OK, EXIT_PROBLEM, UsageError, secret
from warmstart.contract import Contract

__all__ = ()


def add_check(command: Callable[[str, Callable[[argparse.Namespace], int], str], Any]) -> None:
    """Add ``check`` to the command's parser (``command`` makes a subcommand's parser)."""
    p = command("check", cmd_check, "dry-run a new release's contracts on stored state")
    p.add_argument("path", metavar="STORE", help="a store directory, or an export archive")
    p.add_argument("namespace", metavar="NAMESPACE")
    p.add_argument(
        "--contracts",
        nargs="+",
        required=True,
        metavar="MODULE:ATTR",
        help="the new release's contracts: a Contract, a @warm class, or a list or dict of them",
    )
    p.add_argument("--generation", type=int, metavar="N", help="default: the head")
    p.add_argument(
        "--require-rollback",
        action="store_true",
        help="also exit 1 when the release in service could not read what the new one writes",
    )


def cmd_check(args: argparse.Namespace) -> int:
    from warmstart.conformance import check  # noqa: PLC0415 - loaded on first use

    contracts: dict[int, Contract[Any]] = {}
    by_section: dict[str, Contract[Any]] = {}
    for spec in args.contracts:
        found, sections = _contracts(spec)
        if sections:
            by_section.update(sections)
        else:
            contracts.update((id(c), c) for c in found)
    report = check(
        args.path,
        args.namespace,
        contracts.values(),
        sections=by_section,
        generation=args.generation,
        secret=secret(args),
    )
    failed = not report.ok or (args.require_rollback and not report.rollback_ok)
    if args.json:
        fmt.emit_json(
            {
                **fmt.builtins(report),
                "ok": report.ok,
                "rollback_ok": report.rollback_ok,
                "exit": EXIT_PROBLEM if failed else EXIT_OK,
            }
        )
        return EXIT_PROBLEM if failed else EXIT_OK
    print(
        f"check of {report.namespace!r} generation {report.generation} in {report.source} "
        f"against {fmt.plural(len(contracts) + len(by_section), 'contract')}"
    )
    rows = [
        [
            s.section,
            s.contract,
            f"v{s.stored_version}",
            "-" if s.reader_version is None else f"v{s.reader_version}",
            "-" if s.write_version is None else f"v{s.write_version}",
            s.entries,
            s.readable,
            s.upgraded,
            s.dropped,
            _yes_no(s.rollback, s.rollback_after_switch),
            s.status.upper() if s.status in ("dropped", "unreadable") else s.status,
        ]
        for s in report.sections
    ]
    headers = ["section", "contract", "stored", "reads", "writes", "entries", "readable"]
    headers += ["upgraded", "dropped", "rollback", "status"]
    print(fmt.table(headers, rows, numeric={5, 6, 7, 8}))
    for s in report.sections:
        for reason in s.reasons:
            print(f"  {s.section}: {reason}")
        if s.unwritable:
            print(f"  {s.section}: {s.unwritable} entries the new release cannot write back")
        for reason in s.rollback_reasons:
            print(f"  {s.section}: rollback: {reason}")
    for name in report.unused:
        print(f"note: no stored section was written by contract {name!r}")
    verdict = "ok" if not failed else "FAIL"
    no_rollback = sum(
        1 for s in report.sections if s.rollback is False or s.rollback_after_switch is False
    )
    print(
        f"{verdict}: {fmt.plural(_count(report, 'dropped'), 'section')} would drop entries, "
        f"{_count(report, 'unreadable')} would start cold, "
        f"{no_rollback} could not be read after a rollback"
    )
    return EXIT_PROBLEM if failed else EXIT_OK


def _count(report: Any, status: str) -> int:
    return sum(1 for s in report.sections if s.status == status)


def _yes_no(now: bool | None, after: bool | None) -> str:
    if now is None:
        return "-"
    text = "yes" if now else "NO"
    if after is not None:
        text += f"/{'yes' if after else 'NO'} after switch"
    return text


def _contracts(spec: str) -> tuple[list[Contract[Any]], dict[str, Contract[Any]]]:
    """The contracts ``module:attr`` names (and sections, for a dict)."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        msg = f"Expected --contracts module:attribute, got {spec!r}"
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
    return _flatten(obj, spec)


def _flatten(obj: Any, spec: str) -> tuple[list[Contract[Any]], dict[str, Contract[Any]]]:
    if isinstance(obj, Contract):
        return [obj], {}
    warm = getattr(obj, "__warm__", None)
    if isinstance(obj, type) and warm is not None:
        contracts = [st.contract for st in warm.states.values() if st.contract is not None]
        return [c for c in contracts if not getattr(c, "name", "").startswith("warmstart.")], {}
    if isinstance(obj, Mapping):
        sections = {str(k): v for k, v in obj.items() if isinstance(v, Contract)}
        if len(sections) != len(obj):
            msg = f"Expected a dict of section name -> Contract at {spec!r}"
            raise UsageError(msg)
        return list(sections.values()), sections
    if isinstance(obj, (list, tuple, set, frozenset)):
        found: list[Contract[Any]] = []
        for item in obj:
            contracts, _ = _flatten(item, spec)
            found += contracts
        return found, {}
    msg = (
        f"Expected a warmstart.Contract, a @warm class, or a list or dict of them at {spec!r}, "
        f"got {type(obj).__name__}"
    )
    raise UsageError(msg)
