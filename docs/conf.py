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
suppress_warnings = ["myst.xref_missing"]
