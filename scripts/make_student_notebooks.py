"""Write student versions of the notebooks: solutions removed, a stub cell in place of each.

    python scripts/make_student_notebooks.py --output-dir out/student

Solutions are the sphinx-exercise directives, in backtick, tilde or colon fences, at the top level or inside
blockquotes and list items (where MyST renders them too): a ``{solution-start}`` /
``{solution-end}`` pair (which may span cells; everything between goes, code cells too), a ``{solution}``
block, and code cells tagged ``solution``. Each removed solution becomes a code cell that raises
``NotImplementedError``, tagged ``raises-exception`` so that the notebook still runs top to bottom (papermill
and nbval honour the tag). Outputs are cleared: students run the notebooks themselves. A solution fence
that is never closed is a ``ValueError`` and nothing is written. The script refuses an output directory
that would overwrite the notebooks (``notebooks/``, the repository root, a file, a link to a source).
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat
from run_notebooks import write_atomically  # scripts/ is on the path when run or tested

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
# What may precede a fence inside containers: blockquote markers, list markers and indentation, nested.
CONTAINER = r"(?:[ \t]*(?:>|[-+*][ \t]|\d{1,9}[.)][ \t]))*[ \t]*"
# A fence opening or closing line: three or more ` ~ or :, at the top level or inside a blockquote or list item
# (any indent: a fence that is really an indented code block is treated as a fence, so never kept by mistake).
FENCE = re.compile(rf"^{CONTAINER}(?P<fence>`{{3,}}|~{{3,}}|:{{3,}})(?P<info>.*)$")
DIRECTIVE = re.compile(r"\{(?P<name>[\w:-]+)\}\s*(?P<argument>.*)$")
GATE_STOPPERS = {"solution-start", "solution", "exercise", "exercise-start"}  # cannot sit inside a solution


@dataclass
class _Stripper:
    """Line-by-line state while removing solutions from one notebook's markdown."""

    notebook: str
    gate: str | None = None  # label of an open {solution-start} ... {solution-end} pair

    def error(self, message: str) -> ValueError:
        return ValueError(f"{self.notebook}: {message}")


def stub_cell(label: str) -> nbformat.NotebookNode:
    """The cell a student fills in for exercise ``label``."""
    source = f"# Exercise {label}: write your answer here (and run its checker, if the exercise names one).\n"
    source += f'raise NotImplementedError("exercise {label}")'
    return nbformat.v4.new_code_cell(source, metadata={"tags": ["exercise", "raises-exception"]})


