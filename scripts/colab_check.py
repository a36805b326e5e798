"""Run every chapter as Colab runs it: Python 3.13 with Colab's package versions (constraints/colab.txt).

    python3.13 scripts/colab_check.py                    # every chapter; exit status 1 if any failed
    python3.13 scripts/colab_check.py 06b_cost 01        # chapters by name, file name or unique prefix
    python3.13 scripts/colab_check.py --no-keep-going    # stop at the first failing chapter

Setup: .venv-colab (made with the Python 3.13 that runs this script, reused while constraints/colab.txt and
COLAB_PACKAGES are unchanged) gets COLAB_PACKAGES installed with ``-c constraints/colab.txt``, so each of them and
their dependencies land at Colab's versions; sharedlib is never installed there by this script. Colab has nbclient,
so the script then runs itself again with .venv-colab's python, which executes the chapters with a kernelspec
pointing at that same python.

Each chapter, alone: only its .ipynb is copied into a fresh empty folder and executed there (the working directory)
with SHAREDLIB_SOURCE set to this checkout, so its first cell ("colab-install") pip-installs sharedlib itself, as on
Colab. The chapter fails if a cell fails (its number and traceback are printed), if the install cell did not install
sharedlib, or if it changed or removed any package that was already installed. sharedlib is uninstalled again before
the next chapter. The executed notebooks are written to out/colab/ for inspection.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
CONSTRAINTS = ROOT / "constraints" / "colab.txt"
VENV = ROOT / ".venv-colab"
OUTPUT = ROOT / "out" / "colab"
PYTHON_VERSION = (3, 13)  # Colab's runtime (backend-info os-info.txt: Python 3.13.15)
# What the chapters and their kernel use, each on Colab (so pinned in constraints/colab.txt). Colab has nbclient,
# so the chapters are executed with it, from inside .venv-colab. pip itself is installed first, at Colab's version.
COLAB_PACKAGES = (
    "torch", "numpy", "matplotlib", "scipy", "sympy", "tqdm", "ipywidgets", "ipython", "ipykernel",
    "jupyter-client", "nbclient", "nbformat", "transformers", "pyyaml", "setuptools", "wheel",
)  # fmt: skip
KERNEL_NAME = "colab-check"
CELL_TIMEOUT_S = 900
STAMP = "colab-check.sha256"
VERSIONS_SNIPPET = (
    "import importlib.metadata as m, json; "
    "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions() if d.metadata['Name']}))"
)
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class ChapterResult:
    """One chapter's verdict: wall time, and what went wrong (empty when it passed)."""

    name: str
    seconds: float
    problems: list[str]

    @property
    def passed(self) -> bool:
        return not self.problems


# ---------------------------------------------------------------------------------------------- pure helpers


def normalize(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): ``PyYAML`` and ``pyyaml``, ``jupyter_client`` and ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(text: str) -> dict[str, str]:
    """The ``name==version`` lines of a constraints file, by normalized name (comments and URLs skipped)."""
    pins = {}
    for line in text.splitlines():
        match = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+).*", line)
        if match:
            pins[normalize(match.group(1))] = match.group(2)
    return pins


def package_changes(before: dict[str, str], after: dict[str, str]) -> tuple[list[str], list[str]]:
    """What changed between two ``{name: version}`` maps: (changed or removed packages, added packages)."""
    old, new = ({normalize(k): v for k, v in d.items()} for d in (before, after))
    changed = [f"{n} {old[n]} -> {new.get(n, 'removed')}" for n in sorted(old) if new.get(n) != old[n]]
    added = [f"{name} {new[name]}" for name in sorted(set(new) - set(old))]
    return changed, added


def chapter_paths(names: list[str] | None = None, notebooks: Path = NOTEBOOKS) -> list[Path]:
    """Every chapter, or those named by stem, file name or unique prefix (``06b``); ``ValueError`` otherwise."""
    paths = sorted(notebooks.glob("*.ipynb"))
    if not names:
        return paths
    chosen = []
    for name in names:
        stem = Path(name).stem if name.endswith(".ipynb") else name
        matches = [p for p in paths if p.stem == stem] or [p for p in paths if p.stem.startswith(stem)]
        if len(matches) != 1:
            why = "matches no chapter" if not matches else f"matches {[p.stem for p in matches]}"
            raise ValueError(f"chapter {name!r} {why}; chapters are {[p.stem for p in paths]}")
        chosen += [p for p in matches if p not in chosen]
    return chosen


