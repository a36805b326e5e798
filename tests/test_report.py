"""sharedlib.book.report on synthetic results files: what a partial file says, and that no sentence claims an effect
its paired interval does not support."""

import json
import random
from dataclasses import asdict, replace

import pytest

from sharedlib.book import report
from sharedlib.evidence import holm_adjust, paired_difference
from sharedlib.experiments import suite

PROFILE = replace(suite.PROFILES["ci"], seeds=5)
PROVENANCE = {
    "command": ".venv/bin/python scripts/run_experiments.py --profile ci", "commit": "0123456789abcdef0123+dirty",
    "date": "2031-01-02 03:04 UTC", "device": "cpu: Test CPU, 2 threads", "machine": "x86_64, Test CPU, 2 logical CPUs",
    "torch": "9.9", "python": "3.99", "threads": 2, "wall_seconds": 600.0, "sharedlib_hashes": ["aaaa"],
}


def run(experiment, label, seed, val, lr=3e-3, train=None, status="ok", **extra):
    """A run record with every field ``suite.validate_results`` requires."""
    ok = status == "ok"
    train = val - 0.1 if train is None else train
    return {
        "experiment": experiment, "label": label, "strategy": label.split()[0], "seed": seed, "data": "synthetic",
        "parameters": 1000, "flops_per_token": 300, "steps": 24, "tokens": 6144, "lr": lr,
        "train_loss": train if ok else None, "val_loss": val if ok else None,
        "curve": [[8, val + 1, val + 0.5], [24, train, val]] if ok else [], "model_config": {}, "train_config": {},
        "kind": "train", "status": status, "batch_size": 8, "seq_len": 32, "best_val_loss": val, "best_val_step": 24,
        **extra,
    }


def results(runs, profile=PROFILE, **prov):
    data = {"provenance": {**PROVENANCE, **prov}, "profile": profile.name, "profile_settings": asdict(profile),
            "runs": runs}
    suite.validate_results(data)
    return data


def equal_depth(differences, baseline_losses=(3.0, 3.1, 2.9, 3.05, 2.95), label="all"):
    runs = [run("equal-depth", "none", s, v) for s, v in enumerate(baseline_losses)]
    pairs = enumerate(zip(baseline_losses, differences, strict=True))
    runs += [run("equal-depth", label, s, v + d) for s, (v, d) in pairs]
    return results(runs)


def only(comparisons, label):
    return next(c for c in comparisons if c.label == label)


# ------------------------------------------------------------------------- no effect claimed beyond the interval
def test_a_difference_whose_interval_spans_zero_is_never_reported_as_an_effect():
    c = only(report.compare_to_baseline(equal_depth([0.1, -0.1, 0.05, -0.02, 0.01]), "equal-depth", "none"), "all")
    assert c.difference.low < 0 < c.difference.high
    assert c.effect == "none"
    assert c.sentence.startswith("no evidence of a difference")
    assert "lower" not in c.sentence and "higher" not in c.sentence


def test_a_consistent_difference_is_reported_with_its_direction():
    c = only(report.compare_to_baseline(equal_depth([0.10, 0.12, 0.09, 0.11, 0.10]), "equal-depth", "none"), "all")
    assert c.effect == "higher" and c.difference.low > 0
    assert c.sentence.startswith("all has a higher validation loss than none, by 0.104")
    c = only(report.compare_to_baseline(equal_depth([-0.10, -0.12, -0.09, -0.11, -0.10]), "equal-depth", "none"), "all")
    assert c.effect == "lower" and c.sentence.startswith("all has a lower validation loss than none")


@pytest.mark.parametrize("trial", range(40))
def test_the_effect_follows_the_interval_on_random_differences(trial):
    rng = random.Random(trial)
    diffs = [rng.gauss(rng.choice([0.0, 0.05, -0.05]), 0.05) for _ in range(5)]
    c = only(report.compare_to_baseline(equal_depth(diffs), "equal-depth", "none"), "all")
    expected = paired_difference(dict(enumerate(3.0 + d for d in diffs)), dict(enumerate([3.0] * 5)))
    spans = expected.low <= 0 <= expected.high
    assert (c.effect == "none") == spans
    assert ("no evidence" in c.sentence) == spans
    baseline = only(report.compare_to_baseline(equal_depth(diffs), "equal-depth", "none"), "none")
    summary = report.effect_summary([baseline, c], "E")
    assert ("show no evidence" in summary or "shows no evidence" in summary) == spans


