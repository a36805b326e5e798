"""The Chinese edition: refresh its gettext catalogues from the English sources, report them, build it.

    python scripts/translations.py update    # extract messages from the book, merge into locale/zh_CN/*.po
    python scripts/translations.py status    # per catalogue: translated, untranslated, fuzzy
    python scripts/translations.py build     # the Chinese book into _build/html/zh (strict, like the English)

After changing English prose, run ``update``: new messages appear untranslated and changed ones are marked
fuzzy (with the old translation kept as a starting point) in ``locale/zh_CN/LC_MESSAGES/<page>.po``; edit
those entries (remove the ``fuzzy`` flag once the translation is right). ``make test`` fails until every
message is translated and none is fuzzy. An extraction with far fewer messages than the catalogues hold (a
failed build) is refused, leaving ``locale/`` as it was, unless ``update --force``; a catalogue that is not
UTF-8 or has a string without its closing quote is an error naming the file and line.
"""

from __future__ import annotations

import argparse
import io
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
MIN_EXTRACTED = 0.5  # an extraction with fewer pages or messages than this share of the catalogues' is refused
# A line of a .po file that holds a string: an optional keyword, then one string closed by an unescaped quote.
PO_KEYWORD = r"(?:(?:msgctxt|msgid|msgid_plural|msgstr(?:\[\d+\])?)\s+)?"
PO_STRING_LINE = re.compile(PO_KEYWORD + r'"(?:[^"\\]|\\.)*"')
PO_UNCLOSED = re.compile(PO_KEYWORD + r'"(?:[^"\\]|\\.)*')


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


def check_po(path: Path, data: bytes) -> str:
    """The text of the .po/.pot file ``path`` (UTF-8, as babel and Sphinx write them), every string closed;
    ``ValueError`` naming the file and line otherwise (babel would silently drop a string's last character)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ValueError(f"{path}:{line}: not valid UTF-8 ({error.reason} at byte {error.start}); save the catalogue "
                         "as UTF-8") from None
    for number, line in enumerate(text.splitlines(), 1):
        content = line.strip()
        if content.startswith(("#~", "#|")):  # an obsolete or a previous message: its strings count too
            content = content[2:].lstrip("|").strip()
            if not content.startswith(("msg", '"')):
                continue
        elif not content or content.startswith("#"):
            continue
        if not PO_STRING_LINE.fullmatch(content):
            problem = ("a string without its closing quote" if PO_UNCLOSED.fullmatch(content)
                       else "neither a keyword with a quoted string nor a quoted string")
            raise ValueError(f"{path}:{number}: {problem}: {line.strip()[:80]}")
    return text


def read_catalogue(path: Path, locale: str | None = LANGUAGE):
    """The babel ``Catalog`` of a .po (or, with ``locale=None``, .pot) file, checked by ``check_po`` first."""
    from babel.messages.pofile import PoFileError, read_po

    data = path.read_bytes()
    check_po(path, data)
    try:
        return read_po(io.BytesIO(data), locale=locale, abort_invalid=True)
    except PoFileError as error:
        raise ValueError(f"{path}: {error}") from error


def _count(catalogue) -> int:
    return sum(1 for message in catalogue if message.id)


def update(templates: Path, catalogues: Path = CATALOGUES, force: bool = False) -> list[Path]:
    """Merge every template into its catalogue (created if new): new messages untranslated, changed ones fuzzy,
    messages without words (numbers, symbols) copied as they are; catalogues without a template are removed.

    Every file is read and checked before any is written. An extraction with no messages, or (unless ``force``)
    with fewer pages or messages than ``MIN_EXTRACTED`` of the catalogues', is refused (``ValueError``)."""
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import write_po

    from sharedlib.runtime import atomic_write

    pots = sorted(templates.rglob("*.pot"))
    read = [(pot.relative_to(templates).with_suffix(".po"), read_catalogue(pot, locale=None)) for pot in pots]
    existing = {po: read_catalogue(po) for po in sorted(catalogues.rglob("*.po"))}
    extracted, held = sum(_count(t) for _, t in read), sum(_count(c) for c in existing.values())
    found = f"{len(pots)} templates with {extracted} messages in {templates}"
    holds = f"{catalogues} holds {len(existing)} catalogues with {held} messages"
    if not extracted:
        raise ValueError(f"the extraction failed: {found}; {holds}, left as they are")
    if not force and (len(pots) < MIN_EXTRACTED * len(existing) or extracted < MIN_EXTRACTED * held):
        raise ValueError(f"the extraction looks incomplete: {found}, but {holds}; they are left as they are (pass "
                         f"force=True, or update --force, if the book really lost that much)")
    merged = []
    for relative, template in read:
        target = catalogues / relative
        catalogue = (existing[target] if target in existing
                     else Catalog(locale=LANGUAGE, domain=relative.with_suffix("").as_posix()))
        catalogue.update(template, update_creation_date=False)
        catalogue.fuzzy = False  # the header: a catalogue is not a draft as a whole
        for message in catalogue:  # numbers, symbols and bare markup read the same in Chinese
            if message.id and not needs_translation(message.id) and (not message.string or message.fuzzy):
                message.string = message.id
                message.flags.discard("fuzzy")
        merged.append((target, catalogue))
    written = []
    for target, catalogue in merged:
        atomic_write(target, lambda file, c=catalogue: write_po(file, c, width=0, omit_header=False,
                                                                 ignore_obsolete=True, sort_output=False),
                     binary=True)
        written.append(target)
    keep = {p.resolve() for p in written}
    for stale in existing:  # a page that left the book takes its catalogue with it
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
    report = []
    for po in sorted(catalogues.rglob("*.po")):
        catalogue = read_catalogue(po)
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
    config = yaml.safe_load(source.read_text(encoding="utf-8"))
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
    toc = yaml.safe_load(source.read_text(encoding="utf-8"))
    catalogue = read_catalogue(catalogues / f"{toc['root']}.po")
    for part in toc.get("parts", []):
        message = catalogue.get(part["caption"])
        if message is not None and message.string and not message.fuzzy:
            part["caption"] = message.string
    return toc


