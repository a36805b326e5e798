"""The Chinese edition: refresh its gettext catalogues from the English sources, report them, build it.

    python scripts/translations.py update    # extract messages from the book, merge into locale/zh_CN/*.po
    python scripts/translations.py status    # per catalogue: translated, untranslated, fuzzy
    python scripts/translations.py build     # the Chinese book into _build/html/zh (strict, like the English)

After changing English prose, run ``update``: new messages appear untranslated and changed ones are marked
fuzzy (with the old translation kept as a starting point) in ``locale/zh_CN/LC_MESSAGES/<page>.po``; edit
those entries (remove the ``fuzzy`` flag once the translation is right). ``make test`` fails until every
message is translated and none is fuzzy.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
LANGUAGE = "zh_CN"
LOCALE = ROOT / "locale"
CATALOGUES = LOCALE / LANGUAGE / "LC_MESSAGES"
SUBDIR = "zh"  # the Chinese site lives in _build/html/zh/
TITLE = "共享层：Transformer 的跨层参数共享"
JUPYTER_BOOK = Path(sys.executable).parent / "jupyter-book"
LETTERS = re.compile(r"[A-Za-z]{2,}")
# Markup a translation must keep exactly: roles with their targets ({glue:text}`key`, {cite:t}`key`,
# {ref}`label`, {doc}`path`), and link targets ](target).
ROLE = re.compile(r"\{[\w:-]+\}`[^`]*`")
LINK_TARGET = re.compile(r"\]\(([^)\s]+)\)")
# A translation that starts like "6. ..." parses as a numbered list, which Sphinx refuses in place of a heading
# or paragraph (the English stays): write "6\. ..." instead.
ORDERED_LIST = re.compile(r"\d+[.)]\s")


def needs_translation(msgid: str) -> bool:
    """Whether a message has words to translate (numbers, symbols and bare markup do not)."""
    text = LINK_TARGET.sub("", ROLE.sub("", msgid))
    text = re.sub(r"\$[^$]*\$|`[^`]*`|https?://\S+", "", text)  # math, code and URLs stay as they are
    return bool(LETTERS.search(text))


def kept_markup(text: str) -> list[str]:
    """The roles and link targets of ``text``, sorted: a translation must have the same ones.

    A role written ``{ref}`words <target>``` keeps only its target: its words are translated."""
    roles = [re.sub(r"`[^`<]*<([^`>]*)>`$", r"`<\1>`", role) for role in ROLE.findall(text)]
    return sorted(roles + LINK_TARGET.findall(text))


def _run(command: list[str]) -> None:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command))} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")


def extract(output: Path) -> Path:
    """Message templates (.pot) of every page of the book, written under ``output``; returns their folder."""
    _run([str(JUPYTER_BOOK), "build", str(ROOT), "--path-output", str(output), "--builder", "custom",
          "--custom-builder", "gettext", "--all"])
    return output / "_build" / "gettext"


def update(templates: Path, catalogues: Path = CATALOGUES) -> list[Path]:
    """Merge every template into its catalogue (created if new): new messages untranslated, changed ones fuzzy,
    messages without words (numbers, symbols) copied as they are."""
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import read_po, write_po

    written = []
    for pot in sorted(templates.rglob("*.pot")):
        relative = pot.relative_to(templates).with_suffix(".po")
        target = catalogues / relative
        with pot.open("rb") as file:
            template = read_po(file)
        if target.exists():
            with target.open("rb") as file:
                catalogue = read_po(file, locale=LANGUAGE)
        else:
            catalogue = Catalog(locale=LANGUAGE, domain=relative.with_suffix("").as_posix())
        catalogue.update(template, update_creation_date=False)
        catalogue.fuzzy = False  # the header: a catalogue is not a draft as a whole
        for message in catalogue:  # numbers, symbols and bare markup read the same in Chinese
            if message.id and not needs_translation(message.id) and (not message.string or message.fuzzy):
                message.string = message.id
                message.flags.discard("fuzzy")
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        with os.fdopen(handle, "wb") as file:
            write_po(file, catalogue, width=0, omit_header=False, ignore_obsolete=True, sort_output=False)
        os.replace(temporary, target)
        written.append(target)
    keep = {p.resolve() for p in written}
    for stale in catalogues.rglob("*.po"):  # a page that left the book takes its catalogue with it
        if stale.resolve() not in keep:
            stale.unlink()
    return written


@dataclass
class Status:
    catalogue: str
    translated: int
    untranslated: list[str]
    fuzzy: list[str]
    markup: list[str]  # translation changed a role, a citation key or a link target, or starts like a list


def status(catalogues: Path = CATALOGUES) -> list[Status]:
    """Per catalogue: how many messages are translated, which are not, which are fuzzy or lost markup."""
    from babel.messages.pofile import read_po

    report = []
    for po in sorted(catalogues.rglob("*.po")):
        with po.open("rb") as file:
            catalogue = read_po(file, locale=LANGUAGE)
        entry = Status(po.relative_to(catalogues).as_posix(), 0, [], [], [])
        for message in catalogue:
            if not message.id:
                continue
            if message.fuzzy:
                entry.fuzzy.append(message.id)
            elif not message.string:
                if needs_translation(message.id):
                    entry.untranslated.append(message.id)
            else:
                entry.translated += 1
                if (kept_markup(message.id) != kept_markup(message.string)
                        or ORDERED_LIST.match(message.string)):
                    entry.markup.append(message.id)
        report.append(entry)
    return report


def chinese_config(source: Path = ROOT / "_config.yml") -> dict:
    """The English book's configuration with the Chinese language and title (one source of truth)."""
    config = yaml.safe_load(source.read_text())
    config["title"] = TITLE
    config.setdefault("sphinx", {}).setdefault("config", {})["language"] = LANGUAGE
    config["sphinx"]["config"]["locale_dirs"] = [str(LOCALE)]
    extensions = config["sphinx"].get("local_extensions") or {}  # paths relative to the English config's folder
    config["sphinx"]["local_extensions"] = {name: str((source.parent / path).resolve())
                                            for name, path in extensions.items()}
    return config


