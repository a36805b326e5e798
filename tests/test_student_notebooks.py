"""Student versions: no solution survives, every exercise solution leaves a stub, and they still run."""

import re
import shutil
from pathlib import Path

import make_student_notebooks as students
import nbformat
import pytest
import run_notebooks

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# Counted independently of the script: every opening fence of a solution directive (backticks, tildes or colons),
# also inside blockquotes and list items.
SOLUTION_FENCE = re.compile(r"^(?:[ \t>]|[-+*][ \t]|\d+[.)][ \t])*(?:`{3,}|~{3,}|:{3,})\s*\{solution(?:-start)?\}",
                            re.MULTILINE)


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    assert students.main(["--output-dir", str(out)]) == 0
    return out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_solution_survives(path, student_dir):
    original = nbformat.read(path, as_version=4)
    student = nbformat.read(student_dir / path.name, as_version=4)
    text = "\n".join(c.source for c in student.cells)
    assert "{solution" not in text
    assert not any("solution" in c.metadata.get("tags", []) for c in student.cells)
    for cell in original.cells:  # every solution code cell is gone
        if "solution" in cell.metadata.get("tags", []):
            assert cell.source not in text
    solved = SOLUTION_FENCE.findall("\n".join(c.source for c in original.cells if c.cell_type == "markdown"))
    stubs = [c for c in student.cells if "exercise" in c.metadata.get("tags", [])]
    assert len(stubs) == len(solved)
    assert all(not c.get("outputs") for c in student.cells if c.cell_type == "code")


def test_student_version_keeps_the_exercise_and_drops_the_solution():
    markdown = nbformat.v4.new_markdown_cell
    nb = nbformat.v4.new_notebook(
        cells=[
            markdown(
                "```{exercise} T\n:label: ex-a\nQ?\n```\n\n```{solution-start} ex-a\n:class: dropdown\n```\n\nAnswer."
            ),
            nbformat.v4.new_code_cell("secret = 42", metadata={"tags": ["solution"]}),
            markdown("```{solution-end}\n```\n\nNext exercise"),
        ]
    )
    cells = students.student_version(nb, "t.ipynb").cells
    assert [c.source for c in cells if c.cell_type == "markdown"] == [
        "```{exercise} T\n:label: ex-a\nQ?\n```\n",
        "Next exercise\n",
    ]
    assert [c.metadata["tags"] for c in cells if c.cell_type == "code"] == [["exercise", "raises-exception"]]


HIDDEN_SOLUTIONS = {  # fences MyST renders as a solution although they are not top-level backtick fences
    "tilde": "Q?\n\n~~~{solution} ex-a\nsecret\n~~~\n\nafter",
    "long-tilde": "Q?\n\n~~~~~{solution} ex-a\nsecret\n~~~\nstill secret\n~~~~~\nafter",
    "list-item": "1. Do it.\n\n   ```{solution} ex-a\n   secret\n   ```\n\n2. after",
    "nested-list-item": "- a\n    - b\n\n      ```{solution} ex-a\n      secret\n      ```\nafter",
    "after-list-marker": "- ```{solution} ex-a\n  secret\n  ```\nafter",
    "blockquote": "> Q?\n>\n> ```{solution} ex-a\n> secret\n> ```\n\nafter",
    "blockquote-colon": "> :::{solution} ex-a\n> secret\n> :::\n\nafter",
    "blockquote-gate": "> ```{solution-start} ex-a\n> ```\n> secret\n> ```{solution-end}\n> ```\nafter",
    "list-in-blockquote": "> 1. ~~~~{solution} ex-a\n>    secret\n>    ~~~~\nafter",
}


@pytest.mark.parametrize("source", HIDDEN_SOLUTIONS.values(), ids=HIDDEN_SOLUTIONS.keys())
def test_solutions_in_tilde_fences_list_items_and_blockquotes_are_removed(source):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(source)])
    cells = students.student_version(nb, "t.ipynb").cells
    text = "\n".join(c.source for c in cells)
    assert "secret" not in text and "{solution" not in text and "after" in text
    assert [c.metadata["tags"] for c in cells if c.cell_type == "code"] == [["exercise", "raises-exception"]]
    assert len(SOLUTION_FENCE.findall(source)) == 1  # the test's own count sees it too


def test_code_blocks_in_list_items_and_blockquotes_are_kept():
    source = "1. Run:\n\n   ~~~python\n   x = 1\n   ~~~\n\n> ```{note}\n> kept\n> ```\n"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(source)])
    assert [c.source for c in students.student_version(nb, "t.ipynb").cells] == [source]


def test_an_unclosed_tilde_solution_is_refused():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("> ~~~{solution} ex-a\n> secret")])
    with pytest.raises(ValueError, match=r"t.ipynb: the \{solution\} fence of exercise 'ex-a' is never closed"):
        students.student_version(nb, "t.ipynb")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_notebook_runs_top_to_bottom(path, student_dir, tmp_path):
    """nbclient lets cells tagged raises-exception fail and raises on any other error."""
    from nbclient import NotebookClient

    shutil.copytree(ROOT / "notebooks" / "results", tmp_path / "results")  # data some chapters read
    nb = nbformat.read(student_dir / path.name, as_version=4)
    parameters = run_notebooks.profile_parameters("smoke", path.stem, "cpu")
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    injected = "\n".join(f"{name} = {value!r}" for name, value in parameters.items())
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(injected, metadata={"tags": ["injected-parameters"]}))
    NotebookClient(nb, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    stubs = [c for c in nb.cells if "exercise" in c.metadata.get("tags", [])]
    assert len(errors) == len(stubs) and all(o.ename == "NotImplementedError" for o in errors)
