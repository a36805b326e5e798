"""A link at the top of every page to the same page in the other edition (English <-> Chinese).

The English site is ``_build/html/``, the Chinese one ``_build/html/zh/`` (scripts/translations.py builds it
from the same sources with ``language = "zh_CN"``); a page's name is the same in both.
"""

from __future__ import annotations

from html import escape

SUBDIR = "zh"
OTHER = {  # this edition's language -> (link text, the other edition's language tag, its title)
    "en": ("中文版", "zh-CN", "本页的中文版"),
    "zh_CN": ("English", "en", "This page in English"),
}


def other_edition_href(pagename: str, language: str) -> str:
    """Relative URL of ``pagename`` in the other edition, from ``pagename`` in this one."""
    up = "../" * pagename.count("/")
    if language.startswith("zh"):
        return f"{up}../{pagename}.html"
    return f"{up}{SUBDIR}/{pagename}.html"


def _add_switch(app, pagename, templatename, context, doctree) -> None:
    language = app.config.language or "en"
    if doctree is None or "body" not in context:
        return
    text, tag, title = OTHER["zh_CN" if language.startswith("zh") else "en"]
    href = escape(other_edition_href(pagename, language))
    link = (f'<nav class="language-switch" aria-label="{escape(title)}"><a href="{href}" hreflang="{tag}" '
            f'lang="{tag}" title="{escape(title)}">{text}</a></nav>')
    context["body"] = link + context["body"]


def setup(app):
    app.connect("html-page-context", _add_switch)
    app.add_css_file("language_switch.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
