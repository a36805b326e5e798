"""The minimum detectable difference of a paired comparison (chapter 8), checked by
simulation, and the budget-width report on a ci-profile file."""

from dataclasses import replace

import numpy as np
import pytest

from sharedlib.evidence import minimum_detectable_difference, paired_difference
from sharedlib.experiments import suite

# the ci profile cut to a few steps: the report functions need records, not learning
TINY = replace(suite.get_profile("ci"), steps=6, warmup=2, eval_every=3, limited_steps=6, limited_eval_every=3,
               strategies=("none", "all"))


def test_the_detectable_difference_is_detected_at_the_stated_power():
    base = {s: 0.0 for s in range(5)}
    observed = paired_difference(dict(enumerate([0.01, -0.02, 0.03, 0.0, 0.015])), base)
    mdd = minimum_detectable_difference(observed, power=0.8)
    sd = float(np.std(observed.differences, ddof=1))
    rng = np.random.default_rng(0)
    hits = [paired_difference(dict(enumerate(rng.normal(mdd, sd, 5))), base).excludes_zero for _ in range(700)]
    assert 0.75 < np.mean(hits) < 0.85
    # half the difference is detected far less often: the number means something
    half = [paired_difference(dict(enumerate(rng.normal(mdd / 2, sd, 5))), base).excludes_zero for _ in range(700)]
    assert np.mean(half) < 0.45
    with pytest.raises(ValueError, match="power"):
        minimum_detectable_difference(observed, power=1.0)


