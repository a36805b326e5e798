"""The rendered site: no broken internal links, and every page checked in a real headless Chromium.

The browser tests need Chromium (``make browser`` installs Debian's). Set ``SKIP_BROWSER=1`` to skip them
knowingly; they never skip on their own.
"""

import os
import re

import pytest
from check_links import broken_internal_links
from site_browser import browser_page, chromium_path, take_screenshots, wait_for_math
from test_book import toc_files

FIGURE_PAGES = {"notebooks/01_background", "notebooks/03_algorithm", "notebooks/04_counting_parameters",
                "notebooks/08_outlook"}
needs_browser = pytest.mark.skipif(os.environ.get("SKIP_BROWSER") == "1", reason="SKIP_BROWSER=1")


def test_no_broken_internal_links(html):
    assert broken_internal_links(html) == []


def test_the_link_checker_finds_broken_links(tmp_path):
    (tmp_path / "a.html").write_text('<p id="here"></p><a href="a.html#here">ok</a><a href="#gone">x</a>'
                                     '<a href="b.html">y</a><img src="img/missing.png"><a href="https://x.org/">z</a>')
    assert broken_internal_links(tmp_path) == [
        "a.html -> #gone (no such id)", "a.html -> b.html (no such file)", "a.html -> img/missing.png (no such file)"]


@pytest.fixture(scope="module")
def browser(html):
    assert chromium_path(), "Chromium is missing: run `make browser`, set $CHROMIUM, or set SKIP_BROWSER=1"
    with browser_page(html) as session:
        yield session


@needs_browser
def test_every_page_loads_without_script_errors_and_shows_its_figures(browser):
    page, base, errors = browser
    for file in toc_files():
        response = page.goto(f"{base}{file}.html", wait_until="load")
        assert response.ok, file
        assert page.locator("main h1").count() >= 1, file
        broken = page.evaluate("""() => Array.from(document.querySelectorAll('main img'))
            .filter(img => img.offsetParent !== null && !(img.complete && img.naturalWidth > 0))
            .map(img => img.src)""")  # shown images only: hidden ones (e.g. in a closed dropdown) load lazily
        assert broken == [], f"{file}: images that did not load: {broken}"
        if file in FIGURE_PAGES:
            assert page.locator("main .cell_output img").count() >= 1, f"{file}: its figure is missing"
        assert errors == [], f"{file}: {errors}"


@needs_browser
def test_math_renders(browser):
    page, base, _ = browser
    for file in ("notebooks/04_counting_parameters", "notebooks/08_outlook"):
        page.goto(f"{base}{file}.html", wait_until="load")
        assert wait_for_math(page) > 5, file
        assert page.locator("mjx-merror").count() == 0, f"{file}: MathJax reported an error"


@needs_browser
def test_solutions_are_hidden_until_clicked(browser):
    page, base, _ = browser
    page.goto(f"{base}notebooks/03_algorithm.html", wait_until="load")
    solution = page.locator("div.solution.dropdown").first
    body = solution.locator(":scope > :not(.admonition-title)").first  # the solution's content
    assert "def sequence" in body.text_content() and not body.is_visible()
    solution.locator(".admonition-title").click()
    body.wait_for(state="visible", timeout=5_000)


@needs_browser
def test_screenshots_command_writes_pngs(browser, tmp_path):
    page, base, _ = browser
    paths = take_screenshots(page, base, tmp_path)
    assert [p.name for p in paths] == ["landing.png", "chapter-4.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000 for p in paths)


AXE_PAGES = ("book/intro", "notebooks/04_counting_parameters", "notebooks/06_applications", "book/references")


def axe_violations(page) -> list[str]:
    """axe-core's WCAG 2 A/AA violations on the loaded page, one line per rule with its first offender."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options={"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa"]},
                                       "resultTypes": ["violations"]})
    return [f"{v['id']} ({v['impact']}, {len(v['nodes'])} nodes): {v['nodes'][0]['target']}"
            for v in results.response["violations"]]


@needs_browser
def test_axe_finds_no_accessibility_violations(browser):
    page, base, _ = browser
    for file in AXE_PAGES:
        page.goto(f"{base}{file}.html", wait_until="load")
        if page.evaluate("() => 'MathJax' in window"):
            wait_for_math(page)  # axe checks the typeset formulas, as a reader sees them
        assert axe_violations(page) == [], file


@needs_browser
def test_axe_sees_a_missing_alt_text_and_low_contrast(browser):
    page, _, _ = browser
    page.set_content('<html lang="en"><head><title>t</title></head><body><main><h1>t</h1>'
                     '<img src="data:image/png;base64,iVBORw0KGgo=">'
                     '<p style="color:#bbb;background:#fff">faint</p></main></body></html>')
    found = {line.split(" ")[0] for line in axe_violations(page)}
    assert {"image-alt", "color-contrast"} <= found


@needs_browser
def test_code_blocks_fit_the_page_without_scrolling(browser):
    """At the theme's full page width (88rem, reached by a 1440-pixel window) no code block scrolls sideways."""
    page, base, _ = browser
    page.set_viewport_size({"width": 1440, "height": 900})
    for file in toc_files():
        page.goto(f"{base}{file}.html", wait_until="load")
        wide = page.evaluate("""() => Array.from(document.querySelectorAll('main div.highlight pre'))
            .filter(pre => pre.offsetParent !== null && pre.scrollWidth > pre.clientWidth + 1)
            .map(pre => pre.textContent.split('\\n').reduce((a, b) => a.length >= b.length ? a : b).slice(0, 60))""")
        assert wide == [], f"{file}: code that scrolls sideways: {wide}"
    page.set_viewport_size({"width": 1280, "height": 900})


@needs_browser
def test_the_chinese_edition_renders_and_its_language_link_switches(browser):
    page, base, errors = browser
    page.goto(f"{base}zh/index.html", wait_until="load")  # the landing page redirects to book/intro
    page.wait_for_url("**/zh/book/intro.html")
    assert re.search(r"[\u4e00-\u9fff]", page.locator("main h1").first.text_content())
    chapter = "notebooks/04_counting_parameters.html"
    page.goto(f"{base}zh/{chapter}", wait_until="load")
    assert wait_for_math(page) > 5 and page.locator("mjx-merror").count() == 0
    assert page.locator("main .cell_output img").count() >= 1
    page.locator("nav.language-switch a").click()
    page.wait_for_url(f"{base}{chapter}")
    assert not re.search(r"[\u4e00-\u9fff]", page.locator("main h1").first.text_content())
    page.locator("nav.language-switch a").click()
    page.wait_for_url(f"{base}zh/{chapter}")
    assert errors == []
