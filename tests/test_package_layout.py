"""The package's three roles and the one direction of imports between them (issue 22).

* the model library, the modules directly in ``sharedlib``, imports neither ``sharedlib.experiments`` nor
  ``sharedlib.book``;
* ``sharedlib.experiments`` (suites, recorded files, baselines, distributed runs) may import the library, not
  ``sharedlib.book``;
* ``sharedlib.book`` (display, plots, diagrams, widgets, exercises, report prose) may import both.

Imports are read with ``ast`` from every module's source, relative and absolute, at module level or inside a
function, so a forbidden import fails here even where it is only executed on some path.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import tomllib
from package_imports import PACKAGE, all_modules, imported_modules, module_name, sharedlib_imports

ROOT = PACKAGE.parent
ALLOWED = {  # importer's role -> the roles it may import
    "library": {"library"},
    "experiments": {"library", "experiments"},
    "book": {"library", "experiments", "book"},
}
PRESENTATION = {"matplotlib", "IPython", "ipywidgets", "myst_nb"}  # what only a page needs


def role(name: str) -> str:
    """The role of the module ``name`` (dotted below ``sharedlib``): its top subpackage, or the library."""
    top = name.split(".")[0]
    return top if top in ("book", "experiments") else "library"


def violations(package: Path = PACKAGE) -> list[str]:
    """Every import of ``package`` that points the wrong way, as "importer -> imported (role -> role)"."""
    found = []
    for name, path in all_modules(package).items():
        for target in sorted(imported_modules(path, package)):
            if role(target) not in ALLOWED[role(name)]:
                found.append(f"{name or 'sharedlib'} -> {target} ({role(name)} -> {role(target)})")
    return found


def test_imports_point_one_way():
    assert violations() == []


def test_each_role_has_its_modules():
    """The cut of issue 22; a new module goes where its imports and its role say (see the subpackages' docstrings)."""
    modules = all_modules()
    assert {n for n in modules if role(n) == "experiments"} == {
        "experiments", "experiments.baselines", "experiments.distributed", "experiments.hops", "experiments.live",
        "experiments.loops", "experiments.recorded", "experiments.sudoku", "experiments.suite", "experiments.why"}
    assert {n for n in modules if role(n) == "book"} == {
        "book", "book.albert_sizes", "book.background", "book.decoding_report", "book.diagrams", "book.display",
        "book.exercises", "book.hops_report", "book.loops_report", "book.plots", "book.report", "book.similarity_plots",
        "book.sudoku_report", "book.why_report", "book.widgets"}
    assert {"", "config", "sharing", "layers", "models", "decoding", "train", "universal", "recursions", "relaxed",
            "counting", "measure", "data", "runtime", "evidence", "looped", "reasoning", "puzzles"} <= {
        n for n in modules if role(n) == "library"}


def test_the_library_and_the_experiments_need_no_presentation_packages():
    """matplotlib, IPython, ipywidgets and myst_nb are imported only by ``sharedlib.book``."""
    for name, path in all_modules().items():
        if role(name) == "book":
            continue
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
        assert not imported & PRESENTATION, f"{name}: imports {sorted(imported & PRESENTATION)}"


def test_importing_the_library_imports_neither_subpackage():
    import subprocess
    import sys

    code = "import sys, sharedlib; print(sorted(m for m in sys.modules if m.startswith('sharedlib.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert "sharedlib.book" not in out and "sharedlib.experiments" not in out, out


def test_the_import_reader_resolves_relative_and_absolute_imports():
    source = ("from ..config import A\nfrom .suite import b\nfrom . import recorded\nimport sharedlib.book.plots\n"
              "def f():\n    from sharedlib.book import display\n")
    assert sharedlib_imports(source, "experiments.live") == {
        "config", "config.A", "experiments.suite", "experiments.suite.b", "experiments", "experiments.recorded",
        "book.plots", "book", "book.display"}
    assert sharedlib_imports("from .models import M\n", "") == {"models", "models.M"}
    assert sharedlib_imports("from .live import x\n", "experiments", is_package=True) == {
        "experiments.live", "experiments.live.x"}
    assert module_name(PACKAGE / "experiments" / "__init__.py") == "experiments"
    with pytest.raises(ValueError, match="beyond sharedlib"):
        sharedlib_imports("from ...x import y\n", "book.plots")


@pytest.mark.parametrize(("module", "source", "expected"), [
    ("models.py", "from .book.plots import f\n", "models -> book.plots (library -> book)"),
    ("models.py", "def f():\n    from sharedlib.experiments import suite\n",
     "models -> experiments.suite (library -> experiments)"),
    ("__init__.py", "from .experiments import live\n", "sharedlib -> experiments.live (library -> experiments)"),
    ("experiments/suite.py", "from ..book import display\n",
     "experiments.suite -> book.display (experiments -> book)"),
    ("experiments/suite.py", "import sharedlib.book.plots as p\n",
     "experiments.suite -> book.plots (experiments -> book)"),
])
def test_a_forbidden_import_fails(tmp_path, module, source, expected):
    """A synthetic copy of the package with one import the wrong way: the check names it (it can fail)."""
    package = tmp_path / "sharedlib"
    for name in ("__init__.py", "models.py", "book/__init__.py", "book/plots.py", "book/display.py",
                 "experiments/__init__.py", "experiments/suite.py", "experiments/live.py"):
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text("from ..models import M\n" if name == "book/plots.py" else "")
    assert violations(package) == []  # the allowed direction (book -> library) passes
    (package / module).write_text(source)
    assert violations(package) == [expected]


def test_pyproject_lists_every_subpackage():
    """setuptools' explicit list: a subpackage missing there would be missing from the wheel (Colab)."""
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    on_disk = {"sharedlib." + ".".join(p.parent.relative_to(PACKAGE).parts) for p in PACKAGE.rglob("__init__.py")}
    assert {p.rstrip(".") for p in on_disk} | {"sharedlib", "sharedlib.texts", "sharedlib.recorded_results"} == set(
        packages)


def private_imports(source: str) -> list[str]:
    """``from x import _name`` and ``module._name`` of an imported module: a private name used across modules."""
    import ast

    tree = ast.parse(source)
    modules = {alias.asname or alias.name.split(".")[0] for node in ast.walk(tree)
               if isinstance(node, ast.Import) for alias in node.names}
    modules |= {alias.asname or alias.name for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) for alias in node.names}
    found = [f"from {'.' * node.level}{node.module or ''} import {alias.name}" for node in ast.walk(tree)
             if isinstance(node, ast.ImportFrom) for alias in node.names
             if alias.name.startswith("_") and not alias.name.startswith("__")]
    found += [f"{node.value.id}.{node.attr}" for node in ast.walk(tree)
              if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
              and node.attr.startswith("_") and not node.attr.startswith("__")]
    return found


def test_no_private_name_is_used_across_modules():
    root = Path(__file__).resolve().parents[1]
    used = {str(path.relative_to(root)): private_imports(path.read_text(encoding="utf-8"))
            for folder in ("sharedlib", "scripts") for path in sorted((root / folder).rglob("*.py"))}
    # _layer: the hook chapters 5 and 8 show and tell readers to override; making it public renames it in their
    # prose, code listings and catalogues too (left for the package issue)
    allowed = {"SharedTransformer._layer"}
    assert {path: [n for n in names if n not in allowed] for path, names in used.items()
            if set(names) - allowed} == {}


def test_the_private_name_check_sees_both_forms():
    assert private_imports("from .models import SharedTransformer, _init_weights") == [
        "from .models import _init_weights"]
    assert private_imports("from sharedlib import suite\nsuite._ordered(x)") == ["suite._ordered"]
    assert private_imports("import torch\nx = torch.__version__\nself._cache = 1") == []
