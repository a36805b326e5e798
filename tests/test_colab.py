"""`make test-colab`: its workflow, Colab's pins, the pure parts of scripts/colab_check.py, and chapter 6b's guard
against a torch whose FSDP calls other collectives (Colab's 2.11). Static and fast: no venv is created here."""

import re
import subprocess
from pathlib import Path

import colab_check  # scripts/, importable through conftest.py
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = (ROOT / "constraints" / "colab.txt").read_text()


def test_colab_workflow_is_weekly_and_on_demand_and_runs_make_test_colab():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "colab.yml").read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as True
    assert triggers["schedule"][0]["cron"] and "workflow_dispatch" in triggers
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    assert any(step.get("with", {}).get("python-version") == "3.13" for step in steps)
    assert any(step.get("run", "").split("#")[0].strip() == "make test-colab" for step in steps)


def test_make_test_colab_runs_the_colab_check():
    result = subprocess.run(["make", "--dry-run", "test-colab"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "scripts/colab_check.py" in result.stdout


@pytest.mark.parametrize("package", ["torch", "numpy", "ipywidgets", "ipython", "matplotlib", "scipy", "transformers"])
def test_colab_constraints_pin_the_python_independent_packages(package):
    assert re.search(rf"^{package}==\d[\w.]*$", CONSTRAINTS, re.MULTILINE), package


def test_colab_constraints_cite_their_source_and_say_what_was_changed():
    header = "".join(line for line in CONSTRAINTS.splitlines(keepends=True) if line.startswith("#"))
    assert "github.com/googlecolab/backend-info" in header and "pip-freeze.txt" in header
    assert re.search(r"read on \d{4}-\d\d-\d\d", header) and "Python 3.13" in header
    assert "dropped" in header and "torch==" in header


def test_every_package_the_colab_venv_installs_is_pinned():
    pins = colab_check.read_pins(CONSTRAINTS)
    assert {colab_check.normalize(p) for p in (*colab_check.COLAB_PACKAGES, "pip")} <= set(pins)
    assert pins["torch"].startswith("2.11") and pins["ipywidgets"] == "7.7.1"


def test_read_pins_normalizes_names_and_skips_comments_and_urls():
    text = "# numpy==0\nPyYAML==6.0.3\njupyter_client==7.4.9  # note\nfoo @ https://x/foo.whl\n"
    assert colab_check.read_pins(text) == {"pyyaml": "6.0.3", "jupyter-client": "7.4.9"}


def test_package_changes_report_changed_and_removed_packages_but_only_list_additions():
    before = {"torch": "2.11.0", "ipywidgets": "7.7.1", "PyYAML": "6.0.3"}
    after = {"torch": "2.11.0", "ipywidgets": "8.1.5", "pyyaml": "6.0.3", "sharedlib": "0.1.0"}
    assert colab_check.package_changes(before, after) == (["ipywidgets 7.7.1 -> 8.1.5"], ["sharedlib 0.1.0"])
    assert colab_check.package_changes(before, {"torch": "2.11.0"})[0] == [
        "ipywidgets 7.7.1 -> removed",
        "pyyaml 6.0.3 -> removed",
    ]
    assert colab_check.package_changes(before, dict(before)) == ([], [])


def test_chapters_are_chosen_by_stem_file_name_or_unique_prefix():
    every = colab_check.chapter_paths()
    assert len(every) >= 11 and every == sorted(every)
    chosen = colab_check.chapter_paths(["06b_cost.ipynb", "01", "06b"])
    assert [p.stem for p in chosen] == ["06b_cost", "01_background"]


@pytest.mark.parametrize("name", ["no_such_chapter", "05"])  # "05" matches three chapters
def test_an_unknown_or_ambiguous_chapter_is_a_value_error(name):
    with pytest.raises(ValueError, match=name):
        colab_check.chapter_paths([name])


def test_the_command_line_rejects_an_unknown_chapter(capsys):
    with pytest.raises(SystemExit):
        colab_check.parse_args(["no_such_chapter"])
    assert "no_such_chapter" in capsys.readouterr().err


def test_cell_error_finds_the_failing_cell_and_strips_colours():
    nb = {
        "cells": [
            {"id": "a", "outputs": []},
            {"id": "b", "outputs": [{"output_type": "stream", "text": "fine"}]},
            {"id": "c", "outputs": [{"output_type": "error", "traceback": ["\x1b[0;31mNameError\x1b[0m: x", "y"]}]},
        ]
    }
    assert colab_check.cell_error(nb) == (3, "c", "NameError: x\ny")
    assert colab_check.cell_error({"cells": nb["cells"][:2]}) is None


def test_verdicts_and_summary_give_each_chapter_its_time_and_first_problem():
    ok = colab_check.ChapterResult("01_background", 12.34, [])
    bad = colab_check.ChapterResult("06b_cost", 5.0, ["cell 12/33 (id x) failed: NameError\nTraceback ..."])
    assert colab_check.verdict(ok).startswith("PASS  01_background") and "12.3 s" in colab_check.verdict(ok)
    assert colab_check.verdict(bad).endswith("cell 12/33 (id x) failed: NameError")
    text = colab_check.summary([ok, bad], total=3, seconds=17.3)
    assert text.splitlines()[-1] == "1 passed, 1 failed, 1 not run, of 3; 17 s in all"


def test_the_venv_is_rebuilt_when_the_pins_change():
    assert colab_check.stamp_text("torch==2.11.0\n") == colab_check.stamp_text("torch==2.11.0\n")
    assert colab_check.stamp_text("torch==2.11.0\n") != colab_check.stamp_text("torch==2.12.0\n")
    assert colab_check.stamp_text("torch==2.11.0\n") == colab_check.stamp_text("# read today\ntorch==2.11.0\n")


# ---------------------------------------------------------------------------------- chapter 6b on an older torch


def test_fsdp_is_reported_unavailable_before_launching_on_a_torch_without_its_collectives(monkeypatch):
    import torch.distributed as dist

    from sharedlib.experiments import distributed

    assert distributed.missing_fsdp_collectives() == [] and distributed.fsdp_unavailable_reason() is None
    monkeypatch.delattr(dist, "reduce_scatter_single")
    assert distributed.missing_fsdp_collectives() == ["reduce_scatter_single"]
    reason = distributed.fsdp_unavailable_reason()
    assert "torch.distributed.reduce_scatter_single" in reason and "2.13" in reason


def test_a_failed_launch_raises_with_the_workers_stderr_not_torchruns_summary():
    from sharedlib.experiments import distributed

    stderr = (
        "worker says: ValueError: bad width\n"
        "Traceback (most recent call last):\n"
        '  File "/x/torch/distributed/run.py", line 1, in <module>\n'
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:\n"
    )
    failed = subprocess.CompletedProcess(["torchrun"], 1, stdout="", stderr=stderr)
    with pytest.raises(RuntimeError, match="status 1") as raised:
        distributed.read_report(failed)
    assert "ValueError: bad width" in str(raised.value) and "ChildFailedError" not in str(raised.value)
    printed = subprocess.CompletedProcess(["torchrun"], 0, stdout='noise\n{"by_depth": {"2": 1}}\n', stderr="")
    assert distributed.read_report(printed) == {"2": 1}
