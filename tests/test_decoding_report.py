"""The decoding working-set sweep's report (chapter 6b): stored ratios checked against the raw times, rows and
sentences grouped by where the unshared layers fit."""

import copy

import pytest

from sharedlib.book import decoding_report
from sharedlib.experiments.recorded import load_recorded


@pytest.fixture(scope="module")
def sweep():
    return load_recorded("decoding_sweep", "cpu")


def _run(width, fits, median, times=(1.0, 1.1, 0.9)):
    return {"d_model": width, "fits": {"none": fits, "all": "L2"}, "layer_weight_bytes": {"none": width << 20,
            "all": width << 16}, "shared_over_unshared": {"median": median, "low": median - 0.05,
            "high": median + 0.05}, "seconds_per_token": {"none": list(times), "all": [t * median for t in times]}}


def test_the_recorded_sweep_holds_its_raw_times_and_a_tampered_ratio_is_refused(sweep):
    decoding_report.check_sweep(sweep)
    tampered = copy.deepcopy(sweep)
    tampered["runs"][3]["shared_over_unshared"]["median"] += 0.01
    with pytest.raises(ValueError, match=f"width {tampered['runs'][3]['d_model']}"):
        decoding_report.check_sweep(tampered)
    # the older decoding file (chapter 6b's first table) has the same fields and is checked the same way
    decoding = load_recorded("decoding", "cpu")
    decoding_report.check_sweep(decoding)
    decoding["runs"][0]["shared_over_unshared"]["median"] *= 1.001
    with pytest.raises(ValueError, match="stored ratio"):
        decoding_report.check_sweep(decoding)


def test_rows_and_sentence_group_the_ratios_by_where_the_unshared_layers_fit():
    data = {"runs": [_run(16, "L2", 0.9), _run(64, "L3", 0.8), _run(96, "L3", 0.6), _run(512, "beyond L3", 0.5)]}
    assert decoding_report.ratios_by_fit(data) == {"L2": [0.9], "L3": [0.8, 0.6], "beyond L3": [0.5]}
    assert decoding_report.sweep_rows(data)[1] == (64, "64.00", "4.00", "L3", "0.80 (0.75–0.85)")
    assert decoding_report.sweep_sentence(data) == (
        "the shared model's time per token over the unshared model's is 0.90 while the unshared layers fit in L2; "
        "0.60 to 0.80 (median 0.70) while the unshared layers fit in L3; 0.50 while the unshared layers exceed L3")


def test_the_figure_marks_the_recorded_cache_sizes(sweep):
    fig = decoding_report.plot_sweep(sweep)
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert labels == list(sweep["sweep"]["cache_bytes"])
    assert fig.axes[0].get_xscale() == "log"
