"""Rows, a figure and sentences of the recorded decoding working-set sweep (chapter 6b).

Everything here reads ``notebooks/results/decoding_sweep.<profile>.json``, written by
``scripts/benchmark_decoding.py --sweep``; nothing is timed. Each run holds both models'
per-token times at one width (batch 1, fixed depth), the bytes of the unshared layers
and of the shared block, and the cache level each fits in (``fits``).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from ..bench import paired_ratio_interval
from .plots import BLUE, DARK_GREY

__all__ = [
    "FITS",
    "SWEEP_HEADERS",
    "check_sweep",
    "plot_sweep",
    "ratios_by_fit",
    "sweep_rows",
    "sweep_sentence",
]

# where a working set fits, nearest first
FITS: tuple[str, ...] = ("L2", "L3", "beyond L3")
SWEEP_HEADERS = (
    "width",
    "unshared layers (MiB)",
    "shared block (MiB)",
    "unshared fits",
    "time ratio shared / unshared (95% CI)",
)
MIB = 2**20


def check_sweep(data: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` unless every run's stored ratio is the one its raw per-token
    times give (``bench.paired_ratio_interval``); serves the sweep and the decoding
    file alike."""
    for run in data["runs"]:
        raw = run["seconds_per_token"]
        again = paired_ratio_interval(raw["all"], raw["none"])
        stored = run["shared_over_unshared"]
        if abs(again.median - stored["median"]) > 1e-12:
            raise ValueError(
                f"width {run['d_model']}: stored ratio {stored['median']} is not the "
                f"{again.median} its raw times give"
            )


def sweep_rows(data: Mapping[str, Any]) -> list[tuple]:
    """One row per width (``SWEEP_HEADERS``)."""
    rows = []
    for run in data["runs"]:
        r, size = run["shared_over_unshared"], run["layer_weight_bytes"]
        rows.append(
            (
                run["d_model"],
                f"{size['none'] / MIB:.2f}",
                f"{size['all'] / MIB:.2f}",
                run["fits"]["none"],
                f"{r['median']:.2f} ({r['low']:.2f}–{r['high']:.2f})",
            )
        )
    return rows


def ratios_by_fit(data: Mapping[str, Any]) -> dict[str, list[float]]:
    """Median time ratios (shared / unshared), grouped by where the unshared layers
    fit."""
    out: dict[str, list[float]] = {level: [] for level in FITS}
    for run in data["runs"]:
        out[run["fits"]["none"]].append(run["shared_over_unshared"]["median"])
    return out


def sweep_sentence(data: Mapping[str, Any]) -> str:
    """The ratio's range in each cache level of the unshared layers, in words."""
    parts = []
    for level, ratios in ratios_by_fit(data).items():
        if not ratios:
            continue
        where = "exceed L3" if level == "beyond L3" else f"fit in {level}"
        span = (
            f"{ratios[0]:.2f}"
            if len(ratios) == 1
            else f"{min(ratios):.2f} to {max(ratios):.2f} "
            f"(median {statistics.median(ratios):.2f})"
        )
        parts.append(f"{span} while the unshared layers {where}")
    return "the shared model's time per token over the unshared model's is " + (
        "; ".join(parts)
    )


def plot_sweep(data: Mapping[str, Any]) -> Figure:
    """The time ratio (median, 95% interval) against the unshared layers' bytes, with
    the machine's L2 and L3 sizes marked."""
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    runs = data["runs"]
    x = [run["layer_weight_bytes"]["none"] / MIB for run in runs]
    ratio = [run["shared_over_unshared"] for run in runs]
    ax.errorbar(
        x,
        [r["median"] for r in ratio],
        yerr=[
            [r["median"] - r["low"] for r in ratio],
            [r["high"] - r["median"] for r in ratio],
        ],
        fmt="o-",
        color=BLUE,
        ms=4,
        capsize=2,
    )
    for name, size in data["sweep"]["cache_bytes"].items():
        ax.axvline(size / MIB, color=DARK_GREY, ls="--", lw=0.8)
        ax.annotate(
            name,
            (size / MIB, 1.0),
            xytext=(3, -10),
            textcoords="offset points",
            fontsize=8,
        )
    ax.axhline(1.0, color=DARK_GREY, lw=0.6)
    ax.set_xscale("log")
    ax.set_xlabel("unshared layers' weights (MiB)")
    ax.set_ylabel("time per token, shared / unshared")
    fig.tight_layout()
    return fig
