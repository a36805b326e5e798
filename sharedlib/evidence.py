"""Paired differences across seeds and their confidence intervals (chapters 6, 8).

Two models trained with the same seed see the same batches and are scored on the same
validation windows (``sharedlib.experiments.suite``), so the difference of their losses
seed by seed removes the noise they share. The mean of those n differences gets a
Student-t interval (n - 1 degrees of freedom) or a percentile bootstrap, and a
two-sided p-value of the same test. ``conclusion`` words it in a sentence that claims
no more: an effect only when the interval excludes zero, "no evidence of a difference"
otherwise. Several comparisons made together (the arms of one experiment against its
baseline) are one family: ``holm_adjust`` gives their Holm-adjusted p-values, and with
one of them ``conclusion`` claims an effect only when it also passes (issue 23, item 4).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "METHODS",
    "METRIC_NAMES",
    "PairedDifference",
    "claims_effect",
    "compare_recorded",
    "conclusion",
    "format_p",
    "holm_adjust",
    "mean_interval",
    "minimum_detectable_difference",
    "paired_difference",
    "rank_correlation",
    "summarize_experiment",
    "t_cdf",
    "t_quantile",
    "values_by_seed",
    "variance_explained",
]


METHODS: tuple[str, ...] = ("t", "bootstrap")
METRIC_NAMES: dict[str, str] = {
    "val_loss": "validation loss",
    "train_loss": "training loss",
    "best_val_loss": "best validation loss",
}


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom (``scipy.stats.t``)."""
    from scipy import stats

    if not df > 0:
        raise ValueError(f"df must be > 0, got {df!r}")
    return float(stats.t.cdf(t, df))


def t_quantile(p: float, df: float) -> float:
    """The t with ``t_cdf(t, df) == p`` (2.776 for p=0.975, df=4; ``scipy.stats.t``)."""
    from scipy import stats

    if not 0 < p < 1:
        raise ValueError(f"p must be in (0, 1), got {p!r}")
    if not df > 0:
        raise ValueError(f"df must be > 0, got {df!r}")
    return float(stats.t.ppf(p, df))


@dataclass(frozen=True)
class PairedDifference:
    """Mean per-seed difference ``subject - baseline`` with a confidence interval."""

    mean: float
    low: float
    high: float
    n: int  # paired seeds
    level: float  # e.g. 0.95
    method: str  # "t" or "bootstrap"
    differences: tuple[float, ...]  # per seed, in the order of ``seeds``
    seeds: tuple[Any, ...]
    # two-sided p-value of "mean 0" by the same method (``paired_difference`` always
    # sets it; None only in one built by hand)
    p_value: float | None = None

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of zero (an endpoint at
        exactly 0 does not count)."""
        return self.low > 0 or self.high < 0


def paired_difference(
    subject: Mapping[Any, float],
    baseline: Mapping[Any, float],
    level: float = 0.95,
    method: str = "t",
    n_boot: int = 10000,
    seed: int = 0,
) -> PairedDifference:
    """Mean of ``subject[s] - baseline[s]`` over the seeds s both have, with a ``level``
    interval.

    Both mappings must hold the same seeds (a seed present in one only raises
    ``ValueError``: an unpaired value is not silently dropped), at least 2 of them, with
    finite values.

    ``p_value`` is two-sided. For ``"t"`` it is the paired t test's, 2 P(T >= |t|) with
    t = mean / (sd / sqrt(n)) and n - 1 degrees of freedom, so it is below 1 - level
    exactly when the interval excludes zero (0 when every difference is the same
    nonzero value, 1 when all are 0). For ``"bootstrap"`` it comes from the same
    resampled means: twice the smaller share of them on either side of zero, counted
    as (1 + count) / (1 + n_boot) so that it is never 0, capped at 1; it agrees with the
    percentile interval up to the resolution of ``n_boot``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if (
        isinstance(level, bool)
        or not isinstance(level, (int, float))
        or not 0 < level < 1
    ):
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if set(subject) != set(baseline):
        raise ValueError(
            "subject and baseline must hold the same seeds to be paired; "
            f"only in subject: {sorted(set(subject) - set(baseline), key=str)}, "
            f"only in baseline: {sorted(set(baseline) - set(subject), key=str)}"
        )
    try:
        seeds = tuple(sorted(subject))
    except TypeError:  # seeds of mixed types
        seeds = tuple(sorted(subject, key=str))
    if len(seeds) < 2:
        raise ValueError(
            f"not enough seeds: a paired interval needs at least 2, got {len(seeds)}"
        )
    diffs = tuple(float(subject[s]) - float(baseline[s]) for s in seeds)
    if not all(math.isfinite(d) for d in diffs):
        raise ValueError(f"every value must be finite, got differences {diffs}")
    mean = statistics.fmean(diffs)
    if method == "t":
        sd = statistics.stdev(diffs)
        half = t_quantile((1 + level) / 2, len(diffs) - 1) * sd / math.sqrt(len(diffs))
        se = sd / math.sqrt(len(diffs))
        low, high = mean - half, mean + half
        if se == 0:  # every difference equal: t is 0/0 or infinite
            p_value = 1.0 if mean == 0 else 0.0
        else:
            p_value = min(1.0, 2 * t_cdf(-abs(mean / se), len(diffs) - 1))
    else:
        values = np.asarray(diffs)  # (n,)
        rng = np.random.default_rng(seed)
        means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(
            axis=1
        )  # (n_boot,)
        low, high = (
            float(q) for q in np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
        )
        side = min(int((means <= 0).sum()), int((means >= 0).sum()))
        p_value = min(1.0, 2 * (1 + side) / (1 + n_boot))
    return PairedDifference(
        mean, low, high, len(diffs), level, method, diffs, seeds, float(p_value)
    )