def test_a_small_real_difference_is_not_printed_as_zero():
    small = equal_depth([0.0003, 0.00031, 0.00029, 0.0003, 0.0003])
    c = only(report.compare_to_baseline(small, "equal-depth", "none"), "all")
    assert c.effect == "higher" and "by 0.00030" in c.sentence and "0.000 " not in c.sentence


# -------------------------------------------------------------------------- one family per call, Holm-corrected
SPANS = [0.1, -0.1, 0.05, -0.02, 0.01]
MARGINAL = [0.05, 0.01, 0.04, 0.02, 0.03]  # t = 4.24, p = 0.0132: the 95% interval (0.010 to 0.050) excludes zero


def family(arms, baseline_losses=(3.0, 3.1, 2.9, 3.05, 2.95)):
    """equal-depth runs of "none" and of each arm (label: per-seed differences to none)."""
    runs = [run("equal-depth", "none", s, v) for s, v in enumerate(baseline_losses)]
    for label, differences in arms.items():
        runs += [run("equal-depth", label, s, v + d)
                 for s, (v, d) in enumerate(zip(baseline_losses, differences, strict=True))]
    return results(runs)


SIX = {"all": [0.10, 0.12, 0.09, 0.11, 0.10], "attention": SPANS, "ffn": MARGINAL, "sequence": SPANS[::-1],
       "cycle": [-d for d in SPANS], "cycle-rev": [0.02, -0.01, 0.0, 0.01, -0.02]}


def test_holm_correction_drops_an_uncorrected_effect_within_the_family():
    corrected = report.compare_to_baseline(family(SIX), "equal-depth", "none")
    arms = [c for c in corrected if c.effect != "baseline"]
    assert {c.family_size for c in arms} == {6}
    assert [c.adjusted_p for c in arms] == pytest.approx(holm_adjust([c.p_value for c in arms]))
    ffn = only(corrected, "ffn")
    assert ffn.difference.excludes_zero and ffn.p_value == pytest.approx(0.0132, abs=1e-4)
    # second smallest of six: 5 * 0.0132 = 0.066
    assert ffn.adjusted_p == pytest.approx(5 * ffn.p_value) and ffn.adjusted_p > 0.05
    assert ffn.effect == "none" and ffn.dropped_by_correction
    assert ffn.sentence == (
        "no evidence of a difference in validation loss between ffn and none after correction for multiple "
        "comparisons: the mean difference of 0.030 nats per token (95% CI 0.010 to 0.050, 5 paired seeds) is not "
        "significant after Holm correction over 6 comparisons (adjusted p = 0.066)")
    everything = only(corrected, "all")
    assert everything.effect == "higher" and everything.adjusted_p == pytest.approx(6 * everything.p_value)
    assert everything.sentence == (
        "all has a higher validation loss than none, by 0.104 nats per token (95% CI 0.090 to 0.118, 5 paired "
        "seeds) (Holm-adjusted p < 0.001 over 6 comparisons)")
    assert only(corrected, "attention").sentence.endswith("spans zero, 5 paired seeds) (Holm-adjusted p = 1 over 6 "
                                                          "comparisons)")
    assert report.effect_summary(corrected, "E") == (
        "E: of 6 comparisons against none, 1 has a higher validation loss, 5 show no evidence of a difference (1 of "
        "them because of the Holm correction: its interval excludes zero) (95% CI of the paired difference, 5 paired "
        "seeds; counted after Holm correction within the 6 comparisons)")
    assert "- no evidence of a difference in validation loss between ffn and none after correction" in (
        report.bullets(corrected))
    # asked for uncorrected sentences: the same intervals and p-values, each worded on its own as before
    uncorrected = report.compare_to_baseline(family(SIX), "equal-depth", "none", correct=False)
    ffn_alone = only(uncorrected, "ffn")
    assert ffn_alone.effect == "higher" and ffn_alone.p_value == ffn.p_value
    assert ffn_alone.adjusted_p is None and ffn_alone.family_size is None and not ffn_alone.dropped_by_correction
    assert ffn_alone.sentence == ("ffn has a higher validation loss than none, by 0.030 nats per token (95% CI 0.010 "
                                  "to 0.050, 5 paired seeds)")
    assert report.effect_summary(uncorrected, "E") == (
        "E: of 6 comparisons against none, 2 have a higher validation loss, 4 show no evidence of a difference (95% CI "
        "of the paired difference, 5 paired seeds)")


