"""Checkers give specific feedback; the explorer reacts to its controls (chapter 4)."""

import matplotlib
import pytest

import sharedlib as sl
from sharedlib import exercises

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
