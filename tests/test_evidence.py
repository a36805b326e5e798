"""Statistics of recorded experiments (chapters 6 and 8): t quantiles, paired intervals, conclusions, baselines."""

import math
import random
from dataclasses import replace

import pytest

from sharedlib.data import load_text_corpus
from sharedlib.evidence import (
    PairedDifference,
    claims_effect,
    compare_recorded,
    conclusion,
    format_p,
    holm_adjust,
    mean_interval,
    paired_difference,
    summarize_experiment,
    t_cdf,
    t_quantile,
    variance_explained,
)
from sharedlib.experiments.baselines import ngram_baselines, ngram_cross_entropy

# Two-sided 95% critical values of Student's t from printed tables (independent of the code under test).
T_TABLE = {1: 12.706, 2: 4.303, 4: 2.776, 9: 2.262, 29: 2.045}


@pytest.mark.parametrize("df,expected", sorted(T_TABLE.items()))
def test_t_quantile_matches_printed_tables(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=6e-4)
    # the round trip through scipy's t.ppf and t.cdf: 2e-12 of round-off on scipy 1.10 (make test-oldest), 0 now
    assert t_cdf(t_quantile(0.975, df), df) == pytest.approx(0.975, abs=1e-10)
    assert t_quantile(0.025, df) == pytest.approx(-expected, abs=6e-4)


def test_t_quantile_approaches_the_normal_and_rejects_bad_input():
    assert t_quantile(0.975, 1e6) == pytest.approx(1.95996, abs=1e-4)
    with pytest.raises(ValueError, match="p must be"):
        t_quantile(1.0, 3)
    with pytest.raises(ValueError, match="df must be"):
        t_cdf(1.0, 0)


def test_paired_interval_by_hand():
    # differences 0.05, 0.06, 0.02: mean 0.0433, sd 0.02082, half width 4.303 * 0.02082 / sqrt(3) = 0.0517
    d = paired_difference({0: 1.30, 1: 1.32, 2: 1.29}, {0: 1.25, 1: 1.26, 2: 1.27})
    assert d.mean == pytest.approx(0.043333, abs=1e-6)
    assert d.high - d.mean == pytest.approx(4.3027 * 0.0208167 / math.sqrt(3), rel=1e-4)
    assert d.n == 3 and d.differences == pytest.approx((0.05, 0.06, 0.02))


def test_an_interval_that_spans_zero_is_never_an_effect():
    rng = random.Random(0)
    for trial in range(300):
        n = rng.randint(2, 8)
        base = {s: rng.gauss(1.3, 0.05) for s in range(n)}
        other = {s: base[s] + rng.gauss(rng.choice([0.0, 0.01, -0.01]), rng.choice([0.001, 0.02])) for s in base}
        for method in ("t", "bootstrap"):
            d = paired_difference(other, base, method=method, n_boot=500, seed=trial)
            sentence = conclusion(d, "shared", "unshared")
            if d.low <= 0 <= d.high:
                assert sentence.startswith("no evidence of a difference") and "spans zero" in sentence
            else:
                assert "no evidence" not in sentence
                assert ("lower" in sentence) == (d.mean < 0) and ("higher" in sentence) == (d.mean > 0)


def test_a_clear_effect_is_reported_with_the_right_sign():
    base = {s: 1.30 + 0.01 * s for s in range(5)}
    worse = {s: v + 0.10 + 0.001 * (-1) ** s for s, v in base.items()}
    up = conclusion(paired_difference(worse, base), "all", "none")
    down = conclusion(paired_difference(base, worse), "none", "all")
    assert up.startswith("all has a higher validation loss than none, by 0.100 nats/byte (95% CI 0.0")
    assert down.startswith("none has a lower validation loss than all, by 0.100")
    assert "5 paired seeds" in up and "5 paired seeds" in down


def test_not_enough_or_unpaired_seeds_are_refused():
    with pytest.raises(ValueError, match="not enough seeds"):
        paired_difference({0: 1.0}, {0: 1.1})
    with pytest.raises(ValueError, match="only in subject: \\[2\\]"):
        paired_difference({0: 1.0, 1: 1.0, 2: 1.0}, {0: 1.1, 1: 1.2})
    with pytest.raises(ValueError, match="not enough seeds"):
        mean_interval([1.0])
    with pytest.raises(ValueError, match="method must be"):
        paired_difference({0: 1.0, 1: 2.0}, {0: 1.0, 1: 1.0}, method="z")


