"""Checkers give specific feedback; the explorer reacts to its controls (chapter 4)."""

import re
from pathlib import Path

import matplotlib
import nbformat
import pytest

import sharedlib as sl
from sharedlib.book import exercises
from sharedlib.book.background import PUBLISHED_MODELS, doubling_time_months
from sharedlib.relaxed import delta_parameters

matplotlib.use("Agg")


def test_count_checker_accepts_the_closed_form_and_names_a_failing_config():
    assert "correct" in exercises.check_count_function(sl.count_parameters, "cycle-rev")
    with pytest.raises(AssertionError, match=r"expected .* parameters, got"):
        exercises.check_count_function(lambda c: sl.count_parameters(c) + 1, "cycle-rev")


def test_map_checker():
    assert "correct" in exercises.check_layer_map(lambda n, m: sl.layer_to_block("cycle-rev", n, m), "cycle-rev")
    with pytest.raises(AssertionError, match=r"N=\d+, M=\d+ expected"):
        exercises.check_layer_map(lambda n, m: sl.layer_to_block("cycle", n, m), "cycle-rev")


def test_embedding_checker():
    V, H, E = 30000, 768, 128
    saving = V * H - (V * E + E * H + H)
    assert "correct" in exercises.check_embedding_saving(saving)
    for wrong, hint in ((V * H - V * E, "left out the E -> H projection"), (saving + H, "count its bias too"),
                        (saving - E + H, "bias has H entries, not E"), (V * E + E * H + H, "asks what they save"),
                        (saving + 7, "too large"), (saving - 7, "too small")):
        with pytest.raises(AssertionError, match="V=30000") as error:
            exercises.check_embedding_saving(wrong)
        assert hint in str(error.value) and f"{saving:,}" not in str(error.value)
    with pytest.raises(ValueError, match="value must be an integer"):
        exercises.check_embedding_saving(float(saving))


def test_explorer_updates_and_reports_invalid_combinations():
    from sharedlib.book.widgets import ParameterExplorer

    explorer = ParameterExplorer()
    assert "keeps 100.0%" in explorer.table.value
    explorer.controls["strategy"].value = "all"
    assert "'all' keeps" in explorer.table.value
    explorer.controls["strategy"].value = "sequence"
    explorer.controls["n_unique"].value = 5
    assert "Invalid" in explorer.table.value and "divisible" in explorer.table.value


def test_layer_map_explorer():
    from sharedlib.book.widgets import LayerMapExplorer

    explorer = LayerMapExplorer(n_layers=6, n_unique=3, strategy="cycle-rev")
    assert "<td>0</td><td>1</td><td>2</td><td>2</td><td>1</td><td>0</td>" in explorer.view.value
    explorer.controls["n_unique"].value = 4
    explorer.controls["strategy"].value = "sequence"
    assert "Invalid" in explorer.view.value


def test_tensor_layout_checker():
    assert "correct" in exercises.check_tensor_layout(("sequence", "batch", "features"))
    with pytest.raises(AssertionError, match=r"axis 0 .* is not 'batch'"):
        exercises.check_tensor_layout(("batch", "sequence", "features"))
    with pytest.raises(AssertionError, match=r"axis 1 .* is not 'features'"):
        exercises.check_tensor_layout(("sequence", "features", "batch"))


def test_layer_map_figure_draws_every_strategy():
    from sharedlib.book.plots import plot_layer_maps

    fig = plot_layer_maps(6, 3)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()][-1] == "groups"


def test_doubling_time_checker_names_the_years_and_diagnoses_without_the_answer():
    expected = doubling_time_months(tuple(m for m in PUBLISHED_MODELS if m.year >= 2019))
    assert exercises.check_doubling_time(expected + 0.3, since=2019).startswith("correct")
    for wrong, hint in ((3, "too fast"), (expected + 20, "too slow"), (expected / 12, "in years"),
                        (doubling_time_months(PUBLISHED_MODELS), "every year in the list")):
        with pytest.raises(AssertionError, match=r"years \[2019, 2020") as error:
            exercises.check_doubling_time(wrong, since=2019)
        assert hint in str(error.value) and f"{expected:.1f}" not in str(error.value)

def test_delta_count_checker_accepts_the_closed_form_and_names_the_shape_on_failure():
    assert exercises.check_delta_count(delta_parameters).startswith("correct")
    with pytest.raises(AssertionError, match=r"for rank \d+, d_model=\d+, d_ff=\d+, depth=\d+ expected [\d,]+"):
        exercises.check_delta_count(lambda config, rank: rank * 8 * config.d_model)  # forgets the FFN's d_ff


