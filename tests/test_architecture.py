"""The layout keeps its rules: no import cycles, wings import each other's public names only.

Issue 13. The module graph is read from the source with ``ast`` (every
import, at module level, under ``TYPE_CHECKING`` or inside a function: a
function-level import that closes a loop only hides it). The picture in
docs/architecture.md is generated from the same graph (``python -m
benchmarks.modgraph``), and a test checks it is current.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks import apidoc
from benchmarks.modgraph import PACKAGE, cycles, import_graph, mermaid, private_imports

ROOT = Path(__file__).resolve().parent.parent


class TestImportGraph:
    def test_the_graph_is_read(self) -> None:
        """The reader finds the wings and the edges between them (the checks below can fail)."""
        graph = import_graph()
        assert {"warmstart.store._store", "warmstart.boot._boot", "warmstart.cli._main"} <= set(
            graph
        )
        assert "warmstart.store._tables" in graph["warmstart.store._store"]

    def test_no_import_cycles(self) -> None:
        """No module reaches itself through imports (the package roots included)."""
        assert cycles(import_graph()) == []

    def test_a_cycle_is_found(self) -> None:
        """The cycle finder is not vacuous."""
        graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
        assert cycles(graph) == [["a", "b", "c"]]

    def test_private_modules_stay_in_their_wing(self) -> None:
        """``warmstart.<wing>._x`` is imported only from inside ``warmstart.<wing>``."""
        assert private_imports(import_graph()) == []

    def test_a_private_import_is_found(self) -> None:
        """The wing rule is not vacuous: a CLI module importing a store private is flagged."""
        graph = {"warmstart.cli._x": {"warmstart.store._tables"}, "warmstart.store._tables": set()}
        assert private_imports(graph) == [("warmstart.cli._x", "warmstart.store._tables")]


class TestPicture:
    def test_architecture_doc_shows_the_current_graph(self) -> None:
        """docs/architecture.md holds the picture generated from the code (it cannot drift)."""
        text = (ROOT / "docs" / "architecture.md").read_text()
        assert mermaid(import_graph()) in text, "run: python -m benchmarks.modgraph --write"

    def test_api_page_lists_every_public_name(self) -> None:
        """docs/api.md is generated from the namespaces' __all__ and is current."""
        assert apidoc.PAGE.read_text() == apidoc.page(), "run: python -m benchmarks.apidoc --write"

    def test_api_page_namespaces_are_the_public_ones(self) -> None:
        """The page covers the same namespaces the packaging test holds public."""
        from test_packaging import NAMESPACES

        assert set(apidoc.NAMESPACES) == set(NAMESPACES)

    def test_slf001_is_enforced_in_src(self) -> None:
        """No module of the package touches another's private members (ruff SLF001)."""
        done = subprocess.run(
            [sys.executable, "-m", "ruff", "check", "--select", "SLF001", str(ROOT / PACKAGE)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout
