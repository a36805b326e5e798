"""Figures of chapter 5c (*Why can one block stand in for many?*): CKA between layers,
the shared block iterated past its trained depth, and gradient norms during training.

Colours come from the book's palette in ``plots``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from ..models import LOSS_UNIT
from ..validation import check_int
from .plots import DARK_GREY, LIGHT_GREY, label_colour, series_colour

__all__ = ["plot_cka", "plot_gradient_norms", "plot_iterations"]


def plot_cka(
    matrices: Mapping[str, torch.Tensor],
    consecutive: Mapping[str, Sequence[float]],
    title: str = "",
) -> Figure:
    """One heatmap per model of linear CKA between the hidden states h_0 (embeddings) ..
    h_L (values printed above the diagonal, the matrix being symmetric, for up to 9
    states), and a last panel with CKA(h_(k-1), h_k) against k, one line per model,
    dashed for labels containing "unshared"."""
    n = len(matrices)
    fig, axes = plt.subplots(
        1,
        n + 1,
        figsize=(2.9 * n + 3.6, 2.9),
        layout="constrained",
        gridspec_kw={"width_ratios": [1] * n + [1.25]},
    )
    image = None
    for ax, (label, matrix) in zip(axes[:n], matrices.items(), strict=True):
        values = matrix.tolist()
        image = ax.imshow(values, cmap="viridis", vmin=0, vmax=1)
        shown = values if len(values) <= 9 else []  # larger matrices: colours only
        for i, row in enumerate(shown):
            for j, value in enumerate(row[i + 1 :], start=i + 1):
                ax.text(
                    j,
                    i,
                    f"{value:.2f}".lstrip("0") if value < 0.995 else "1",
                    ha="center",
                    va="center",
                    fontsize=9,
                    color=label_colour(image.cmap(image.norm(value))[:3]),
                )
        ticks = range(len(values))
        ax.set_xticks(ticks, [f"h{k}" for k in ticks])
        ax.set_yticks(ticks, [f"h{k}" for k in ticks])
        ax.set_title(label)
    fig.colorbar(image, ax=list(axes[:n]), label="linear CKA", shrink=0.9)
    line = axes[n]
    for i, (label, values) in enumerate(consecutive.items()):
        style = "--" if "unshared" in label else "-"
        line.plot(
            range(1, len(values) + 1),
            values,
            style,
            marker="o",
            markersize=3,
            color=series_colour(i),
            label=label,
        )
    line.set_xlabel("layer k")
    line.set_ylabel("CKA(h_(k-1), h_k)")
    line.grid(True, alpha=0.3)
    line.legend(fontsize=9, frameon=False)
    line.set_title("consecutive states")
    fig.suptitle(title)
    return fig


def plot_iterations(
    updates: Mapping[str, Sequence[float]],
    losses: Sequence[float],
    trained_depth: int,
    reference_loss: float | None = None,
    title: str = "",
) -> Figure:
    """Left: relative update per iteration (log scale), one line per series, dashed for
    "unshared". Right: validation loss after k iterations of the shared block; the
    trained depth and a reference loss marked."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(7.4, 2.6))
    for i, (label, values) in enumerate(updates.items()):
        style = "--" if "unshared" in label else "-"
        left.plot(
            range(1, len(values) + 1),
            values,
            style,
            linewidth=1.6,
            color=series_colour(i),
            label=label,
        )
    left.set_yscale("log")
    left.set_xlabel("iteration / layer k")
    left.set_ylabel("||h_k - h_(k-1)|| / ||h_(k-1)||")
    left.legend(fontsize=9, frameon=False)
    right.plot(
        range(1, len(losses) + 1),
        losses,
        "-",
        linewidth=1.6,
        color=series_colour(0),
        label="shared block run k times",
    )
    if reference_loss is not None:
        right.axhline(
            reference_loss,
            color=series_colour(1),
            linestyle="--",
            linewidth=1.2,
            label="unshared model",
        )
    right.set_xlabel("iterations k")
    right.set_ylabel(f"validation loss ({LOSS_UNIT})")
    right.legend(fontsize=9, frameon=False)
    for ax in (left, right):
        ax.axvline(trained_depth, color=LIGHT_GREY, linestyle=":", linewidth=1.2)
        ax.grid(True, alpha=0.3)
    right.text(
        trained_depth,
        0.97,
        " trained depth",
        transform=right.get_xaxis_transform(),
        va="top",
        fontsize=9,
        color=DARK_GREY,
    )
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_gradient_norms(
    curves: Mapping[str, Sequence[float]],
    title: str = "",
    smooth: int = 1,
    points: int = 30,
) -> Figure:
    """Gradient norm against training step (log scale), one line per series, dashed for
    labels containing "unshared": a moving mean over ``smooth`` steps, drawn at about
    ``points`` steps."""
    smooth = check_int("smooth", smooth)
    points = check_int("points", points, minimum=2)
    fig, ax = plt.subplots(figsize=(6.4, 2.9))
    for i, (label, values) in enumerate(curves.items()):
        series = torch.tensor(values, dtype=torch.float64)
        if smooth > 1 and len(series) >= smooth:
            series = series.unfold(0, smooth, 1).mean(dim=1)
        steps = torch.arange(len(values) - len(series) + 1, len(values) + 1)
        keep = (
            torch.linspace(0, len(series) - 1, min(points, len(series)))
            .round()
            .long()
            .unique()
        )
        style = "--" if "unshared" in label else "-"
        ax.plot(
            steps[keep].tolist(),
            series[keep].tolist(),
            style,
            color=series_colour(i),
            linewidth=1.5,
            label=label,
        )
    ax.set_yscale("log")
    ax.set_xlabel(
        "training step" + (f" (mean of the last {smooth})" if smooth > 1 else "")
    )
    ax.set_ylabel("gradient norm\n(before clipping)")
    ax.grid(True, alpha=0.3)
    ax.legend(
        fontsize=9,
        frameon=False,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.28),
        ncol=len(curves),
    )
    ax.set_title(title)
    fig.tight_layout()
    return fig