def test_a_family_of_one_is_not_corrected_and_arms_without_an_interval_are_not_in_the_family():
    data = family({"all": [0.10, 0.12, 0.09, 0.11, 0.10], "ffn": MARGINAL, "sequence": SPANS})
    data["runs"] = [r for r in data["runs"] if r["label"] != "sequence" or r["seed"] == 0]  # one seed: too few
    comparisons = report.compare_to_baseline(data, "equal-depth", "none")
    assert {c.label: c.family_size for c in comparisons} == {
        "none": None, "all": 2, "attention": None, "ffn": 2, "sequence": None, "cycle": None, "cycle-rev": None}
    assert only(comparisons, "ffn").effect == "higher"  # 2 * 0.0132 = 0.026 passes in a family of two
    assert only(comparisons, "sequence").p_value is None and only(comparisons, "sequence").adjusted_p is None
    # one arm with an interval: Holm leaves its p as it is
    single = report.compare_to_baseline(family({"ffn": MARGINAL}), "equal-depth", "none")
    c = only(single, "ffn")
    assert c.family_size == 1 and c.adjusted_p == c.p_value and c.effect == "higher"
    assert c.sentence == ("ffn has a higher validation loss than none, by 0.030 nats per token (95% CI 0.010 to 0.050, "
                          "5 paired seeds) (p = 0.013, the only comparison of its family)")
    assert report.effect_summary(single, "E").endswith(
        "(95% CI of the paired difference, 5 paired seeds; one comparison with an interval, so no correction was "
        "needed)")


# ----------------------------------------------------------------------------------------------- partial files
def test_a_partial_file_renders_not_recorded_yet():
    sweep = [run("lr-sweep", "none", 0, v, lr=lr) for lr, v in zip(PROFILE.lrs, (3.0, 2.9), strict=True)]
    data = results([*sweep, run("lr-sweep", "all", 0, 3.1, lr=PROFILE.lrs[0])])
    states = {p["experiment"]: p["state"] for p in report.progress(data)}
    assert states["lr-sweep"].startswith("partial: 3 of 14 runs")
    assert states["equal-depth"] == states["svd-relaxation"] == report.NOT_RECORDED
    assert "not part of this suite: scripts/run_experiments.py --suite hops" in states["iterations-hops"]
    comparisons = report.compare_to_baseline(data, "equal-depth", "none")
    assert [c.label for c in comparisons] == list(PROFILE.strategies)
    assert all(c.effect in ("not recorded", "baseline") for c in comparisons)
    assert all(report.NOT_RECORDED in row[4] for row in report.comparison_rows(comparisons))
    assert report.effect_summary(comparisons, "Equal depth") == f"Equal depth: {report.NOT_RECORDED}"
    assert report.comparison_table(comparisons) is None  # nothing to tabulate yet
    assert report.NOT_RECORDED in report.bullets(comparisons)
    headers, rows = report.sweep_table(data)
    assert headers == ["strategy", "lr 0.003", "lr 0.006", "chosen"]
    assert rows[0] == ("none", "3.000", "2.900", "0.006 (grid edge)")
    assert rows[1] == ("all", "3.100", "-", "1 of 2 rates recorded")
    assert rows[2][-1] == report.NOT_RECORDED
    assert report.NOT_RECORDED in report.takase_kiyono_sentences(data)[0]
    edge = [line for line in report.sweep_sentences(data) if "rate of the grid" in line]
    assert edge == ["At the largest rate of the grid (0.006): none. A wider grid might find a better rate, so this "
                    "strategy may be under-tuned."]
    assert report.mean_curves(data, "equal-depth") == {}


