"""Chapter 5c's recorded evidence: the per-seed statistics of
``why_one_block.<profile>.json`` (``sharedlib.experiments.why``) as means with 95%
Student-t intervals over the seeds, and shared-minus-unshared differences paired by
seed (``sharedlib.evidence``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..evidence import PairedDifference, mean_interval, paired_difference
from ..experiments.recorded import load_recorded
from ..experiments.why import WHY_RESULTS_NAME, seed_statistics, validate_why

__all__ = [
    "Interval",
    "by_seed",
    "intervals",
    "learned",
    "load_why_report",
    "paired",
    "table_rows",
]

Interval = tuple[float, float, float]  # mean, low, high


def load_why_report(profile: str | None = None) -> dict[str, Any]:
    """The recorded file (best available profile, or ``profile``), validated; with
    ``"profile"`` and ``"path"`` added (``recorded.load_recorded``)."""
    data = load_recorded(WHY_RESULTS_NAME, profile)
    validate_why({k: v for k, v in data.items() if k != "path"})
    return data


def by_seed(data: Mapping[str, Any]) -> dict[str, dict[int, float]]:
    """Statistic -> {seed: value} (``why.seed_statistics`` of every record)."""
    out: dict[str, dict[int, float]] = {}
    for record in data["runs"]:
        for name, value in seed_statistics(record).items():
            out.setdefault(name, {})[record["seed"]] = value
    return out


def intervals(data: Mapping[str, Any], level: float = 0.95) -> dict[str, Interval]:
    """Statistic -> (mean, low, high) over the seeds, a Student-t interval."""
    return {
        name: mean_interval(values.values(), level)
        for name, values in by_seed(data).items()
    }


def paired(
    data: Mapping[str, Any], subject: str, baseline: str, level: float = 0.95
) -> PairedDifference:
    """``subject - baseline`` seed by seed (two statistics of the same seeds)."""
    values = by_seed(data)
    return paired_difference(values[subject], values[baseline], level)


def learned(data: Mapping[str, Any]) -> dict[str, Any]:
    """Each model's validation loss interval beside the n-gram baselines scored on the
    same windows: {"bigram": x, "5-gram": y, "none": interval, "all": interval,
    "below_bigram": {strategy: bool}, "below_5gram": {strategy: bool}}, where below
    means the whole interval lies below."""
    stats = intervals(data)
    base = data["baselines"]
    out: dict[str, Any] = {"bigram": base["bigram"], "5-gram": base["5-gram"]}
    for s in ("none", "all"):
        out[s] = stats[f"loss_{s}"]
    out["below_bigram"] = {s: out[s][2] < base["bigram"] for s in ("none", "all")}
    out["below_5gram"] = {s: out[s][2] < base["5-gram"] for s in ("none", "all")}
    out["above_5gram"] = {s: out[s][1] > base["5-gram"] for s in ("none", "all")}
    return out


def _cell(interval: Interval, digits: int) -> str:
    mean, low, high = interval
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def table_rows(
    data: Mapping[str, Any],
    rows: Mapping[str, tuple[str | None, str | None, str | None]],
    digits: int = 3,
) -> list[tuple[str, str, str, str]]:
    """One row per entry ``label -> (unshared statistic, shared statistic, paired
    difference: "subject-baseline" names or a statistic that is already a difference)``
    : each cell a mean [95% interval], "-" where None."""
    stats = intervals(data)
    out = []
    for label, (unshared, shared, difference) in rows.items():
        cells = [
            _cell(stats[name], digits) if name else "-" for name in (unshared, shared)
        ]
        if difference and "|" in difference:
            d = paired(data, *difference.split("|"))
            cells.append(_cell((d.mean, d.low, d.high), digits))
        else:
            cells.append(_cell(stats[difference], digits) if difference else "-")
        out.append((label, *cells))
    return out