def test_compare_recorded_pairs_runs_by_seed():
    runs = [
        {"experiment": "e", "label": label, "seed": s, "val_loss": v + (0.2 if label == "b" else 0.0) + 0.01 * s}
        for label in ("a", "b") for s, v in enumerate([1.0, 1.1, 0.9])
    ]
    d = compare_recorded(runs, "e", "b", "a")
    assert d.mean == pytest.approx(0.2) and d.low == pytest.approx(0.2) and d.n == 3
    with pytest.raises(ValueError, match="no finished runs"):
        compare_recorded(runs, "e", "c", "a")
    rows = summarize_experiment([{**r, "parameters": 7} for r in runs], "e", baseline="a")
    assert [r["label"] for r in rows] == ["a", "b"] and rows[0]["difference"] is None
    assert rows[1]["conclusion"].startswith("b has a higher validation loss than a, by 0.200")
    assert rows[0]["mean"] == pytest.approx(1.01) and rows[0]["low"] < 1.01 < rows[0]["high"]
    with pytest.raises(ValueError, match="baseline must be one of"):
        summarize_experiment(runs, "e", baseline="z")


# ------------------------------------------------------------------------------ p-values and the Holm correction
def test_the_paired_t_p_value_by_hand():
    # differences 0.05, 0.06, 0.02: t^2 = 3 mean^2 / sd^2 = 13 exactly; with 2 degrees of freedom
    # P(T <= t) = 1/2 + t / (2 sqrt(2 + t^2)), so the two-sided p is 1 - sqrt(13 / 15) = 0.0690
    d = paired_difference({0: 1.30, 1: 1.32, 2: 1.29}, {0: 1.25, 1: 1.26, 2: 1.27})
    assert d.p_value == pytest.approx(1 - math.sqrt(13 / 15), rel=1e-9)
    assert d.p_value > 0.05 and d.low < 0  # the 95% interval spans zero, as p > 0.05 says
    # 1 degree of freedom is the Cauchy: p = 1 - 2 atan(|t|) / pi; differences 0.1, 0.3: t = 0.2 / (0.1414 / 1.414) = 2
    d = paired_difference({0: 1.1, 1: 1.3}, {0: 1.0, 1: 1.0})
    assert d.p_value == pytest.approx(1 - 2 * math.atan(2) / math.pi, rel=1e-9)
    # every difference the same: the interval is a point and p is 0 (or 1 when that point is 0)
    assert paired_difference({0: 1.5, 1: 2.5}, {0: 1.0, 1: 2.0}).p_value == 0.0
    assert paired_difference({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0}).p_value == 1.0


def test_the_t_p_value_is_below_alpha_exactly_when_the_interval_excludes_zero():
    rng = random.Random(1)
    for _ in range(300):
        n = rng.randint(2, 8)
        level = rng.choice([0.9, 0.95, 0.99])
        base = {s: rng.gauss(1.3, 0.05) for s in range(n)}
        other = {s: base[s] + rng.gauss(rng.choice([0.0, 0.02]), 0.02) for s in base}
        d = paired_difference(other, base, level)
        assert 0 <= d.p_value <= 1
        assert (d.p_value < 1 - level) == d.excludes_zero


def test_the_bootstrap_p_value_follows_its_interval():
    n_boot = 2000
    rng = random.Random(2)
    for trial in range(100):
        base = {s: rng.gauss(1.3, 0.05) for s in range(6)}
        other = {s: base[s] + rng.gauss(rng.choice([0.0, 0.02]), 0.02) for s in base}
        d = paired_difference(other, base, method="bootstrap", n_boot=n_boot, seed=trial)
        assert 2 / (n_boot + 1) <= d.p_value <= 1
        slack = 4 / n_boot  # the quantiles and the counts resolve 1 / n_boot
        if d.excludes_zero:
            assert d.p_value <= 0.05 + slack
        else:
            assert d.p_value >= 0.05 - slack
    # no resampled mean reaches zero: p is (1 + 0) / (1 + n_boot), twice, never 0
    d = paired_difference({0: 1.2, 1: 1.3, 2: 1.25}, {0: 1.0, 1: 1.0, 2: 1.0}, method="bootstrap", n_boot=999)
    assert d.p_value == pytest.approx(2 / 1000)
    d = paired_difference({0: 1.0, 1: 1.0}, {0: 1.0, 1: 1.0}, method="bootstrap", n_boot=999)
    assert d.p_value == 1.0