def test_the_sweep_shows_the_select_loss_it_chose_on_and_the_rates_added_beyond_the_grid():
    low, high = PROFILE.lrs
    sweep = [  # the report loss prefers the low rate, the select loss the high one: the table shows the select loss
        run("lr-sweep", "none", 0, 2.0, lr=low, select_val_loss=3.2),
        run("lr-sweep", "none", 0, 2.5, lr=high, select_val_loss=3.0),
        run("lr-sweep", "none", 0, 2.6, lr=2 * high, select_val_loss=3.1),  # widened: the best sat at the edge
        run("lr-sweep", "all", 0, 2.1, lr=low, select_val_loss=3.3),
        run("lr-sweep", "all", 0, 2.2, lr=high, select_val_loss=3.4),
    ]
    data = results(sweep)
    headers, rows = report.sweep_table(data)
    assert headers == ["strategy", f"lr {low:g}", f"lr {high:g}", f"lr {2 * high:g}", "chosen"]
    assert rows[0] == ("none", "3.200", "3.000", "3.100", f"{high:g}")
    assert rows[1] == ("all", "3.300", "3.400", "-", f"{low:g} (grid edge)")
    assert report.sweep_curves(data)["none"] == {low: 3.2, high: 3.0, 2 * high: 3.1}
    widened = [line for line in report.sweep_sentences(data) if line.startswith("Widened")]
    assert widened == ["Widened beyond the grid because the best rate sat at its edge: none (the extra rates are the "
                       "table's last columns)."]


def test_the_limited_data_family_lists_every_planned_control_before_any_run():
    comparisons = report.limited_comparisons(results([run("lr-sweep", "none", 0, 2.0)]))
    assert [(c.label, c.baseline) for c in comparisons] == [("all", c) for c in report.LIMITED_CONTROLS]
    assert all(c.effect == "not recorded" for c in comparisons)


def test_the_comparison_table_has_a_row_per_model_and_show_skips_none(monkeypatch):
    from sharedlib.book import display

    comparisons = report.compare_to_baseline(equal_depth([0.1, 0.12, 0.11, 0.1, 0.1]), "equal-depth", "none")
    table = report.comparison_table(comparisons).data.splitlines()
    assert table[0] == "| " + " | ".join(report.COMPARISON_HEADERS) + " |"
    assert [line.split(" | ")[0].strip("| ") for line in table[2:]] == [c.label for c in comparisons]
    shown = []
    monkeypatch.setattr("IPython.display.display", shown.append)
    display.show(None)
    display.show("**x**")
    assert [item.data for item in shown] == ["**x**"]


def test_fewer_seeds_than_planned_are_counted_and_one_seed_gives_no_conclusion():
    data = equal_depth([0.1, 0.12, 0.11, 0.1, 0.1])
    data["runs"] = [r for r in data["runs"] if r["seed"] < 3]
    c = only(report.compare_to_baseline(data, "equal-depth", "none"), "all")
    assert c.difference.n == 3 and c.sentence.endswith("3 of the 5 planned seeds are recorded so far")
    data["runs"] = [r for r in data["runs"] if r["seed"] == 0]
    c = only(report.compare_to_baseline(data, "equal-depth", "none"), "all")
    assert c.effect == "too few" and c.difference is None and "no conclusion yet" in c.sentence
    comparisons = report.compare_to_baseline(data, "equal-depth", "none")
    assert "1 has too few paired seeds" in report.effect_summary(comparisons, "E")


def test_only_seeds_both_arms_finished_are_paired():
    data = equal_depth([0.1, 0.12, 0.11, 0.1, 0.1])
    data["runs"][-1] = {**data["runs"][-1], "status": "diverged", "val_loss": None, "train_loss": None, "curve": []}
    c = only(report.compare_to_baseline(data, "equal-depth", "none"), "all")
    assert c.seeds == 4 and c.difference.n == 4 and c.difference.seeds == (0, 1, 2, 3)


# ------------------------------------------------------------------------------------------------- provenance
def test_the_provenance_line_is_built_from_the_file():
    line = report.provenance_line(equal_depth([0.1] * 5))
    for part in ("Profile `ci`", PROVENANCE["command"], "`0123456789ab+dirty`", "2031-01-02 03:04 UTC",
                 "cpu: Test CPU, 2 threads", "torch 9.9", "Python 3.99", "10 runs (all trained)", "10 minutes"):
        assert part in line
    other = report.provenance_line(results([run("equal-depth", "none", 0, 3.0, reused_from="x")], commit="fedcba987654",
                                           sharedlib_hashes=["aaaa", "bbbb"]))
    assert "`fedcba987654`" in other and "0123456789ab" not in other and "1 run (0 trained" in other
    assert "2 versions of the library code" in other


def test_load_experiments_reads_and_validates_a_path(tmp_path):
    path = tmp_path / "experiments.ci.json"
    suite.write_results(path, equal_depth([0.1] * 5))
    data = report.load_experiments(path)
    assert data["profile"] == "ci" and data["path"] == str(path) and len(data["runs"]) == 10
    bad = tmp_path / "bad.ci.json"
    bad.write_text(json.dumps({"provenance": {}, "runs": []}))
    with pytest.raises(ValueError, match=r"provenance\.command: missing"):
        report.load_experiments(bad)


