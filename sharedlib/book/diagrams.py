"""Architecture diagrams computed from the library itself (the landing page and the
chapters that picture a model).

Every stack is drawn from ``layer_to_block`` and every count from
``sharedlib.counting``, so a diagram cannot drift from the code it pictures. Drawings
use inches as data units, the book's font sizes, the Okabe-Ito colour-blind-safe
palette, and black or white text, whichever contrasts more with the fill under it.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import replace

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from ..config import TransformerConfig
from ..counting import embedding_parameters, layer_parameters
from ..relaxed import delta_parameters
from ..sharing import NEEDS_N_UNIQUE, STRATEGIES, SUBLAYERS, layer_to_block
from ..validation import check_int, check_real
from .plots import label_colour

__all__ = [
    "BACKWARD",
    "DEFAULT_STRATEGIES",
    "PALETTE",
    "UT_EXAMPLE",
    "draw_factorised_embedding",
    "draw_one_module_many_uses",
    "draw_relaxed_sharing",
    "draw_universal_transformer_step",
    "draw_unrolled_stacks",
    "embedding_counts",
    "halting_weights",
]

# Okabe & Ito's colour-blind-safe palette (black last), then four of Paul Tol's "muted"
# colours: one per parameter set.
PALETTE: tuple[str, ...] = (
    "#E69F00",
    "#56B4E9",
    "#009E73",
    "#F0E442",
    "#0072B2",
    "#D55E00",
    "#CC79A7",
    "#000000",
    "#882255",
    "#44AA99",
    "#DDCC77",
    "#332288",
)
FORWARD, BACKWARD, NEUTRAL, PALE = "#0072B2", "#D55E00", "#555555", "#DDDDDD"
DEFAULT_STRATEGIES: tuple[str, ...] = (
    "all",
    "attention",
    "ffn",
    "sequence",
    "cycle",
    "cycle-rev",
)
STRATEGY_GLOSS: dict[str, str] = {
    "none": "unshared",
    "all": "ALBERT",
    "attention": "shared attn",
    "ffn": "shared FFN",
    "sequence": "consecutive",
    "cycle": "in turn",
    "cycle-rev": "in turn, back",
    "groups": "ALBERT groups",
}
TEXT_SIZE = 10  # points; the smallest text drawn is 9 (plots.MIN_FONT_SIZE)


def _canvas(width: float, height: float) -> tuple[Figure, Axes]:
    """A figure whose one axes spans it, with inches as data units (so text and boxes
    keep their proportions)."""
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_axis_off()
    return fig, ax


def _box(
    ax: Axes,
    x: float,
    y: float,
    w: float,
    h: float,
    fill: str,
    label: str = "",
    *,
    gid: str | None = None,
    size: float = TEXT_SIZE,
    round_: bool = True,
    **text,
) -> FancyBboxPatch:
    """A filled box with lower-left corner (x, y) and a centred label in black or white,
    whichever reads better."""
    style = (
        f"round,pad=0,rounding_size={min(0.06, w / 4, h / 4)}"
        if round_
        else "square,pad=0"
    )
    patch = FancyBboxPatch(
        (x, y),
        w,
        h,
        boxstyle=style,
        facecolor=fill,
        edgecolor="#333333",
        linewidth=0.8,
        gid=gid,
    )
    ax.add_patch(patch)
    if label:
        ax.text(
            x + w / 2,
            y + h / 2,
            label,
            ha="center",
            va="center",
            fontsize=size,
            color=label_colour(to_rgb(fill)),
            **text,
        )
    return patch


def _arrow(
    ax: Axes,
    start: tuple[float, float],
    end: tuple[float, float],
    colour: str = NEUTRAL,
    *,
    dashed: bool = False,
    rad: float = 0.0,
    width: float = 1.2,
) -> None:
    ax.add_patch(
        FancyArrowPatch(
            start,
            end,
            arrowstyle="-|>",
            mutation_scale=11,
            color=colour,
            linewidth=width,
            linestyle="--" if dashed else "-",
            connectionstyle=f"arc3,rad={rad}",
            shrinkA=1,
            shrinkB=1,
        )
    )


def stack_maps(
    n_layers: int, n_unique: int, strategies: Sequence[str] = DEFAULT_STRATEGIES
) -> dict[str, dict]:
    """The maps ``draw_unrolled_stacks`` draws: strategy -> sublayer -> parameter set of
    each layer ("none" first)."""
    n_layers = check_int("n_layers", n_layers, 1, len(PALETTE))
    n_unique = check_int("n_unique", n_unique, 1, n_layers)
    if isinstance(strategies, str) or not all(
        isinstance(s, str) and s in STRATEGIES for s in strategies
    ):
        raise ValueError(
            f"strategies must be a sequence of names from {STRATEGIES}, "
            f"got {strategies!r}"
        )
    names = list(dict.fromkeys(("none", *strategies)))
    return {
        s: {
            part: layer_to_block(
                s, n_layers, n_unique if s in NEEDS_N_UNIQUE else None, sublayer=part
            )
            for part in SUBLAYERS
        }
        for s in names
    }


def draw_unrolled_stacks(
    n_layers: int, n_unique: int, strategies: Sequence[str] = DEFAULT_STRATEGIES
) -> Figure:
    """An unshared stack beside each strategy's unrolled stack; colour and number =
    parameter set (landing page, chapter 3). Each half-box is drawn from
    ``layer_to_block``, so the picture is the library's map."""
    maps = stack_maps(n_layers, n_unique, strategies)
    half, gap, row, row_gap, col_gap, left = 0.42, 0.04, 0.34, 0.07, 0.24, 1.05
    col = 2 * half + gap
    bottom = 1.25
    top = bottom + n_layers * (row + row_gap)
    width = max(left + len(maps) * (col + col_gap) + 0.1, 6.4)
    fig, ax = _canvas(width, top + 1.35)
    takes_m = [s for s in maps if s in NEEDS_N_UNIQUE]
    ax.text(
        0.1,
        top + 1.1,
        f"Which parameter set each of N = {n_layers} layers uses",
        fontsize=11,
        va="center",
    )
    if takes_m:
        ax.text(
            0.1,
            top + 0.82,
            f"M = {n_unique} sets for {', '.join(takes_m)}",
            fontsize=TEXT_SIZE,
            va="center",
        )
    for i in range(n_layers):  # layer labels and the direction of the forward pass
        ax.text(
            left - 0.12,
            bottom + i * (row + row_gap) + row / 2,
            f"layer {i}",
            ha="right",
            va="center",
            fontsize=TEXT_SIZE,
        )
    _arrow(ax, (0.08, bottom), (0.08, top - row_gap), FORWARD, width=1.6)
    ax.text(
        0.21,
        (bottom + top) / 2,
        "forward pass",
        rotation=90,
        ha="center",
        va="center",
        fontsize=TEXT_SIZE,
        color=FORWARD,
    )
    for c, (strategy, parts) in enumerate(maps.items()):
        x0 = left + c * (col + col_gap)
        ax.text(
            x0 + col / 2,
            top + 0.08,
            f"{strategy}\n({STRATEGY_GLOSS[strategy]})",
            ha="center",
            va="bottom",
            fontsize=TEXT_SIZE,
            fontweight="bold" if strategy == "none" else "normal",
        )
        for i in range(n_layers):
            y = bottom + i * (row + row_gap)
            for k, (part, letter) in enumerate((("attention", "A"), ("ffn", "F"))):
                block = parts[part][i]
                _box(
                    ax,
                    x0 + k * (half + gap),
                    y,
                    half,
                    row,
                    PALETTE[block],
                    f"{letter}{block}",
                    gid=f"{strategy}|{part}|{i}",
                )
        stored = {part: len(set(blocks)) for part, blocks in parts.items()}
        ax.text(
            x0 + col / 2,
            bottom - 0.1,
            f"sets stored:\n{stored['attention']} A + {stored['ffn']} F",
            ha="center",
            va="top",
            fontsize=TEXT_SIZE,
        )
    ax.text(
        0.1,
        0.1,
        "A k / F k: attention / feed-forward sublayer with parameter set k.\n"
        "Equal letter, number and colour = the same weights, stored once.",
        ha="left",
        va="bottom",
        fontsize=9,
        color="#222222",
    )
    return fig


