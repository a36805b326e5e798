"""The book's figures and their style: font sizes and the one colour palette that every
figure module (this one, ``similarity_plots``, ``hops_report``) draws with."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from ..config import TransformerConfig
from ..counting import parameter_breakdown
from ..models import LOSS_UNIT
from ..sharing import NEEDS_N_UNIQUE, layer_to_block
from .background import PublishedModel, frontier_fit

__all__ = [
    "BLUE",
    "BOOK_STYLE",
    "DARK_GREY",
    "GREY",
    "LIGHT_GREY",
    "MIN_FONT_SIZE",
    "RED",
    "label_colour",
    "plot_accuracy_vs_iterations",
    "plot_depth_curves",
    "plot_layer_maps",
    "plot_loss_by_model",
    "plot_loss_curves",
    "plot_lr_sweep",
    "plot_model_sizes",
    "plot_paired_differences",
    "plot_parameter_breakdown",
    "plot_seconds",
    "plot_steps_by_difficulty",
    "plot_throughput_by_width",
    "plot_time_spread",
    "plot_train_val",
    "series_colour",
    "use_book_style",
]

# Text of at least 9 pt everywhere; figures are drawn at 2x resolution for sharp display
# (see use_book_style).
BOOK_STYLE: dict[str, object] = {
    "figure.dpi": 80,  # layout size on the page; the PNG is rendered at 2x (retina)
    "savefig.dpi": 160,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
}
MIN_FONT_SIZE = 9  # points; tests check every text of every book figure against it

# The palette of every figure. The series of a figure take SERIES in order (matplotlib's
# default cycle, tab10); the named colours are the ones a figure gives a meaning to.
SERIES: tuple[str, ...] = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
BLUE, ORANGE, GREEN, RED, PURPLE = SERIES[:5]
GREY = SERIES[7]  # what matters less: each seed, an interval that spans zero
LIGHT_GREY = "#8c8c8c"  # reference lines: a step limit, the trained depth
DARK_GREY = "#555555"  # notes written on a figure, and the lines they label


def series_colour(i: int) -> str:
    """The colour of a figure's ``i``-th series (SERIES, repeating after ten)."""
    return SERIES[i % len(SERIES)]


def use_book_style() -> None:
    """Readable figures: the book's font sizes, and inline PNGs at 2x resolution (call
    once per notebook)."""
    plt.rcParams.update(BOOK_STYLE)
    try:
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:  # outside Jupyter: savefig uses savefig.dpi
        return
    set_matplotlib_formats("retina")


PART_COLOURS: dict[str, str] = {
    "embeddings": LIGHT_GREY,
    "attention": BLUE,
    "ffn": ORANGE,
    "final_norm": GREEN,
    "lm_head": PURPLE,
}


def plot_parameter_breakdown(
    configs: Mapping[str, TransformerConfig], title: str = ""
) -> Figure:
    """Stacked horizontal bars of unique parameters (millions) by part, one bar per
    labelled config."""
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(configs) + 1.4))
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
    ax.legend(loc="lower right", fontsize=9, frameon=False)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_depth_curves(
    curves: Mapping[str, list[float]], ylabel: str, title: str = ""
) -> Figure:
    """One line per model of a quantity measured after each applied layer, on a log
    scale; labels containing "unshared" are dashed, and a legend beside the axes keeps
    many curves readable (chapter 5)."""
    fig, ax = plt.subplots(figsize=(8.5, 3.8))
    for i, (label, values) in enumerate(curves.items()):
        style = "--" if "unshared" in label else "-"
        ax.plot(
            range(1, len(values) + 1),
            values,
            style,
            marker="o",
            markersize=3,
            color=series_colour(i),
            label=label,
        )
    ax.set_yscale("log")
    ax.set_xlabel("layers applied")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=9, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


def _relative_luminance(rgb: Sequence[float]) -> float:
    """WCAG relative luminance of an sRGB colour with channels in 0..1."""
    r, g, b = (
        c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb[:3]
    )
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def label_colour(background: Sequence[float]) -> str:
    """Black or white: whichever has the higher contrast ratio on ``background``."""
    lum = _relative_luminance(background)
    return "black" if (lum + 0.05) / 0.05 >= 1.05 / (lum + 0.05) else "white"


