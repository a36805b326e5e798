"""Small display helpers for the notebooks: Markdown tables and glued numbers (any chapter)."""

from __future__ import annotations

import importlib
import inspect
import textwrap
from collections.abc import Iterable, Sequence
from typing import Any

from IPython.display import Markdown


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> Markdown:
    """A Markdown table; integers get thousands separators."""

    def cell(value: Any) -> str:
        return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return Markdown("\n".join(lines))


def show(content: str | Markdown | None) -> None:
    """Display Markdown text or a ``markdown_table``; nothing for ``None`` (e.g. a table with no rows yet)."""
    if content is None:
        return
    from IPython.display import display

    display(Markdown(content) if isinstance(content, str) else content)


def glue(name: str, value: Any) -> None:
    """Glue ``value`` for the book's prose (``{glue:text}`` roles); a no-op where myst-nb is absent (Colab)."""
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        return
    myst_glue(name, value, display=False)


def show_source(*names: str) -> None:
    """Display the source of ``sharedlib`` objects named "module.Qual.name": what a chapter page shows with
    ``literalinclude``, for readers of the notebook in Jupyter or Colab, where that directive does not render."""
    from IPython.display import display

    for name in names:
        module_name, _, qualname = name.partition(".")
        if not qualname:
            raise ValueError(f"names must look like 'module.Object' or 'module.Class.method', got {name!r}")
        obj: Any = importlib.import_module(f"sharedlib.{module_name}")
        for part in qualname.split("."):
            obj = getattr(obj, part)
        display(Markdown(f"`sharedlib/{module_name}.py`\n\n```python\n{textwrap.dedent(inspect.getsource(obj))}```"))