def chinese_toc(source: Path = ROOT / "_toc.yml", catalogues: Path = CATALOGUES) -> dict:
    """The table of contents with its part captions translated by the root page's catalogue.

    Sphinx offers the captions for translation but does not apply the translations to the sidebar that
    sphinx-external-toc builds, so the Chinese build gets a table of contents of its own."""
    from babel.messages.pofile import read_po

    toc = yaml.safe_load(source.read_text())
    with (catalogues / f"{toc['root']}.po").open("rb") as file:
        catalogue = read_po(file, locale=LANGUAGE)
    for part in toc.get("parts", []):
        message = catalogue.get(part["caption"])
        if message is not None and message.string and not message.fuzzy:
            part["caption"] = message.string
    return toc


def build(html: Path = ROOT / "_build" / "html", strict: bool = True) -> Path:
    """Build the Chinese edition and place it in ``html/zh``; returns that folder."""
    with tempfile.TemporaryDirectory() as tmp:
        config, toc = Path(tmp) / "_config.yml", Path(tmp) / "_toc.yml"
        config.write_text(yaml.safe_dump(chinese_config(), allow_unicode=True, sort_keys=False))
        toc.write_text(yaml.safe_dump(chinese_toc(), allow_unicode=True, sort_keys=False))
        out = Path(tmp) / "out"
        command = [str(JUPYTER_BOOK), "build", str(ROOT), "--config", str(config), "--toc", str(toc),
                   "--path-output", str(out)]
        _run(command + (["-W", "-n", "--keep-going"] if strict else []))
        target = html / SUBDIR
        if target.exists():
            shutil.rmtree(target)
        html.mkdir(parents=True, exist_ok=True)
        shutil.copytree(out / "_build" / "html", target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["update", "status", "build"])
    args = parser.parse_args(argv)
    if args.command == "update":
        with tempfile.TemporaryDirectory() as tmp:
            written = update(extract(Path(tmp)))
        print(f"{len(written)} catalogues in {CATALOGUES.relative_to(ROOT)}")
    elif args.command == "status":
        total = {"translated": 0, "untranslated": 0, "fuzzy": 0, "markup": 0}
        for entry in status():
            print(f"{entry.catalogue}: {entry.translated} translated, {len(entry.untranslated)} untranslated, "
                  f"{len(entry.fuzzy)} fuzzy, {len(entry.markup)} with changed markup")
            for key in total:
                value = getattr(entry, key)
                total[key] += value if isinstance(value, int) else len(value)
        print("total:", ", ".join(f"{v} {k}" for k, v in total.items()))
    else:
        print(build())
    return 0


if __name__ == "__main__":
    sys.exit(main())