def test_file_profile_comes_from_the_stored_settings():
    assert report.file_profile(equal_depth([0.1] * 5)) == PROFILE
    data = {k: v for k, v in equal_depth([0.1] * 5).items() if k != "profile_settings"}
    assert report.file_profile(data) == suite.PROFILES["ci"]


# -------------------------------------------------------------------------------------------- other renderers
def test_metric_gap_and_bad_metric():
    r = run("limited-data", "none", 0, 3.0, train=2.5)
    assert report.metric_value(r, "gap") == pytest.approx(0.5)
    with pytest.raises(ValueError, match="metric must be one of"):
        report.metric_value(r, "accuracy")


def test_baseline_rows_flag_a_disagreement():
    data = equal_depth([0.1] * 5)
    data["baselines"] = {"data": "x", "val_fraction": 0.15, "unigram": 3.25, "bigram": 2.39}
    rows = report.baseline_rows(data, {"unigram": 3.25, "bigram": 2.40})
    assert rows == [("unigram", "3.250", "3.250", "yes"), ("bigram", "2.390", "2.400", "no")]


def test_learned_sentence_counts_runs_below_each_baseline():
    text = report.learned_sentence(equal_depth([0.1] * 5), {"trigram": 3.0, "5-gram": 2.0})
    assert "10 finished training runs" in text and "below the trigram (3.000): 2 of 10" in text
    assert "below the 5-gram (2.000): 0 of 10" in text
    assert report.NOT_RECORDED in report.learned_sentence(results([]), {"trigram": 3.0})
    copied = results([run("equal-depth", "none", 0, 3.0), run("lr-sweep", "none", 0, 3.0, reused_from="x")])
    assert report.learned_sentence(copied, {"trigram": 3.5}).startswith("The one finished training run")
    # two training lengths: counted apart, so a longer budget's runs do not hide behind the shorter ones
    longer = [run("budget-width", "none H=64 S=96", s, v, steps=96) for s, v in enumerate([1.5, 2.5])]
    text = report.learned_sentence(results([*equal_depth([0.1] * 5)["runs"], *longer]), {"5-gram": 2.0})
    assert text.startswith("Of the 12 finished training runs on the full training split")
    assert "the 10 of 24 steps end between 2.900 and 3.200 (below the 5-gram (2.000): 0 of 10)" in text
    assert text.endswith("the 2 of 96 steps end between 1.500 and 2.500 (below the 5-gram (2.000): 1 of 2).")


def test_overfitting_sentence_reads_the_best_step():
    data = results([run("limited-data", "none", s, 3.0, best_val_loss=2.8, best_val_step=16) for s in range(2)])
    assert report.overfitting_sentence(data, "limited-data", "none").startswith(
        "none overfits: its validation loss is lowest at step 16 and ends 0.200")
    data = results([run("limited-data", "none", 0, 3.0)])
    assert "has not overfitted" in report.overfitting_sentence(data, "limited-data", "none")


def test_equal_params_pairs_each_shared_order_with_both_vanilla_models():
    labels = ["none N=2", "sequence M=2 N=4", "cycle M=2 N=4", "cycle-rev M=2 N=4", "none N=4"]
    offsets = [0.0, -0.05, -0.1, -0.1, -0.2]
    runs = [run("equal-params", label, s, 3.0 + o + 0.01 * s + 0.003 * (s % 2) * i)
            for i, (label, o) in enumerate(zip(labels, offsets, strict=True)) for s in range(5)]
    same_params, same_flops = report.equal_params_comparisons(results(runs))
    assert [c.baseline for c in same_params] == ["none N=2"] * 3
    assert [c.baseline for c in same_flops] == ["none N=4"] * 3
    assert all(c.effect == "lower" for c in same_params) and all(c.effect == "higher" for c in same_flops)
    assert {c.family_size for c in same_params} == {3}
    first, second = report.takase_kiyono_sentences(results(runs))
    assert "Here 3 of 3 shared orders have a lower validation loss" in first
    assert "excludes zero and a Holm-adjusted p below 0.05 within these 3 comparisons (" in first
    assert "Here 2 of the two have a lower" in second
    assert "excludes zero and a Holm-adjusted p below 0.05 within these 2 comparisons: " in second
