"""Interleaved wall-clock timing of training steps, reported as median ratios (chapters 5 and 6b)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def forward_backward(forward: Callable[[], torch.Tensor]) -> Callable[[], None]:
    """A step that runs ``forward``, sums the output and back-propagates."""

    def step() -> None:
        forward().float().sum().backward()

    return step


def time_interleaved(steps: dict[str, Callable[[], None]], repeats: int = 5, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each step, the steps taking turns so that drift in machine speed hits all alike."""
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
    """Median time of each step divided by the median of ``baseline`` (below 1: faster than it)."""
    base = statistics.median(times[baseline])
    return {name: statistics.median(t) / base for name, t in times.items()}