def test_holm_by_hand_in_the_order_given():
    # sorted 0.005, 0.01, 0.03, 0.04 (m = 4): 4 * 0.005 = 0.02, 3 * 0.01 = 0.03, 2 * 0.03 = 0.06,
    # 1 * 0.04 = 0.04 -> 0.06 (monotone); returned in the input order. statsmodels' multipletests(p, method="holm")
    # gives the same [0.03, 0.06, 0.06, 0.02].
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # any permutation of the input permutes the output the same way
    raw = [0.01, 0.04, 0.03, 0.005]
    for order in ([3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]):
        assert holm_adjust([raw[i] for i in order]) == pytest.approx([[0.03, 0.06, 0.06, 0.02][i] for i in order])
    # capped at 1: 3 * 0.2 = 0.6, 2 * 0.5 = 1.0, 1 * 0.9 -> 1.0
    assert holm_adjust(p for p in [0.9, 0.2, 0.5]) == pytest.approx([1.0, 0.6, 1.0])
    # ties get the same value; one p-value is its own adjustment; none gives none
    assert holm_adjust([0.02, 0.02, 0.5]) == pytest.approx([0.06, 0.06, 0.5])
    assert holm_adjust([0.037]) == [0.037]
    assert holm_adjust([]) == []
    # the recorded equal-depth family (6 arms against none, raw p rounded): 6 * 0.0002, 5 * 0.0018, 4 * 0.0110,
    # 3 * 0.0303 = 0.0909, 2 * 0.0411 = 0.0822 -> 0.0909, 1 * 0.1079; 3 of 6 stay below 0.05
    adjusted = holm_adjust([0.0002, 0.1079, 0.0018, 0.0303, 0.0110, 0.0411])
    assert adjusted == pytest.approx([0.0012, 0.1079, 0.0090, 0.0909, 0.0440, 0.0909])
    assert sum(p < 0.05 for p in adjusted) == 3
    for bad in (float("nan"), -0.1, 1.5):
        with pytest.raises(ValueError, match="p-values must be in"):
            holm_adjust([0.01, bad])


def test_holm_matches_the_step_down_procedure_on_random_families():
    rng = random.Random(3)
    for _ in range(200):
        m = rng.randint(1, 12)
        ps = [rng.choice([rng.random(), rng.random() * 0.05, round(rng.random(), 1)]) for _ in range(m)]
        adjusted = holm_adjust(ps)
        assert all(p <= a <= 1 for p, a in zip(ps, adjusted, strict=True))
        by_p = [a for _, a in sorted(zip(ps, adjusted, strict=True))]
        assert by_p == sorted(by_p)  # monotone in the raw p
        for alpha in (0.01, 0.05, 0.1):
            # Holm: walk up the sorted p-values, rejecting while p_(k) < alpha / (m - k + 1), and stop at the first
            # that fails
            rejected = set()
            for k, i in enumerate(sorted(range(m), key=lambda j: ps[j])):
                if not ps[i] * (m - k) < alpha:
                    break
                rejected.add(i)
            assert {i for i, a in enumerate(adjusted) if a < alpha} == rejected


