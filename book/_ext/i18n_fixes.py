"""Two fixes that the Chinese edition (scripts/translations.py) needs from Sphinx's translation machinery.

1. ``{glue}`` roles inside translated messages. Sphinx translates a paragraph by parsing its translation as a
new, separate document (``sphinx.transforms.i18n.publish_msgstr``). MyST-NB's glue roles look their values
up in the notebook's renderer, which only the page's own document carries (and only while the page is
parsed), so every ``{glue:text}`key``` of a translation would fail with "No key ... found in glue data for
this document". This extension remembers each page's renderer for the rest of that page's reading and hands
it to the documents of its translated messages.

2. Links to two sections of one page in one message. Sphinx copies the attributes of the original message's
cross-references onto the translated ones, matched by (domain, type, target). MyST's link to
``page.ipynb#section`` keeps the section in ``reftargetid``, so both links of
"see [a](page.ipynb#one) and [b](page.ipynb#two)" would end at ``#two``. The translation's own
``reftargetid`` is kept instead (tests/test_translations.py checks that translations keep link targets).

3. Exercise titles. sphinx-exercise builds the title of ``{exercise} Warm-up: ...`` from its argument without
a source or raw text, so Sphinx never offers it for translation; the title is given both, rebuilt as MyST,
and the catalogue builder gets it as a paragraph of its own (sphinx-exercise rebuilds titles after reading).
A solution's title repeats its exercise's title from a copy taken before translation; the copy is renewed
once the page is translated.

4. Glued text. A ``{glue:text}`` value that is a sentence (generated from the recorded numbers) is pasted as
a value, not parsed as a message, so it would stay English. The catalogue builder gets each pasted text with
words as a message of the page that shows it, and a translated build replaces the text by its translation.
"""

from __future__ import annotations

import re
import uuid

from docutils import nodes
from sphinx.locale import init as init_locale
from sphinx.transforms import SphinxTransform
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util.i18n import docname_to_domain

TRANSLATED = "<translated>"  # how publish_msgstr marks the source of a translated message
KEY = "translated_glue_renderer"  # in env.temp_data, which Sphinx clears after every page


def _remembering(load_renderer, app):
    def load(name):
        renderer_class = load_renderer(name)

        def make(mdit_renderer, logger):
            renderer = renderer_class(mdit_renderer, logger)
            app.env.temp_data[KEY] = renderer  # the page being read
            return renderer

        return make

    load.wrapped = load_renderer
    return load


def _with_page_renderer(retrieve):
    def retrieve_glue_data(document, key):
        env = getattr(document.settings, "env", None)
        if ("nb_renderer" in document or env is None or KEY not in env.temp_data
                or not str(document.get("source", "")).endswith(TRANSLATED)):
            return retrieve(document, key)
        document["nb_renderer"] = env.temp_data[KEY]
        try:
            return retrieve(document, key)
        finally:  # the message's nodes join the page's doctree, which is pickled: leave no renderer behind
            del document["nb_renderer"]

    retrieve_glue_data.wrapped = retrieve
    return retrieve_glue_data


MARKUP = {nodes.literal: "`{}`", nodes.emphasis: "*{}*", nodes.strong: "**{}**", nodes.math: "${}$"}


def _as_myst(node: nodes.Node) -> str:
    """The MyST source of an inline node list (text, code, emphasis, strong, math)."""
    if isinstance(node, nodes.Text):
        return str(node)
    inner = "".join(_as_myst(child) for child in node.children)
    return MARKUP.get(type(node), "{}").format(inner)


class TranslatableExerciseTitles(SphinxTransform):
    """Give exercise titles the source and raw text that make them translatable messages."""

    default_priority = 5  # before Sphinx's PreserveTranslatableMessages (10) and Locale (20)

    def apply(self, **kwargs) -> None:
        from sphinx_exercise.nodes import exercise_subtitle

        for subtitle in list(self.document.findall(exercise_subtitle)):
            if not subtitle.rawsource:
                subtitle.rawsource = "".join(_as_myst(child) for child in subtitle.children)
                subtitle.source = subtitle.source or self.document.get("source")
                subtitle.line = subtitle.line or subtitle.parent.line or 1
            if self.app.builder.name == "gettext":
                # sphinx-exercise rebuilds the title after reading, so the catalogue builder would never see
                # it: a copy as a paragraph of its own, in the message extraction only, carries the message
                copy = nodes.paragraph(subtitle.rawsource, subtitle.rawsource)
                copy.source, copy.line = subtitle.source, subtitle.line
                self.document += copy


class RenewExerciseCopies(SphinxTransform):
    """Replace sphinx-exercise's copy of each exercise (taken while parsing) with the translated exercise."""

    default_priority = 30  # after Locale (20)

    def apply(self, **kwargs) -> None:
        from sphinx_exercise.nodes import exercise_enumerable_node, exercise_node

        registry = getattr(self.env, "sphinx_exercise_registry", {})
        for node in self.document.findall(lambda n: isinstance(n, exercise_node | exercise_enumerable_node)):
            entry = registry.get(node.get("label"))
            if entry is not None and entry["docname"] == self.env.docname:
                entry["node"] = node.deepcopy()


WORDS = re.compile(r"[A-Za-z]{3,}")


class TranslatePastedText(SphinxPostTransform):
    """Offer pasted glue text as messages (catalogue builder) or replace it by its translation."""

    default_priority = 50  # after MyST-NB pastes the values of other pages (5)

    def run(self, **kwargs) -> None:
        pasted = [node for node in self.document.findall(nodes.inline)
                  if "pasted-text" in node["classes"] and WORDS.search(node.astext())]
        if not pasted:
            return
        if self.app.builder.name == "gettext":
            for node in pasted:  # built after reading, so each message needs its own uid to be catalogued
                copy = nodes.paragraph(node.astext(), node.astext())
                copy.source, copy.line, copy.uid = self.document.get("source"), node.line or 1, uuid.uuid4().hex
                self.document += copy
            return
        if not self.config.language or self.config.language == "en":
            return
        dirs = [str(self.app.srcdir / directory) for directory in self.config.locale_dirs]
        domain = docname_to_domain(self.env.docname, self.config.gettext_compact)
        catalog, has_catalog = init_locale(dirs, self.config.language, domain)
        if not has_catalog:
            return
        for node in pasted:
            translated = catalog.gettext(node.astext())
            if translated != node.astext():
                node.children = []
                node += nodes.Text(translated)


def setup(app):
    app.add_post_transform(TranslatePastedText)
    app.add_transform(TranslatableExerciseTitles)
    app.add_transform(RenewExerciseCopies)
    from sphinx.transforms import i18n

    if "reftargetid" not in i18n.EXCLUDED_PENDING_XREF_ATTRIBUTES:
        i18n.EXCLUDED_PENDING_XREF_ATTRIBUTES = (*i18n.EXCLUDED_PENDING_XREF_ATTRIBUTES, "reftargetid")
    from myst_nb import sphinx_
    from myst_nb.ext.glue import directives, roles, utils

    if not hasattr(sphinx_.load_renderer, "wrapped"):
        sphinx_.load_renderer = _remembering(sphinx_.load_renderer, app)
    if not hasattr(utils.retrieve_glue_data, "wrapped"):
        patched = _with_page_renderer(utils.retrieve_glue_data)
        for module in (utils, roles, directives):
            module.retrieve_glue_data = patched
    return {"parallel_read_safe": True, "parallel_write_safe": True}
