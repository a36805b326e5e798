"""Chapter 5e's tables, figure and sentences from the recorded Sudoku file
(``sharedlib.experiments.sudoku``): solve rates in percent of held-out puzzles, every
comparison paired over seeds, Holm-corrected within its family."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from ..evidence import (
    PairedDifference,
    conclusion,
    holm_adjust,
    mean_interval,
    paired_difference,
)
from ..experiments.recorded import load_recorded
from ..experiments.sudoku import (
    RATE_FROM,
    SUDOKU_RESULTS_NAME,
    chosen_rate,
    validate_sudoku,
)
from .plots import BLUE, DARK_GREY, ORANGE

__all__ = [
    "BASELINES",
    "NAMES",
    "arm_rows",
    "by_seed",
    "compare_to_recursive",
    "comparison_sentences",
    "final_runs",
    "load_sudoku_report",
    "memorisation_rows",
    "paired",
    "plot_improvement_steps",
    "rounds_rows",
    "seed_values",
    "settings_line",
    "solved",
    "within_runs",
]

UNIT = "points"  # percentage points of puzzles solved
NAMES: dict[str, str] = {
    "recursive": "the recursive reasoner",
    "inner-only": "the inner recursion alone",
    "outer-only": "the outer loop alone",
    "plain": "the one-pass network of equal parameters",
    "plain-deep": "the one-pass network of equal training FLOPs",
    "shuffled-labels": "the recursive reasoner on shuffled labels",
}
# what the recursive reasoner is compared with, one Holm family
BASELINES: tuple[str, ...] = ("plain", "plain-deep", "inner-only", "outer-only")


def load_sudoku_report(
    profile: str | None = None, name: str = SUDOKU_RESULTS_NAME
) -> dict[str, Any]:
    """The recorded file ``name`` (the best profile present), validated; ``name``
    "sudoku_long" holds the longer training of two arms."""
    data = load_recorded(name, profile)
    validate_sudoku(data)
    return data


def final_runs(data: Mapping[str, Any], arm: str) -> dict[int, Mapping[str, Any]]:
    """The finished runs of ``arm`` at its chosen rate, by seed."""
    lr = chosen_rate(data["runs"], RATE_FROM.get(arm, arm))
    return {
        r["seed"]: r
        for r in data["runs"]
        if r["arm"] == arm and r["lr"] == lr and r["status"] == "ok"
    }


def solved(
    run: Mapping[str, Any], split: str = "report", step: int | None = None
) -> float:
    """Percent of ``split``'s puzzles solved after ``step`` improvement steps (default:
    the trained number; a one-pass model has one)."""
    rates = run[split]["solved"]
    step = run["reported_step"] if step is None else min(step, len(rates))
    return 100 * rates[step - 1]


def by_seed(
    data: Mapping[str, Any], arm: str, get: Callable[[Mapping[str, Any]], float]
) -> dict[int, float]:
    """``get(run)`` of ``arm``'s runs at its chosen rate, by seed."""
    return {seed: float(get(run)) for seed, run in final_runs(data, arm).items()}


def paired(
    data: Mapping[str, Any],
    subject: str,
    baseline: str,
    get: Callable[[Mapping[str, Any]], float] = solved,
) -> PairedDifference:
    """``get`` of ``subject`` minus that of ``baseline``, paired by seed."""
    a, b = by_seed(data, subject, get), by_seed(data, baseline, get)
    seeds = sorted(set(a) & set(b))
    return paired_difference({s: a[s] for s in seeds}, {s: b[s] for s in seeds})