def embedding_counts(
    vocab_size: int, embedding_size: int, d_model: int
) -> dict[str, int]:
    """Token-embedding parameters, plain V*H vs ALBERT's V*E + (E*H + H), from
    ``counting.embedding_parameters``."""
    vocab_size = check_int("vocab_size", vocab_size, 1)
    d_model = check_int("d_model", d_model, 2)
    embedding_size = check_int("embedding_size", embedding_size, 1, d_model - 1)
    # One position row (max_len=1) is the least a config holds; it is subtracted below,
    # so only tokens remain.
    plain = TransformerConfig(
        d_model=d_model,
        n_heads=1,
        d_ff=1,
        n_layers=1,
        vocab_size=vocab_size,
        max_len=1,
        embedding_norm=False,
    )
    factorised = replace(plain, embedding_size=embedding_size)
    narrow = replace(plain, d_model=embedding_size)  # the V*E table, no projection
    table = embedding_parameters(narrow) - embedding_size
    return {
        "plain": embedding_parameters(plain) - d_model,
        "table": table,
        "projection": embedding_parameters(factorised) - embedding_size - table,
    }


def draw_factorised_embedding(
    vocab_size: int, embedding_size: int, d_model: int
) -> Figure:
    """ALBERT's factorised embedding (V x E table, then E x H projection) beside BERT's
    V x H table, areas to scale and labelled with ``sharedlib.counting``'s parameter
    counts (chapter 4)."""
    counts = embedding_counts(vocab_size, embedding_size, d_model)
    V, E, H = vocab_size, embedding_size, d_model
    # inches for V rows and H columns: every box is drawn at the same scale
    tall, wide = 3.0, 1.5
    rows, cols = tall / V, wide / H
    fig, ax = _canvas(9.4, 4.55)
    base = 0.95
    ax.text(0.3, 4.3, "plain (BERT): one V × H table", fontsize=11, va="center")
    _box(
        ax,
        0.6,
        base,
        wide,
        tall,
        PALETTE[1],
        f"V × H\n{V:,} × {H:,}\n= {counts['plain']:,}",
        gid="plain",
        round_=False,
    )
    ax.text(
        0.6 + wide / 2,
        base - 0.12,
        "token id → vector of width H",
        ha="center",
        va="top",
        fontsize=TEXT_SIZE,
    )

    x = 3.6
    ax.text(
        x - 0.3,
        4.3,
        "factorised (ALBERT): V × E table, then E × H projection",
        fontsize=11,
        va="center",
    )
    _box(ax, x, base, E * cols, tall, PALETTE[2], gid="table", round_=False)
    ax.text(
        x + E * cols + 0.08,
        base + tall * 0.62,
        f"V × E\n{V:,} × {E:,}\n= {counts['table']:,}",
        ha="left",
        va="center",
        fontsize=TEXT_SIZE,
    )
    px, py = x + 2.1, base + tall * 0.3
    _box(
        ax, px, py, wide, max(E * rows, 0.0), PALETTE[0], gid="projection", round_=False
    )
    _arrow(ax, (x + E * cols + 0.05, py), (px - 0.05, py), NEUTRAL)
    ax.text(
        px + wide / 2,
        py + E * rows + 0.1,
        f"E × H weights + H biases\n{E:,} × {H:,} + {H:,} = {counts['projection']:,}",
        ha="center",
        va="bottom",
        fontsize=TEXT_SIZE,
    )
    ax.text(
        px + wide / 2,
        py - 0.1,
        "(drawn to scale: a thin strip)" if E * rows < 0.08 else "",
        ha="center",
        va="top",
        fontsize=9,
    )
    ax.text(
        x + 0.9,
        base - 0.12,
        "token id → width E → width H",
        ha="center",
        va="top",
        fontsize=TEXT_SIZE,
    )
    total = counts["table"] + counts["projection"]
    ax.text(
        0.3,
        0.22,
        f"token-embedding parameters: {counts['plain']:,} plain vs {total:,} "
        f"factorised ({total / counts['plain']:.1%}). "
        "Box areas are proportional to weight counts.",
        fontsize=TEXT_SIZE,
    )
    return fig


