"""Write student versions of the notebooks: solutions removed, a stub cell in place of each.

    python scripts/make_student_notebooks.py --output-dir out/student

Solutions live between MyST ``{solution-start}`` and ``{solution-end}`` fences and in code cells tagged
``solution``. Each removed solution becomes a code cell that raises ``NotImplementedError``, tagged
``raises-exception`` so that the notebook still runs top to bottom (papermill and nbval honour the tag).
Outputs are cleared: students run the notebooks themselves.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
START = re.compile(r"```\{solution-start\}\s*(?P<label>[\w-]+)[^`]*```")
END = re.compile(r"```\{solution-end\}\s*```")


def stub_cell(label: str) -> nbformat.NotebookNode:
    """The cell a student fills in for exercise ``label``."""
    source = f"# Exercise {label}: write your answer here, then run the checker the exercise names.\n"
    source += f'raise NotImplementedError("exercise {label}")'
    return nbformat.v4.new_code_cell(source, metadata={"tags": ["exercise", "raises-exception"]})


def strip_markdown(text: str, in_solution: bool) -> tuple[str, bool, list[str]]:
    """Remove solution text from one markdown cell; returns (kept text, still inside a solution, labels opened)."""
    kept, labels, pos = [], [], 0
    while True:
        if in_solution:
            end = END.search(text, pos)
            if end is None:
                return "".join(kept), True, labels
            pos, in_solution = end.end(), False
        start = START.search(text, pos)
        if start is None:
            kept.append(text[pos:])
            return "".join(kept), False, labels
        kept.append(text[pos : start.start()])
        labels.append(start.group("label"))
        pos, in_solution = start.end(), True


def student_version(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` without solutions and outputs, with a stub cell per exercise solution."""
    cells, in_solution = [], False
    for cell in nb.cells:
        if cell.cell_type == "code":
            if in_solution or "solution" in cell.metadata.get("tags", []):
                continue
            cells.append(nbformat.v4.new_code_cell(cell.source, metadata=cell.metadata))
            continue
        text, in_solution, labels = strip_markdown(cell.source, in_solution)
        if text.strip():
            cells.append(nbformat.v4.new_markdown_cell(text.rstrip() + "\n", metadata=cell.metadata))
        cells.extend(stub_cell(label) for label in labels)
    student = nbformat.v4.new_notebook(cells=cells, metadata=nb.metadata)
    return student


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=ROOT / "out" / "student")
    args = parser.parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nbformat.write(student_version(nbformat.read(path, as_version=4)), args.output_dir / path.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