def build(html: Path = ROOT / "_build" / "html", strict: bool = True) -> Path:
    """Build the Chinese edition and place it in ``html/zh``; returns that folder (every catalogue checked first:
    Sphinx, like babel, would build from a broken one)."""
    for po in sorted(CATALOGUES.rglob("*.po")):
        read_catalogue(po)
    with tempfile.TemporaryDirectory() as tmp:
        config, toc = Path(tmp) / "_config.yml", Path(tmp) / "_toc.yml"
        config.write_text(yaml.safe_dump(chinese_config(), allow_unicode=True, sort_keys=False), encoding="utf-8")
        toc.write_text(yaml.safe_dump(chinese_toc(), allow_unicode=True, sort_keys=False), encoding="utf-8")
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
    parser.add_argument("--force", action="store_true",
                        help="update: accept an extraction with far fewer messages than the catalogues hold")
    args = parser.parse_args(argv)
    if args.force and args.command != "update":
        parser.error("--force applies to update only")
    if args.command == "update":
        with tempfile.TemporaryDirectory() as tmp:
            templates = extract(Path(tmp))
            try:
                written = update(templates, CATALOGUES, force=args.force)
            except ValueError as error:
                parser.exit(1, f"translations.py update: {error}\n")
        print(f"{len(written)} catalogues in {CATALOGUES}")
    elif args.command == "status":
        total = {"translated": 0, "untranslated": 0, "fuzzy": 0, "markup": 0}
        try:
            report = status(CATALOGUES)
        except ValueError as error:
            parser.exit(1, f"translations.py status: {error}\n")
        for entry in report:
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
