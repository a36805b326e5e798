"""Accessibility fixes for the rendered book, each one a finding of the browser checks in tests/test_site.py.

- Link contrast: the light theme's link colour is darkened (``static/accessibility.css``) so that links keep a
  4.5:1 contrast on the tinted background of admonitions (WCAG 2 AA).
- Text outputs of cells wrap at the page width instead of scrolling sideways (reflow).
- Bibliography roles: docutils marks each entry of a citation list ``role="doc-biblioentry"`` inside a
  ``role="list"``. ARIA 1.3 deprecates ``doc-biblioentry``, so assistive technology (and axe) no longer sees list
  items in that list; each entry becomes ``role="listitem"``, which is what the list needs.
"""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"
CSS = "accessibility.css"


def _add_static_path(app, config) -> None:
    config.html_static_path = [*config.html_static_path, str(STATIC)]


def _fix_roles(app, pagename, templatename, context, doctree) -> None:
    if "body" in context:
        context["body"] = context["body"].replace('role="doc-biblioentry"', 'role="listitem"')


def setup(app):
    app.connect("config-inited", _add_static_path)
    app.add_css_file(CSS)
    app.connect("html-page-context", _fix_roles)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