def halting_weights(
    probabilities: Sequence[float], epsilon: float = 0.01
) -> list[float]:
    """Graves's ACT weights of one position: halting probabilities until their sum
    reaches 1 - epsilon, then the remainder R = 1 - (sum of the earlier ones) for the
    halting step; steps after it get none.

    A scalar restatement for the schematic, checked against
    ``sharedlib.universal.act_weights`` in the tests.
    """
    epsilon = check_real("epsilon", epsilon, 0, 1, open_minimum=True)
    # check_real's maximum is closed; at 1 every position would halt at once
    if epsilon == 1:
        raise ValueError(
            f"epsilon must be a finite real number in (0, 1), got {epsilon!r}"
        )
    if (
        isinstance(probabilities, str)
        or not probabilities
        or not all(
            isinstance(p, numbers.Real) and not isinstance(p, bool) and 0 <= p <= 1
            for p in probabilities
        )
    ):
        raise ValueError(
            "probabilities must be a non-empty sequence of values in [0, 1], "
            f"got {probabilities!r}"
        )
    weights, total = [], 0.0
    for n, p in enumerate(probabilities):
        # halt here (or forced at the last step)
        if total + p >= 1 - epsilon or n == len(probabilities) - 1:
            return [*weights, 1 - total]
        weights.append(p)
        total += p
    raise AssertionError("unreachable")