def plot_layer_maps(
    n_layers: int, n_unique: int, strategies: tuple[str, ...] | None = None
) -> Figure:
    """A grid: one row per strategy, one column per layer, each cell coloured and
    labelled by its block.

    Each label is black or white, whichever contrasts more with its cell (WCAG contrast
    ratio)."""
    names = strategies or ("none", "all", "sequence", "cycle", "cycle-rev", "groups")
    maps = [
        layer_to_block(s, n_layers, n_unique if s in NEEDS_N_UNIQUE else None)
        for s in names
    ]
    cmap = colormaps["tab20"]
    fig, ax = plt.subplots(figsize=(0.42 * n_layers + 1.6, 0.42 * len(names) + 0.9))
    ax.imshow(maps, cmap=cmap, vmin=-0.5, vmax=19.5, aspect="auto")
    for row, blocks in enumerate(maps):
        for col, block in enumerate(blocks):
            ax.text(
                col,
                row,
                str(block),
                ha="center",
                va="center",
                fontsize=10,
                color=label_colour(cmap(block % 20)),
            )
    ax.set_yticks(range(len(names)), names)
    ax.set_xticks(range(n_layers), [str(i) for i in range(n_layers)])
    ax.set_xlabel("layer (applied in this order)")
    ax.set_title(
        f"which parameter set each layer uses, N={n_layers}, M={n_unique}", fontsize=10
    )
    fig.tight_layout()
    return fig


