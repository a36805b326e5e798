"""Notebook outputs compared at the precision they mean: the rules, nbval with them, and run_notebooks --compare."""

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import run_notebooks
from output_precision import RELATIVE_TOLERANCE, PrecisionText, first_difference, numbers_match

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("reference", "actual"),
    [
        ("3.395704260858532", "3.395703937151992"),  # measured: AVX-512 vs the committed CPU, 1e-7 relative
        ("| 2.03 | 1.000 |", "| 2.03 | 1.000 |"),
        ("accuracy 0.81", "accuracy 0.80"),  # one unit in the last digit shown: rounding at a boundary
        ("1.5e-03", "1.6e-03"),
        ("-0.0", "0.0"),
        ("loss 2.4950358867645264 at step 24", "loss 2.4950358 at step 24"),
    ],
)
def test_equal_at_their_precision(reference, actual):
    assert first_difference(reference, actual) is None
    assert PrecisionText(reference) == actual and not PrecisionText(reference) != actual


@pytest.mark.parametrize(
    ("reference", "actual", "why"),
    [
        ("| 3,222 |", "| 3,223 |", "beyond its precision"),  # integers are exact
        ("2.4950358867645264", "2.440185546875", "beyond its precision"),  # live training: 2% apart
        ("accuracy 0.82", "accuracy 0.80", "beyond its precision"),  # two units in the last digit
        ("0.553700", "0.755520", "beyond its precision"),
        ("loss nan", "loss nan", None),  # identical text is equal...
        ("loss 0.5", "loss nan", "beyond its precision"),  # ...but nan never stands in for a number
        ("1.0", "1.03", "beyond its precision"),  # the finer of the two precisions applies
        ("rises with every layer", "does not rise steadily", "text differs"),
        ("[0.1, 0.2]", "[0.1, 0.2, 0.3]", "text differs"),
    ],
)
def test_different_beyond_their_precision(reference, actual, why):
    difference = first_difference(reference, actual)
    if why is None:
        assert difference is None
    else:
        assert difference is not None and why in difference
        assert PrecisionText(reference) != actual


def test_tolerance_scales_with_the_value():
    assert numbers_match("1000.0001", "1000.05")
    assert not numbers_match("1000.0001", "1000.2")
    assert numbers_match("1e-20", "1.00001e-20") and not numbers_match("1e-20", "3e-20")
    assert not numbers_match("0.5", "nan") and not numbers_match("nan", "nan")
    assert RELATIVE_TOLERANCE <= 1e-4


NOTEBOOK_CELL = "x = 1 / 3\nprint(x * {factor})"


def notebook_with(path: Path, stored_output: str, tags: list[str] | None = None) -> Path:
    cell = nbformat.v4.new_code_cell(NOTEBOOK_CELL.format(factor=3), execution_count=1,
                                     metadata={"tags": tags or []})
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=stored_output + "\n")]
    nb = nbformat.v4.new_notebook(cells=[cell], metadata={"kernelspec": run_notebooks.KERNELSPEC})
    nbformat.write(nb, path)
    return path


@pytest.mark.parametrize(
    ("stored", "tags", "passes"),
    [
        ("1.0", [], True),
        ("1.00000003", [], True),  # another CPU's last bits
        ("1.03", [], False),  # a different result
        ("1.03", ["nbval-ignore-output"], True),  # a live-training cell: not compared, asserts instead
    ],
)
def test_nbval_uses_the_precision_rules(tmp_path, stored, tags, passes):
    """nbval itself, run on a one-cell notebook whose stored output differs from what the cell prints."""
    path = notebook_with(tmp_path / "probe.ipynb", stored, tags)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT),
         "-o", "testpaths=", str(path)],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert (result.returncode == 0) == passes, result.stdout[-2000:]


def test_compare_with_committed_reports_only_real_differences(tmp_path):
    committed = nbformat.read(notebook_with(tmp_path / "a.ipynb", "0.33333333"), as_version=4)
    executed = nbformat.read(notebook_with(tmp_path / "b.ipynb", "0.3333334"), as_version=4)
    assert run_notebooks.compare_with_committed(executed, committed) == []
    executed.cells[0].outputs[0].text = "0.34\n"
    (problem,) = run_notebooks.compare_with_committed(executed, committed)
    assert problem.startswith("cell 0 (stdout): number 1 differs")
    committed.cells[0].metadata["tags"] = ["nbval-ignore-output"]
    assert run_notebooks.compare_with_committed(executed, committed) == []


def test_compare_refuses_other_profiles_and_the_committed_folder(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_notebooks.main(["01_background", "--profile", "full", "--compare", "--output-dir", str(tmp_path)])
    assert "--compare needs --profile ci" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_notebooks.main(["01_background", "--compare"])
    assert "--compare needs" in capsys.readouterr().err
