"""The ``sharedlib`` modules a module imports, read from its source with ``ast`` (nothing is executed).

Shared by ``test_package_layout.py`` (the direction of imports between the library, ``sharedlib.experiments`` and
``sharedlib.book``) and by the code-hash tests of ``test_suite.py`` and ``test_hops.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sharedlib"


def module_name(path: Path, package: Path = PACKAGE) -> str:
    """``sharedlib/experiments/suite.py`` -> ``experiments.suite``; a package's ``__init__.py`` -> its own name."""
    parts = list(path.relative_to(package).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def sharedlib_imports(source: str, name: str, is_package: bool = False) -> set[str]:
    """Dotted names below ``sharedlib`` that module ``name`` imports (relative or absolute, nested too).

    ``from .x import y`` names ``x`` (or ``x.y`` where that is a module: the caller checks against the modules
    that exist, keeping the longest match); ``from . import x`` names ``x``. The empty string is ``sharedlib``.
    """
    here = name.split(".") if name else []
    if not is_package:
        here = here[:-1]  # a module's relative imports start from its package
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "sharedlib" or alias.name.startswith("sharedlib."):
                    found.add(alias.name.removeprefix("sharedlib").lstrip("."))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)] if node.level > 1 else list(here)
                if node.level - 1 > len(here):
                    raise ValueError(f"{name}: relative import beyond sharedlib")
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and (node.module == "sharedlib" or node.module.startswith("sharedlib.")):
                target = node.module.split(".")[1:]
            else:
                continue
            found.add(".".join(target))
            found |= {".".join([*target, alias.name]) for alias in node.names}
    return found


def all_modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name below ``sharedlib`` (``""`` is ``sharedlib/__init__.py``)."""
    return {module_name(p, package): p for p in sorted(package.rglob("*.py"))}


def imported_modules(path: Path, package: Path = PACKAGE, source: str | None = None) -> set[str]:
    """The modules of ``package`` that the file at ``path`` imports (only names that are modules there, the
    longest of each chain)."""
    modules = all_modules(package)
    name = module_name(path, package)
    text = path.read_text(encoding="utf-8") if source is None else source
    found = {n for n in sharedlib_imports(text, name, path.name == "__init__.py") if n in modules}
    # the longest match: ``from ..book import display`` is book.display (its package's __init__ runs, but says less)
    return {n for n in found if not any(m != n and (n == "" or m.startswith(n + ".")) for m in found)}
