"""Interleaved wall-clock timing, reported as median ratios with paired bootstrap
intervals (chapters 5 and 6b)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .validation import check_real

__all__ = [
    "forward_backward",
    "paired_ratio_interval",
    "ratio_sentence",
    "time_interleaved",
]


def forward_backward(forward: Callable[[], torch.Tensor]) -> Callable[[], None]:
    """A step that runs ``forward``, sums the output and back-propagates."""

    def step() -> None:
        forward().float().sum().backward()

    return step


def time_interleaved(
    steps: dict[str, Callable[[], None]], repeats: int = 5, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds per call of each step, the steps taking turns so that drift in machine
    speed hits all alike."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start = time.perf_counter()
            step()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return times


def median_ratios(times: dict[str, list[float]], baseline: str) -> dict[str, float]:
    """Median time of each step divided by the median of ``baseline`` (below 1: faster
    than it)."""
    base = statistics.median(times[baseline])
    return {name: statistics.median(t) / base for name, t in times.items()}


@dataclass(frozen=True)
class RatioInterval:
    """Median of per-repeat paired time ratios (a / b) and its bootstrap confidence
    interval."""

    median: float
    low: float
    high: float
    level: float  # e.g. 0.95
    n: int  # paired repeats


def paired_ratio_interval(
    a: Sequence[float],
    b: Sequence[float],
    level: float = 0.95,
    n_boot: int = 4000,
    seed: int = 0,
) -> RatioInterval:
    """Median of ``a[i] / b[i]`` over repeats i and a percentile bootstrap interval of
    that median.

    Pairing the repeats of interleaved timings cancels drift in machine speed that hits
    both alike.
    """
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(
            "a and b must be paired timings of equal length >= 2, "
            f"got {len(a)} and {len(b)}"
        )
    if check_real("level", level, 0.0, 1.0, open_minimum=True) == 1.0:
        # check_real's interval is closed at 1; a 100% interval is no interval
        raise ValueError("level must be a finite real number in (0, 1), got 1.0")
    ratios = np.asarray(a, dtype=float) / np.asarray(b, dtype=float)  # (n,)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(ratios), size=(n_boot, len(ratios)))  # (n_boot, n)
    resampled = ratios[draws]  # (n_boot, n)
    medians = np.median(resampled, axis=1)  # (n_boot,)
    low, high = np.quantile(medians, [(1 - level) / 2, (1 + level) / 2])
    return RatioInterval(
        float(np.median(ratios)), float(low), float(high), level, len(ratios)
    )


def ratio_sentence(
    interval: RatioInterval, subject: str, baseline: str, verb: str = "ran"
) -> str:
    """Words that claim only what ``interval`` (time of ``subject`` / time of
    ``baseline``) supports."""
    r, lo, hi = interval.median, interval.low, interval.high
    ci = (
        f"median paired time ratio {r:.2f}, {interval.level:.0%} CI {lo:.2f}–{hi:.2f} "
        f"over {interval.n} repeats"
    )
    if hi < 1:
        return f"{subject} {verb} {1 / r:.2f} times faster than {baseline} ({ci})"
    if lo > 1:
        return (
            f"{subject} was slower: it took {r:.2f} times as long as {baseline} ({ci})"
        )
    return (
        f"no evidence of a difference in speed between {subject} and {baseline} "
        f"({ci}; the interval spans 1)"
    )
