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
    path = suite.run_experiments(TINY, ["budget-sweep", "budget-width"], out, command="pytest")
    return suite.load_results(path)


def test_the_budget_report_pairs_each_cell_and_plots_both_axes(ci_suite):
    from sharedlib.book import report

    comparisons = report.budget_comparisons(ci_suite)
    header, rows = report.budget_rows(ci_suite)
    assert len(rows) == len(comparisons) == 4 and all(len(row) == len(header) for row in rows)
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