def holm_adjust(p_values: Iterable[float]) -> list[float]:
    """Holm-Bonferroni step-down adjusted p-values, in the order given.

    With the m p-values sorted ascending, p_(1) <= ... <= p_(m), the i-th adjusted value
    is max over j <= i of (m - j + 1) p_(j), capped at 1: monotone in the raw values,
    never below them, and a comparison passes at level alpha exactly when Holm's
    procedure rejects it (adjusted p < alpha). Ties get equal values. One p-value is
    returned as it is; an empty input gives [].
    """
    ps = [float(p) for p in p_values]
    for p in ps:
        if not 0 <= p <= 1:  # also refuses NaN
            raise ValueError(f"p-values must be in [0, 1], got {p!r}")
    m = len(ps)
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda k: ps[k])):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        out[i] = running
    return out


def claims_effect(
    difference: PairedDifference, adjusted_p: float | None = None
) -> bool:
    """Whether ``conclusion`` claims an effect: the interval excludes zero and, when
    ``adjusted_p`` (Holm-adjusted within a family) is given, it is below 1 - level."""
    return difference.excludes_zero and (
        adjusted_p is None or adjusted_p < 1 - difference.level
    )


def format_p(p: float, alpha: float | None = None) -> str:
    """``"= 0.11"``, ``"= 0.003"``, ``"< 0.001"``: p to two significant digits, more
    where two would round a p below ``alpha`` up to it or past it."""
    if not 0 <= p <= 1:
        raise ValueError(f"p must be in [0, 1], got {p!r}")
    if p < 0.001:
        return "< 0.001"
    digits = 2
    while alpha is not None and digits < 6 and p < alpha <= float(f"{p:.{digits}g}"):
        digits += 1
    return f"= {p:.{digits}g}"


