"""Drop repeated <script> tags from every page.

sphinx-thebe (pulled in by Jupyter Book) registers its inline configuration script once per read phase, so a
page can carry ``const THEBE_JS_URL = ...`` twice, and the browser reports "Identifier 'THEBE_JS_URL' has
already been declared" on every page. tests/test_site.py checks that pages load without script errors.
"""

from __future__ import annotations


def _unique_scripts(app, pagename, templatename, context, doctree) -> None:
    seen, unique = set(), []
    for script in context.get("script_files", []):
        key = (getattr(script, "filename", script) or "", getattr(script, "attributes", {}).get("body", ""))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", _unique_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
