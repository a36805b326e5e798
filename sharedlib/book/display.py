"""Notebook display helpers, any chapter: Markdown tables, glued numbers, source."""

from __future__ import annotations

import importlib
import inspect
import textwrap
from collections.abc import Iterable, Sequence
from typing import Any

from IPython.display import Markdown

__all__ = ["glue", "markdown_table", "show", "show_source"]


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> Markdown:
    """A Markdown table; integers get thousands separators."""

    def cell(value: Any) -> str:
        return (
            f"{value:,}"
            if isinstance(value, int) and not isinstance(value, bool)
            else str(value)
        )

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return Markdown("\n".join(lines))


def show(content: str | Markdown | None) -> None:
    """Display Markdown text or a ``markdown_table``; nothing for ``None`` (e.g. a
    table with no rows yet)."""
    if content is None:
        return
    from IPython.display import display

    display(Markdown(content) if isinstance(content, str) else content)


def glue(name: str, value: Any) -> None:
    """Glue ``value`` for the book's prose (``{glue:text}`` roles); a no-op where
    myst-nb is absent (Colab)."""
    try:
        from myst_nb import glue as myst_glue  # optional: absent on Colab
    except ImportError:
        return
    myst_glue(name, value, display=False)


def show_source(*names: str) -> None:
    """Display the source of ``sharedlib`` objects named "module.Qual.name", the module
    a dotted path below ``sharedlib`` ("relaxed", "experiments.suite"): what a chapter
    page shows with ``literalinclude``, for readers of the notebook in Jupyter or Colab,
    where that directive does not render."""
    from IPython.display import display

    for name in names:
        parts = name.split(".")
        if len(parts) < 2:
            raise ValueError(
                "names must look like 'module.Object' or 'module.Class.method', "
                f"got {name!r}"
            )
        # the module is the longest importable prefix: "relaxed.f", or
        # "experiments.suite.f" in a subpackage
        for cut in range(len(parts) - 1, 0, -1):
            module_name = ".".join(parts[:cut])
            try:
                obj: Any = importlib.import_module(f"sharedlib.{module_name}")
                break
            except ModuleNotFoundError as error:
                if error.name != f"sharedlib.{module_name}" or cut == 1:
                    raise
        for part in parts[cut:]:
            obj = getattr(obj, part)
        path = module_name.replace(".", "/")
        source = textwrap.dedent(inspect.getsource(obj))
        display(Markdown(f"`sharedlib/{path}.py`\n\n```python\n{source}```"))
