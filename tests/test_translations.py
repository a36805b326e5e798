"""The Chinese edition: complete catalogues for the current English sources, markup kept, glossary followed,
and the same numbers on every page as the English edition (its strict build and links: conftest's ``html``)."""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

import pytest
import translations as tr
import yaml
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po, write_po
from test_book import toc_files

GLOSSARY = yaml.safe_load((tr.LOCALE / tr.LANGUAGE / "glossary.yml").read_text())
CJK = re.compile(r"[\u4e00-\u9fff]")


def _messages():
    for po in sorted(tr.CATALOGUES.rglob("*.po")):
        with po.open("rb") as file:
            for message in read_po(file, locale=tr.LANGUAGE):
                if message.id and message.string and not message.fuzzy:
                    yield po.relative_to(tr.CATALOGUES).as_posix(), message.id, message.string


@pytest.fixture(scope="module")
def refreshed(tmp_path_factory):
    """The committed catalogues, refreshed from the current sources (``translations.py update``) in a copy."""
    tmp = tmp_path_factory.mktemp("i18n")
    catalogues = tmp / "catalogues"
    shutil.copytree(tr.CATALOGUES, catalogues)
    tr.update(tr.extract(tmp / "templates"), catalogues)
    return tr.status(catalogues)


def test_every_message_of_the_current_sources_is_translated(refreshed):
    assert {s.catalogue: s.untranslated[:3] for s in refreshed if s.untranslated} == {}


def test_no_translation_is_fuzzy(refreshed):
    assert {s.catalogue: s.fuzzy[:3] for s in refreshed if s.fuzzy} == {}


def test_translations_keep_roles_citations_and_link_targets(refreshed):
    assert {s.catalogue: s.markup[:3] for s in refreshed if s.markup} == {}


def test_every_page_has_a_catalogue(refreshed):
    assert sorted(s.catalogue for s in refreshed) == sorted(f"{page}.po" for page in toc_files())


def _prose(text: str) -> str:
    return re.sub(r"\$[^$]*\$|`[^`]*`|\]\([^)]*\)|https?://\S+", " ", tr.ROLE.sub(" ", text))


def test_the_glossary_is_followed():
    broken = []
    for catalogue, msgid, msgstr in _messages():
        for english, chinese in GLOSSARY.items():
            if re.search(rf"(?<![\w-]){re.escape(english)}", _prose(msgid), re.IGNORECASE) and chinese not in msgstr:
                broken.append(f"{catalogue}: {english!r} -> {chinese!r} missing in {msgstr[:50]!r}")
    assert broken == []


def test_status_sees_untranslated_fuzzy_and_changed_markup(tmp_path):
    catalogue = Catalog(locale=tr.LANGUAGE)
    catalogue.add("A translated sentence with {glue:text}`loss:.3f` nats.", "一句带 {glue:text}`loss:.3f` 奈特的话。")
    catalogue.add("Nobody translated this sentence.", "")
    catalogue.add("A sentence whose English changed.", "旧译文。", flags=["fuzzy"])
    catalogue.add("Costs {glue:text}`cost:,` FLOPs, see [the cost chapter](06b_cost.ipynb#flops).",
                  "花费 {glue:text}`cost:.1f` FLOPs，见[成本一章](06b_cost.ipynb#memory)。")
    catalogue.add("As {cite:t}`lan2020albert` found.", "正如 {cite:t}`devlin2019bert` 所发现的。")
    catalogue.add("See {ref}`below <outlook-recorded>`.", "见{ref}`下文 <outlook-recorded>`。")
    catalogue.add("6. Applications", "6. 应用")  # parses as a numbered list: Sphinx would keep the English
    catalogue.add("7. Tools", "7\\. 工具")
    catalogue.add("12,345", "")  # no words: nothing to translate
    with (tmp_path / "page.po").open("wb") as file:
        write_po(file, catalogue)
    [status] = tr.status(tmp_path)
    assert status.untranslated == ["Nobody translated this sentence."]
    assert status.fuzzy == ["A sentence whose English changed."]
    assert [m.split(" ")[0] for m in status.markup] == ["Costs", "As", "6."]
    assert status.translated == 6


def test_a_changed_english_sentence_becomes_fuzzy_and_a_new_one_untranslated(tmp_path):
    old, new = Catalog(locale=tr.LANGUAGE), Catalog()
    old.add("Sharing cuts the parameter count by a factor of N.", "共享把参数量减少为原来的 N 分之一。")
    new.add("Sharing cuts the parameter count by a factor of about N.")
    new.add("A brand new paragraph.")
    new.add("220,672 (-0.033)")  # no words: copied, so gettext's own tools count it as translated
    (tmp_path / "templates").mkdir()
    (tmp_path / "catalogues").mkdir()
    for path, catalogue in ((tmp_path / "catalogues" / "page.po", old), (tmp_path / "templates" / "page.pot", new)):
        with path.open("wb") as file:
            write_po(file, catalogue)
    tr.update(tmp_path / "templates", tmp_path / "catalogues")
    [status] = tr.status(tmp_path / "catalogues")
    assert status.fuzzy == ["Sharing cuts the parameter count by a factor of about N."]
    assert status.untranslated == ["A brand new paragraph."]
    with (tmp_path / "catalogues" / "page.po").open("rb") as file:
        merged = read_po(file)
    assert merged.get("220,672 (-0.033)").string == "220,672 (-0.033)" and not merged.fuzzy


