"""Tiny helpers to write the numbered notebooks from Python (so they are reviewed as code and stored without outputs).

Usage in a builder script::

    from _build import md, code, params, write
    write("01_pixel_pretraining", [md("# Title"), params("profile = 'quick'"), code("print(1)")])
"""

from __future__ import annotations

from pathlib import Path

import nbformat

NOTEBOOKS = Path(__file__).resolve().parents[1]


def md(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(text.strip("\n"))


def code(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(text.strip("\n"))


def params(text: str) -> nbformat.NotebookNode:
    """The papermill ``parameters`` cell (defaults = the quick CPU profile on synthetic data)."""
    cell = code(text)
    cell.metadata["tags"] = ["parameters"]
    return cell


def write(name: str, cells: list[nbformat.NotebookNode]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(nb.cells):  # stable ids keep diffs small
        cell["id"] = f"{name[:2]}-{i:02d}"
    path = NOTEBOOKS / f"{name}.ipynb"
    nbformat.write(nb, str(path))
    return path
