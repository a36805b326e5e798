"""Chapter 6's recorded pointer-hops report: tables, comparisons and sentences follow the numbers."""

import copy

import pytest

from sharedlib.book import hops_report as rep
from sharedlib.evidence import PairedDifference
from sharedlib.experiments import hops


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    import torch

    from sharedlib.experiments import suite

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        p = hops.replace_steps(hops.get_hops_profile("ci"), 6)
        return suite.load_results(hops.run_hops(p, tmp_path_factory.mktemp("hops")))
    finally:
        torch.set_num_threads(threads)


def difference(mean, low, high, p, n=5):
    return PairedDifference(mean, low, high, n, 0.95, "t", (mean,) * n, tuple(range(n)), p)


def test_tables_cover_every_arm_and_hop_count(data):
    L, arms = data["profile_settings"]["train_hops"], rep.labels(data)
    assert arms == ["unshared", "looped", "looped / random depth"]
    assert rep.hop_counts(data) == {"trained": list(range(L + 1)), "beyond": list(range(L + 1, 2 * L + 1))}
    header, rows = rep.hops_rows(data)
    assert len(header) == 3 + len(arms) + 1
    assert [row[0] for row in rows] == [*map(str, range(L + 1)), f"0-{L} (all)",
                                       *map(str, range(L + 1, 2 * L + 1)), f"{L + 1}-{2 * L} (all)"]
    assert all(len(row) == len(header) for row in rows)
    # a pooled row counts the positions of its hop counts
    assert rows[L + 1][2] == sum(row[2] for row in rows[: L + 1])
    header, rows = rep.sweep_rows(data)
    assert all(cell.endswith(" *") for row in rows for cell in row[1:])  # one rate: always the chosen one
    curves = rep.iteration_curves(data)
    assert set(curves) == {"looped", "looped / random depth"}
    assert all(list(c) == data["profile_settings"]["test_iterations"] for c in curves.values())


def test_accuracy_and_shortcut_are_read_from_the_records(data):
    run = rep.final_runs(data, "looped")[0]
    row = next(t for t in run["tests"] if t["test_set"] == "beyond" and t["iterations"] == 8)
    assert rep.accuracy_by_seed(data, "looped", "beyond", 8)[run["seed"]] == 100 * row["accuracy"]
    h = row["by_hops"][-1]
    assert rep.accuracy_by_seed(data, "looped", "beyond", 8, h["hops"])[run["seed"]] == 100 * h["accuracy"]
    with pytest.raises(ValueError, match="no 'beyond' test at 5 iterations"):
        rep.accuracy_by_seed(data, "looped", "beyond", 5)
    guess = data["baselines"]["ancestor_guess"]["beyond"][2]["by_hops"]
    pooled = sum(g["accuracy"] * g["positions"] for g in guess) / sum(g["positions"] for g in guess)
    assert rep.shortcut_accuracy(data, "beyond", 2) == pytest.approx(100 * pooled)


def test_compute_names_the_random_depth_arms_real_flops(data):
    _, rows = rep.compute_rows(data)
    by_label = {row[0]: row for row in rows}
    assert by_label["unshared"][-1] == by_label["looped"][-1] == "1.000"
    runs = rep.final_runs(data, "looped / random depth")
    mean = sum(r["mean_iterations"] for r in runs) / len(runs)
    assert by_label["looped / random depth"][2] == f"{mean:.3f}"
    text = rep.compute_sentence(data)
    assert "drew 1 to 4 iterations per training step" in text
    assert ("compute was matched" in text) == (abs(float(by_label["looped / random depth"][-1]) - 1) < 0.01)


def test_sentences_claim_an_effect_only_when_the_interval_and_holm_allow_it():
    spans = rep.Comparison("f", "A", "B", difference(3.0, -1.0, 7.0, 0.2), 0.4, 2)
    assert not spans.effect and spans.sentence.startswith("no evidence of a difference")
    dropped = rep.Comparison("f", "A", "B", difference(3.0, 1.0, 5.0, 0.03), 0.06, 2)
    assert not dropped.effect
    assert "not significant after Holm correction over 2 comparisons" in dropped.sentence
    kept = rep.Comparison("f", "A", "B", difference(3.0, 1.0, 5.0, 0.001), 0.002, 2)
    assert kept.effect and kept.sentence.startswith("A is more accurate than B, by 3.0 percentage points")
    worse = rep.Comparison("f", "A", "B", difference(-3.0, -5.0, -1.0, 0.001), 0.002, 2)
    assert worse.sentence.startswith("A is less accurate than B")
    barely = rep.Comparison("f", "A", "B", difference(20.4, 0.004, 40.8, 0.04), 0.04, 1)
    assert "95% CI 0.004 to 40.800" in barely.sentence  # not "0.0 to 40.8"


def test_families_are_holm_corrected_together(data):
    family = rep.deeper_vs_trained(data)
    assert len(family) == 2 * 2  # two looped arms, at 2N and 4N
    assert all(c.family_size == 4 for c in family)
    assert all(c.adjusted_p >= c.difference.p_value for c in family)
    assert [c.family_size for c in rep.versus_unshared(data)] == [2, 2]
    assert len(rep.comparison_rows(data)) == 2 + 2 + 4 + 3


def test_summary_headline_and_figure_render(data):
    lines = rep.summary(data)
    assert len(lines) == 2 + 2 + 4 + 3 and all(line.endswith(".") for line in lines)
    text = rep.headline(data)
    assert text.startswith("On pointer chains in a causal decoder, trained on 0 to 2 hops and tested on 3 to 4")
    fig = rep.plot_iterations_by_hops(data)
    assert len(fig.axes) == 1 + data["profile_settings"]["train_hops"]


def test_headline_counts_only_what_holm_keeps(data, monkeypatch):
    drop = [rep.Comparison("f", "A", "B", difference(3.0, 1.0, 5.0, 0.03), 0.06, 2)] * 2
    keep = [rep.Comparison("f", "A", "B", difference(3.0, 1.0, 5.0, 0.001), 0.002, 2)] * 2
    monkeypatch.setattr(rep, "versus_unshared", lambda d, at="best": drop)
    monkeypatch.setattr(rep, "deeper_vs_trained", lambda d: keep)
    text = rep.headline(data)
    assert "unshared model of 2 layers, 2 comparisons: 0 more accurate, 0 less accurate, 2 with no evidence" in text
    assert "instead of 2 times, 2 comparisons: 2 more accurate, 0 less accurate, 0 with no evidence" in text


def test_a_wrong_file_raises_a_clear_error(data):
    with pytest.raises(ValueError, match=r"not a pointer-hops result .* lacks \[.baselines.\]"):
        rep.settings({"provenance": {}, "profile_settings": {}, "runs": [], "path": "x.json"})
    other = copy.deepcopy(data)
    other["runs"][0]["experiment"] = "iterations-length"
    with pytest.raises(ValueError, match=r"holds runs of \[.iterations-length.\]"):
        rep.hops_rows(other)
    unfinished = copy.deepcopy(data)
    for run in unfinished["runs"]:
        run["status"] = "diverged"
    with pytest.raises(ValueError, match="no finished run"):
        rep.labels(unfinished)
