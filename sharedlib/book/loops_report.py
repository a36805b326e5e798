"""Chapter 5d's tables, figures and sentences from the recorded looped-LM file
(``sharedlib.experiments.loops``): every number with its paired interval over seeds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from ..evidence import PairedDifference, conclusion, mean_interval, paired_difference
from ..experiments.loops import (
    CONVERSIONS,
    LOOPS_RESULTS_NAME,
    SWEPT,
    chosen_rate,
    validate_loops,
)
from ..experiments.recorded import load_recorded
from ..models import LOSS_UNIT
from .plots import BLUE, DARK_GREY, ORANGE

__all__ = [
    "by_seed",
    "cache_rows",
    "conversion_rows",
    "exit_rows",
    "final_runs",
    "iteration_rows",
    "load_loops_report",
    "paired",
    "plot_test_time_compute",
    "sentence",
    "settings_line",
    "stability_rows",
    "worst_loss",
]

UNIT = "nats/token"
# how a sentence names each arm
NAMES: dict[str, str] = {
    "fixed": "the fixed-depth model",
    "random": "the random-depth model",
    "gate": "the gated model",
    "fixed high-lr": "the free injection",
    "bounded high-lr": "the bounded injection",
    "unshared": "the unshared model",
    "cycle scratch": "the recursive model trained from scratch",
    "stepwise": "the Stepwise conversion",
    "average": "the Average conversion",
    "lower": "the Lower conversion",
    "average + LoRA": "the Average conversion with per-layer LoRA deltas",
}


def load_loops_report(profile: str | None = None) -> dict[str, Any]:
    """The recorded file (the best profile present), validated."""
    data = load_recorded(LOOPS_RESULTS_NAME, profile)
    validate_loops(data)
    return data


def final_runs(data: Mapping[str, Any], label: str) -> dict[int, Mapping[str, Any]]:
    """The runs of ``label`` by seed: at its chosen rate (swept arms) or at the one
    rate it was run at."""
    runs = [r for r in data["runs"] if r["label"] == label]
    if label in SWEPT:
        rate = chosen_rate(data["runs"], label)
        runs = [r for r in runs if r["lr"] == rate]
    return {r["seed"]: r for r in runs}


def settings_line(data: Mapping[str, Any]) -> str:
    """Profile, machine, commit and size, for the chapter's caption."""
    s, prov = data["profile_settings"], data["provenance"]
    fixed = next(iter(final_runs(data, "fixed").values()))
    return (
        f"profile {data['profile']} ({prov['device']}, commit {prov['commit'][:8]}, "
        f"{prov['wall_seconds'] / 60:.0f} min): {fixed['parameters']:,}-parameter "
        f"looped models (P = R = C = 1, width {fixed['model_config']['d_model']}), "
        f"{fixed['steps']} steps of {fixed['tokens'] // fixed['steps']:,} tokens, "
        f"trained depth r = {s['n_iterations']}, {s['seeds']} seeds"
    )


def _values(runs: Mapping[int, Mapping[str, Any]], get: Any) -> dict[int, float]:
    return {
        seed: float(get(run)) for seed, run in runs.items() if run["status"] == "ok"
    }


def by_seed(data: Mapping[str, Any], label: str, get: Any) -> dict[int, float]:
    """``get(run)`` of every finished run of ``label`` (at its chosen rate), by seed."""
    return _values(final_runs(data, label), get)


def paired(
    data: Mapping[str, Any], subject: str, baseline: str, get: Any
) -> PairedDifference:
    """``get(run)`` of ``subject`` minus that of ``baseline``, paired by seed."""
    a, b = (
        _values(final_runs(data, subject), get),
        _values(final_runs(data, baseline), get),
    )
    seeds = sorted(set(a) & set(b))
    return paired_difference({s: a[s] for s in seeds}, {s: b[s] for s in seeds})


