"""Every Python example in the README and docs/ runs, so the docs cannot rot."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
SKIP = "# not run"


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def examples(path: Path) -> list[str]:
    return [b for b in FENCE.findall(path.read_text()) if not b.lstrip().startswith(SKIP)]


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


class TestDocumentIndex:
    def test_examples_are_found(self) -> None:
        """The extractor finds the README's example, so an empty run cannot pass silently."""
        assert examples(ROOT / "README.md")
