"""The book builds strictly (-W, nitpicky) from the committed outputs and renders what readers need."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]


def test_every_page_of_the_table_of_contents_is_built(html):
    files = toc_files()
    assert {"notebooks/01_background", "notebooks/07_tools_and_resources", "notebooks/08_outlook", "book/faq",
            "book/how_to_use", "book/instructors", "book/references"} <= set(files)
    for file in files:
        assert (html / f"{file}.html").exists(), file


def test_every_notebook_is_a_chapter_of_the_book():
    assert {f"notebooks/{p.stem}" for p in (ROOT / "notebooks").glob("*.ipynb")} <= set(toc_files())


def test_citations_resolve_to_the_bibliography(html):
    chapter = (html / "notebooks" / "03_algorithm.html").read_text()
    assert "{cite" not in chapter
    assert re.search(r'href="../book/references.html#id\d+"[^>]*title="Zhenzhong Lan', chapter)
    references = re.sub(r"<[^>]+>", "", (html / "book" / "references.html").read_text())
    for title in ("Lessons on parameter sharing across layers", "Universal transformers", "Subformer",
                  "MobileLLM", "Relaxed recursive transformers", "Recurrent stacking of layers"):
        assert title.lower() in references.lower(), title


def test_chapter_four_shows_computed_numbers_and_hidden_solutions(html):
    page = (html / "notebooks" / "04_counting_parameters.html").read_text()
    for number in ("15,728,640", "2,621,440", "25,080,832", "18,914,304"):
        assert number in page
    assert "{glue" not in page, "a glue reference did not resolve"
    assert re.search(r'class="[^"]*solution[^"]*dropdown', page), "solutions must be hidden by default"
    assert "colab.research.google.com/github/sharing-layers/sharing-layers/blob/main/notebooks/04_counting" in page


def test_every_notebook_page_has_colab_and_download_buttons(html):
    repository = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    github = repository["url"].removeprefix("https://github.com/")
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        page = (html / "notebooks" / f"{path.stem}.html").read_text()
        colab = f"colab.research.google.com/github/{github}/blob/{repository['branch']}/notebooks/{path.name}"
        assert colab in page, path.stem
        assert f"_sources/notebooks/{path.name}" in page, f"{path.stem}: no download of the .ipynb"


def test_code_chapter_includes_the_library_source(html):
    text = re.sub(r"<[^>]+>", "", (html / "notebooks" / "05_the_code.html").read_text())
    assert "scaled_dot_product_attention" in text and "def encode" in text and "def apply_layer" in text