@pytest.fixture(scope="module")
def ci_suite(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("suite")
    path = suite.run_experiments(TINY, ["budget-sweep", "budget-width", "budget-stopped"], out, command="pytest")
    return suite.load_results(path)


def test_the_budget_report_pairs_each_cell_and_plots_both_axes(ci_suite):
    from sharedlib.book import report

    comparisons = report.budget_comparisons(ci_suite)
    header, rows = report.budget_rows(ci_suite)
    assert len(rows) == len(comparisons) == 4 and all(len(row) == len(header) for row in rows)
    chosen = suite.chosen_lrs(ci_suite["runs"], TINY)
    assert rows[0][:3] == (16, f"{TINY.steps:,}", f"{chosen['none H=16 S=6']:g}, {chosen['all H=16 S=6']:g}")
    assert {c.family_size for c in comparisons} == {4}  # one Holm family
    c = comparisons[0]
    by_hand = np.mean([a - b for a, b in zip(
        [v for _, v in sorted(report.values(ci_suite, "budget-width", c.label).items())],
        [v for _, v in sorted(report.values(ci_suite, "budget-width", c.baseline).items())], strict=True)])
    assert c.difference.mean == pytest.approx(by_hand)
    assert "would be detected 80% of the time" in report.detectable_sentence(c)
    fig = report.plot_budget(ci_suite)
    assert len(fig.axes) == 2


def test_the_limited_data_family_and_the_slice_ngram(tmp_path):
    import torch

    from sharedlib.book import report

    torch.set_num_threads(1)
    data = suite.load_results(suite.run_experiments(TINY, ["limited-data"], tmp_path, command="pytest"))
    comparisons = report.limited_comparisons(data)
    assert [c.baseline for c in comparisons] == list(report.LIMITED_CONTROLS)
    assert {c.family_size for c in comparisons} == {4}
    order, loss = report.limited_ngram(data)
    kn = data["baselines"]["limited-data"]["kneser-ney"]
    assert loss == min(kn.values()) and kn[order] == loss
    assert report.limited_ngram({"baselines": {}}) is None


def test_the_budget_trends_pair_the_change_in_the_gap_over_seeds(ci_suite):
    import copy

    from sharedlib.book import report

    data = copy.deepcopy(ci_suite)
    s1, s2 = TINY.steps, 2 * TINY.steps
    # gap all - none per cell, the same on every seed: width 16 loses 0.05 of it with the longer budget
    gap = {(16, s1): 0.10, (16, s2): 0.05, (32, s1): 0.10, (32, s2): 0.10}
    for r in data["runs"]:
        if r["experiment"] == "budget-width":
            h, s = (int(part[2:]) for part in r["label"].split()[1:])
            r["val_loss"] = 2.0 + r["seed"] + (gap[h, s] if r["label"].startswith("all") else 0.0)
    lines = report.budget_trends(data)
    assert len(lines) == 4
    assert lines[0].startswith(f"at width 16, the loss gap all - none falls from {s1} to {s2} steps: -0.050")
    assert lines[1].startswith(f"at width 32, the loss gap all - none shows no evidence of a change from {s1} to {s2}")
    assert lines[2].startswith(f"at {s1} steps, the loss gap all - none shows no evidence of a change from width 16")
    assert lines[3].startswith(f"at {s2} steps, the loss gap all - none rises from width 16 to 32: +0.050")
    assert all("over 4 comparisons" in line for line in lines)
    summary, best = report.budget_trend_summary(data).split(". With each run stopped at its best step")
    assert summary.startswith(
        f"At the last step, the gap all - none falls from {s1} to {s2} steps at width 16 (-0.050 ")
    assert f"; it rises from width 16 to 32 at {s2} steps (+0.050 " in summary
    assert summary.endswith("; and it shows no evidence of a change in the other 2 comparisons "
                            "(paired over seeds, Holm over 4)")
    # the best-step half counts the changes of the gap in budget-stopped's best_val_loss, set the same way
    for r in data["runs"]:
        if r["experiment"] == "budget-stopped":
            h, s = (int(part[2:]) for part in r["label"].split()[1:])
            r["best_val_loss"] = 2.0 + r["seed"] + (gap[h, s] if r["label"].startswith("all") else 0.0)
    best = report.budget_trend_summary(data).split(". With each run stopped at its best step")[1]
    assert best == (" (rates chosen for it), the gap falls in 1, rises in 1 and shows no evidence of a "
                    "change in 2 of the 4 comparisons (Holm over 4)")
    # no change anywhere: one clause, no count of "others"
    for r in data["runs"]:
        if r["experiment"] in ("budget-width", "budget-stopped"):
            r["val_loss"] = r["best_val_loss"] = 2.0 + r["seed"] + (0.1 if r["label"].startswith("all") else 0.0)
    assert report.budget_trend_summary(data) == (
        "At the last step, the gap all - none shows no evidence of a change in any of the 4 comparisons (paired "
        "over seeds, Holm over 4). With each run stopped at its best step (rates chosen for it), the gap "
        "shows no evidence of a change in 4 of the 4 comparisons (Holm over 4)")
    # without the early-stopped runs, only the last step is summarised
    partial = copy.deepcopy(data)
    partial["runs"] = [r for r in partial["runs"] if r["experiment"] != "budget-stopped"]
    assert report.budget_trend_summary(partial).endswith("(paired over seeds, Holm over 4)")
    empty = copy.deepcopy(ci_suite)
    empty["runs"] = [r for r in empty["runs"] if r["experiment"] not in ("budget-width", "budget-stopped")]
    assert report.budget_trends(empty) == [f"How the gap changes with budget and width: {report.NOT_RECORDED}"]
    assert report.budget_trend_summary(empty).endswith(report.NOT_RECORDED)


def test_the_late_falls_measure_each_cell_over_its_last_interval(ci_suite):
    import copy

    from sharedlib.book import report

    data = copy.deepcopy(ci_suite)
    # the last two curve points set by hand: none still falls 0.2 at the short budget, all has
    # stopped; at the long budget none rises 0.1
    for r in data["runs"]:
        if r["experiment"] == "budget-width":
            steps = int(r["label"].split()[2][2:])
            none = r["label"].startswith("none")
            fall = (0.2 if steps == TINY.steps else -0.1) if none else 0.0
            r["curve"][-2][2] = r["curve"][-1][2] + fall + 0.004 * r["seed"]
    lines = report.budget_late_falls(data)
    assert len(lines) == 4
    span = TINY.eval_every
    assert lines[0].startswith(f"width 16, {TINY.steps} steps: fall of the report loss over the last {span} steps")
    jitter = 0.004 * np.mean(sorted(report.values(data, "budget-width", f"all H=16 S={TINY.steps}")))
    assert f"none {0.2 + jitter:+.3f} [" in lines[0] and f"all {jitter:+.3f} [" in lines[0]
    assert f"none {-0.1 + jitter:+.3f} [" in lines[1]
    assert "last " + str(2 * span) + " steps" in lines[1]  # the longer budget evaluates less often
    empty = copy.deepcopy(ci_suite)
    empty["runs"] = [r for r in empty["runs"] if r["experiment"] != "budget-width"]
    assert all(report.NOT_RECORDED in line for line in report.budget_late_falls(empty))


def _set_budget(data, last, stopped, gap_none=0.3, gap_all=0.1):
    """Set the budget runs' losses by hand: ``last`` and ``stopped`` map (width, steps) to
    all's offset from none at the last step and at the best step, seed by seed."""
    for r in data["runs"]:
        if r["experiment"] not in ("budget-width", "budget-stopped"):
            continue
        h, s = (int(part[2:]) for part in r["label"].split()[1:])
        shared = r["label"].startswith("all")
        offsets = last if r["experiment"] == "budget-width" else stopped
        offset = offsets[h, s][r["seed"]] if shared else 0.0
        r["val_loss"] = r["best_val_loss"] = 2.0 + 0.1 * r["seed"] + offset
        r["train_loss"] = r["val_loss"] - (gap_all if shared else gap_none)


def test_the_budget_summary_names_the_cells_of_each_measure(ci_suite):
    import copy

    from sharedlib.book import report

    data = copy.deepcopy(ci_suite)
    s1, s2 = TINY.steps, 2 * TINY.steps
    higher = (0.1, 0.1)
    last = {(16, s1): higher, (16, s2): higher, (32, s1): higher, (32, s2): (-0.1, -0.1)}
    stopped = {**last, (32, s2): (0.01, -0.012)}  # the reversal goes with early stopping
    _set_budget(data, last, stopped)
    assert report.budget_summary(data, "W") == (
        "W, all against none in each width x steps cell (2 paired seeds, 95% CI, Holm over the 4 cells of each "
        f"measure): at the last step, all's validation loss is higher at 16 x {s1}, 16 x {s2} and 32 x {s1}, and "
        f"lower at 32 x {s2}; stopped at each run's best step (rates chosen for it), it is higher at 16 x {s1}, "
        f"16 x {s2} and 32 x {s1}, and not shown to differ at 32 x {s2}; its train-validation gap at the last "
        "step is lower in all 4 cells")
    header, rows = report.budget_stopping_rows(data)
    assert len(rows) == 4 and all(len(row) == len(header) for row in rows)
    chosen = suite.chosen_lrs(data["runs"], TINY, "best")
    assert rows[0][2] == f"{chosen['none H=16 S=' + str(s1)]:g}, {chosen['all H=16 S=' + str(s1)]:g}"
    assert rows[3][-1].startswith("-0.001 [") and rows[0][-1].startswith("+0.100 [+0.100, +0.100], p_adj")
    # without the early-stopped runs that measure says so; a wrong experiment is refused
    partial = copy.deepcopy(data)
    partial["runs"] = [r for r in partial["runs"] if r["experiment"] != "budget-stopped"]
    assert f"it is {report.NOT_RECORDED} in all 4 cells" in report.budget_summary(partial, "W")
    assert report.budget_stopping_rows(partial)[1][0][-1] == "—"
    with pytest.raises(ValueError, match="experiment"):
        report.budget_comparisons(data, "val_loss", "budget-sweep")
