"""The GitHub Actions workflows: valid against GitHub's workflow schema, and built from the README's commands."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
CHECK = [str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows"]


def load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def steps(workflow: dict) -> list[str]:
    return [step.get("run", step.get("uses", "")) for job in workflow["jobs"].values() for step in job["steps"]]


def test_workflows_match_githubs_schema():
    result = subprocess.run([*CHECK, *map(str, sorted(WORKFLOWS.glob("*.yml")))], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  test:\n    runs_on: ubuntu-24.04\n    steps:\n      - run: make test\n")
    assert subprocess.run([*CHECK, str(broken)], capture_output=True).returncode != 0


def test_ci_runs_the_readme_test_command_on_every_push_and_pull_request():
    workflow = load("test.yml")
    assert {"push", "pull_request"} <= set(workflow[True])  # YAML 1.1 reads the key `on` as True
    assert "make test" in steps(workflow)
    assert "make test" in (ROOT / "README.md").read_text() and "make test" in (ROOT / ".ci" / "run").read_text()


def test_gpu_job_is_scheduled_and_runs_every_notebook_at_full_profile():
    workflow = load("gpu.yml")
    assert workflow[True]["schedule"] and "gpu" in workflow["jobs"]["notebooks"]["runs-on"]
    assert "make install" in steps(workflow)
    assert any("run_notebooks.py --profile full --device cuda" in s for s in steps(workflow))
    # at the committed sizes, compared with the committed outputs under the same precision rules as nbval
    assert any("run_notebooks.py --profile ci --device cuda --compare" in s for s in steps(workflow))


@pytest.mark.parametrize("needle", ["make book", "actions/upload-pages-artifact@v3", "actions/deploy-pages@v4"])
def test_pages_job_builds_the_book_and_deploys_it_from_main(needle):
    workflow = load("pages.yml")
    assert workflow[True]["push"]["branches"] == ["main"]
    assert needle in steps(workflow)


def test_platforms_job_runs_the_unit_tests_and_every_notebook_on_macos_and_windows_without_the_lock():
    workflow = load("platforms.yml")
    job = workflow["jobs"]["platforms"]
    assert {"macos-latest", "windows-latest"} <= {entry["os"] for entry in job["strategy"]["matrix"]["include"]}
    assert job["runs-on"] == "${{ matrix.os }}" and {"push", "pull_request"} <= set(workflow[True])
    commands = steps(workflow)
    install = next(command for command in commands if "pip install" in command)
    assert '-e ".[parity]"' in install and not re.search(r"requirements\.lock|-[rc] |--require-hashes", install)
    assert any("run_notebooks.py --profile ci --device cpu --output-dir" in command for command in commands)
    (unit,) = [command for command in commands if "python -m pytest" in command]
    # the step reads its test list from the Makefile (no make on Windows): the same list as make test-oldest's
    code = re.search(r"<<'EOF'\n(.*?)\nEOF\n", unit, re.S)
    listed = subprocess.run([sys.executable, "-c", code.group(1)], cwd=ROOT, capture_output=True, text=True, check=True)
    make = ["make", "-s", "--no-print-directory", "--eval", "print-oldest: ; @echo $(OLDEST_TESTS)", "print-oldest"]
    oldest = subprocess.run(make, cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert listed.stdout.split() == oldest and len(oldest) >= 10