# Illustrative halting probabilities per position (a schematic: real ones come from the
# halting unit).
UT_EXAMPLE: dict[str, tuple[float, ...]] = {
    "x1": (0.995, 0.5, 0.5, 0.5, 0.5),
    "x2": (0.6, 0.5, 0.3, 0.3, 0.3),
    "x3": (0.2, 0.3, 0.3, 0.4, 0.3),
    "x4": (0.1, 0.1, 0.2, 0.2, 0.9),
}


def draw_universal_transformer_step(epsilon: float = 0.01) -> Figure:
    """Universal Transformer: one shared block applied recurrently with a timestep
    signal, and Adaptive Computation Time halting per position (schematic, Dehghani et
    al. 2019, Graves 2016; the Universal Transformer chapter)."""
    fig, ax = _canvas(11.0, 4.5)
    ax.text(
        0.2,
        4.25,
        "one step, repeated: the same block at every step",
        fontsize=11,
        va="center",
    )
    cx, w = 1.15, 2.6
    mx = cx + w / 2
    _box(
        ax,
        cx,
        0.25,
        w,
        0.45,
        PALETTE[3],
        r"input embeddings $h^0$ (all positions)",
        gid="input",
    )
    _arrow(ax, (mx, 0.7), (mx, 0.98))
    ax.add_patch(plt.Circle((mx, 1.15), 0.17, facecolor="white", edgecolor="#333333"))
    ax.text(mx, 1.15, "+", ha="center", va="center", fontsize=12)
    ax.text(
        mx + 0.26,
        1.15,
        "timestep and position\nsignal for step $t$",
        ha="left",
        va="center",
        fontsize=9,
    )
    _arrow(ax, (mx, 1.32), (mx, 1.65))
    _box(
        ax,
        cx,
        1.65,
        w,
        0.95,
        PALETTE[4],
        "shared block\nself-attention → transition\n(same weights every step)",
        gid="block",
    )
    _arrow(ax, (mx, 2.6), (mx, 2.9))
    _box(ax, cx, 2.9, w, 0.45, PALETTE[1], r"state $h^t$", gid="state")
    # back round to the next step
    _arrow(ax, (cx, 3.12), (mx - 0.17, 1.15), FORWARD, rad=0.75, width=1.6)
    ax.text(
        0.12,
        2.15,
        r"$t \leftarrow t+1$",
        ha="left",
        va="center",
        fontsize=TEXT_SIZE,
        color=FORWARD,
    )
    _arrow(ax, (mx, 3.35), (mx, 3.65))
    ax.text(
        mx,
        3.7,
        r"output $\sum_t w_i^t\, h_i^t$ per position $i$",
        ha="center",
        va="bottom",
        fontsize=TEXT_SIZE,
    )

    # ACT: the halting rule applied to illustrative probabilities, computed by
    # halting_weights.
    gx, cell_w, cell_h = 5.85, 0.78, 0.46
    steps = max(len(p) for p in UT_EXAMPLE.values())
    ax.text(
        5.05,
        4.25,
        rf"ACT halting, $\varepsilon$ = {epsilon}: "
        r"halting unit $p_i^t = \sigma(w \cdot h_i^t + b)$",
        fontsize=11,
        va="center",
    )
    top = 3.4
    for t in range(steps):
        ax.text(
            gx + t * cell_w + cell_w / 2,
            top + 0.12,
            f"t = {t + 1}",
            ha="center",
            va="bottom",
            fontsize=TEXT_SIZE,
        )
    ax.text(
        gx + steps * cell_w + 0.45,
        top + 0.12,
        r"$\sum w$",
        ha="center",
        va="bottom",
        fontsize=TEXT_SIZE,
    )
    for r, (position, probabilities) in enumerate(UT_EXAMPLE.items()):
        y = top - (r + 1) * (cell_h + 0.06)
        weights = halting_weights(probabilities, epsilon)
        ax.text(
            gx - 0.1,
            y + cell_h / 2,
            rf"${position[0]}_{position[1:]}$",
            ha="right",
            va="center",
            fontsize=TEXT_SIZE,
        )
        for t in range(steps):
            x = gx + t * cell_w
            if t < len(weights) - 1:
                _box(
                    ax,
                    x,
                    y,
                    cell_w - 0.05,
                    cell_h,
                    PALETTE[1],
                    f"p={weights[t]:.2f}",
                    gid=f"act|{position}|{t}",
                )
            elif t == len(weights) - 1:
                _box(
                    ax,
                    x,
                    y,
                    cell_w - 0.05,
                    cell_h,
                    PALETTE[0],
                    f"R={weights[t]:.2f}",
                    gid=f"act|{position}|{t}",
                )
            else:
                _box(
                    ax,
                    x,
                    y,
                    cell_w - 0.05,
                    cell_h,
                    PALE,
                    "halted",
                    gid=f"act|{position}|{t}",
                    size=9,
                )
        ax.text(
            gx + steps * cell_w + 0.45,
            y + cell_h / 2,
            f"{sum(weights):.2f}",
            ha="center",
            va="center",
            fontsize=TEXT_SIZE,
        )
    notes = (
        r"blue: still updating, weight $w_i^t = p_i^t$"
        "\n"
        r"orange: halting step, the first where $\sum p \geq 1 - \varepsilon$ "
        r"(or the last step), "
        r"weight $R = 1 - \sum$ earlier $p$"
        "\n"
        "grey: halted, state copied unchanged\n"
        "Probabilities are illustrative; the halting rule is computed from them."
    )
    ax.text(5.05, 0.2, notes, ha="left", va="bottom", fontsize=9)
    return fig