def _pasted(page: Path) -> tuple[Counter, list[str]]:
    """The glued values a page shows: numbers (the same in both editions) and sentences (translated)."""
    values = re.findall(r'<span class="pasted-text">(.*?)</span>', page.read_text())
    words = [v for v in values if re.search(r"[A-Za-z]{3,}", v) or CJK.search(v)]
    return Counter(v for v in values if v not in words), words


def test_the_chinese_pages_are_chinese_and_show_the_same_numbers(html):
    for page in toc_files():
        english, chinese = html / f"{page}.html", html / tr.SUBDIR / f"{page}.html"
        title = re.search(r"<h1>(.*?)<", chinese.read_text(), re.S)
        assert title and CJK.search(title.group(1)), f"{page}: the title is not translated"
        (numbers, sentences), (english_numbers, english_sentences) = _pasted(chinese), _pasted(english)
        assert numbers == english_numbers, f"{page}: glued numbers differ between the editions"
        assert len(sentences) == len(english_sentences), f"{page}: glued sentences missing"
        assert [s for s in sentences if not CJK.search(s)] == [], f"{page}: glued sentences not translated"
        captions = re.findall(r'caption-text">([^<]*)<', chinese.read_text())
        assert captions and all(CJK.search(c) for c in captions), f"{page}: sidebar captions {captions}"


def test_every_page_links_to_the_other_edition(html):
    for page in toc_files():
        for site, other in ((html, html / tr.SUBDIR), (html / tr.SUBDIR, html)):
            text = (site / f"{page}.html").read_text()
            link = re.search(r'<nav class="language-switch"[^>]*><a href="([^"]+)"', text)
            assert link, f"{site}/{page}: no language link"
            assert ((site / page).parent / link.group(1)).resolve() == (other / f"{page}.html").resolve()


# ------------------------------------------------------------------ nothing a reader made is lost (copies only)
@pytest.fixture
def catalogues(tmp_path, monkeypatch) -> Path:
    """A copy of the committed catalogues; ``update`` and ``main`` point there, never at the real ``locale/``."""
    folder = tmp_path / "catalogues"
    shutil.copytree(tr.CATALOGUES, folder)
    defaults = tuple(folder if d == tr.CATALOGUES else d for d in tr.update.__defaults__)
    monkeypatch.setattr(tr.update, "__defaults__", defaults)
    monkeypatch.setattr(tr, "CATALOGUES", folder)
    return folder


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _template_of(po: Path, templates: Path) -> None:
    """The .pot a correct extraction would give for the catalogue ``po`` (its messages, untranslated)."""
    template = Catalog()
    for message in tr.read_catalogue(po):
        if message.id:
            template.add(message.id, context=message.context)
    templates.mkdir(parents=True, exist_ok=True)
    with (templates / po.with_suffix(".pot").name).open("wb") as file:
        write_po(file, template)


def test_an_empty_extraction_is_refused_and_changes_nothing(tmp_path, catalogues):
    (tmp_path / "templates").mkdir()
    before = _files(catalogues)
    with pytest.raises(ValueError, match=r"extraction failed: 0 templates with 0 messages.*left as they are"):
        tr.update(tmp_path / "templates", catalogues)
    assert _files(catalogues) == before


def test_a_partial_extraction_is_refused_unless_forced(tmp_path, catalogues):
    page = min(catalogues.rglob("*.po"), key=lambda p: p.stat().st_size)
    _template_of(page, tmp_path / "templates")
    before = _files(catalogues)
    with pytest.raises(ValueError, match=r"looks incomplete: 1 templates .* holds \d+ catalogues"):
        tr.update(tmp_path / "templates", catalogues)
    assert _files(catalogues) == before
    tr.update(tmp_path / "templates", catalogues, force=True)  # the book really lost its other pages
    assert [p.name for p in catalogues.rglob("*.po")] == [page.name]


def test_update_command_reports_a_failed_extraction_and_keeps_the_catalogues(tmp_path, catalogues, monkeypatch,
                                                                             capsys):
    monkeypatch.setattr(tr, "extract", lambda output: output)  # a build that extracted nothing
    before = _files(catalogues)
    with pytest.raises(SystemExit) as exit_info:
        tr.main(["update"])
    assert exit_info.value.code == 1 and "extraction failed" in capsys.readouterr().err
    assert _files(catalogues) == before


def _broken(catalogues: Path, old: bytes, new: bytes) -> tuple[Path, int]:
    """Replace the first ``old`` in a catalogue's msgstr lines by ``new``; returns the file and the line."""
    for po in sorted(catalogues.rglob("*.po")):
        lines = po.read_bytes().split(b"\n")
        for number, line in enumerate(lines, 1):
            if line.startswith(b'msgstr "') and line.endswith(old) and len(line) > 12:
                lines[number - 1] = line[: -len(old)] + new
                po.write_bytes(b"\n".join(lines))
                return po, number
    raise AssertionError("no msgstr line to break")


def test_a_string_without_its_closing_quote_is_an_error_naming_file_and_line(catalogues, capsys):
    po, line = _broken(catalogues, b'"', b"")
    with pytest.raises(ValueError, match=rf"{re.escape(str(po))}:{line}: a string without its closing quote"):
        tr.status(catalogues)
    with pytest.raises(SystemExit):
        tr.main(["status"])
    assert f"{po}:{line}" in capsys.readouterr().err


def test_invalid_utf8_is_an_error_naming_the_file(catalogues):
    po, line = _broken(catalogues, b'"', b'\xff"')
    with pytest.raises(ValueError, match=rf"{re.escape(str(po))}:{line}: not valid UTF-8"):
        tr.status(catalogues)
    with pytest.raises(ValueError, match=re.escape(str(po))):
        tr.update(po.parent, catalogues)  # checked before anything is written