def plot_seconds(
    seconds: Mapping[str, float],
    title: str = "",
    xlabel: str = "median seconds per step",
) -> Figure:
    """Horizontal bars of measured times, labelled with their values."""
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(seconds) + 1.2))
    names = list(seconds)
    ax.barh(names, [seconds[n] for n in names], color=BLUE)
    for y, name in enumerate(names):
        ax.text(seconds[name], y, f" {seconds[name]:.2f}", va="center", fontsize=9)
    ax.set_xlim(0, max(seconds.values()) * 1.2)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_accuracy_vs_iterations(
    curves: Mapping[str, Mapping[int, float]], trained: int, title: str = ""
) -> Figure:
    """Exact-answer accuracy of a fully shared model run for different numbers of
    iterations."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for i, (label, points) in enumerate(curves.items()):
        ax.plot(
            list(points),
            list(points.values()),
            marker="o",
            color=series_colour(i),
            label=label,
        )
    ax.axvline(trained, color=GREY, linestyle="--", linewidth=1, label="trained depth")
    ax.set_xlabel("iterations of the shared block at test time")
    ax.set_ylabel("exact-answer accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=9, frameon=False)
    fig.tight_layout()
    return fig


def plot_model_sizes(
    models: Sequence[PublishedModel], title: str = "", fit_since: int | None = None
) -> Figure:
    """Reported parameter counts by year on a log scale; models that share layers are
    highlighted (chapter 1).

    With ``fit_since`` the least-squares doubling line through the largest model of each
    year from then on is drawn.
    """
    fig, ax = plt.subplots(figsize=(7, 4))
    for shared, style in (
        (False, dict(color=BLUE, marker="o")),
        (True, dict(color=RED, marker="s")),
    ):
        group = [m for m in models if m.shares_layers == shared]
        ax.scatter(
            [m.year for m in group],
            [m.parameters for m in group],
            label="shares layers" if shared else "no sharing",
            zorder=3,
            **style,
        )
        for m in group:
            ax.annotate(
                m.name,
                (m.year, m.parameters),
                textcoords="offset points",
                xytext=(5, -3),
                fontsize=9,
            )
    if fit_since is not None:
        recent = tuple(m for m in models if m.year >= fit_since)
        slope, intercept = frontier_fit(recent)
        years = [min(m.year for m in recent), max(m.year for m in recent)]
        ax.plot(
            years,
            [2 ** (slope * y + intercept) for y in years],
            color=GREY,
            linestyle="--",
            zorder=2,
            label=(
                f"largest of each year since {fit_since}, least squares: "
                f"x2 every {12 / slope:.1f} months"
            ),
        )
    ax.set_yscale("log")
    ax.set_xlabel("year of first release")
    ax.set_ylabel("parameters (as reported)")
    ax.set_xlim(min(m.year for m in models) - 0.5, max(m.year for m in models) + 1.5)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(
        fontsize=9,
        frameon=False,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.15),
        ncol=2,
    )
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_loss_by_model(
    summaries: Mapping[str, object], title: str = "", unit: str = LOSS_UNIT
) -> Figure:
    """Validation loss per model: mean over seeds, bars of one standard deviation, every
    seed as a dot (chapters 6, 8).

    Models are rows (no jitter on a quantitative axis); each label carries the unique
    parameter count.
    """
    labels = list(summaries)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(labels) + 1.5))
    for row, label in enumerate(labels):
        s = summaries[label]
        ax.errorbar(s.mean, row, xerr=s.std, fmt="o", color=BLUE, capsize=4, zorder=3)
        ax.plot(
            s.losses,
            [row] * len(s.losses),
            "x",
            color=GREY,
            markersize=5,
            zorder=2,
        )
    ax.set_yticks(
        range(len(labels)),
        [f"{label} ({summaries[label].parameters:,} params)" for label in labels],
    )
    ax.invert_yaxis()
    seeds = {len(summaries[label].losses) for label in labels}
    n = f"{seeds.pop()} seeds" if len(seeds) == 1 else "seeds per model vary"
    ax.set_xlabel(f"validation loss ({unit}): mean ± 1 s.d. over {n}; x = each seed")
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_throughput_by_width(timings: Mapping[int, object], title: str = "") -> Figure:
    """Achieved GFLOP/s of a layer's training step against its width (chapter 1): the
    median sample as a dot, the range over all samples as a bar."""
    widths = sorted(timings)
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    rates = [
        [timings[w].flops * timings[w].calls / s / 1e9 for s in timings[w].seconds]
        for w in widths
    ]
    medians = [timings[w].gflops_per_second for w in widths]
    low = [m - min(r) for m, r in zip(medians, rates, strict=True)]
    high = [max(r) - m for m, r in zip(medians, rates, strict=True)]
    n = len(timings[widths[0]].seconds)
    ax.errorbar(
        widths,
        medians,
        yerr=[low, high],
        fmt="o-",
        color=BLUE,
        capsize=3,
        label=f"median of {n} timed samples; bar: min to max",
    )
    ax.set_xscale("log", base=2)
    ax.set_xticks(widths, [str(w) for w in widths])
    ax.set_ylim(0, max(max(r) for r in rates) * 1.15)
    ax.set_xlabel("layer width H (d_ff = 4H, same tokens)")
    ax.set_ylabel("achieved GFLOP/s (matmuls)")
    ax.set_title(title)
    ax.legend(fontsize=9, frameon=False, loc="lower right")
    fig.tight_layout()
    return fig


def plot_time_spread(
    groups: Mapping[str, Mapping[str, Sequence[float]]],
    title: str = "",
    unit: str = "s",
    log: bool = False,
) -> Figure:
    """Grouped horizontal bars of repeated timings (chapter 6b): bar = median, error
    bar = interquartile range."""
    scale = {"s": 1.0, "ms": 1e3}[unit]
    colours = [BLUE, ORANGE, GREEN, PURPLE]
    names = list(dict.fromkeys(name for group in groups.values() for name in group))
    fig, ax = plt.subplots(figsize=(6.5, 0.5 * len(groups) * len(names) + 1.4))
    height = 0.8 / len(names)
    repeats = set()
    for i, name in enumerate(names):
        rows = [
            (g, np.asarray(groups[g][name]) * scale)
            for g in groups
            if name in groups[g]
        ]
        y = [
            list(groups).index(g) + (i - (len(names) - 1) / 2) * height for g, _ in rows
        ]
        q1, med, q3 = (
            np.array([np.quantile(t, q) for _, t in rows]) for q in (0.25, 0.5, 0.75)
        )
        repeats.update(len(t) for _, t in rows)
        ax.barh(
            y,
            med,
            height=height * 0.9,
            xerr=[med - q1, q3 - med],
            capsize=3,
            color=colours[i % 4],
            label=name,
        )
        for yy, m, hi in zip(y, med, q3, strict=True):
            ax.text(hi, yy, f" {m:.3g}", va="center", fontsize=9)
    ax.set_yticks(range(len(groups)), list(groups))
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
    else:
        ax.set_xlim(0, ax.get_xlim()[1] * 1.15)
    n = f"{repeats.pop()} repeats" if len(repeats) == 1 else "repeats"
    ax.set_xlabel(f"{unit}: bar = median, error bar = interquartile range over {n}")
    ax.legend(fontsize=9, frameon=False, loc="best")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_steps_by_difficulty(
    difficulty: Sequence[int],
    mean_steps: Sequence[float],
    error: Sequence[float],
    example_steps: Sequence[Sequence[int]],
    example_difficulty: Sequence[Sequence[int]],
    max_steps: int,
    xlabel: str = "hops to the root",
    title: str = "",
    quantity: str = "steps taken",
    limit_label: str = "max_steps",
) -> Figure:
    """Chapter 5b: mean ACT steps (or MoR recursions: ``quantity``) per difficulty
    (error bars given by the caller) and a grid of example sequences coloured by the
    steps each position took, each cell labelled with its difficulty."""
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1, 1.5]}
    )
    left.errorbar(difficulty, mean_steps, yerr=error, marker="o", color=BLUE, capsize=3)
    left.set_xlabel(xlabel)
    left.set_ylabel(f"{quantity} (mean)")
    left.set_ylim(0.5, max_steps + 0.5)
    left.axhline(max_steps, color=LIGHT_GREY, linestyle="--", linewidth=1)
    left.text(
        min(difficulty),
        max_steps - 0.15,
        limit_label,
        va="top",
        fontsize=9,
        color=DARK_GREY,
    )
    image = right.imshow(
        example_steps, cmap="viridis", vmin=1, vmax=max_steps, aspect="auto"
    )
    for row, labels in enumerate(example_difficulty):
        for column, value in enumerate(labels):
            shade = image.cmap(image.norm(example_steps[row][column]))
            right.text(
                column,
                row,
                str(value),
                ha="center",
                va="center",
                fontsize=9,
                color=label_colour(shade[:3]),
            )
    right.set_xlabel("position (cell text: hops to the root)")
    right.set_ylabel("example")
    right.set_yticks(range(len(example_steps)))
    fig.colorbar(image, ax=right, label=quantity)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_lr_sweep(
    sweep: Mapping[str, Mapping[float, float | None]],
    chosen: Mapping[str, float],
    title: str = "",
    unit: str = LOSS_UNIT,
) -> Figure:
    """Chapter 6: validation loss against learning rate, one line per strategy (one
    seed); the chosen rate ringed, a diverged run drawn as x on the top edge."""
    fig, ax = plt.subplots(figsize=(5.5, 3.0))
    finite = [v for points in sweep.values() for v in points.values() if v is not None]
    top = max(finite) if finite else 1.0
    for i, (label, points) in enumerate(sweep.items()):
        colour = series_colour(i)
        ok = [(lr, v) for lr, v in points.items() if v is not None]
        if ok:
            ax.plot(
                *zip(*ok, strict=True),
                "o-",
                color=colour,
                markersize=4,
                linewidth=1.2,
                label=label,
            )
        bad = [lr for lr, v in points.items() if v is None]
        if bad:
            ax.plot(bad, [top] * len(bad), "x", color=colour, markersize=8)
        if label in chosen and points.get(chosen[label]) is not None:
            ax.plot(
                chosen[label],
                points[chosen[label]],
                "o",
                markersize=10,
                markerfacecolor="none",
                color=colour,
            )
    ax.set_xscale("log", base=2)
    rates = sorted({lr for points in sweep.values() for lr in points})
    ax.set_xticks(rates, [f"{lr:g}" for lr in rates])
    ax.minorticks_off()
    ax.set_xlabel("peak learning rate (ring: chosen; x: diverged)")
    ax.set_ylabel(f"validation loss ({unit})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=9, frameon=False, ncol=2)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_paired_differences(
    rows: Sequence[tuple[str, float, float, float, int]],
    baseline: str,
    title: str = "",
    quantity: str = "validation loss",
    unit: str = LOSS_UNIT,
) -> Figure:
    """Chapters 6 and 8: per model, the mean paired difference to ``baseline`` with its
    95% interval; rows are (label, mean, low, high, paired seeds). A bar that crosses
    the zero line is no evidence of a difference."""
    fig, ax = plt.subplots(figsize=(5.5, 0.35 * len(rows) + 1.5))
    for y, (_, mean, low, high, _) in enumerate(rows):
        colour = BLUE if low > 0 or high < 0 else GREY
        ax.errorbar(
            mean,
            y,
            xerr=[[mean - low], [high - mean]],
            fmt="o",
            color=colour,
            capsize=4,
        )
    ax.axvline(0, color="black", linewidth=1)
    ax.set_yticks(range(len(rows)), [label for label, *_ in rows])
    ax.invert_yaxis()
    seeds = sorted({n for *_, n in rows})
    n = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
    ax.set_xlabel(
        f"{quantity} minus {baseline}'s ({unit})\n"
        f"mean and 95% CI over {n} paired seeds; grey: spans 0"
    )
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_loss_curves(
    by_steps: Mapping[str, Mapping[str, Sequence[float]]],
    by_flops: Mapping[str, Mapping[str, Sequence[float]]],
    titles: tuple[str, str] = ("", ""),
    baselines: Mapping[str, float] | None = None,
    unit: str = LOSS_UNIT,
) -> Figure:
    """Chapter 6: mean validation loss against training steps (left, ``by_steps``) and
    against training FLOPs (right, ``by_flops``), one line per model.

    Each curve holds "steps", "flops", "val" and "seeds" ([n]); dashed lines mark the
    n-gram ``baselines``. An empty mapping leaves its panel with a note.
    """
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.0), sharey=True)
    for ax, curves, x, title in zip(
        axes, (by_steps, by_flops), ("steps", "flops"), titles, strict=True
    ):
        for i, (label, c) in enumerate(curves.items()):
            ax.plot(
                c[x],
                c["val"],
                "o-",
                color=series_colour(i),
                markersize=2.5,
                linewidth=1.2,
                label=label,
            )
        if not curves:
            ax.text(
                0.5,
                0.5,
                "not recorded yet",
                transform=ax.transAxes,
                ha="center",
                fontsize=9,
            )
        for j, (name, value) in enumerate((baselines or {}).items()):
            ax.axhline(
                value, color=DARK_GREY, linestyle=(0, (4, 2 + 2 * j)), linewidth=1
            )
            ax.text(
                0.01,
                value,
                f" {name}",
                va="bottom",
                fontsize=9,
                color=DARK_GREY,
                transform=ax.get_yaxis_transform(),
            )
        ax.grid(True, alpha=0.3)
        seeds = sorted({c.get("seeds", [1])[0] for c in curves.values()})
        n = (
            ""
            if not seeds
            else f", mean of {seeds[0]}"
            if len(seeds) == 1
            else f", mean of {seeds[0]}-{seeds[-1]}"
        )
        ax.set_title(f"{title}{n}{' seeds' if seeds else ''}", fontsize=10)
        if curves:
            ax.legend(fontsize=9, frameon=False)
    if by_flops:
        axes[1].set_xscale("log")
    axes[0].set_xlabel("training step")
    axes[1].set_xlabel("training FLOPs (3 x forward), log scale")
    axes[0].set_ylabel(f"validation loss ({unit})")
    fig.tight_layout()
    return fig


def plot_train_val(
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    title: str = "",
    unit: str = LOSS_UNIT,
) -> Figure:
    """Chapter 6: training (dashed) and validation (solid) loss against steps, seed
    means, one colour per model; the space between a model's two lines is its
    train-validation gap."""
    fig, ax = plt.subplots(figsize=(5.5, 3.0))
    for i, (label, c) in enumerate(curves.items()):
        ax.plot(
            c["steps"],
            c["val"],
            "o-",
            color=series_colour(i),
            markersize=2.5,
            linewidth=1.2,
            label=label,
        )
        ax.plot(c["steps"], c["train"], "--", color=series_colour(i), linewidth=1.2)
    seeds = sorted({c.get("seeds", [1])[0] for c in curves.values()})
    n = (
        f"{seeds[0]}"
        if len(seeds) == 1
        else f"{seeds[0]}-{seeds[-1]}"
        if seeds
        else "no"
    )
    ax.set_xlabel("training step")
    ax.set_ylabel(f"loss ({unit})")
    ax.grid(True, alpha=0.3)
    ax.legend(
        fontsize=9,
        frameon=False,
        title=f"solid: validation, dashed: training\nmean of {n} seeds",
        title_fontsize=9,
    )
    ax.set_title(title)
    fig.tight_layout()
    return fig