def _closing_line(lines: list[str], start: int, fence: str) -> int | None:
    """Index of the line that closes the fence opened at ``lines[start]`` (same character, at least as long)."""
    closing = re.compile(rf"^{CONTAINER}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
    return next((j for j in range(start + 1, len(lines)) if closing.match(lines[j])), None)


def _strip_lines(lines: list[str], state: _Stripper) -> list[str | tuple[str]]:
    """Kept lines, with a ``(label,)`` marker where a solution was removed; updates ``state.gate``."""
    kept: list[str | tuple[str]] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None or (opening["fence"][0] == "`" and "`" in opening["info"]):
            if state.gate is None:
                kept.append(lines[i])
            i += 1
            continue
        directive = DIRECTIVE.match(opening["info"].strip())
        name = directive["name"] if directive else None
        words = directive["argument"].split() if directive else []
        label = words[0] if words else state.gate or "(no label)"
        close = _closing_line(lines, i, opening["fence"])
        end = len(lines) - 1 if close is None else close  # an unclosed fence runs to the end of the cell
        if close is None and name in {"solution-start", "solution", "solution-end"}:
            raise state.error(f"the {{{name}}} fence of exercise {label!r} is never closed")
        if state.gate is not None:  # inside a solution: drop whole fenced blocks until {solution-end}
            if name in GATE_STOPPERS:
                raise state.error(f"the {{solution-start}} of exercise {state.gate!r} has no {{solution-end}}")
            if name == "solution-end":
                state.gate = None
        elif name in {"solution-start", "solution"}:
            kept.append((label,))
            state.gate = label if name == "solution-start" else None
        elif name == "solution-end":
            raise state.error("a {solution-end} without a {solution-start} before it")
        elif directive:  # another directive: its body is markdown and may hold a solution
            body = _strip_lines(lines[i + 1 : end if close is not None else end + 1], state)
            if state.gate is not None:
                raise state.error(f"the {{solution-start}} of exercise {state.gate!r} is not closed in its block")
            kept.append(lines[i])
            kept.extend(line for line in body if isinstance(line, str))
            if close is not None:
                kept.append(lines[end])
            kept.extend(stub for stub in body if not isinstance(stub, str))  # stubs go after the block
        else:  # a code block: literal text
            kept.extend(lines[i : end + 1])
        i = end + 1
    return kept


def _split_markdown(source: str, state: _Stripper) -> list[str | tuple[str]]:
    """One markdown cell as text pieces and ``(label,)`` stubs, in order; the source unchanged if no solution."""
    pieces: list[str | tuple[str]] = []
    lines: list[str] = []
    gate_before = state.gate
    stripped = _strip_lines(source.split("\n"), state)
    if gate_before is None and state.gate is None and all(isinstance(item, str) for item in stripped):
        return [source] if source.strip() else []
    for item in [*stripped, None]:
        if isinstance(item, str):
            lines.append(item)
            continue
        text = "\n".join(lines).strip("\n")
        if text.strip():
            pieces.append(text.rstrip() + "\n")
        lines = []
        if item is not None:
            pieces.append(item)
    return pieces


def student_version(nb: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """A copy of ``nb`` without solutions and outputs, with a stub cell per exercise solution.

    ``ValueError`` (naming ``name`` and the exercise) if a solution fence is never closed.
    """
    state = _Stripper(name)
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            if state.gate is None and "solution" not in cell.metadata.get("tags", []):
                cells.append(nbformat.v4.new_code_cell(cell.source, metadata=cell.metadata))
            continue
        if cell.cell_type != "markdown":
            if state.gate is None:
                cells.append(nbformat.v4.new_raw_cell(cell.source, metadata=cell.metadata))
            continue
        for piece in _split_markdown(cell.source, state):
            if isinstance(piece, str):
                cells.append(nbformat.v4.new_markdown_cell(piece, metadata=cell.metadata))
            else:
                cells.append(stub_cell(piece[0]))
    if state.gate is not None:
        raise state.error(f"the {{solution-start}} of exercise {state.gate!r} has no {{solution-end}}")
    return nbformat.v4.new_notebook(cells=cells, metadata=nb.metadata)


def check_output_dir(output_dir: Path, sources: list[Path]) -> str | None:
    """Why ``output_dir`` must not receive student notebooks (it would overwrite a source), or None."""
    target = output_dir.resolve()
    if target == NOTEBOOKS.resolve() or (output_dir.is_dir() and os.path.samefile(output_dir, NOTEBOOKS)):
        return f"--output-dir {output_dir} is the notebooks directory: writing there would replace every chapter"
    if target == ROOT.resolve() or (output_dir.is_dir() and os.path.samefile(output_dir, ROOT)):
        return f"--output-dir {output_dir} is the repository root; use a directory such as out/student"
    if output_dir.exists() and not output_dir.is_dir():
        return f"--output-dir {output_dir} exists and is not a directory"
    for source in sources:
        output = output_dir / source.name
        if output.exists() and os.path.samefile(output, source):
            return f"--output-dir {output_dir}: {output} is the same file as {source}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=ROOT / "out" / "student")
    args = parser.parse_args(argv)
    sources = sorted(NOTEBOOKS.glob("*.ipynb"))
    refusal = check_output_dir(args.output_dir, sources)
    if refusal:
        parser.error(refusal)
    students = {path.name: student_version(nbformat.read(path, as_version=4), path.name) for path in sources}
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for file_name, nb in students.items():
        write_atomically(nb, args.output_dir / file_name)
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except ValueError as error:
        raise SystemExit(f"make_student_notebooks.py: {error}; nothing was written") from None