def conclusion(
    difference: PairedDifference,
    subject: str,
    baseline: str,
    quantity: str = "validation loss",
    unit: str = "nats/byte",
    digits: int = 3,
    adjusted_p: float | None = None,
    family_size: int | None = None,
) -> str:
    """One sentence that reports ``difference`` (subject - baseline) as far as its
    interval allows.

    Without ``adjusted_p`` and ``family_size`` (give both or neither) the sentence
    claims an effect when the interval excludes zero. With them, ``difference`` is one
    of ``family_size`` comparisons made together and ``adjusted_p`` its Holm-adjusted
    p-value (``holm_adjust``): an effect is claimed only when the interval excludes
    zero and ``adjusted_p`` < 1 - level, and the sentence says so in a closing
    "(Holm-adjusted p = ... over m comparisons)"; an interval that excludes zero but
    does not pass reads "no evidence of a difference ... after correction for multiple
    comparisons: ... not significant after Holm correction over m comparisons
    (adjusted p = ...)". A family of one needs no correction (its adjusted p is its p).
    """
    if (adjusted_p is None) != (family_size is None):
        raise ValueError(
            "give adjusted_p and family_size together, got "
            f"adjusted_p={adjusted_p!r}, family_size={family_size!r}"
        )
    if family_size is not None:
        if (
            isinstance(family_size, bool)
            or not isinstance(family_size, int)
            or family_size < 1
        ):
            raise ValueError(f"family_size must be an int >= 1, got {family_size!r}")
        if not 0 <= adjusted_p <= 1:
            raise ValueError(f"adjusted_p must be in [0, 1], got {adjusted_p!r}")
    d = difference
    alpha = 1 - d.level
    fmt = lambda v: f"{v:.{digits}f}"  # noqa: E731
    how = f"{d.level:.0%} CI" + (" (bootstrap)" if d.method == "bootstrap" else "")
    seeds = f"{d.n} paired seeds"
    if adjusted_p is None:
        family = ""
    elif family_size == 1:
        family = (
            f" (p {format_p(adjusted_p, alpha)}, the only comparison of its family)"
        )
    else:
        family = (
            f" (Holm-adjusted p {format_p(adjusted_p, alpha)} over {family_size} "
            "comparisons)"
        )
    if d.excludes_zero and not claims_effect(d, adjusted_p):
        after = (
            f"not significant after Holm correction over {family_size} comparisons "
            f"(adjusted p {format_p(adjusted_p, alpha)})"
            if family_size > 1
            else f"not significant (p {format_p(adjusted_p, alpha)})"
        )
        corrected = " after correction for multiple comparisons" * (family_size > 1)
        return (
            f"no evidence of a difference in {quantity} between {subject} and "
            f"{baseline}{corrected}: the mean difference of {fmt(d.mean)} {unit} "
            f"({how} {fmt(d.low)} to {fmt(d.high)}, {seeds}) is {after}"
        )
    if d.high < 0:
        return (
            f"{subject} has a lower {quantity} than {baseline}, "
            f"by {fmt(-d.mean)} {unit} "
            f"({how} {fmt(-d.high)} to {fmt(-d.low)}, {seeds})" + family
        )
    if d.low > 0:
        return (
            f"{subject} has a higher {quantity} than {baseline}, "
            f"by {fmt(d.mean)} {unit} "
            f"({how} {fmt(d.low)} to {fmt(d.high)}, {seeds})" + family
        )
    return (
        f"no evidence of a difference in {quantity} between {subject} and {baseline} "
        f"(mean difference {fmt(d.mean)} {unit}, "
        f"{how} {fmt(d.low)} to {fmt(d.high)} spans zero, {seeds})" + family
    )


def values_by_seed(
    runs: Iterable[Mapping[str, Any]],
    experiment: str,
    label: str,
    metric: str = "val_loss",
):
    """``{seed: run[metric]}`` of the finished runs of ``experiment`` labelled ``label``
    (a recorded file's runs)."""
    out: dict[Any, float] = {}
    for run in runs:
        if (
            run.get("experiment") == experiment
            and run.get("label") == label
            and run.get("status", "ok") == "ok"
        ):
            if run["seed"] in out:
                raise ValueError(
                    f"two runs of {experiment!r} / {label!r} have seed {run['seed']}; "
                    "expected one"
                )
            out[run["seed"]] = float(run[metric])
    if not out:
        raise ValueError(
            f"no finished runs of experiment {experiment!r} with label {label!r}"
        )
    return out


def compare_recorded(
    runs: Iterable[Mapping[str, Any]],
    experiment: str,
    subject: str,
    baseline: str,
    metric: str = "val_loss",
    level: float = 0.95,
    method: str = "t",
) -> PairedDifference:
    """Paired difference ``subject - baseline`` of ``metric`` between two labels of one
    recorded experiment."""
    runs = list(runs)
    return paired_difference(
        values_by_seed(runs, experiment, subject, metric),
        values_by_seed(runs, experiment, baseline, metric),
        level,
        method,
    )


def mean_interval(
    values: Iterable[float], level: float = 0.95
) -> tuple[float, float, float]:
    """Mean of ``values`` and its Student-t interval (mean, low, high); needs at least
    2 values."""
    values = [float(v) for v in values]
    if len(values) < 2:
        raise ValueError(
            f"not enough seeds: an interval needs at least 2 values, got {len(values)}"
        )
    mean = statistics.fmean(values)
    half = (
        t_quantile((1 + level) / 2, len(values) - 1)
        * statistics.stdev(values)
        / math.sqrt(len(values))
    )
    return mean, mean - half, mean + half


