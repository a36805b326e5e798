"""Look at the built book in a real headless Chromium: serve it on localhost, load pages, take screenshots.

    python scripts/site_browser.py --html _build/html --output-dir out/screenshots   # screenshots for review

The pages are served from a local HTTP server. MathJax, which the pages load from a CDN, is served from the
copy installed by ``django-static-mathjax``, and every other outside request is refused, so the check runs
without a network. Chromium is Debian's (``/usr/bin/chromium``) or the one named by ``$CHROMIUM``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MATHJAX_CDN = "https://cdn.jsdelivr.net/npm/mathjax@3/"
# The flags Chromium needs as root on a machine without a display or network (see the tools' README).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOTS = {"landing": "book/intro.html", "chapter-4": "notebooks/04_counting_parameters.html"}


def chromium_path() -> str | None:
    """Debian's chromium, or the browser named by $CHROMIUM."""
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def mathjax_dir() -> Path:
    """The local MathJax 3 distribution (the ``es5`` folder the CDN serves)."""
    import mathjax  # django-static-mathjax: MathJax's files as package data

    return Path(next(iter(mathjax.__path__))) / "static" / "mathjax"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:
        pass


@contextlib.contextmanager
def serve(html_dir: Path) -> Iterator[str]:
    """Serve ``html_dir`` on a free localhost port; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(html_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()


def offline_routes(context) -> None:
    """Serve MathJax from the local copy and refuse every other request that leaves localhost."""
    local = mathjax_dir()

    def handle(route) -> None:
        url = route.request.url
        if url.startswith(MATHJAX_CDN):
            path = local / url[len(MATHJAX_CDN):].split("?")[0]
            if path.is_file():
                return route.fulfill(path=str(path))
        if url.startswith("http://127.0.0.1:"):
            return route.continue_()
        return route.abort()

    context.route("**/*", handle)


@contextlib.contextmanager
def browser_page(html_dir: Path, width: int = 1280, height: int = 900):
    """A Playwright page in headless Chromium, with the book served; yields (page, base_url, page_errors)."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise RuntimeError("no Chromium found: install Debian's chromium (make browser) or set $CHROMIUM")
    with serve(html_dir) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": width, "height": height})
        offline_routes(context)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        try:
            yield page, base, errors
        finally:
            browser.close()


def wait_for_math(page) -> int:
    """Wait until MathJax has typeset the page; returns the number of rendered formulas."""
    page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=30_000)
    page.evaluate("() => MathJax.startup.promise")
    return page.locator("mjx-container").count()


def take_screenshots(page, base: str, output_dir: Path) -> list[Path]:
    """PNGs of the landing page (full length) and one chapter (first screen), for reviewing a change in look."""
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, path in SCREENSHOTS.items():
        page.goto(base + path, wait_until="load")
        wait_for_math(page)
        written.append(output_dir / f"{name}.png")
        page.screenshot(path=str(written[-1]), full_page=name == "landing")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--html", type=Path, default=ROOT / "_build" / "html", help="the built book")
    parser.add_argument("--output-dir", type=Path, default=ROOT / "out" / "screenshots")
    args = parser.parse_args(argv)
    if not (args.html / "book" / "intro.html").exists():
        raise SystemExit(f"no built book in {args.html}: run `make book` first")
    with browser_page(args.html) as (page, base, _):
        for path in take_screenshots(page, base, args.output_dir):
            print(path, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
