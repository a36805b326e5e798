"""Figures drawn from the package's own functions (chapters 1, 3 and 4)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from .background import PublishedModel
from .config import TransformerConfig
from .counting import parameter_breakdown

PART_COLOURS: dict[str, str] = {
    "embeddings": "#8c8c8c",
    "attention": "#1f77b4",
    "ffn": "#ff7f0e",
    "final_norm": "#2ca02c",
    "lm_head": "#9467bd",
}


def plot_parameter_breakdown(configs: Mapping[str, TransformerConfig], title: str = "") -> Figure:
    """Stacked horizontal bars of unique parameters (millions) by part, one bar per labelled config."""
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(configs) + 1.4), dpi=80)
    labels = list(configs)
    left = [0.0] * len(labels)
    for part, colour in PART_COLOURS.items():
        widths = [parameter_breakdown(configs[label])[part] / 1e6 for label in labels]
        if any(widths):
            ax.barh(labels, widths, left=left, color=colour, label=part)
            left = [a + b for a, b in zip(left, widths, strict=True)]
    for y, total in enumerate(left):
        ax.text(total, y, f" {total:.2f}M", va="center", fontsize=9)
    ax.set_xlabel("unique parameters (millions)")
    ax.set_xlim(0, max(left) * 1.18)
    ax.invert_yaxis()
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_depth_curves(curves: Mapping[str, list[float]], ylabel: str, title: str = "") -> Figure:
    """One line per model of a quantity measured after each applied layer, on a log scale."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6), dpi=80)
    for label, values in curves.items():
        ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("layers applied")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def plot_layer_maps(n_layers: int, n_unique: int, strategies: tuple[str, ...] | None = None) -> Figure:
    """A grid: one row per strategy, one column per layer, each cell coloured and labelled by its block."""
    from .sharing import NEEDS_N_UNIQUE, layer_to_block

    names = strategies or ("none", "all", "sequence", "cycle", "cycle-rev", "groups")
    maps = [layer_to_block(s, n_layers, n_unique if s in NEEDS_N_UNIQUE else None) for s in names]
    fig, ax = plt.subplots(figsize=(0.42 * n_layers + 1.6, 0.42 * len(names) + 0.9), dpi=80)
    ax.imshow(maps, cmap="tab20", vmin=0, vmax=19, aspect="auto")
    for row, blocks in enumerate(maps):
        for col, block in enumerate(blocks):
            ax.text(col, row, str(block), ha="center", va="center", fontsize=8)
    ax.set_yticks(range(len(names)), names)
    ax.set_xticks(range(n_layers), [str(i) for i in range(n_layers)])
    ax.set_xlabel("layer (applied in this order)")
    ax.set_title(f"which parameter set each layer uses, N={n_layers}, M={n_unique}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_seconds(seconds: Mapping[str, float], title: str = "", xlabel: str = "median seconds per step") -> Figure:
    """Horizontal bars of measured times, labelled with their values."""
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(seconds) + 1.2), dpi=80)
    names = list(seconds)
    ax.barh(names, [seconds[n] for n in names], color="#1f77b4")
    for y, name in enumerate(names):
        ax.text(seconds[name], y, f" {seconds[name]:.2f}", va="center", fontsize=9)
    ax.set_xlim(0, max(seconds.values()) * 1.2)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_loss_vs_parameters(summaries: Mapping[str, object], title: str = "") -> Figure:
    """Validation loss (mean and standard deviation over seeds) against unique parameters."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8), dpi=80)
    for offset, (label, s) in enumerate(summaries.items()):
        jitter = 1 + 0.012 * (offset - len(summaries) / 2)  # separate points with equal parameter counts
        ax.errorbar(s.parameters / 1e3 * jitter, s.mean, yerr=s.std, fmt="o", capsize=3, label=label)
    ax.legend(fontsize=8, frameon=False, loc="best")
    ax.set_xlabel("unique parameters (thousands)")
    ax.set_ylabel("validation loss (nats / byte)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_accuracy_vs_iterations(curves: Mapping[str, Mapping[int, float]], trained: int, title: str = "") -> Figure:
    """Exact-answer accuracy of a fully shared model run for different numbers of iterations."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6), dpi=80)
    for label, points in curves.items():
        ax.plot(list(points), list(points.values()), marker="o", label=label)
    ax.axvline(trained, color="grey", linestyle="--", linewidth=1, label="trained depth")
    ax.set_xlabel("iterations of the shared block at test time")
    ax.set_ylabel("exact-answer accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def plot_model_sizes(models: Sequence[PublishedModel], title: str = "") -> Figure:
    """Reported parameter counts by year on a log scale; models that share layers are highlighted (chapter 1)."""
    fig, ax = plt.subplots(figsize=(7, 4), dpi=80)
    for shared, style in ((False, dict(color="#1f77b4", marker="o")), (True, dict(color="#d62728", marker="s"))):
        group = [m for m in models if m.shares_layers == shared]
        ax.scatter([m.year for m in group], [m.parameters for m in group],
                   label="shares layers" if shared else "no sharing", zorder=3, **style)
        for m in group:
            ax.annotate(m.name, (m.year, m.parameters), textcoords="offset points", xytext=(5, -3), fontsize=7)
    ax.set_yscale("log")
    ax.set_xlabel("year of first release")
    ax.set_ylabel("parameters (as reported)")
    ax.set_xlim(min(m.year for m in models) - 0.5, max(m.year for m in models) + 1.5)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    ax.set_title(title)
    fig.tight_layout()
    return fig
