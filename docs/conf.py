"""Sphinx configuration: Markdown pages (MyST) and API pages from docstrings."""

from __future__ import annotations

project = "warmstart"
author = "warmstart developers"
copyright = "2026, warmstart developers"  # noqa: A001 - Sphinx's name

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3
autodoc_typehints = "description"
autodoc_member_order = "bysource"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
html_theme = "alabaster"
# The module graph in architecture.md is a Mermaid block: GitHub draws it,
# Sphinx shows its text (Pygments has no Mermaid lexer).
suppress_warnings = ["myst.xref_missing", "misc.highlighting_failure"]

# Claimed classes show their public path (warmstart.store.Snapshot); their
# annotations are evaluated where they are defined (see warmstart._api).
import warmstart.prometheus  # noqa: E402, F401 - namespaces loaded lazily: claim them first
import warmstart.remote  # noqa: E402, F401
import warmstart.testing  # noqa: E402, F401
import warmstart.transfer  # noqa: E402, F401
from warmstart._api import resolve_annotations  # noqa: E402

resolve_annotations()
