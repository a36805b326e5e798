"""What "learned" means on a byte corpus: n-gram cross-entropies a Transformer has to
beat (chapter 6).

A model of order n predicts byte x_i from the n - 1 bytes before it. Counts come from
the training split, and every order is interpolated with the order below it. Two
smoothers are offered. Witten-Bell (Witten & Bell, 1991; the default) has no parameter
to tune: the unigram is add-k smoothed over all V = 256 bytes, and above it

    p(c | h) = (C(h c) + T(h) p_lower(c | h')) / (C(h) + T(h)),

where C(h) counts history h, T(h) counts the distinct bytes seen after h, and h' drops
the oldest byte of h. Interpolated Kneser-Ney (Chen & Goodman, 1998) subtracts one
discount D per order, D = n1 / (n1 + 2 n2) from that order's counts of counts (0.5
where no count is 1):

    p(c | h) = (max(N(h c) - D, 0) + D N1+(h .) p_lower(c | h')) / N(h),

where N is the raw count C at the highest order and the continuation count
N1+(. h c) (how many distinct bytes precede h c) below it, N(h) sums N(h c) over c,
N1+(h .) counts the bytes c with N(h c) > 0, and below the unigram lies the uniform
1/V, so no byte gets probability 0. With either smoother a history never seen
(N(h) = 0) passes p_lower through unchanged.

Two ways of scoring: ``ngram_cross_entropy`` gives every position of a validation
stream its full history (from the ``max_order``-th byte on, so all orders see the same
positions); ``ngram_window_cross_entropy`` scores exactly what the models are scored on,
the targets 1..T of each (T+1)-byte window, where the target at window index t has
only min(n - 1, t) bytes of history: where t < n - 1 it is scored by the order-(t + 1)
model (or, on request, by the order-n one with the missing bytes an unseen history).
Losses are in nats per token (a token is a byte here).

Histories are numbered level by level (a history of length k is the pair of its oldest
byte and its newest k - 1 bytes' number), so no order overflows an integer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..validation import check_int, check_real

__all__ = [
    "CUT_HISTORIES",
    "SMOOTHINGS",
    "ngram_baselines",
    "ngram_cross_entropy",
    "ngram_probabilities",
    "ngram_window_baselines",
    "ngram_window_cross_entropy",
    "ngram_window_probabilities",
]

ORDER_NAMES: dict[int, str] = {1: "unigram", 2: "bigram", 3: "trigram"}
SMOOTHINGS: tuple[str, ...] = ("witten-bell", "kneser-ney")
CUT_HISTORIES: tuple[str, ...] = ("shorter-model", "unseen")

Symbols = torch.Tensor | np.ndarray | Sequence[int] | bytes | str
Windows = torch.Tensor | np.ndarray | Sequence[Sequence[int]]


def _as_bytes(name: str, data: Symbols, vocab_size: int) -> np.ndarray:
    """``data`` as a 1-D int64 array of symbols in 0..vocab_size-1 (a ``str`` is UTF-8
    encoded)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if isinstance(data, (bytes, bytearray)):
        array = np.frombuffer(bytes(data), dtype=np.uint8).astype(np.int64)
    elif isinstance(data, torch.Tensor):
        array = data.detach().cpu().numpy().astype(np.int64)
    else:
        array = np.asarray(data, dtype=np.int64)
    if array.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D sequence of symbols, got shape {array.shape}"
        )
    _check_symbols(name, array, vocab_size)
    return array


def _as_windows(windows: Windows, vocab_size: int) -> np.ndarray:
    """``windows`` (W, T+1) as an int64 array of symbols, W >= 1, T >= 1."""
    if isinstance(windows, torch.Tensor):
        array = windows.detach().cpu().numpy().astype(np.int64)
    else:
        array = np.asarray(windows, dtype=np.int64)
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 2:
        raise ValueError(
            "windows must be (W, T+1) with W >= 1 and T >= 1 (as "
            f"suite.fixed_windows makes), got shape {array.shape}"
        )
    _check_symbols("windows", array, vocab_size)
    return array


def _check_symbols(name: str, array: np.ndarray, vocab_size: int) -> None:
    if array.size and (array.min() < 0 or array.max() >= vocab_size):
        raise ValueError(
            f"{name} must hold symbols in 0..{vocab_size - 1}, "
            f"found {array.min()}..{array.max()}"
        )


def _check_smoothing(smoothing: str) -> str:
    if smoothing not in SMOOTHINGS:
        raise ValueError(
            f"smoothing must be one of {', '.join(map(repr, SMOOTHINGS))}, "
            f"got {smoothing!r}"
        )
    return smoothing


