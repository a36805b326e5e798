"""n-gram baselines (chapter 6): Witten-Bell and interpolated Kneser-Ney against plain dict-of-counts references,
scoring on the models' windows, and long histories that no longer overflow."""

import math
import random
from collections import Counter

import numpy as np
import pytest
import torch

from sharedlib.data import load_text_corpus
from sharedlib.experiments import suite
from sharedlib.experiments.baselines import (
    ngram_baselines,
    ngram_cross_entropy,
    ngram_probabilities,
    ngram_window_baselines,
    ngram_window_cross_entropy,
    ngram_window_probabilities,
)

SMOOTHINGS = ("witten-bell", "kneser-ney")


# ------------------------------------------------------------------------------ brute-force references, plain loops
def grams(train, n):
    """Counts of the n-grams of ``train`` (tuples)."""
    return Counter(tuple(train[i : i + n]) for i in range(len(train) - n + 1))


def reference_wb(train, order, vocab_size, add_k=1.0):
    """p(w | history) of the Witten-Bell model as the module docstring defines it."""
    n_train = len(train)
    unigram = Counter(train)
    tables = {n: grams(train, n) for n in range(2, order + 1)}

    def prob(w, history):
        history = tuple(history)[max(len(history) - (order - 1), 0) :]
        p = (unigram[w] + add_k) / (n_train + add_k * vocab_size)
        for n in range(2, len(history) + 2):
            h = history[len(history) - (n - 1) :]
            following = {g[-1]: c for g, c in tables[n].items() if g[:-1] == h}
            c_h, t_h = sum(following.values()), len(following)
            if c_h:
                p = (following.get(w, 0) + t_h * p) / (c_h + t_h)
        return p

    return prob


def discount(counts):
    n1 = sum(1 for c in counts if c == 1)
    n2 = sum(1 for c in counts if c == 2)
    return n1 / (n1 + 2 * n2) if n1 else 0.5


def reference_kn(train, order, vocab_size):
    """p(w | history) of interpolated Kneser-Ney (Chen & Goodman 1998): raw counts at the highest order, continuation
    counts N1+(. h w) below, one discount n1 / (n1 + 2 n2) per order, uniform below the unigram."""
    tables = {}
    for n in range(1, order + 1):  # n-grams: a history of n - 1 symbols and the next one
        if n == order:
            tables[n] = grams(train, n)
        else:
            continuation = Counter()
            for g in grams(train, n + 1):  # each distinct byte before h w adds one
                continuation[g[1:]] += 1
            tables[n] = continuation
    discounts = {n: discount(list(t.values())) for n, t in tables.items()}

    def prob(w, history):
        history = tuple(history)[max(len(history) - (order - 1), 0) :]
        p = 1.0 / vocab_size
        for n in range(1, len(history) + 2):
            h = history[len(history) - (n - 1) :] if n > 1 else ()
            following = {g[-1]: c for g, c in tables[n].items() if g[:-1] == h and c > 0}
            total = sum(following.values())
            if total:
                d = discounts[n]
                p = (max(following.get(w, 0) - d, 0) + d * len(following) * p) / total
        return p

    return prob


def reference(smoothing, train, order, vocab_size):
    return (reference_wb if smoothing == "witten-bell" else reference_kn)(train, order, vocab_size)


TINY = list(b"the cat sat on the mat; the bat ate the hat. a cat, a bat! that's that.")


# ------------------------------------------------------------------------------------------- against the references
@pytest.mark.parametrize("smoothing", SMOOTHINGS)
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_full_history_probabilities_match_the_reference(smoothing, order):
    targets = list(b"the hat sat; a mat ate that cat. xyz the")
    start = 3
    got = ngram_probabilities(TINY, targets, order, start=start, smoothing=smoothing)
    prob = reference(smoothing, TINY, order, 256)
    expected = [prob(targets[i], targets[:i]) for i in range(start, len(targets))]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("cut_history", ["shorter-model", "unseen"])