def _cell(values: Sequence[float], digits: int = 3) -> str:
    mean, low, high = mean_interval(list(values))
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _diff(d: PairedDifference, digits: int = 3) -> str:
    return f"{d.mean:+.{digits}f} [{d.low:+.{digits}f}, {d.high:+.{digits}f}]"


def _at(r: int) -> Any:
    return lambda run: run["by_iterations"][r - 1]["report_loss"]


def iteration_rows(data: Mapping[str, Any]) -> tuple[list[str], list[tuple]]:
    """Report loss at 1 .. 4r test iterations, fixed and random depth, their paired
    difference, and forward FLOPs per token."""
    fixed, random = final_runs(data, "fixed"), final_runs(data, "random")
    header = [
        "iterations",
        "MFLOPs/token",
        "fixed depth",
        "random depth",
        "random - fixed",
    ]
    rows = []
    for r in range(1, data["profile_settings"]["max_iterations"] + 1):
        flops = next(iter(fixed.values()))["by_iterations"][r - 1][
            "forward_flops_per_token"
        ]
        rows.append(
            (
                r,
                f"{flops / 1e6:.3f}",
                _cell(_values(fixed, _at(r)).values()),
                _cell(_values(random, _at(r)).values()),
                _diff(paired(data, "random", "fixed", _at(r))),
            )
        )
    return header, rows


def _rule(
    runs: Mapping[int, Mapping[str, Any]], table: str, k: int, field: str
) -> dict[int, float]:
    """``field`` of row ``k`` of each run's ``table`` (kl_exits or gate_exits)."""
    return _values(runs, lambda run: run[table][k][field])


def exit_rows(data: Mapping[str, Any]) -> tuple[list[str], list[tuple]]:
    """Exits: KL thresholds (fixed and random arms, decoded token by token) and gate
    quantiles, loss and mean iterations, with the loss change against no exit."""
    header = ["model", "exit rule", "mean iterations", "loss", "loss - no exit"]
    rows = []
    for label in ("random", "fixed", "gate"):
        runs = final_runs(data, label)
        table = "gate_exits" if label == "gate" else "kl_exits"
        if label == "gate":
            no_exit = _values(runs, lambda run: run["gate_fixed_loss"])
        else:
            no_exit = _rule(runs, table, 0, "loss")
        for k, first in enumerate(next(iter(runs.values()))[table]):
            if label == "gate":
                name = f"P(exit by i) >= {first['quantile']:g}"
            else:
                rule = first["threshold"]
                name = "none (all iterations)" if rule == 0 else f"KL < {rule:g}"
            loss = _rule(runs, table, k, "loss")
            change = paired_difference(loss, no_exit)
            rows.append(
                (
                    label,
                    name,
                    _cell(_rule(runs, table, k, "mean_iterations").values(), 2),
                    _cell(loss.values()),
                    "—" if name.startswith("none") else _diff(change),
                )
            )
    return header, rows


def cache_rows(data: Mapping[str, Any]) -> tuple[list[str], list[tuple]]:
    """Exact per-iteration caches against one slot reused by every iteration."""
    header = ["model", "cache", "KB per token", "loss", "one slot - exact"]
    rows = []
    for label in ("random", "fixed"):
        runs = final_runs(data, label)
        cache = next(iter(runs.values()))["cache"]
        exact = _values(runs, lambda run: run["cache"]["exact_loss"])
        shared = _values(runs, lambda run: run["cache"]["one_slot_loss"])
        d = paired_difference(shared, exact)
        rows.append(
            (
                label,
                "one per iteration",
                f"{cache['exact_bytes_per_token'] / 1e3:.2f}",
                _cell(exact.values(), 4),
                "—",
            )
        )
        rows.append(
            (
                label,
                "one slot",
                f"{cache['one_slot_bytes_per_token'] / 1e3:.2f}",
                _cell(shared.values(), 4),
                _diff(d, 4),
            )
        )
    return header, rows