def draw_relaxed_sharing(n_layers: int, rank: int, d_model: int = 512) -> Figure:
    """Relaxed sharing: one shared block plus a per-layer low-rank delta,
    W_i = W + B_i A_i (Bae et al. 2025; chapter 8). The footer's counts come from
    ``relaxed.delta_parameters`` and ``counting.layer_parameters``."""
    n_layers = check_int("n_layers", n_layers, 1, len(PALETTE) - 1)
    d_model = check_int("d_model", d_model, 2)
    rank = check_int("rank", rank, 1, d_model)
    config = TransformerConfig(
        d_model=d_model, n_heads=1, d_ff=4 * d_model, n_layers=n_layers, strategy="all"
    )
    per_layer = delta_parameters(config, rank) // n_layers
    unshared_layer = layer_parameters(d_model, 4 * d_model)
    row, gap = 0.5, 0.12
    bottom = 1.2
    height = bottom + n_layers * (row + gap) + 0.75
    fig, ax = _canvas(8.6, max(height, 3.2))
    top = bottom + n_layers * (row + gap) - gap
    wy = (bottom + top) / 2 - 0.45
    _box(ax, 0.3, wy, 1.5, 0.9, PALETTE[0], "shared W\n(stored once)", gid="shared")
    for i in range(n_layers):
        y = bottom + i * (row + gap)
        ax.plot(
            [1.8, 2.85],
            [wy + 0.45, y + row / 2],
            color=NEUTRAL,
            linewidth=0.8,
            linestyle="--",
        )
        _box(ax, 2.85, y, 0.55, row, PALETTE[0], "W", gid=f"W|{i}")
        ax.text(3.55, y + row / 2, "+", ha="center", va="center", fontsize=12)
        colour = PALETTE[i + 1]
        _box(ax, 3.7, y, 0.42, row, colour, f"B{i}", gid=f"B|{i}")  # (d, r): tall, thin
        _box(
            ax,
            4.17,
            y + row * 0.2,
            0.7,
            row * 0.6,
            colour,
            f"A{i}",
            gid=f"A|{i}",
            size=9,
        )  # (r, d): short and wide
        ax.text(5.05, y + row / 2, "=", ha="center", va="center", fontsize=12)
        ax.text(
            5.25,
            y + row / 2,
            rf"$W_{{{i}}}$ used by layer {i}",
            ha="left",
            va="center",
            fontsize=TEXT_SIZE,
        )
    ax.text(
        0.3,
        top + 0.35,
        rf"Relaxed sharing, rank r = {rank}: "
        r"layer $i$ computes with $W_i = W + B_i A_i$, "
        r"$B_i$: out × r, $A_i$: r × in",
        fontsize=11,
        va="center",
    )
    ax.text(
        0.3,
        0.2,
        "W stands for each weight matrix of the shared block; "
        "each gets its own delta in every layer.\n"
        "B starts at zero, so training starts from the shared model.\n"
        f"At d_model = {d_model}, d_ff = {4 * d_model}, "
        f"one layer's deltas add {per_layer:,} parameters, "
        f"{per_layer / unshared_layer:.1%} of an unshared layer's {unshared_layer:,}.",
        fontsize=TEXT_SIZE,
        va="bottom",
    )
    return fig