@pytest.mark.parametrize("smoothing", SMOOTHINGS)
@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_window_probabilities_match_the_reference_with_history_cut_at_the_window_start(smoothing, order, cut_history):
    rng = random.Random(0)
    windows = [[rng.choice(TINY) for _ in range(9)] for _ in range(6)] + [list(b"the cat x")]
    got = ngram_window_probabilities(TINY, torch.tensor(windows), order, smoothing=smoothing, cut_history=cut_history)
    assert got.shape == (7, 8)
    # target at window index t: t bytes of history; "shorter-model" scores it with the order-(t + 1) model, "unseen"
    # with the order-``order`` model given only those t bytes
    models = {n: reference(smoothing, TINY, n, 256) for n in range(1, order + 1)}
    expected = [
        [models[min(order, t + 1) if cut_history == "shorter-model" else order](row[t], row[:t]) for t in range(1, 9)]
        for row in windows
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    loss = ngram_window_cross_entropy(TINY, windows, order, smoothing=smoothing, cut_history=cut_history)
    assert loss == pytest.approx(-np.mean(np.log(expected)), rel=1e-12)


def test_the_two_ways_of_cutting_a_history_agree_for_witten_bell_only():
    windows = np.array([list(b"the cat sat"), list(b"a bat! that")])
    for order in (1, 2, 4):
        shorter, unseen = (
            ngram_window_probabilities(TINY, windows, order, cut_history=c) for c in ("shorter-model", "unseen")
        )
        np.testing.assert_array_equal(shorter, unseen)
    shorter, unseen = (
        ngram_window_probabilities(TINY, windows, 4, smoothing="kneser-ney", cut_history=c)
        for c in ("shorter-model", "unseen")
    )
    np.testing.assert_array_equal(shorter[:, 2:], unseen[:, 2:])  # window index t >= 3: the whole history
    assert not np.array_equal(shorter[:, :2], unseen[:, :2])


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_probabilities_of_every_symbol_sum_to_one(smoothing, order):
    # histories seen and unseen in training, shorter than order - 1 (cut at a window start) and long enough
    for history in [b"t", b"th", b"the", b" th", b"zq", b"at the", bytes([200, 201, 202])]:
        rows = np.array([[*history, w] for w in range(256)])  # (V, len + 1): every symbol after the history
        p = ngram_window_probabilities(TINY, rows, order, smoothing=smoothing)[:, -1]
        assert (p > 0).all()
        assert math.fsum(p) == pytest.approx(1.0, abs=1e-9)
    full = [ngram_probabilities(TINY, [*b"at the", w], order, start=6, smoothing=smoothing)[0] for w in range(256)]
    assert math.fsum(full) == pytest.approx(1.0, abs=1e-9)


def test_window_positions_with_a_full_history_score_as_in_the_stream():
    stream = np.array(list(b"the hat sat on a mat; that cat ate the bat."))
    order, span = 3, 8
    windows = np.stack([stream[s : s + span + 1] for s in range(0, len(stream) - span, span)])
    for smoothing in SMOOTHINGS:
        window_p = ngram_window_probabilities(TINY, windows, order, smoothing=smoothing)
        full_p = ngram_probabilities(TINY, stream, order, start=order - 1, smoothing=smoothing)
        for w, s in enumerate(range(0, len(stream) - span, span)):
            for t in range(order - 1, span + 1):  # window index t >= order - 1: the whole history is inside
                assert window_p[w, t - 1] == full_p[s + t - (order - 1)]


# ----------------------------------------------------------------------------------------------- long histories
@pytest.mark.parametrize("smoothing", SMOOTHINGS)
@pytest.mark.parametrize("order", [8, 9, 10])
def test_long_histories_no_longer_overflow(smoothing, order):
    # words of bytes 128..255 whose 7..9-byte histories recur: base-256 history numbers passed 2**63 here, and the
    # old encoding gave probabilities off by 0.003 at order 8 and above 1 (up to 5.5) at orders 9 and 10
    rng = random.Random(1)
    words = [bytes(rng.randrange(128, 256) for _ in range(rng.randrange(9, 13))) for _ in range(5)]
    train = b"".join(rng.choice(words) for _ in range(40))
    targets = b"".join(rng.choice(words) for _ in range(6))
    got = ngram_probabilities(train, targets, order, smoothing=smoothing)
    prob = reference(smoothing, train, order, 256)
    expected = [prob(targets[i], targets[:i]) for i in range(order - 1, len(targets))]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    assert ((got > 0) & (got <= 1)).all()
    assert np.isfinite(ngram_cross_entropy(train, targets, order, smoothing=smoothing))


def test_a_long_history_made_of_a_repeated_motif_is_almost_free():
    period = bytes(range(200, 256)) * 40
    assert ngram_cross_entropy(period, bytes(range(200, 256)) * 3, 12) < 0.05
    assert ngram_cross_entropy(period, bytes(range(200, 256)) * 3, 12, smoothing="kneser-ney") < 0.05


# ------------------------------------------------------------------------------------------------------ arguments
def test_bad_smoothing_and_windows_are_refused():
    with pytest.raises(ValueError, match="smoothing must be one of 'witten-bell', 'kneser-ney'"):
        ngram_cross_entropy("abc", "abc", 1, smoothing="good-turing")
    with pytest.raises(ValueError, match="smoothing must be"):
        ngram_window_baselines("abc", [[1, 2]], 2, smoothing="kn")
    with pytest.raises(ValueError, match=r"windows must be \(W, T\+1\)"):
        ngram_window_cross_entropy("abc", [1, 2, 3], 1)
    with pytest.raises(ValueError, match=r"windows must be \(W, T\+1\)"):
        ngram_window_cross_entropy("abc", [[1], [2]], 1)
    with pytest.raises(ValueError, match=r"windows must hold symbols in 0\.\.255"):
        ngram_window_cross_entropy("abc", [[1, 256]], 1)
    with pytest.raises(ValueError, match="order must be"):
        ngram_window_cross_entropy("abc", [[1, 2]], 0)
    with pytest.raises(ValueError, match="cut_history must be one of 'shorter-model', 'unseen'"):
        ngram_window_cross_entropy("abc", [[1, 2]], 1, cut_history="backoff")


def test_the_default_smoothing_is_unchanged():
    assert ngram_baselines(TINY, TINY[:30], 3) == ngram_baselines(TINY, TINY[:30], 3, smoothing="witten-bell")
    assert ngram_baselines(TINY, TINY[:30], 3) != ngram_baselines(TINY, TINY[:30], 3, smoothing="kneser-ney")


# ---------------------------------------------------------------------------------------------- the book's corpus
@pytest.fixture(scope="module")
def corpus():
    return load_text_corpus(val_fraction=0.15)


def test_cutting_the_history_at_the_window_start_costs_on_the_built_in_corpus(corpus):
    seq_len, n_windows, max_order, skip = 64, 256, 5, 8
    # windows as the suite makes them, from the validation split less its first bytes, so that every target also has
    # its whole history in the validation stream
    windows = suite.fixed_windows(corpus.val[skip:], seq_len, n_windows)
    span = len(corpus.val) - skip - seq_len - 1
    starts = [skip + k * span // (n_windows - 1) for k in range(n_windows)]
    assert all(torch.equal(windows[k], corpus.val[s : s + seq_len + 1]) for k, s in enumerate(starts))
    # full-history probabilities are indexed from position max_order - 1 of the stream
    index = np.array([s + t - (max_order - 1) for s in starts for t in range(1, seq_len + 1)])
    for smoothing in SMOOTHINGS:
        window = ngram_window_baselines(corpus.train, windows, max_order, smoothing=smoothing)
        for n, name in enumerate(window, start=1):
            full = ngram_probabilities(corpus.train, corpus.val, n, start=max_order - 1, smoothing=smoothing)
            same_targets = float(-np.log(full[index]).mean())  # the same targets, with their whole history
            if n <= 2:  # the first target of a window already has the one byte of history a bigram uses
                assert window[name] == pytest.approx(same_targets, rel=1e-12)
            else:
                assert window[name] > same_targets  # a cut history costs on average
    wb = ngram_window_baselines(corpus.train, windows, 5)
    kn = ngram_window_baselines(corpus.train, windows, 5, smoothing="kneser-ney")
    assert kn["5-gram"] < wb["5-gram"]  # Kneser-Ney is the stronger smoother here
