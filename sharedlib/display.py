"""Small display helpers for the notebooks: Markdown tables and glued numbers (any chapter)."""

from __future__ import annotations

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