def cell_error(nb: dict) -> tuple[int, str, str] | None:
    """The first cell with an error output: (1-based cell number, cell id, traceback without colours)."""
    for number, cell in enumerate(nb.get("cells", []), start=1):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                traceback = "\n".join(output.get("traceback") or [f"{output.get('ename')}: {output.get('evalue')}"])
                return number, cell.get("id", "?"), ANSI.sub("", traceback)
    return None


def stamp_text(constraints: str, packages: tuple[str, ...] = COLAB_PACKAGES) -> str:
    """What .venv-colab was built from (the pins, not the comments): it is rebuilt when this changes."""
    pins = sorted(read_pins(constraints).items())
    return hashlib.sha256(json.dumps([pins, list(packages), list(PYTHON_VERSION)]).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------- the venv


def venv_python(venv: Path = VENV) -> Path:
    """The venv's interpreter, not resolved: its symlink is what makes it the venv's."""
    return venv / "bin" / "python"


def pip(python: Path, *args: str) -> None:
    """Run pip of ``python``; a ``CalledProcessError`` if it fails (its output is already on the terminal)."""
    subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", *args], check=True, cwd=python.parent)


def installed_versions(python: Path) -> dict[str, str]:
    """``{distribution: version}`` of everything installed for ``python`` (importlib.metadata, like pip freeze);
    isolated (``-I``), so that a checkout's sharedlib.egg-info in the working directory does not count."""
    command = [str(python), "-I", "-c", VERSIONS_SNIPPET]
    result = subprocess.run(command, capture_output=True, text=True, check=True, cwd=python.parent)
    return json.loads(result.stdout)


def ensure_venv(venv: Path = VENV, constraints: Path = CONSTRAINTS) -> Path:
    """Create .venv-colab with Colab's versions, or reuse it if it was built from the same pins; its python."""
    python, stamp = venv_python(venv), venv / STAMP
    wanted = stamp_text(constraints.read_text())
    if python.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        print(f"reusing {venv} (built from the current {constraints.name})", flush=True)
        return python
    if sys.version_info[:2] != PYTHON_VERSION:
        version = ".".join(map(str, PYTHON_VERSION))
        raise SystemExit(
            f"{venv.name} needs Python {version}, as on Colab: run this script with python{version} "
            f"(make test-colab COLAB_PYTHON=/path/to/python{version})"
        )
    print(f"creating {venv} with Colab's versions from {constraints} (torch alone is several GB)", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pins = read_pins(constraints.read_text())
    pip(python, "install", "--quiet", f"pip=={pins['pip']}")
    pip(python, "install", "--quiet", "-c", str(constraints), *COLAB_PACKAGES)
    stamp.write_text(wanted + "\n")
    return python


def write_kernelspec(python: Path) -> Path:
    """A kernelspec in the venv's own data directory whose kernel is that venv's python."""
    folder = python.parents[1] / "share" / "jupyter" / "kernels" / KERNEL_NAME  # on the venv's jupyter path
    folder.mkdir(parents=True, exist_ok=True)
    argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "Python 3 (Colab's versions)", "language": "python"}
    (folder / "kernel.json").write_text(json.dumps(kernel, indent=1) + "\n")
    return folder


# ---------------------------------------------------------------------------------------------- the chapters


def kernel_environment(python: Path) -> dict[str, str]:
    """The kernel's environment: this process's, with the venv first on PATH and sharedlib's source set."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["VIRTUAL_ENV"] = str(python.parents[1])
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    env["SHAREDLIB_SOURCE"] = str(ROOT)
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # ipykernel's debugger warns about Python 3.13's frozen modules
    return env


def execute_alone(path: Path, python: Path, output_dir: Path) -> list[str]:
    """Execute a copy of ``path`` alone in an empty folder with the venv's kernel; the problems, if any."""
    import nbclient
    import nbformat

    with tempfile.TemporaryDirectory(prefix=f"colab-{path.stem}-") as folder:
        copy = Path(shutil.copy(path, folder))
        nb = nbformat.read(copy, as_version=4)
        resources = {"metadata": {"path": folder}}  # the kernel's working directory
        client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name=KERNEL_NAME, resources=resources)
        try:
            client.execute(env=kernel_environment(python))
            problems = []
        except Exception as error:  # a cell's error is in the notebook; anything else (timeout, dead kernel) is not
            found = cell_error(nb)
            if found:
                number, cell_id, traceback = found
                last = ([line for line in traceback.splitlines() if line.strip()] or ["?"])[-1]
                problems = [f"cell {number}/{len(nb.cells)} (id {cell_id}) failed: {last}\n{traceback}"]
            else:
                problems = [f"{type(error).__name__}: {ANSI.sub('', str(error))}"]
        output_dir.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, output_dir / path.name)
    return problems


