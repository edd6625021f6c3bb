"""Every Python example in the README and docs/ runs, so the docs cannot rot.

A block that starts with ``# file: docs/examples/...`` shows a file of a
service the integration tests run under a real server
(tests/test_integrations.py): it is not run here, it must be that file,
byte for byte, and every file there must be shown somewhere.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
SKIP = "# not run"
FILE = re.compile(r"^# file: (\S+)\n")
EXAMPLES = ROOT / "docs" / "examples"


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def examples(path: Path) -> list[str]:
    return [
        b
        for b in FENCE.findall(path.read_text())
        if not b.lstrip().startswith(SKIP) and not FILE.match(b)
    ]


def shown_files(path: Path) -> list[tuple[str, str]]:
    """(path, content) of each block of ``path`` that shows a file of docs/examples."""
    found = []
    for block in FENCE.findall(path.read_text()):
        match = FILE.match(block)
        if match:
            found.append((match.group(1), block[match.end() :]))
    return found


@pytest.mark.parametrize("path", documents(), ids=lambda p: str(p.relative_to(ROOT)))
class TestDocumentExamples:
    def test_examples_run(self, path: Path, tmp_path: Path) -> None:
        """The document's Python blocks run in order in one namespace, without error."""
        blocks = examples(path)
        if not blocks:
            pytest.skip("no Python examples in this document")
        namespace: dict[str, object] = {"__name__": f"docs_{path.stem}"}
        cwd = Path.cwd()
        os.chdir(tmp_path)
        try:
            for number, block in enumerate(blocks, 1):
                # dont_inherit: the block is a user's module, not this one (whose
                # postponed annotations would break dataclasses defined in it).
                code = compile(block, f"{path.name} example {number}", "exec", dont_inherit=True)
                exec(code, namespace)  # running our own documentation
        finally:
            os.chdir(cwd)


class TestExampleFiles:
    @pytest.mark.parametrize(
        "path",
        [p for p in documents() if shown_files(p)],
        ids=lambda p: str(p.relative_to(ROOT)),
    )
    def test_a_shown_file_is_the_file(self, path: Path) -> None:
        """What a guide shows is what the integration tests run."""
        for name, content in shown_files(path):
            assert (ROOT / name).read_text() == content, f"{name} differs from {path.name}"

    def test_every_example_file_is_shown(self) -> None:
        shown = {name for path in documents() for name, _ in shown_files(path)}
        files = {
            str(p.relative_to(ROOT))
            for p in EXAMPLES.rglob("*.py")
            if p.read_text().strip() and "__pycache__" not in p.parts
        }
        assert files
        assert files - shown == set()


class TestDocumentIndex:
    def test_examples_are_found(self) -> None:
        """The extractor finds the README's example, so an empty run cannot pass silently."""
        assert examples(ROOT / "README.md")
