"""The rendered chapters open with the reader's content and their code fits the page.

The Colab install cell stays in every notebook but is removed from the web page (tag ``remove-cell``), and
every line of code a page shows (code cells, fenced code, and library code shown with ``literalinclude``) is
at most ``MAX_WIDTH`` characters, which the book theme shows without horizontal scrolling at its default
width (the browser test in test_site.py measures that on the rendered pages).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_WIDTH = 88
SOLUTION_WIDTH = 84  # a solution's code sits in a dropdown whose padding takes about three characters
HIDDEN = {"remove-cell", "remove-input"}
INSTALL_TAG = "colab-install"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PAGES = sorted((ROOT / "book").glob("*.md"))
FENCE = re.compile(r"^(`{3,}|~{3,})\s*(\{?[\w-]*\}?)\s*(.*)$")


def _pyobject_lines(source: str, name: str) -> list[str]:
    """The lines of ``name`` (``f`` or ``Class.method``) in ``source``, decorators included."""
    node: ast.AST = ast.parse(source)
    for part in name.split("."):
        node = next((n for n in ast.iter_child_nodes(node)
                     if isinstance(n, ast.ClassDef | ast.FunctionDef) and n.name == part), None)
        if node is None:
            raise ValueError(f"literalinclude :pyobject: {name} not found")
    start = min([d.lineno for d in node.decorator_list] + [node.lineno])
    return source.splitlines()[start - 1:node.end_lineno]


def _included_lines(path: Path, options: dict[str, str]) -> list[str]:
    """What a ``literalinclude`` of ``path`` with ``options`` shows (the options this book uses)."""
    source = path.read_text()
    lines = _pyobject_lines(source, options["pyobject"]) if "pyobject" in options else source.splitlines()
    if "start-after" in options:
        at = next(i for i, line in enumerate(lines) if options["start-after"] in line)
        lines = lines[at + 1:]
    if "end-before" in options:
        lines = lines[:next(i for i, line in enumerate(lines) if options["end-before"] in line)]
    dedent = int(options.get("dedent", 0))
    return [line[dedent:] for line in lines]


def markdown_code_lines(markdown: str, base: Path) -> list[str]:
    """Every code line a MyST markdown text shows: fenced code and the files its literalincludes show."""
    shown: list[str] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i].strip())
        if not fence:
            i += 1
            continue
        marker, kind, argument = fence.groups()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == marker), len(lines))
        body = lines[i + 1:end]
        if kind == "{literalinclude}":
            options = dict(re.match(r":([\w-]+):\s*(.*)", line).groups() for line in body if line.startswith(":"))
            shown += _included_lines((base / argument).resolve(), options)
        elif not kind.startswith("{") or kind in ("{code}", "{code-block}", "{code-cell}"):
            shown += [line for line in body if not line.startswith(":")]
        i = end + 1
    return shown


def notebook_code_lines(nb: nbformat.NotebookNode, base: Path) -> list[str]:
    """Every code line a notebook's web page shows: visible code cells and its markdown's code.

    Lines of code cells inside a solution (between ``solution-start`` and ``solution-end``) are
    padded on the left to the width they take on the page, so one limit applies to all."""
    shown: list[str] = []
    in_solution = False
    for cell in nb.cells:
        if cell.cell_type == "code" and not HIDDEN & set(cell.metadata.get("tags", [])):
            pad = " " * (MAX_WIDTH - SOLUTION_WIDTH) if in_solution else ""
            shown += [pad + line for line in cell.source.splitlines()]
        elif cell.cell_type == "markdown":
            shown += markdown_code_lines(cell.source, base)
            for marker in re.findall(r"\{solution-(start|end)\}", cell.source):
                in_solution = marker == "start"
    return shown


def too_wide(lines: list[str]) -> list[str]:
    return [f"{len(line)} chars: {line.strip()[:60]}" for line in lines if len(line) > MAX_WIDTH]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_code_fits_the_page(path):
    assert too_wide(notebook_code_lines(nbformat.read(path, as_version=4), path.parent)) == []


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.stem)
def test_page_code_fits_the_page(path):
    assert too_wide(markdown_code_lines(path.read_text(), path.parent)) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_colab_install_cell_is_kept_but_not_shown(path):
    nb = nbformat.read(path, as_version=4)
    install = [cell for cell in nb.cells if INSTALL_TAG in cell.metadata.get("tags", [])]
    assert len(install) == 1 and nb.cells.index(install[0]) == 1, "the install cell comes right after the title"
    assert "remove-cell" in install[0].metadata["tags"]


def test_the_width_check_sees_long_lines_and_hidden_cells(tmp_path):
    module = tmp_path / "lib.py"
    module.write_text("def short():\n    return 1\n\n\ndef long():\n    return '" + "x" * 90 + "'\n")
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("y = 1  # " + "z" * 85, metadata={"tags": ["remove-cell"]}),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_markdown_cell("```{literalinclude} lib.py\n:pyobject: short\n```"),
    ])
    assert too_wide(notebook_code_lines(nb, tmp_path)) == []
    nb.cells[0].metadata["tags"] = []
    nb.cells.append(nbformat.v4.new_markdown_cell("```{literalinclude} lib.py\n:pyobject: long\n```"))
    nb.cells.append(nbformat.v4.new_markdown_cell("```python\n" + "w" * 89 + "\n```"))
    nb.cells.append(nbformat.v4.new_markdown_cell("```{solution-start} ex\n```"))
    nb.cells.append(nbformat.v4.new_code_cell("v" * SOLUTION_WIDTH + "\n" + "u" * (SOLUTION_WIDTH + 1)))
    nb.cells.append(nbformat.v4.new_markdown_cell("```{solution-end}\n```"))
    nb.cells.append(nbformat.v4.new_code_cell("t" * MAX_WIDTH))
    assert [line.split(":")[0] for line in too_wide(notebook_code_lines(nb, tmp_path))] == [
        "94 chars", "103 chars", "89 chars", "89 chars"]


def test_every_literalinclude_is_shown_in_jupyter_too():
    """A notebook read in Jupyter or Colab does not render ``literalinclude``: the next cell shows the same
    objects with ``show_source``, hidden on the book's page (``remove-cell``)."""
    include = re.compile(r"```\{literalinclude\} \.\./sharedlib/([\w/]+)\.py\n((?::\S+:.*\n)*)")
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        for i, cell in enumerate(cells):
            if cell.cell_type != "markdown":
                continue
            wanted = []
            for path_in_package, options in include.findall(cell.source):
                module = path_in_package.replace("/", ".")  # sharedlib/experiments/suite.py: experiments.suite
                obj = re.search(r":pyobject: (\S+)", options)
                wanted.append(f"{module}.{obj.group(1)}" if obj else module)
            if not wanted:
                continue
            after = cells[i + 1] if i + 1 < len(cells) else None
            assert after is not None and after.cell_type == "code" and "show_source(" in after.source, (
                f"{path.name}: cell {i} includes library code; the next cell must call show_source"
            )
            assert "remove-cell" in after.metadata.get("tags", []), f"{path.name}: cell {i + 1} must be remove-cell"
            shown = re.findall(r'"([\w.]+)"', after.source)
            assert len(shown) == len(wanted) and all(
                s == w or s.startswith(w + ".") for s, w in zip(shown, wanted, strict=True)
            ), f"{path.name}: cell {i + 1} shows {shown}, the page includes {wanted}"
