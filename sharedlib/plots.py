"""Figures drawn from the package's own functions (chapters 1, 3 and 4)."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

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