def test_conclusion_after_holm_correction():
    d = PairedDifference(0.0294, 0.0049, 0.0538, 5, 0.95, "t", (0.03,) * 5, tuple(range(5)), 0.0303)
    plain = conclusion(d, "sequence", "none", unit="nats per token")
    assert plain == ("sequence has a higher validation loss than none, by 0.029 nats per token "
                     "(95% CI 0.005 to 0.054, 5 paired seeds)")
    # the same interval dropped by the correction: no effect claimed
    dropped = conclusion(d, "sequence", "none", unit="nats per token", adjusted_p=0.0909, family_size=6)
    assert dropped == (
        "no evidence of a difference in validation loss between sequence and none after correction for multiple "
        "comparisons: the mean difference of 0.029 nats per token (95% CI 0.005 to 0.054, 5 paired seeds) is not "
        "significant after Holm correction over 6 comparisons (adjusted p = 0.091)")
    assert not claims_effect(d, 0.0909) and claims_effect(d) and claims_effect(d, 0.003)
    # surviving: the plain sentence with the adjusted p appended
    kept = conclusion(d, "sequence", "none", unit="nats per token", adjusted_p=0.003, family_size=6)
    assert kept == plain + " (Holm-adjusted p = 0.003 over 6 comparisons)"
    lower = replace(d, mean=-0.0294, low=-0.0538, high=-0.0049)
    assert conclusion(lower, "a", "b", adjusted_p=0.0004, family_size=3).endswith(
        "(95% CI 0.005 to 0.054, 5 paired seeds) (Holm-adjusted p < 0.001 over 3 comparisons)")
    # an interval that spans zero stays "no evidence", with the adjusted p appended
    spans = replace(d, low=-0.002, p_value=0.07)
    assert conclusion(spans, "a", "b", adjusted_p=0.35, family_size=5) == (
        conclusion(spans, "a", "b") + " (Holm-adjusted p = 0.35 over 5 comparisons)")
    # a family of one: no correction, the p as it is
    assert conclusion(d, "a", "b", adjusted_p=0.0303, family_size=1).endswith(
        "5 paired seeds) (p = 0.03, the only comparison of its family)")
    assert conclusion(d, "a", "b", adjusted_p=0.06, family_size=1).endswith(
        "5 paired seeds) is not significant (p = 0.06)")
    with pytest.raises(ValueError, match="together"):
        conclusion(d, "a", "b", adjusted_p=0.01)
    with pytest.raises(ValueError, match="family_size must be"):
        conclusion(d, "a", "b", adjusted_p=0.01, family_size=0)
    with pytest.raises(ValueError, match="adjusted_p must be"):
        conclusion(d, "a", "b", adjusted_p=1.5, family_size=2)


def test_format_p():
    assert format_p(0.11) == "= 0.11" and format_p(0.003) == "= 0.003" and format_p(0.0909) == "= 0.091"
    assert format_p(0.0004) == "< 0.001" and format_p(1.0) == "= 1"
    # two digits would round 0.0496 to the 0.05 it does not reach
    assert format_p(0.0496) == "= 0.05" and format_p(0.0496, 0.05) == "= 0.0496"
    with pytest.raises(ValueError, match="p must be"):
        format_p(-0.5)


def test_summarize_experiment_corrects_within_the_experiment():
    # b: differences 0.05, 0.01, 0.04, 0.02, 0.03 (t = 4.24, p = 0.013, interval excludes zero); c: a clear effect;
    # d: none. Holm over 3: c 3 * p_c, b 2 * 0.013 = 0.027 -> kept at m = 3; with five arms like b it would not be
    offsets = {"a": [0] * 5, "b": [0.05, 0.01, 0.04, 0.02, 0.03], "c": [0.20, 0.21, 0.19, 0.20, 0.22],
               "d": [0.02, -0.03, 0.01, -0.01, 0.0]}
    runs = [{"experiment": "e", "label": label, "seed": s, "val_loss": 1.0 + 0.1 * s + o, "parameters": 7}
            for label, os in offsets.items() for s, o in enumerate(os)]
    rows = {r["label"]: r for r in summarize_experiment(runs, "e", baseline="a")}
    assert rows["a"]["adjusted_p"] is None and rows["a"]["conclusion"] is None
    ps = {k: rows[k]["p_value"] for k in "bcd"}
    assert ps["b"] == pytest.approx(0.0132, abs=1e-4)
    assert [rows[k]["adjusted_p"] for k in "bcd"] == pytest.approx(holm_adjust([ps["b"], ps["c"], ps["d"]]))
    assert rows["b"]["adjusted_p"] == pytest.approx(2 * ps["b"])
    assert rows["b"]["conclusion"].endswith(" over 3 comparisons)") and "higher" in rows["b"]["conclusion"]
    uncorrected = {r["label"]: r for r in summarize_experiment(runs, "e", baseline="a", correct=False)}
    assert uncorrected["b"]["adjusted_p"] is None and "Holm" not in uncorrected["b"]["conclusion"]
    wide = runs + [{**r, "label": f"b{i}"} for i in range(3) for r in runs if r["label"] == "b"]
    rows = {r["label"]: r for r in summarize_experiment(wide, "e", baseline="a")}
    assert rows["b"]["adjusted_p"] > 0.05  # 5 * 0.0132 = 0.066 (b and its three copies tie)
    assert rows["b"]["conclusion"].startswith("no evidence of a difference") and "over 6 comparisons" in rows[
        "b"]["conclusion"]


