"""The instructors' page lists every exercise of every chapter, with the checker the exercise names."""

import re
from pathlib import Path

import nbformat
import pytest

from sharedlib.book import exercises

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
ROW = re.compile(
    r"^\|[^|]*\| (?P<chapter>\w+) \| \{ref\}`(?P<label>[\w-]+)` \| (?P<kind>[^|]+) \| (?P<minutes>\d+) \| "
    r"(?P<solver_minutes>[\d.]+) · (?P<solver_calls>\d+) \|$"
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


def test_the_solving_trial_on_the_page_matches_its_record():
    """The numbers the instructors' page gives for the cold-solving trial come from its committed record."""
    import json
    import statistics

    record = json.loads((ROOT / "book" / "_data" / "exercise_trials.json").read_text())
    rows = record["exercises"]
    page = " ".join((ROOT / "book" / "instructors.md").read_text().split())
    table = instructor_rows()
    assert {row["label"] for row in rows} == set(table), "the record and the page's table list other exercises"
    for row in rows:  # the measured column of the table is the record's
        listed = table[row["label"]]
        assert (float(listed["solver_minutes"]), int(listed["solver_calls"])) == (row["minutes"], row["checker_calls"])
    solved = sum(row["solved"] is True for row in rows)
    minutes = statistics.median(row["minutes"] for row in rows)
    calls = sum(row["checker_calls"] for row in rows)
    found = sum(bool(row["found"]) for row in rows)
    assert f"It solved {solved} of the {len(rows)} exercises" in page
    assert f"a median of {minutes:.1f} minutes per exercise and {calls} checker calls in all" in page
    assert f"In {found} of the {len(rows)} exercises something would have stopped or misled" in page