def draw_one_module_many_uses(n_uses: int) -> Figure:
    """One module object called at several depths; backward sums every use's gradient
    into its one weight (chapter 2): dL/dW = sum over uses i of dL/dW at use i."""
    n_uses = check_int("n_uses", n_uses, 1, 8)
    step, bw, bh, mid, left = 1.6, 1.05, 0.55, 2.0, 1.95
    xs = [left + 0.85 + i * step for i in range(n_uses)]
    fig, ax = _canvas(max(xs[-1] + bw + 1.05, 6.8), 4.3)
    module_x = (xs[0] + xs[-1] + bw) / 2
    _box(
        ax,
        module_x - 1.45,
        3.45,
        2.9,
        0.62,
        PALETTE[0],
        "block: one nn.Module object\none weight tensor W",
        gid="module",
    )
    _box(
        ax,
        module_x - 1.6,
        0.2,
        3.2,
        0.62,
        PALETTE[5],
        r"W.grad $= \sum_i\ \partial L / \partial W\,|_{\mathrm{use}\ i}$",
        gid="grad",
    )
    _box(ax, left, mid, 0.55, bh, PALE, "x", gid="input")
    previous = left + 0.55
    for i, x in enumerate(xs):
        _arrow(ax, (previous, mid + bh / 2), (x, mid + bh / 2), FORWARD, width=1.6)
        _box(ax, x, mid, bw, bh, PALETTE[1], f"use {i + 1}\nblock(·)", gid=f"use|{i}")
        _arrow(
            ax,
            (module_x, 3.45),
            (x + bw / 2, mid + bh),
            NEUTRAL,
            dashed=True,
            width=1.0,
        )
        _arrow(
            ax,
            (x + bw / 2, mid),
            (module_x + (x + bw / 2 - module_x) * 0.25, 0.82),
            BACKWARD,
            width=1.4,
        )
        # the label sits on the side away from the arrow's lean
        outer = -1 if x + bw / 2 < module_x - 0.01 else 1
        ax.text(
            x + bw / 2 + 0.08 * outer,
            mid - 0.3,
            rf"$\partial L / \partial W\,|_{{\mathrm{{use}}\ {i + 1}}}$",
            ha="left" if outer > 0 else "right",
            va="center",
            fontsize=9,
        )
        previous = x + bw
    _arrow(
        ax,
        (previous, mid + bh / 2),
        (previous + 0.35, mid + bh / 2),
        FORWARD,
        width=1.6,
    )
    ax.text(
        previous + 0.42,
        mid + bh / 2,
        "loss L",
        ha="left",
        va="center",
        fontsize=TEXT_SIZE,
    )
    # The key: a sample of each kind of arrow, explained in black text.
    for y, colour, dashed, label in (
        (3.75, NEUTRAL, True, "the same object\nat every use"),
        (2.9, FORWARD, False, "forward pass"),
        (1.2, BACKWARD, False, "backward: each use's\ngradient, added up"),
    ):
        _arrow(ax, (0.15, y), (0.55, y), colour, dashed=dashed, width=1.4)
        ax.text(0.62, y, label, ha="left", va="center", fontsize=9)
    return fig