# ----------------------------------------------------------------------------------------------- n-gram baselines
def test_unigram_cross_entropy_by_hand():
    # train "abab": p(a) = p(b) = 1/2 with add_k=0, so any text of a and b costs ln 2 per byte
    assert ngram_cross_entropy("abab", "aabb", 1, add_k=0) == pytest.approx(math.log(2))
    # add-one over 256 bytes: p(a) = (2 + 1) / (4 + 256), p(c) = 1 / 260
    expected = (2 * math.log(260 / 3) + math.log(260)) / 3
    assert ngram_cross_entropy("abab", "abc", 1, add_k=1) == pytest.approx(expected)
    assert ngram_cross_entropy("abab", "abc", 1, add_k=0) == math.inf  # an unseen byte with no smoothing


def test_periodic_text_is_almost_free_for_a_trigram():
    period = "abcdefg" * 400
    assert ngram_cross_entropy(period, "abcdefg" * 20, 3) < 0.01
    assert ngram_cross_entropy(period, "abcdefg" * 20, 1, add_k=0) == pytest.approx(math.log(7))  # no context


def test_bad_baseline_arguments_are_refused():
    with pytest.raises(ValueError, match="order must be"):
        ngram_cross_entropy("abc", "abc", 0)
    with pytest.raises(ValueError, match=r"symbols in 0\.\.255"):
        ngram_cross_entropy([1, 300], [1, 2], 1)
    with pytest.raises(ValueError, match="add_k must be"):
        ngram_cross_entropy("abc", "abc", 1, add_k=-1)


def test_more_context_helps_on_the_built_in_corpus():
    corpus = load_text_corpus(val_fraction=0.15)
    b = ngram_baselines(corpus.train, corpus.val, max_order=3)
    assert b["unigram"] > b["bigram"] > b["trigram"]
    # recorded values (Witten-Bell, val_fraction 0.15): 3.246, 2.391, 1.783 nats per byte
    assert b["unigram"] == pytest.approx(3.246, abs=0.005)
    assert b["bigram"] == pytest.approx(2.391, abs=0.005)
    assert b["trigram"] == pytest.approx(1.783, abs=0.005)


def test_variance_explained_by_hand_and_against_a_regression_on_group_indicators():
    # groups a: (1, 3) mean 2, b: (5, 7) mean 6; grand mean 4; between 4 * 4 = 16, total 9 + 1 + 1 + 9 = 20
    assert variance_explained([1, 3, 5, 7], ["a", "a", "b", "b"]) == pytest.approx(0.8)
    rng = random.Random(0)
    groups = [rng.randrange(5) for _ in range(200)]
    values = [g * 0.5 + rng.gauss(0, 1) for g in groups]
    # R^2 of least squares on one indicator per group is the same quantity, computed another way
    import numpy as np

    X = np.eye(5)[groups]
    y = np.array(values)
    fitted = X @ np.linalg.lstsq(X, y, rcond=None)[0]
    r2 = 1 - ((y - fitted) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert variance_explained(values, groups) == pytest.approx(r2, abs=1e-12)
    # groups unrelated to the values explain little; one group per value explains everything
    assert variance_explained(values, [rng.randrange(2) for _ in range(200)]) < 0.05
    assert variance_explained(values, range(200)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same length"):
        variance_explained([1, 2], [1])
    with pytest.raises(ValueError, match="every value is equal"):
        variance_explained([3, 3], [0, 1])