def remove_sharedlib(python: Path) -> None:
    """Uninstall sharedlib from the venv if it is there, so that the next chapter installs it itself."""
    if "sharedlib" in map(normalize, installed_versions(python)):
        pip(python, "uninstall", "--quiet", "--yes", "sharedlib")


def check_chapter(path: Path, python: Path, output_dir: Path) -> ChapterResult:
    """Run one chapter as on Colab and compare the installed packages before and after it."""
    remove_sharedlib(python)
    before = installed_versions(python)
    start = time.perf_counter()
    problems = execute_alone(path, python, output_dir)
    seconds = time.perf_counter() - start
    after = installed_versions(python)
    changed, added = package_changes(before, after)
    if changed:
        problems.append("the install cell changed packages Colab already has: " + ", ".join(changed))
    if "sharedlib" not in map(normalize, after):
        problems.append("sharedlib was not installed by the chapter's install cell")
    others = [package for package in added if not package.startswith("sharedlib ")]
    if others:  # new packages change nothing Colab has, but are worth knowing
        print(f"  {path.stem}: the install cell added " + ", ".join(others), flush=True)
    remove_sharedlib(python)
    return ChapterResult(path.stem, seconds, problems)


def verdict(result: ChapterResult) -> str:
    """One line per chapter: PASS or FAIL, its name, its time, and the first line of its first problem."""
    status = "PASS" if result.passed else "FAIL"
    first = "" if result.passed else "  " + result.problems[0].splitlines()[0]
    return f"{status}  {result.name:<28} {result.seconds:7.1f} s{first}"


def run_chapters(paths: list[Path], python: Path, output_dir: Path, keep_going: bool) -> list[ChapterResult]:
    """Check each chapter in turn, printing its verdict and, for a failure, every problem in full."""
    results = []
    for path in paths:
        print(f"--- {path.stem}", flush=True)
        result = check_chapter(path, python, output_dir)
        for problem in result.problems:
            print(problem, flush=True)
        print(verdict(result), flush=True)
        results.append(result)
        if not result.passed and not keep_going:
            break
    return results


def summary(results: list[ChapterResult], total: int, seconds: float) -> str:
    """The closing report: every chapter's verdict line, and the counts."""
    passed = sum(r.passed for r in results)
    lines = ["", "=== Colab check: chapters executed with Colab's versions (constraints/colab.txt)"]
    lines += [verdict(r) for r in results]
    skipped = f", {total - len(results)} not run" if len(results) < total else ""
    lines.append(f"{passed} passed, {len(results) - passed} failed{skipped}, of {total}; {seconds:.0f} s in all")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", help="chapters to run: stem, file name or unique prefix (default: all)")
    parser.add_argument(
        "--keep-going",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the other chapters after a failure (default); --no-keep-going stops at the first",
    )
    parser.add_argument("--output-dir", type=Path, default=OUTPUT, help="where the executed notebooks go")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)  # running in .venv-colab
    args = parser.parse_args(argv)
    try:
        args.paths = chapter_paths(args.chapters)
    except ValueError as error:
        parser.error(str(error))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.inside:
        python = ensure_venv()
        forwarded = sys.argv[1:] if argv is None else argv
        return subprocess.run([str(python), str(Path(__file__).resolve()), "--inside", *forwarded]).returncode
    python = Path(sys.executable)
    write_kernelspec(python)
    start = time.perf_counter()
    results = run_chapters(args.paths, python, args.output_dir, args.keep_going)
    print(summary(results, len(args.paths), time.perf_counter() - start), flush=True)
    return 0 if len(results) == len(args.paths) and all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
