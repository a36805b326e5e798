"""Checkers give specific feedback; the explorer reacts to its controls (chapter 4)."""

import matplotlib
import pytest

import sharedlib as sl
from sharedlib import exercises
from sharedlib.background import PUBLISHED_MODELS, doubling_time_months
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
    assert "correct" in exercises.check_embedding_saving(30000 * 768 - (30000 * 128 + 128 * 768 + 768))
    with pytest.raises(AssertionError, match="V=30000"):
        exercises.check_embedding_saving(30000 * 768 - 30000 * 128)


def test_explorer_updates_and_reports_invalid_combinations():
    from sharedlib.widgets import ParameterExplorer

    explorer = ParameterExplorer()
    assert "keeps 100.0%" in explorer.table.value
    explorer.controls["strategy"].value = "all"
    assert "'all' keeps" in explorer.table.value
    explorer.controls["strategy"].value = "sequence"
    explorer.controls["n_unique"].value = 5
    assert "Invalid" in explorer.table.value and "divisible" in explorer.table.value


def test_layer_map_explorer():
    from sharedlib.widgets import LayerMapExplorer

    explorer = LayerMapExplorer(n_layers=6, n_unique=3, strategy="cycle-rev")
    assert "<td>0</td><td>1</td><td>2</td><td>2</td><td>1</td><td>0</td>" in explorer.view.value
    explorer.controls["n_unique"].value = 4
    explorer.controls["strategy"].value = "sequence"
    assert "Invalid" in explorer.view.value


def test_tensor_layout_checker():
    assert "correct" in exercises.check_tensor_layout(("sequence", "batch", "features"))
    with pytest.raises(AssertionError, match="axis 0"):
        exercises.check_tensor_layout(("batch", "sequence", "features"))


def test_layer_map_figure_draws_every_strategy():
    from sharedlib.plots import plot_layer_maps

    fig = plot_layer_maps(6, 3)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()][-1] == "groups"


def test_doubling_time_checker_names_the_years_and_the_expected_value():
    expected = doubling_time_months(tuple(m for m in PUBLISHED_MODELS if m.year >= 2019))
    assert exercises.check_doubling_time(expected + 0.3, since=2019).startswith("correct")
    with pytest.raises(AssertionError, match=rf"years \[2019, 2020.*doubles every {expected:.1f} months, got 3"):
        exercises.check_doubling_time(3, since=2019)


def test_delta_count_checker_accepts_the_closed_form_and_names_the_shape_on_failure():
    assert exercises.check_delta_count(delta_parameters).startswith("correct")
    with pytest.raises(AssertionError, match=r"for rank \d+, d_model=\d+, d_ff=\d+, depth=\d+ expected [\d,]+"):
        exercises.check_delta_count(lambda config, rank: rank * 8 * config.d_model)  # forgets the FFN's d_ff