def _cell(values: list[float], digits: int = 1) -> str:
    """Mean [95% t-interval] of percentages, the interval clipped to 0..100."""
    if len(values) < 2:
        return "—" if not values else f"{values[0]:.{digits}f} (1 seed)"
    mean, low, high = mean_interval(values)
    low, high = max(low, 0.0), min(high, 100.0)
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def settings_line(data: Mapping[str, Any]) -> str:
    """Puzzles, network, budget, seeds and provenance, for the chapter's caption."""
    s, prov, sets = data["profile_settings"], data["provenance"], data["baselines"]
    n = s["box_rows"] * s["box_cols"]
    return (
        f"profile {data['profile']} ({prov['device']}, commit {prov['commit'][:8]}, "
        f"{prov['wall_seconds'] / 60:.0f} min): {n}x{n} Sudoku with {s['blanks']} "
        f"blanks, {sets['train']['puzzles']:,} training puzzles on "
        f"{s['n_train_grids']} grids, {sets['report']['puzzles']} report puzzles on "
        f"{s['n_test_grids'] // 2} other grids; a {s['n_layers']}-layer network of "
        f"width {s['d_model']}, n = {s['n_latent']}, T = {s['n_recursions']}, "
        f"N_sup = {s['n_supervision']}; {s['steps']:,} optimizer steps of "
        f"{s['batch_size']} puzzles, {s['seeds']} seeds"
    )


def arm_rows(data: Mapping[str, Any]) -> tuple[list[str], list[tuple]]:
    """Per arm: parameters, layer passes, rate, and percent solved (mean [95% CI])
    on the report, harder and training puzzles."""
    header = [
        "arm",
        "parameters",
        "layer passes per answer",
        "per training step",
        "rate",
        "seeds",
        "report solved, %",
        "harder solved, %",
        "training puzzles solved, %",
    ]
    lrs = data["profile_settings"]["lrs"]
    rows = []
    for arm in data["profile_settings"]["arms"]:
        runs = final_runs(data, arm)
        if not runs:
            continue
        first = next(iter(runs.values()))
        lr = first["lr"]
        edge = arm not in RATE_FROM and lr in (min(lrs), max(lrs))
        rows.append(
            (
                arm,
                f"{first['parameters']:,}",
                first["layer_passes"]["per_answer"],
                first["layer_passes"]["per_training_step"],
                f"{lr:g}" + (" (edge)" if edge else ""),
                len(runs),
                _cell([solved(r) for r in runs.values()]),
                _cell([solved(r, "harder") for r in runs.values()]),
                _cell([solved(r, "train") for r in runs.values()]),
            )
        )
    return header, rows


def compare_to_recursive(
    data: Mapping[str, Any],
) -> list[tuple[str, PairedDifference, float]]:
    """(baseline, recursive - baseline in points solved, Holm-adjusted p) for every
    baseline with paired seeds: one family."""
    found = [
        (arm, paired(data, "recursive", arm))
        for arm in BASELINES
        if len(
            set(by_seed(data, "recursive", solved)) & set(by_seed(data, arm, solved))
        )
        >= 2
    ]
    adjusted = holm_adjust([d.p_value for _, d in found])
    return [(arm, d, p) for (arm, d), p in zip(found, adjusted, strict=True)]


def comparison_sentences(data: Mapping[str, Any]) -> dict[str, str]:
    """One sentence per baseline, Holm-corrected over the family."""
    found = compare_to_recursive(data)
    return {
        arm: conclusion(
            d,
            NAMES["recursive"],
            NAMES[arm],
            quantity="share of held-out puzzles solved",
            unit=UNIT,
            digits=1,
            adjusted_p=p,
            family_size=len(found),
        )
        for arm, d, p in found
    }


def rounds_rows(
    data: Mapping[str, Any], arm: str = "recursive"
) -> tuple[list[str], list[tuple]]:
    """Percent solved at the trained step by propagation rounds the puzzle needs, on
    the report and harder puzzles."""
    runs = list(final_runs(data, arm).values())
    header = ["puzzles", "rounds of forced cells", "puzzles in the set", "solved, %"]
    rows = []
    for split in ("report", "harder"):
        keys = sorted(
            {k for r in runs for k in r[f"{split}_by_rounds"]},
            key=lambda k: (k == "None", k),
        )
        for key in keys:
            cells = [r[f"{split}_by_rounds"][key] for r in runs]
            cells = [c for c in cells if c["puzzles"] > 0]
            label = "stalls" if key == "None" else key
            rows.append(
                (
                    split,
                    label,
                    cells[0]["puzzles"] if cells else 0,
                    _cell([100 * c["solved"] for c in cells]),
                )
            )
    return header, rows


