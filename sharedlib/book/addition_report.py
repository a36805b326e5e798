"""Tables, comparisons and sentences of the recorded iterations-and-length experiment
(chapter 5b).

Everything here reads a results file of ``sharedlib.experiments.addition``
(``notebooks/results/addition.<profile>.json``); nothing is trained. Accuracies are
reported in percent of test sequences whose every sum bit is right; losses are in
``models.LOSS_UNIT``, a token being one bit here. The figure's colours come from the
book's palette in ``plots``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt

from ..evidence import PairedDifference, conclusion, mean_interval, paired_difference
from ..experiments.addition import chosen_lr
from .plots import BLUE, GREY, RED

__all__ = [
    "accuracy_by_seed",
    "best_mean",
    "final_runs",
    "headline",
    "iteration_changes",
    "iteration_curves",
    "labels",
    "length_rows",
    "mean_accuracy",
    "plot_iterations_by_length",
    "sentence",
    "settings",
    "span_rows",
    "summary",
    "sweep_rows",
]


def settings(data: Mapping[str, Any]) -> dict[str, Any]:
    """The profile settings the file was recorded with."""
    return dict(data["profile_settings"])


def labels(data: Mapping[str, Any]) -> list[str]:
    """Arm labels in recorded order."""
    return list(dict.fromkeys(r["label"] for r in data["runs"]))


def final_runs(data: Mapping[str, Any], label: str) -> list[Mapping[str, Any]]:
    """The finished runs of ``label`` at its chosen learning rate, one per seed."""
    lr = chosen_lr(data["runs"], label)
    return sorted(
        (
            r
            for r in data["runs"]
            if r["label"] == label and r["status"] == "ok" and r["lr"] == lr
        ),
        key=lambda r: r["seed"],
    )


def trained_depth(data: Mapping[str, Any]) -> int:
    """N: the unshared model's layers and the looped model's training iterations."""
    return int(settings(data)["n_layers"])


def accuracy_by_seed(
    data: Mapping[str, Any],
    label: str,
    bits: int,
    iterations: int | None = None,
    metric: str = "sequence_accuracy",
) -> dict[int, float]:
    """``{seed: percent}`` of ``label`` at ``bits`` bits and ``iterations`` (default:
    the trained depth N)."""
    k = trained_depth(data) if iterations is None else iterations
    out = {}
    for run in final_runs(data, label):
        rows = [
            row
            for row in run["accuracy"]
            if row["bits"] == bits and row["iterations"] == k
        ]
        if len(rows) != 1:
            raise ValueError(
                f"{label!r} seed {run['seed']} has no accuracy at {bits} bits and {k} "
                "iterations"
            )
        out[run["seed"]] = 100.0 * rows[0][metric]
    return out


def length_rows(data: Mapping[str, Any]) -> tuple[list[str], list[tuple]]:
    """Header and rows: per arm, its parameters, chosen rate and mean sequence accuracy
    (95% CI) per test length at the trained depth N."""
    s = settings(data)
    header = ["model", "parameters", "lr", *[f"{n} bits" for n in s["test_bits"]]]
    rows = []
    for label in labels(data):
        runs = final_runs(data, label)
        cells = []
        for n in s["test_bits"]:
            values = list(accuracy_by_seed(data, label, n).values())
            mean, low, high = (
                mean_interval(values)
                if len(values) > 1
                else (values[0], values[0], values[0])
            )
            cells.append(f"{mean:.1f} [{max(low, 0):.1f}, {min(high, 100):.1f}]")
        first = runs[0]
        rows.append((label, f"{first['parameters']:,}", f"{first['lr']:g}", *cells))
    return header, rows


def iteration_curves(
    data: Mapping[str, Any], bits: int
) -> dict[str, dict[int, tuple[float, float, float]]]:
    """For every looped arm: ``{iterations: (mean, low, high)}`` sequence accuracy in
    percent at ``bits``."""
    out = {}
    for label in labels(data):
        runs = final_runs(data, label)
        if runs[0]["strategy"] != "all":
            continue
        by_k = {}
        for k in settings(data)["test_iterations"]:
            values = list(accuracy_by_seed(data, label, bits, k).values())
            by_k[k] = mean_interval(values) if len(values) > 1 else (values[0],) * 3
        out[label] = by_k
    return out


def unshared_label(data: Mapping[str, Any], position: str) -> str:
    """The label of the unshared arm with ``position``."""
    for label in labels(data):
        run = final_runs(data, label)[0]
        if run["strategy"] == "none" and run["position"] == position:
            return label
    raise ValueError(f"no unshared arm with position {position!r}")


def looped_vs_unshared(
    data: Mapping[str, Any], bits: int
) -> list[tuple[str, str, PairedDifference]]:
    """(looped label, unshared label, paired difference in percentage points) at
    ``bits``, both at depth N."""
    out = []
    for label in labels(data):
        run = final_runs(data, label)[0]
        if run["strategy"] == "all":
            base = unshared_label(data, run["position"])
            out.append(
                (
                    label,
                    base,
                    paired_difference(
                        accuracy_by_seed(data, label, bits),
                        accuracy_by_seed(data, base, bits),
                    ),
                )
            )
    return out


def more_iterations(
    data: Mapping[str, Any], bits: int, iterations: int
) -> list[tuple[str, PairedDifference]]:
    """(looped label, paired difference) of sequence accuracy at ``iterations`` minus at
    the trained depth N."""
    out = []
    for label in iteration_curves(data, bits):
        out.append(
            (
                label,
                paired_difference(
                    accuracy_by_seed(data, label, bits, iterations),
                    accuracy_by_seed(data, label, bits),
                ),
            )
        )
    return out


def sentence(difference: PairedDifference, subject: str, baseline: str) -> str:
    """``evidence.conclusion`` worded for sequence accuracy in percentage points (higher
    is better)."""
    # more digits where an interval that excludes zero would print a bound of 0.0
    digits = 1
    while (
        difference.excludes_zero
        and round(min(abs(difference.low), abs(difference.high)), digits) == 0
    ):
        digits += 1
    text = conclusion(
        difference,
        subject,
        baseline,
        quantity="sequence accuracy",
        unit="percentage points",
        digits=digits,
    )
    return text.replace("has a lower sequence accuracy", "is less accurate").replace(
        "has a higher sequence accuracy", "is more accurate"
    )


def mean_accuracy(
    data: Mapping[str, Any], label: str, bits: int, iterations: int | None = None
) -> float:
    """Mean sequence accuracy (percent) over seeds of ``label`` at ``bits`` and
    ``iterations`` (default N)."""
    values = accuracy_by_seed(data, label, bits, iterations)
    return sum(values.values()) / len(values)


def best_mean(data: Mapping[str, Any], bits: int) -> float:
    """The highest mean sequence accuracy (percent) of any model at ``bits``, looped
    ones at any iterations."""
    depth = trained_depth(data)
    looped = set(iteration_curves(data, bits))
    return max(
        mean_accuracy(data, label, bits, k)
        for label in labels(data)
        for k in (settings(data)["test_iterations"] if label in looped else [depth])
    )


def iteration_changes(
    data: Mapping[str, Any], bits: int, iterations: int
) -> dict[str, float]:
    """Per looped model: mean accuracy at ``iterations`` minus at N, in percentage
    points, at ``bits``."""
    return {
        label: mean_accuracy(data, label, bits, iterations)
        - mean_accuracy(data, label, bits)
        for label in iteration_curves(data, bits)
    }


def summary(data: Mapping[str, Any]) -> list[str]:
    """Generated sentences: at every length past training where some model gets an
    addition right, looped against unshared models at depth N, and 2N test-time
    iterations against N; one line for lengths where none does."""
    s = settings(data)
    depth = trained_depth(data)
    more = 2 * depth if 2 * depth in s["test_iterations"] else max(s["test_iterations"])
    lines = []
    for n in s["test_bits"][1:]:
        best = best_mean(data, n)
        if best < 1.0:
            lines.append(
                f"At {n} bits no model gets more than {best:.1f}% of additions right "
                "on average, at any number of iterations: there is nothing left to "
                "compare."
            )
            continue
        for label, base, diff in looped_vs_unshared(data, n):
            lines.append(f"At {n} bits, " + sentence(diff, label, base) + ".")
        for label, diff in more_iterations(data, n, more):
            lines.append(
                f"At {n} bits, "
                + sentence(
                    diff,
                    f"{label} run {more} times",
                    f"the same model run {depth} times",
                )
                + "."
            )
    return lines


def best_unshared_at(data: Mapping[str, Any], bits: int) -> tuple[str, float]:
    """The unshared arm with the highest mean sequence accuracy at ``bits`` and that
    accuracy (percent)."""
    best = []
    for label in labels(data):
        if final_runs(data, label)[0]["strategy"] == "none":
            values = accuracy_by_seed(data, label, bits)
            best.append((sum(values.values()) / len(values), label))
    mean, label = max(best)
    return label, mean


def span_rows(data: Mapping[str, Any]) -> list[tuple[int, str, int]]:
    """Per test length: bits, mean and longest carry span of the fixed test examples
    (the depth they need)."""
    run = final_runs(data, labels(data)[0])[0]
    seen: dict[int, tuple[float, int]] = {}
    for row in run["accuracy"]:
        seen[row["bits"]] = (row["mean_span"], row["max_span"])
    return [(n, f"{mean:.2f}", longest) for n, (mean, longest) in sorted(seen.items())]


def sweep_rows(data: Mapping[str, Any]) -> tuple[list[str], list[tuple]]:
    """The seed-0 learning-rate sweep: final validation loss (``LOSS_UNIT``, a token
    being a bit) per arm and rate, the chosen rate marked."""
    lrs: Sequence[float] = settings(data)["lrs"]
    header = ["model", *[f"lr {lr:g}" for lr in lrs]]
    rows = []
    for label in labels(data):
        chosen = chosen_lr(data["runs"], label)
        cells = []
        for lr in lrs:
            run = next(
                (
                    r
                    for r in data["runs"]
                    if r["label"] == label
                    and r["seed"] == 0
                    and r.get("sweep")
                    and r["lr"] == lr
                ),
                None,
            )
            if run is None:
                cells.append("(not run)")
            elif run["status"] != "ok":
                cells.append("diverged")
            else:
                cells.append(f"{run['val_loss']:.2e}" + (" *" if lr == chosen else ""))
        rows.append((label, *cells))
    return header, rows


def plot_iterations_by_length(data: Mapping[str, Any]):
    """One panel per test length: looped models' sequence accuracy (mean, 95% CI band)
    against test-time iterations, with each unshared model at its N layers as a dashed
    line of its colour."""
    s = settings(data)
    lengths = list(s["test_bits"])
    fig, axes = plt.subplots(
        1,
        len(lengths),
        figsize=(3.0 * len(lengths) + 0.6, 3.6),
        sharey=True,
        squeeze=False,
    )
    colours = {"learned": GREY, "rotary": BLUE, "none": RED}  # by position scheme
    for ax, n in zip(axes[0], lengths, strict=True):
        for label, by_k in iteration_curves(data, n).items():
            position = final_runs(data, label)[0]["position"]
            ks = list(by_k)
            style = ":" if "random depth" in label else "-"
            ax.plot(
                ks,
                [v[0] for v in by_k.values()],
                style,
                marker="o",
                markersize=3,
                color=colours[position],
                label=label,
            )
            ax.fill_between(
                ks,
                [max(v[1], 0) for v in by_k.values()],
                [min(v[2], 100) for v in by_k.values()],
                color=colours[position],
                alpha=0.12,
                linewidth=0,
            )
        for label in labels(data):
            run = final_runs(data, label)[0]
            if run["strategy"] == "none":
                values = accuracy_by_seed(data, label, n)
                ax.axhline(
                    sum(values.values()) / len(values),
                    color=colours[run["position"]],
                    linestyle="--",
                    linewidth=1,
                    label=label,
                )
        ax.axvline(trained_depth(data), color="black", linewidth=0.8, alpha=0.5)
        ax.set_xscale("log", base=2)
        ax.set_xticks(
            list(s["test_iterations"]), [str(k) for k in s["test_iterations"]]
        )
        ax.set_title(f"{n} bits" + (" (trained)" if n == s["train_bits"] else ""))
        ax.set_xlabel("iterations at test time")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("sequences exactly right (%)")
    axes[0][0].set_ylim(-2, 102)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=3, frameon=False, fontsize=9)
    fig.tight_layout(rect=(0, 0.08 + 0.045 * (len(names) // 3), 1, 1))
    return fig


def _tally(differences: Sequence[PairedDifference]) -> str:
    better = sum(d.low > 0 for d in differences)
    worse = sum(d.high < 0 for d in differences)
    unclear = len(differences) - better - worse
    return (
        f"{better} more accurate, {worse} less accurate, {unclear} with no evidence of "
        "a difference"
    )


def headline(data: Mapping[str, Any]) -> str:
    """One generated sentence for the conclusions: at the first length past training,
    looped against unshared models, and twice the trained iterations against N (paired
    95% intervals; spans of zero are not effects)."""
    s = settings(data)
    n = s["test_bits"][1] if len(s["test_bits"]) > 1 else s["test_bits"][0]
    depth = trained_depth(data)
    more = 2 * depth if 2 * depth in s["test_iterations"] else max(s["test_iterations"])
    versus = [d for *_, d in looped_vs_unshared(data, n)]
    deeper = [d for _, d in more_iterations(data, n, more)]
    best_label, best = max(
        (
            (sum(v.values()) / len(v), label)
            for label in labels(data)
            for v in [accuracy_by_seed(data, label, n)]
        ),
        key=lambda t: t[0],
    )[::-1]
    return (
        f"On binary addition trained on up to {s['train_bits']} bits and tested on "
        f"{n}, the looped models against the unshared model with the same position "
        f"scheme: {_tally(versus)}; run {more} instead of {depth} times, the looped "
        f"models are {_tally(deeper)} (95% CIs over {versus[0].n} paired seeds); the "
        f"most accurate model there is {best_label}, with {best:.1f}% of additions "
        "exactly right"
    )