def stability_rows(data: Mapping[str, Any]) -> tuple[list[str], list[tuple]]:
    """The high-rate arms, free and bounded: diverged runs, ||A_s||, loss at r and the
    spread of the loss over 1 .. 4r iterations."""
    header = ["injection", "diverged", "||A_s||_2", "loss at r", "worst loss, 1..4r"]
    rows = []
    r = data["profile_settings"]["n_iterations"]
    for label in ("fixed high-lr", "bounded high-lr"):
        runs = final_runs(data, label)
        ok = {s: run for s, run in runs.items() if run["status"] == "ok"}
        worst = {
            s: max(row["report_loss"] for row in run["by_iterations"])
            for s, run in ok.items()
        }
        rows.append(
            (
                "bounded" if label.startswith("bounded") else "free",
                f"{len(runs) - len(ok)} of {len(runs)}",
                _cell(
                    _values(ok, lambda run: run["injection_spectral_norm"]).values(), 2
                ),
                _cell(_values(ok, _at(r)).values()) if len(ok) > 1 else "—",
                _cell(list(worst.values())) if len(ok) > 1 else "—",
            )
        )
    return header, rows


def conversion_rows(data: Mapping[str, Any]) -> tuple[list[str], list[tuple]]:
    """Unshared models made recursive and uptrained, against the recursive model trained
    from scratch on as many tokens (and the unshared model, for reference)."""
    header = ["model", "loss after conversion", "final loss", "- cycle from scratch"]
    rows = []
    final = lambda run: run["report_loss"]  # noqa: E731
    for label in (*CONVERSIONS, "cycle scratch", "unshared"):
        runs = final_runs(data, label)
        if not runs:  # an arm added after the file was recorded
            continue
        converted = (
            _cell(_values(runs, lambda run: run["converted_loss"]).values())
            if label in CONVERSIONS
            else "—"
        )
        rows.append(
            (
                label,
                converted,
                _cell(_values(runs, final).values()),
                "—"
                if label == "cycle scratch"
                else _diff(paired(data, label, "cycle scratch", final)),
            )
        )
    return header, rows


def worst_loss(run: Mapping[str, Any]) -> float:
    """A run's highest report loss over the iteration counts it was tested at (5d)."""
    return max(row["report_loss"] for row in run["by_iterations"])


def sentence(
    data: Mapping[str, Any], subject: str, baseline: str, get: Any, what: str
) -> str:
    """``evidence.conclusion`` on a paired difference of the recorded runs."""
    d = paired(data, subject, baseline, get)
    return conclusion(d, NAMES[subject], NAMES[baseline], quantity=what, unit=UNIT)


def plot_test_time_compute(data: Mapping[str, Any]) -> Figure:
    """Report loss against forward FLOPs per token at 1 .. 4r iterations, fixed and
    random training depth (mean and 95% interval over seeds)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    r = data["profile_settings"]["n_iterations"]
    for label, colour in (("fixed", ORANGE), ("random", BLUE)):
        runs = final_runs(data, label)
        first = next(iter(runs.values()))["by_iterations"]
        x = [row["forward_flops_per_token"] / 1e6 for row in first]
        means, lows, highs = zip(
            *(
                mean_interval(_values(runs, _at(k + 1)).values())
                for k in range(len(first))
            ),
            strict=True,
        )
        ax.plot(x, means, "o-", color=colour, ms=3, label=f"{label} depth in training")
        ax.fill_between(x, lows, highs, color=colour, alpha=0.2, lw=0)
        ax.axvline(
            first[r - 1]["forward_flops_per_token"] / 1e6,
            color=DARK_GREY,
            lw=0.8,
            ls=":",
        )
    ax.set_xlabel("forward MFLOPs per token (1 .. 4r iterations at test time)")
    ax.set_ylabel(f"report loss ({LOSS_UNIT})")
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig
