"""Chapter 6's recorded iterations-and-length report: tables and sentences follow the numbers."""

import pytest

from sharedlib.book import addition_report as rep
from sharedlib.evidence import PairedDifference
from sharedlib.experiments import addition as ad


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from sharedlib.experiments import suite

    p = ad.replace_steps(ad.get_addition_profile("ci"), 6)
    return suite.load_results(ad.run_addition(p, tmp_path_factory.mktemp("addition")))


def test_tables_cover_every_arm_and_length(data):
    header, rows = rep.length_rows(data)
    assert len(rows) == len(rep.labels(data)) == 3
    assert len(header) == 3 + len(data["profile_settings"]["test_bits"])
    curves = rep.iteration_curves(data, 12)
    assert set(curves) == {"looped / rotary", "looped / rotary / random depth"}
    assert all(set(c) == set(data["profile_settings"]["test_iterations"]) for c in curves.values())
    header, rows = rep.sweep_rows(data)
    assert all(cell.endswith(" *") for row in rows for cell in row[1:])  # one rate: always the chosen one


def test_accuracy_is_read_from_the_records(data):
    run = rep.final_runs(data, "looped / rotary")[0]
    row = next(r for r in run["accuracy"] if r["bits"] == 12 and r["iterations"] == 8)
    assert rep.accuracy_by_seed(data, "looped / rotary", 12, 8)[run["seed"]] == 100 * row["sequence_accuracy"]
    with pytest.raises(ValueError, match="no accuracy at 12 bits and 5 iterations"):
        rep.accuracy_by_seed(data, "looped / rotary", 12, 5)


def test_sentences_never_report_an_interval_that_spans_zero_as_an_effect():
    spans = PairedDifference(3.0, -1.0, 7.0, 5, 0.95, "t", (1.0,) * 5, tuple(range(5)))
    assert rep.sentence(spans, "A", "B").startswith("no evidence of a difference")
    better = PairedDifference(3.0, 1.0, 5.0, 5, 0.95, "t", (3.0,) * 5, tuple(range(5)))
    assert rep.sentence(better, "A", "B").startswith("A is more accurate than B, by 3.0 percentage points")
    worse = PairedDifference(-3.0, -5.0, -1.0, 5, 0.95, "t", (-3.0,) * 5, tuple(range(5)))
    assert rep.sentence(worse, "A", "B").startswith("A is less accurate than B")
    barely = PairedDifference(20.4, 0.004, 40.8, 5, 0.95, "t", (20.4,) * 5, tuple(range(5)))
    assert "95% CI 0.004 to 40.800" in rep.sentence(barely, "A", "B")  # not "0.0 to 40.8"


def test_summary_and_figure_render(data):
    lines = rep.summary(data)
    assert lines and all(line.startswith("At ") for line in lines)
    fig = rep.plot_iterations_by_length(data)
    assert len(fig.axes) == len(data["profile_settings"]["test_bits"])


def test_headline_counts_only_intervals_that_exclude_zero(data, monkeypatch):
    text = rep.headline(data)
    assert text.startswith("On binary addition trained on up to 6 bits and tested on 12")
    spans = PairedDifference(3.0, -1.0, 7.0, 2, 0.95, "t", (1.0, 5.0), (0, 1))
    monkeypatch.setattr(rep, "looped_vs_unshared", lambda d, n: [("a", "b", spans), ("c", "d", spans)])
    assert "0 more accurate, 0 less accurate, 2 with no evidence of a difference;" in rep.headline(data)