def _lookup(keys: np.ndarray, values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """``values[k]`` for each query equal to a sorted key ``k``; 0 for other queries."""
    if not len(keys):
        return np.zeros(len(queries), dtype=values.dtype)
    index = np.clip(np.searchsorted(keys, queries), 0, len(keys) - 1)
    return np.where(keys[index] == queries, values[index], 0)


@dataclass
class _Counts:
    """Counts at one history length: ``pairs`` (sorted) are the codes history * V +
    next byte with ``counts``, ``totals`` and ``types`` sum and count them per history,
    ``discount`` is Kneser-Ney's D (0 for Witten-Bell)."""

    pairs: np.ndarray
    counts: np.ndarray
    totals: np.ndarray
    types: np.ndarray
    discount: float = 0.0


@dataclass
class _Level:
    """History length k: ``keys`` (sorted) numbers the histories (history i has code
    keys[i] = number of its newest k - 1 bytes * V + oldest byte; empty for k = 0);
    ``raw`` counts C(h c), ``continuation`` N1+(. h c) (Kneser-Ney below the highest
    order only, else None)."""

    keys: np.ndarray
    raw: _Counts
    continuation: _Counts | None = None


def _counts(pairs: np.ndarray, counts: np.ndarray, n_histories: int, v: int) -> _Counts:
    return _Counts(
        pairs,
        counts,
        np.bincount(pairs // v, weights=counts, minlength=n_histories),
        np.bincount(pairs // v, minlength=n_histories),
    )


def _discount(counts: np.ndarray) -> float:
    """Kneser-Ney's D = n1 / (n1 + 2 n2) from counts of counts; 0.5 without a 1."""
    n1, n2 = np.count_nonzero(counts == 1), np.count_nonzero(counts == 2)
    return n1 / (n1 + 2 * n2) if n1 else 0.5


def _fit(train: np.ndarray, order: int, v: int, smoothing: str) -> list[_Level]:
    """The counts of history lengths 0..order-1 in ``train``."""
    n = len(train)
    if n * v >= 2**62:  # codes stay below (number of histories) * V <= n * V
        raise ValueError(f"train of {n} symbols is too long for vocab_size {v}")
    levels = []
    ids = np.zeros(n, dtype=np.int64)  # the history of each position: k = 0, empty
    keys = np.zeros(0, dtype=np.int64)
    for k in range(order):
        if k:  # the history of length k before p: (that of length k - 1, x[p - k])
            keys, inverse = np.unique(ids[k:] * v + train[: n - k], return_inverse=True)
            ids = np.full(n, -1, dtype=np.int64)
            ids[k:] = inverse.reshape(-1)
        pairs, counts = np.unique(ids[k:] * v + train[k:], return_counts=True)
        levels.append(_Level(keys, _counts(pairs, counts, max(len(keys), 1), v)))
    if smoothing == "kneser-ney":
        for k, level in enumerate(levels):
            level.raw.discount = _discount(level.raw.counts)
            if k < order - 1:  # N1+(. h c): the distinct pairs of length k + 1
                above = levels[k + 1]
                parent = above.keys[above.raw.pairs // v] // v  # drop the oldest byte
                pairs, counts = np.unique(
                    parent * v + above.raw.pairs % v, return_counts=True
                )
                n_histories = max(len(level.keys), 1)
                level.continuation = _counts(pairs, counts, n_histories, v)
                level.continuation.discount = _discount(counts)
    return levels


def _history_ids(rows: np.ndarray, levels: list[_Level], v: int) -> list[np.ndarray]:
    """Per history length k, the training number of the k symbols before each position
    of ``rows`` (R, S) inside its row: -1 where fewer than k exist or the history was
    never seen in training."""
    ids = [np.zeros(rows.shape, dtype=np.int64)]
    for k in range(1, len(levels)):
        keys, previous = levels[k].keys, ids[-1][:, k:]
        codes = previous * v + rows[:, :-k]  # -1 * v + byte < 0 matches no key
        found = np.clip(np.searchsorted(keys, codes), 0, len(keys) - 1)
        current = np.full(rows.shape, -1, dtype=np.int64)
        current[:, k:] = np.where(keys[found] == codes, found, -1)
        ids.append(current)
    return ids


def _lookup_counts(
    counts: _Counts, h: np.ndarray, symbols: np.ndarray, v: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """C(h c), C(h) and T(h) as floats (0 where h = -1, never seen)."""
    known = h >= 0
    c_hc = _lookup(counts.pairs, counts.counts, np.where(known, h, -1) * v + symbols)
    c_h = np.where(known, counts.totals[np.where(known, h, 0)], 0)
    t_h = np.where(known, counts.types[np.where(known, h, 0)], 0)
    return c_hc.astype(np.float64), c_h.astype(np.float64), t_h.astype(np.float64)


def _score(
    train: np.ndarray,
    levels: list[_Level],
    histories: list[np.ndarray],
    lengths: np.ndarray,
    symbols: np.ndarray,
    v: int,
    add_k: float,
    smoothing: str,
) -> np.ndarray:
    """p(symbol | history) for flat ``symbols``, their per-length history numbers and
    the history ``lengths`` they are scored with: an order-(length + 1) model, whose
    highest level takes Kneser-Ney's raw counts (Witten-Bell's are raw everywhere)."""
    if smoothing == "witten-bell":
        counts = np.bincount(train, minlength=v).astype(np.float64)  # (V,)
        total = counts.sum() + add_k * v
        if total == 0:
            raise ValueError("add_k = 0 needs a non-empty train split")
        p = (counts[symbols] + add_k) / total  # the unigram, (n,)
        for level, h in zip(levels[1:], histories[1:], strict=True):
            c_hc, c_h, t_h = _lookup_counts(level.raw, h, symbols, v)
            seen = c_h > 0
            p = np.where(seen, (c_hc + t_h * p) / np.where(seen, c_h + t_h, 1.0), p)
        return p
    p = np.full(len(symbols), 1.0 / v)  # below the unigram: uniform
    for k, (level, h) in enumerate(zip(levels, histories, strict=True)):
        c_hc, c_h, t_h = _lookup_counts(level.raw, h, symbols, v)
        d = np.full(len(symbols), level.raw.discount)
        if level.continuation is not None:
            below = lengths > k  # a level below this position's highest
            lower = _lookup_counts(level.continuation, h, symbols, v)
            c_hc, c_h, t_h = (
                np.where(below, a, b)
                for a, b in zip(lower, (c_hc, c_h, t_h), strict=True)
            )
            d = np.where(below, level.continuation.discount, d)
        seen = c_h > 0
        kept = np.maximum(c_hc - d, 0.0) + d * t_h * p
        p = np.where(seen, kept / np.where(seen, c_h, 1.0), p)
    return p


def _prepare(
    train: Symbols, order: int, vocab_size: int, add_k: float, smoothing: str
) -> tuple[np.ndarray, int, int, float, str]:
    order = check_int("order", order)
    vocab_size = check_int("vocab_size", vocab_size)
    add_k = check_real("add_k", add_k, 0)
    smoothing = _check_smoothing(smoothing)
    train_ids = _as_bytes("train", train, vocab_size)
    if len(train_ids) < order:
        raise ValueError(
            f"train must hold at least order = {order} symbols, got {len(train_ids)}"
        )
    return train_ids, order, vocab_size, add_k, smoothing


def ngram_probabilities(
    train: Symbols,
    targets: Symbols,
    order: int,
    vocab_size: int = 256,
    add_k: float = 1.0,
    start: int | None = None,
    smoothing: str = "witten-bell",
) -> np.ndarray:
    """Probability of each scored symbol of ``targets`` (positions ``start``...) under
    an order-``order`` model (1 = unigram, 2 = bigram, ...), each with its full
    history.

    ``start`` defaults to ``order - 1``, the first position with a full history; pass
    ``max_order - 1`` to score several orders on the same positions. ``smoothing`` is
    ``"witten-bell"`` or ``"kneser-ney"``; ``add_k`` (the unigram's add-k) is
    Witten-Bell's only.
    """
    train_ids, order, v, add_k, smoothing = _prepare(
        train, order, vocab_size, add_k, smoothing
    )
    start = check_int("start", order - 1 if start is None else start, order - 1)
    target_ids = _as_bytes("targets", targets, v)
    if len(target_ids) <= start:
        raise ValueError(
            f"targets must hold more than start = {start} symbols, "
            f"got {len(target_ids)}"
        )
    levels = _fit(train_ids, order, v, smoothing)
    histories = [h[0, start:] for h in _history_ids(target_ids[None, :], levels, v)]
    symbols = target_ids[start:]
    lengths = np.full(len(symbols), order - 1)
    return _score(train_ids, levels, histories, lengths, symbols, v, add_k, smoothing)


def ngram_window_probabilities(
    train: Symbols,
    windows: Windows,
    order: int,
    vocab_size: int = 256,
    add_k: float = 1.0,
    smoothing: str = "witten-bell",
    cut_history: str = "shorter-model",
) -> np.ndarray:
    """Probability (W, T) of each target ``windows[:, 1:]`` of ``windows`` (W, T+1)
    given only the bytes before it inside its window, as a model sees the inputs
    ``windows[:, :-1]``: at window index t, min(order - 1, t) of them.

    Where t < order - 1, ``cut_history="shorter-model"`` scores the target with the
    order-(t + 1) model; ``"unseen"`` with the order-``order`` model, the missing
    bytes counting as a history never seen. The two agree for Witten-Bell; Kneser-Ney's
    order-(t + 1) model takes raw counts at its highest order, ``"unseen"`` falls to
    the continuation counts, which are made for backing off, not for standing alone.
    """
    train_ids, order, v, add_k, smoothing = _prepare(
        train, order, vocab_size, add_k, smoothing
    )
    if cut_history not in CUT_HISTORIES:
        raise ValueError(
            f"cut_history must be one of {', '.join(map(repr, CUT_HISTORIES))}, "
            f"got {cut_history!r}"
        )
    rows = _as_windows(windows, v)
    levels = _fit(train_ids, order, v, smoothing)
    histories = [h[:, 1:].reshape(-1) for h in _history_ids(rows, levels, v)]
    symbols = rows[:, 1:].reshape(-1)
    t = np.arange(1, rows.shape[1])  # the window index of each target
    if cut_history == "unseen":
        t = np.full(len(t), order - 1)
    lengths = np.broadcast_to(np.minimum(t, order - 1), rows[:, 1:].shape).reshape(-1)
    p = _score(train_ids, levels, histories, lengths, symbols, v, add_k, smoothing)
    return p.reshape(rows.shape[0], rows.shape[1] - 1)


def _mean_nll(p: np.ndarray) -> float:
    with np.errstate(divide="ignore"):
        return float(-np.log(p).mean())


def ngram_cross_entropy(
    train: Symbols,
    targets: Symbols,
    order: int,
    vocab_size: int = 256,
    add_k: float = 1.0,
    start: int | None = None,
    smoothing: str = "witten-bell",
) -> float:
    """Mean negative log-likelihood (nats per token) of ``targets`` under the
    order-``order`` model of ``train``, each position with its full history."""
    return _mean_nll(
        ngram_probabilities(train, targets, order, vocab_size, add_k, start, smoothing)
    )


def ngram_window_cross_entropy(
    train: Symbols,
    windows: Windows,
    order: int,
    vocab_size: int = 256,
    add_k: float = 1.0,
    smoothing: str = "witten-bell",
    cut_history: str = "shorter-model",
) -> float:
    """Mean negative log-likelihood (nats per token) of the targets of ``windows``
    (W, T+1) under the order-``order`` model of ``train``, with the history cut at
    each window's start: the positions and contexts ``suite.window_loss`` scores a
    model on (``cut_history``: see ``ngram_window_probabilities``)."""
    return _mean_nll(
        ngram_window_probabilities(
            train, windows, order, vocab_size, add_k, smoothing, cut_history
        )
    )


def ngram_baselines(
    train: Symbols,
    val: Symbols,
    max_order: int = 3,
    vocab_size: int = 256,
    add_k: float = 1.0,
    smoothing: str = "witten-bell",
) -> dict[str, float]:
    """Validation cross-entropy (nats per token, a token being a byte) of orders
    1..max_order, all scored on the same positions with full histories."""
    max_order = check_int("max_order", max_order)
    return {
        ORDER_NAMES.get(n, f"{n}-gram"): ngram_cross_entropy(
            train, val, n, vocab_size, add_k, start=max_order - 1, smoothing=smoothing
        )
        for n in range(1, max_order + 1)
    }


def ngram_window_baselines(
    train: Symbols,
    windows: Windows,
    max_order: int = 3,
    vocab_size: int = 256,
    add_k: float = 1.0,
    smoothing: str = "witten-bell",
    cut_history: str = "shorter-model",
) -> dict[str, float]:
    """Cross-entropy (nats per token) of orders 1..max_order on the targets of
    ``windows`` (W, T+1), each with only the history inside its window (what
    ``suite.window_loss`` scores the models on)."""
    max_order = check_int("max_order", max_order)
    return {
        ORDER_NAMES.get(n, f"{n}-gram"): ngram_window_cross_entropy(
            train, windows, n, vocab_size, add_k, smoothing, cut_history
        )
        for n in range(1, max_order + 1)
    }
