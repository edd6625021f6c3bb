"""Print the runtime dependency versions one ``make test-deps`` venv tested.

Run by .ci/test-deps with that venv's interpreter, which has ``packaging``
(pytest depends on it). Usage: ``dep_report.py lowest|newest NAMES-FILE STATUS``
where NAMES-FILE lists the runtime dependencies (constraints/lowest.txt) and
STATUS is pytest's exit status.

- lowest: each installed version must be the floor pyproject.toml declares,
  or constraints/lowest.txt and pyproject.toml disagree and the run proved
  nothing about the floors: exit 1.
- newest: a version past its declared cap is reported; when the suite passed
  with it, the cap can be lifted.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version


def runtime_names(path: Path) -> list[str]:
    """The names pinned in a constraints file, in its order."""
    names = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            names.append(canonicalize_name(Requirement(line).name))
    return names


def declared() -> dict[str, Requirement]:
    """warmstart's own requirements (core and extras) by canonical name.

    A package named by several extras (starlette: its own extra, and the
    test and bench tools) is declared by the core, else by the extra of its
    own name (the range users get), else by the first extra naming it.
    """
    found: dict[str, Requirement] = {}
    for text in metadata.requires("warmstart") or []:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        marker = str(requirement.marker or "")
        own = not marker or marker.replace("'", '"') == f'extra == "{name}"'
        if own or name not in found:
            found[name] = requirement
    return found


def spelled(requirement: Requirement) -> str:
    """The range as pyproject.toml writes it: floor, exclusions, cap."""
    order = {">=": 0, "!=": 1, "<": 2}
    specs = sorted(requirement.specifier, key=lambda s: (order.get(s.operator, 3), str(s)))
    return ",".join(str(s) for s in specs)


def main(mode: str, names_file: str, status: int) -> int:
    requirements = declared()
    problems = 0
    print(f"{mode}: Python {sys.version.split()[0]}, pytest exit status {status}")
    for name in runtime_names(Path(names_file)):
        requirement = requirements[name]
        installed = Version(metadata.version(name))
        floors = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
        caps = [s for s in requirement.specifier if s.operator == "<"]
        note = ""
        if mode == "lowest" and floors and installed != floors[0]:
            note = f"NOT the declared floor {floors[0]}: lowest.txt and pyproject.toml disagree"
            problems += 1
        elif mode == "newest" and any(not cap.contains(installed) for cap in caps):
            cap = ",".join(str(c) for c in caps)
            if status == 0:
                note = f"past the cap {cap} and passes: the cap can be lifted"
            else:
                note = f"past the cap {cap}"
        print(f"  {name:<18} {installed!s:<10} declared {spelled(requirement):<24} {note}".rstrip())
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
