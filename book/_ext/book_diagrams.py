"""Render the book's architecture diagrams (``sharedlib.book.diagrams``) to PNG before Sphinx reads the pages.

A MyST page includes one with ``{figure} _generated/<name>.png`` (from ``book/``). The folder is a build product,
ignored by git, so the picture on the page is always the one the current library draws. A file whose bytes did
not change is left alone, so an unchanged diagram does not make Sphinx re-read the pages that show it.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

GENERATED = Path("book") / "_generated"  # relative to the source directory

# name -> (drawing function of sharedlib.book.diagrams, its arguments)
DIAGRAMS: dict[str, tuple[str, tuple]] = {
    "unrolled_stacks": ("draw_unrolled_stacks", (6, 3)),
    "factorised_embedding": ("draw_factorised_embedding", (30000, 128, 768)),
    "universal_transformer_step": ("draw_universal_transformer_step", ()),
    "relaxed_sharing": ("draw_relaxed_sharing", (6, 8)),
    "one_module_many_uses": ("draw_one_module_many_uses", (3,)),
}


def render_diagrams(folder: Path) -> list[Path]:
    """Write every diagram in ``DIAGRAMS`` to ``folder/<name>.png``; return the paths."""
    import matplotlib

    matplotlib.use("Agg")  # no display at build time; the book never executes notebooks in this process
    import matplotlib.pyplot as plt

    from sharedlib.book import diagrams
    from sharedlib.book.plots import BOOK_STYLE

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (function, args) in DIAGRAMS.items():
        with plt.rc_context(BOOK_STYLE):
            fig = getattr(diagrams, function)(*args)
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", bbox_inches="tight", pad_inches=0.1, metadata={"Software": None})
            plt.close(fig)
        path = folder / f"{name}.png"
        if not path.exists() or path.read_bytes() != buffer.getvalue():
            partial = path.with_suffix(f".{os.getpid()}.tmp")
            partial.write_bytes(buffer.getvalue())
            partial.replace(path)  # atomic: a reader never sees half a file
        paths.append(path)
    return paths


def _on_builder_inited(app) -> None:
    render_diagrams(Path(app.srcdir) / GENERATED)


def setup(app):
    app.connect("builder-inited", _on_builder_inited)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