def summarize_experiment(
    runs: Iterable[Mapping[str, Any]],
    experiment: str,
    baseline: str,
    metric: str = "val_loss",
    level: float = 0.95,
    correct: bool = True,
) -> list[dict[str, Any]]:
    """One row per label of ``experiment``: parameters, seeds, mean ``metric`` with its
    interval, and the paired difference to ``baseline`` with its p-value and sentence
    (``None`` for the baseline itself). Labels in recorded order.

    The comparisons to ``baseline`` are one family: with ``correct`` each row also
    holds its Holm-adjusted p-value (``"adjusted_p"``) and the sentence claims an effect
    only when that passes too (``conclusion``); ``correct=False`` words each comparison
    on its own (``"adjusted_p"`` None).
    """
    runs = [r for r in runs if r.get("experiment") == experiment]
    labels = list(dict.fromkeys(r["label"] for r in runs))
    if baseline not in labels:
        raise ValueError(
            f"baseline must be one of the labels of {experiment!r}: {labels}, "
            f"got {baseline!r}"
        )
    base = values_by_seed(runs, experiment, baseline, metric)
    rows = []
    for label in labels:
        values = values_by_seed(runs, experiment, label, metric)
        mean, low, high = mean_interval(values.values(), level)
        diff = None if label == baseline else paired_difference(values, base, level)
        rows.append(
            {
                "label": label,
                "parameters": next(
                    r["parameters"] for r in runs if r["label"] == label
                ),
                "seeds": len(values),
                "mean": mean,
                "low": low,
                "high": high,
                "difference": diff,
                "p_value": None if diff is None else diff.p_value,
                "adjusted_p": None,
                "conclusion": None,
            }
        )
    family = [row for row in rows if row["difference"] is not None]
    adjusted = holm_adjust(row["p_value"] for row in family)
    for row, p in zip(family, adjusted, strict=True):
        if correct:
            row["adjusted_p"] = p
        row["conclusion"] = conclusion(
            row["difference"],
            row["label"],
            baseline,
            METRIC_NAMES.get(metric, metric),
            adjusted_p=row["adjusted_p"],
            family_size=len(family) if correct else None,
        )
    return rows


def variance_explained(values: Any, groups: Any) -> float:
    """Share of the variance of ``values`` that the group means explain (eta squared:
    between-group sum of squares over the total), for two equally long arrays; chapter
    5b asks how much position or difficulty explains."""
    v = np.asarray(values, dtype=float).ravel()
    g = np.asarray(groups).ravel()
    if v.size != g.size or v.size < 2:
        raise ValueError(
            "values and groups must have the same length, at least 2, "
            f"got {v.size} and {g.size}"
        )
    total = ((v - v.mean()) ** 2).sum()
    if total == 0:
        raise ValueError("variance_explained is undefined when every value is equal")
    _, inverse = np.unique(g, return_inverse=True)
    # (groups,) the mean of each group
    means = np.bincount(inverse, weights=v) / np.bincount(inverse)
    return float(((means[inverse] - v.mean()) ** 2).sum() / total)


def rank_correlation(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman's rank correlation of two equally long tensors
    (``scipy.stats.spearmanr``; chapter 5b)."""
    if (
        not isinstance(x, torch.Tensor)
        or not isinstance(y, torch.Tensor)
        or x.numel() != y.numel()
    ):
        raise ValueError("x and y must be tensors with the same number of elements")
    if x.numel() < 2:
        raise ValueError(f"need at least 2 values, got {x.numel()}")
    from scipy import stats  # imported on use: scipy is slow to import

    a, b = (t.detach().flatten().double().cpu().numpy() for t in (x, y))
    if a.min() == a.max() or b.min() == b.max():
        raise ValueError("rank correlation is undefined when x or y is constant")
    return float(stats.spearmanr(a, b).statistic)  # ties get their average rank


def minimum_detectable_difference(
    difference: PairedDifference, power: float = 0.8
) -> float:
    """The smallest true mean difference a paired t test with this many seeds and this
    spread would detect with probability ``power`` at level 1 - ``difference.level``:
    (t_{1-alpha/2} + t_{power}) * sd / sqrt(n), with n - 1 degrees of freedom
    (chapter 8)."""
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power!r}")
    n = difference.n
    if n < 2:
        raise ValueError(f"needs at least 2 paired seeds, got {n}")
    sd = statistics.stdev(difference.differences)
    alpha = 1 - difference.level
    t = t_quantile(1 - alpha / 2, n - 1) + t_quantile(power, n - 1)
    return t * sd / math.sqrt(n)