def plot_improvement_steps(data: Mapping[str, Any]) -> Figure:
    """Percent of report puzzles solved against network applications per answer, for
    every looped arm, with the one-pass baselines as lines; 95% bands over seeds."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    styles = {"recursive": BLUE, "inner-only": ORANGE, "outer-only": DARK_GREY}
    for arm, colour in styles.items():
        runs = list(final_runs(data, arm).values())
        if len(runs) < 2:
            continue
        first = runs[0]
        per_step = first["layer_passes"]["per_answer"] // first["reported_step"]
        steps = range(1, len(first["report"]["solved"]) + 1)
        means, lows, highs = zip(
            *(mean_interval([solved(r, step=k) for r in runs]) for k in steps),
            strict=True,
        )
        x = [k * per_step for k in steps]
        ax.plot(x, means, color=colour, marker="o", ms=3, label=NAMES[arm])
        ax.fill_between(x, lows, highs, color=colour, alpha=0.2, lw=0)
        trained = first["layer_passes"]["per_answer"]  # the trained improvement steps
        ax.axvline(trained, color=colour, lw=0.6, ls=":")
    for arm, ls in (("plain", "--"), ("plain-deep", "-.")):
        values = list(by_seed(data, arm, solved).values())
        if values:
            ax.axhline(
                sum(values) / len(values),
                color=DARK_GREY,
                ls=ls,
                lw=1,
                label=NAMES[arm],
            )
    ax.set_xlabel("layer passes per answer (test-time compute)")
    ax.set_ylabel("held-out puzzles solved, %")
    ax.legend(fontsize=7, frameon=False, loc="center right")
    fig.tight_layout()
    return fig


def within_runs(
    data: Mapping[str, Any],
    arm: str,
    subject: Callable[[Mapping[str, Any]], float],
    baseline: Callable[[Mapping[str, Any]], float],
) -> PairedDifference:
    """``subject(run) - baseline(run)`` over ``arm``'s seeds: two measurements of the
    same trained models (e.g. training against held-out puzzles, or two step counts)."""
    return paired_difference(by_seed(data, arm, subject), by_seed(data, arm, baseline))


def memorisation_rows(data: Mapping[str, Any]) -> tuple[list[str], list[tuple]]:
    """Per arm: percent solved of training and of held-out (report) puzzles and the
    gap, paired within each seed's model; the shuffled-label arm also on its own
    (shuffled) training labels."""
    header = [
        "arm",
        "training puzzles, %",
        "held-out puzzles, %",
        "gap, points",
        "its own training labels, %",
    ]
    rows = []
    for arm in data["profile_settings"]["arms"]:
        runs = final_runs(data, arm)
        if len(runs) < 2:
            continue
        gap = within_runs(data, arm, lambda r: solved(r, "train"), solved)
        fit = (
            _cell([solved(r, "train_fit") for r in runs.values()])
            if arm == "shuffled-labels"
            else ""
        )
        rows.append(
            (
                arm,
                _cell([solved(r, "train") for r in runs.values()]),
                _cell([solved(r) for r in runs.values()]),
                f"{gap.mean:+.1f} [{gap.low:+.1f}, {gap.high:+.1f}]",
                fit,
            )
        )
    return header, rows


def seed_values(data: Mapping[str, Any], arm: str, split: str = "report") -> str:
    """``arm``'s percent solved seed by seed, e.g. "36.9, 0.8, 3.1" (seed order)."""
    values = by_seed(data, arm, lambda r: solved(r, split))
    return ", ".join(f"{values[seed]:.1f}" for seed in sorted(values))
