"""Statistics of recorded experiments (chapters 6 and 8): t quantiles, paired intervals, conclusions, baselines."""

import math
import random

import pytest

from sharedlib.data import load_text_corpus
from sharedlib.evidence import (
    compare_recorded,
    conclusion,
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