def _raises_for_six(n, m):
    if n == 6:
        raise ZeroDivisionError("boom")
    return sl.layer_to_block("cycle", n, m)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: exercises.check_count_function(42, "all"), "fn must be a function"),
        (lambda: exercises.check_count_function(sl.count_parameters, "all", trials=0), "trials must be a positive"),
        (lambda: exercises.check_count_function(sl.count_parameters, "all", trials=-5), "trials must be a positive"),
        (lambda: exercises.check_count_function(sl.count_parameters, "random"), "strategy must be one of"),
        (lambda: exercises.check_layer_map("cycle", "cycle"), "fn must be a function"),
        (lambda: exercises.check_layer_map(_raises_for_six, "cycles"), "strategy must be one of"),
        (lambda: exercises.check_layer_map(_raises_for_six, "all"), r"strategy must be one of \('sequence'"),
        (lambda: exercises.check_layer_map(_raises_for_six, "cycle", max_layers=0), "max_layers must be"),
        (lambda: exercises.check_delta_count(None), "fn must be a function"),
        (lambda: exercises.check_delta_count(lambda c, r: 0, trials=0), "trials must be a positive"),
        (lambda: exercises.check_embedding_saving(1, vocab_size=-1), "vocab_size must be"),
        (lambda: exercises.check_tensor_layout(("batch", "sequence")), "answer must be three axis names"),
        (lambda: exercises.check_tensor_layout("sequence batch features"), "answer must be three axis names"),
        (lambda: exercises.check_doubling_time("12", since=2019), "value must be a number of months"),
        (lambda: exercises.check_doubling_time(12, since=2030), "since must be a year <= 2023"),
        (lambda: exercises.check_doubling_time(12, since=2019, tolerance_months=0), "tolerance_months must be"),
        (lambda: exercises.random_config(3, "all"), "rng must be a random.Random"),
        (lambda: exercises.random_config(__import__("random").Random(0), "ALL"), "strategy must be one of"),
    ],
)
def test_checkers_name_the_wrong_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_student_function_that_raises_gets_feedback_naming_the_input():
    with pytest.raises(AssertionError, match=r"your function raised ZeroDivisionError: boom for N=6, M=1") as error:
        exercises.check_layer_map(_raises_for_six, "cycle")
    assert isinstance(error.value.__cause__, ZeroDivisionError)  # the student's traceback stays attached
    with pytest.raises(AssertionError, match=r"raised KeyError: 'x' for config TransformerConfig\(d_model="):
        exercises.check_count_function(lambda config: {}["x"], "cycle")
    with pytest.raises(AssertionError, match=r"raised TypeError: .* for rank \d+ and config TransformerConfig"):
        exercises.check_delta_count(lambda config, rank: rank + "1")
    with pytest.raises(AssertionError, match=r"for N=1, M=1 expected \[0\], got None"):
        exercises.check_layer_map(lambda n, m: None, "cycle")


def test_groups_checker_covers_every_g_and_the_float_formula():
    def hf_groups(n_layers, n_groups):
        return [int(i / (n_layers / n_groups)) for i in range(n_layers)]

    def integer_groups(n_layers, n_groups):
        return [i * n_groups // n_layers for i in range(n_layers)]

    assert exercises.check_layer_map(hf_groups, "groups").endswith("on 300 (N, M) pairs")  # all G <= N <= 24
    with pytest.raises(AssertionError, match=r"N=18, M=14 .* int\(i / \(N / G\)\) in floating point"):
        exercises.check_layer_map(integer_groups, "groups")
    assert exercises.check_layer_map(integer_groups, "groups", max_layers=17).startswith("correct")


def test_random_groups_configs_include_groups_that_do_not_divide():
    import random

    rng = random.Random(0)
    configs = [exercises.random_config(rng, "groups") for _ in range(200)]
    assert any(c.n_layers % c.n_unique for c in configs)



ROOT = Path(__file__).resolve().parents[1]
DIFFICULTIES = ("warm-up", "practice", "challenge")


def _exercise_titles(path: Path) -> dict[str, str]:
    text = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
    pattern = r"```\{exercise\} (?P<title>[^\n]*)\n:label: (?P<label>[\w-]+)"
    return {m["label"]: m["title"] for m in re.finditer(pattern, text)}


def _instructor_difficulties() -> dict[str, str]:
    page = (ROOT / "book" / "instructors.md").read_text()
    row = r"^\|[^|]*\| \w+ \| \{ref\}`([\w-]+)` \| ([\w-]+) · [^|]+ \| \d+ \| [\d.]+ · \d+ \|$"
    return dict(re.findall(row, page, re.M))


@pytest.mark.parametrize("name", [p.stem for p in sorted((ROOT / "notebooks").glob("*.ipynb"))])
def test_every_exercise_title_starts_with_the_difficulty_the_instructors_page_gives(name):
    page = _instructor_difficulties()
    for label, title in _exercise_titles(ROOT / "notebooks" / f"{name}.ipynb").items():
        difficulty = title.split(":")[0].lower()
        assert difficulty in DIFFICULTIES, f"{label}: {title!r} does not start with Warm-up, Practice or Challenge"
        assert page.get(label) == difficulty, f"{label}: the title says {difficulty}, the page {page.get(label)}"


def test_show_source_displays_library_code_and_refuses_a_bare_module(monkeypatch):
    import IPython.display

    from sharedlib.book.display import show_source

    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    show_source("universal.halting_step")
    assert "def halting_step(" in shown[0].data and "sharedlib/universal.py" in shown[0].data
    show_source("experiments.suite.code_hash", "book.display.glue")  # a module of a subpackage: its dotted path
    assert shown[1].data.startswith("`sharedlib/experiments/suite.py`") and "def code_hash(" in shown[1].data
    assert shown[2].data.startswith("`sharedlib/book/display.py`") and "def glue(" in shown[2].data
    with pytest.raises(ValueError, match=r"names must look like 'module\.Object'"):
        show_source("universal")
    with pytest.raises(ModuleNotFoundError, match=r"sharedlib\.nosuch"):
        show_source("nosuch.f")
