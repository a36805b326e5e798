"""The instructors' page lists every exercise of every chapter, with the checker the exercise names."""

import re
from pathlib import Path

import nbformat
import pytest

from sharedlib import exercises

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
ROW = re.compile(
    r"^\|[^|]*\| (?P<chapter>\w+) \| \{ref\}`(?P<label>[\w-]+)` \| (?P<kind>[^|]+) \| (?P<minutes>\d+) \|$"
)


def notebook_exercises(path: Path) -> dict[str, set[str]]:
    """Exercise label -> the checkers its statement names."""
    text = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
    found = {}
    for block in re.findall(r"```\{exercise\}.*?```", text, flags=re.S):
        label = re.search(r":label: ([\w-]+)", block).group(1)
        found[label] = set(re.findall(r"check_\w+", block))
    return found


def instructor_rows() -> dict[str, dict[str, str]]:
    lines = (ROOT / "book" / "instructors.md").read_text().splitlines()
    return {m["label"]: m.groupdict() for line in lines if (m := ROW.match(line))}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_chapter_has_three_to_six_exercises_listed_for_instructors(path):
    found, rows = notebook_exercises(path), instructor_rows()
    assert 3 <= len(found) <= 6
    chapter = path.stem.split("_")[0].lstrip("0")
    for label, checkers in found.items():
        assert label in rows, f"{label} is missing from book/instructors.md"
        assert rows[label]["chapter"] == chapter, label
        named = set(re.findall(r"check_\w+", rows[label]["kind"]))
        assert named == checkers, f"{label}: the page names {named}, the exercise {checkers}"
        assert all(callable(getattr(exercises, c, None)) for c in checkers), label


def test_the_instructors_page_lists_no_exercise_that_does_not_exist():
    labels = {label for path in NOTEBOOKS for label in notebook_exercises(path)}
    assert set(instructor_rows()) == labels
