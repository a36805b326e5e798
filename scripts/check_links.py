"""Find broken internal links in the built book: every local href/src must name a file, and every #fragment an id.

    python scripts/check_links.py _build/html

Sphinx's own ``-n`` build catches unresolved cross-references; this also checks the raw links in the HTML
(Markdown links between pages and to sections, images, stylesheets, scripts) after the theme has written it.
"""

from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)
            elif name in ("href", "src") and value:
                self.links.append(value)


def _parse(path: Path, cache: dict[Path, _Links]) -> _Links:
    if path not in cache:
        cache[path] = _Links()
        cache[path].feed(path.read_text(encoding="utf-8", errors="replace"))
    return cache[path]


def _ids(path: Path, cache: dict[Path, _Links]) -> set[str]:
    return _parse(path, cache).ids


def broken_internal_links(html_dir: Path) -> list[str]:
    """``"page -> link (reason)"`` for every local link that names a missing file or a missing #fragment."""
    cache: dict[Path, _Links] = {}
    broken = []
    pages = [p for p in sorted(html_dir.rglob("*.html")) if "_static" not in p.relative_to(html_dir).parts]
    for page in pages:  # _static holds the theme's Jinja templates, not pages
        for link in _parse(page, cache).links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(("javascript:", "data:", "mailto:")):
                continue  # external: not this check's business
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(html_dir)} -> {link} (no such file)")
            elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in _ids(target, cache):
                broken.append(f"{page.relative_to(html_dir)} -> {link} (no such id)")
    return broken


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    html_dir = Path(args[0] if args else "_build/html")
    broken = broken_internal_links(html_dir)
    print("\n".join(broken) or f"no broken internal links in {html_dir}")
    return 1 if broken else 0


if __name__ == "__main__":
    raise SystemExit(main())
