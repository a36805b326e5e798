"""What "learned" means on a byte corpus: n-gram cross-entropies a Transformer has to
beat (chapter 6).

A model of order n predicts byte x_i from the n - 1 bytes before it. Counts come from
the training split; the unigram is add-k smoothed over all 256 bytes, and every higher
order is interpolated with the order below it by Witten-Bell smoothing (Witten & Bell,
1991), which has no parameter to tune:

    p(c | h) = (C(h c) + T(h) p_lower(c | h')) / (C(h) + T(h)),

where C(h) counts history h, T(h) counts the distinct bytes seen after h, and h' drops
the oldest byte of h. Every order is scored on the same validation positions (from the
``max_order``-th byte on), in nats per token (a token is a byte here).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..validation import check_int, check_real

__all__ = ["ngram_baselines", "ngram_cross_entropy"]

ORDER_NAMES: dict[int, str] = {1: "unigram", 2: "bigram", 3: "trigram"}


def _as_bytes(
    name: str,
    data: torch.Tensor | np.ndarray | Sequence[int] | bytes | str,
    vocab_size: int,
) -> np.ndarray:
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
    if array.size and (array.min() < 0 or array.max() >= vocab_size):
        raise ValueError(
            f"{name} must hold symbols in 0..{vocab_size - 1}, "
            f"found {array.min()}..{array.max()}"
        )
    return array


def _history_ids(
    data: np.ndarray, positions: np.ndarray, length: int, vocab_size: int
) -> np.ndarray:
    """Integer id of the ``length`` symbols before each position (0: empty history)."""
    ids = np.zeros(len(positions), dtype=np.int64)
    for back in range(length, 0, -1):
        ids = ids * vocab_size + data[positions - back]
    return ids


def _lookup(keys: np.ndarray, values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """``values[k]`` for each query equal to a sorted key ``k``; 0 for other queries."""
    if not len(keys):
        return np.zeros(len(queries), dtype=values.dtype)
    index = np.clip(np.searchsorted(keys, queries), 0, len(keys) - 1)
    return np.where(keys[index] == queries, values[index], 0)


def ngram_probabilities(
    train: torch.Tensor | np.ndarray | Sequence[int] | bytes | str,
    targets: torch.Tensor | np.ndarray | Sequence[int] | bytes | str,
    order: int,
    vocab_size: int = 256,
    add_k: float = 1.0,
    start: int | None = None,
) -> np.ndarray:
    """Probability of each scored symbol of ``targets`` (positions ``start``...) under
    an order-``order`` model (1 = unigram, 2 = bigram, ...).

    ``start`` defaults to ``order - 1``, the first position with a full history; pass
    ``max_order - 1`` to score several orders on the same positions.
    """
    order = check_int("order", order)
    add_k = check_real("add_k", add_k, 0)
    start = check_int("start", order - 1 if start is None else start, order - 1)
    train_ids = _as_bytes("train", train, vocab_size)
    target_ids = _as_bytes("targets", targets, vocab_size)
    if len(train_ids) < order:
        raise ValueError(
            f"train must hold at least order = {order} symbols, got {len(train_ids)}"
        )
    if len(target_ids) <= start:
        raise ValueError(
            f"targets must hold more than start = {start} symbols, "
            f"got {len(target_ids)}"
        )
    positions = np.arange(start, len(target_ids))
    symbols = target_ids[positions]
    counts = np.bincount(train_ids, minlength=vocab_size).astype(np.float64)  # (V,)
    total = counts.sum() + add_k * vocab_size
    if total == 0:
        raise ValueError("add_k = 0 needs a non-empty train split")
    p = (counts[symbols] + add_k) / total  # the unigram, (n,)
    for length in range(1, order):
        train_positions = np.arange(length, len(train_ids))
        h_train = _history_ids(train_ids, train_positions, length, vocab_size)
        pairs, pair_counts = np.unique(
            h_train * vocab_size + train_ids[train_positions], return_counts=True
        )
        histories, history_counts = np.unique(h_train, return_counts=True)
        # T(h): the distinct symbols seen after each history
        pair_histories, distinct = np.unique(pairs // vocab_size, return_counts=True)
        h = _history_ids(target_ids, positions, length, vocab_size)
        c_hc = _lookup(pairs, pair_counts, h * vocab_size + symbols).astype(np.float64)
        c_h = _lookup(histories, history_counts, h).astype(np.float64)
        t_h = _lookup(pair_histories, distinct, h).astype(np.float64)
        seen = c_h > 0
        p = np.where(seen, (c_hc + t_h * p) / np.where(seen, c_h + t_h, 1.0), p)
    return p


def ngram_cross_entropy(
    train: torch.Tensor | np.ndarray | Sequence[int] | bytes | str,
    targets: torch.Tensor | np.ndarray | Sequence[int] | bytes | str,
    order: int,
    vocab_size: int = 256,
    add_k: float = 1.0,
    start: int | None = None,
) -> float:
    """Mean negative log-likelihood (nats per token) of ``targets`` under the
    order-``order`` model of ``train``."""
    p = ngram_probabilities(train, targets, order, vocab_size, add_k, start)
    with np.errstate(divide="ignore"):
        return float(-np.log(p).mean())


def ngram_baselines(
    train: torch.Tensor | np.ndarray | Sequence[int] | bytes | str,
    val: torch.Tensor | np.ndarray | Sequence[int] | bytes | str,
    max_order: int = 3,
    vocab_size: int = 256,
    add_k: float = 1.0,
) -> dict[str, float]:
    """Validation cross-entropy (nats per token, a token being a byte) of orders
    1..max_order, all scored on the same positions."""
    max_order = check_int("max_order", max_order)
    return {
        ORDER_NAMES.get(n, f"{n}-gram"): ngram_cross_entropy(
            train, val, n, vocab_size, add_k, start=max_order - 1
        )
        for n in range(1, max_order + 1)
    }
