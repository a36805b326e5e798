"""Tables, paired comparisons and generated sentences from a recorded experiments file
(chapters 6 and 8).

Every function takes the parsed results (``load_experiments``, or
``suite.load_results`` of a live run) and renders whatever is recorded. The file may be
partial, since ``scripts/run_experiments.py`` is resumable: an arm with no finished run
reads ``NOT_RECORDED``, a comparison with fewer paired seeds than planned says how many
it has, and a sentence claims an effect only when the paired 95% interval excludes zero
and, the comparisons of one call of ``compare_pairs`` / ``compare_to_baseline`` being
one family, the Holm-adjusted p-value within that family is below 0.05
(``evidence.conclusion``, ``evidence.holm_adjust``). Losses are in ``LOSS_UNIT`` (nats
per token), and a token is one byte.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from IPython.display import Markdown

from ..evidence import (
    PairedDifference,
    claims_effect,
    conclusion,
    format_p,
    holm_adjust,
    mean_interval,
    minimum_detectable_difference,
    paired_difference,
)
from ..experiments.recorded import load_recorded
from ..experiments.suite import (
    ALL_STRATEGIES,
    EXPERIMENTS,
    SEPARATE_EXPERIMENTS,
    SUITE_RESULTS_NAME,
    Profile,
    budget_labels,
    chosen_lrs,
    flops_curve,
    get_profile,
    load_results,
    lrs_at_grid_edge,
    plan,
    run_experiments,
    selection_loss,
    validate_results,
)
from ..models import LOSS_UNIT
from ..validation import check_choice, check_int
from .display import markdown_table

__all__ = [
    "BUDGET_EXPERIMENTS",
    "BUDGET_MEASURES",
    "COMPARISON_HEADERS",
    "NOT_RECORDED",
    "PROGRESS_HEADERS",
    "GapChange",
    "baseline_rows",
    "budget_comparisons",
    "budget_gap_changes",
    "budget_late_falls",
    "budget_rows",
    "budget_stopping_rows",
    "budget_summary",
    "budget_trend_summary",
    "bullets",
    "compare_pairs",
    "compare_to_baseline",
    "comparison_rows",
    "comparison_table",
    "detectable_sentence",
    "effect_summary",
    "equal_params_comparisons",
    "file_profile",
    "finished_runs",
    "is_recorded",
    "learned_sentence",
    "limited_comparisons",
    "limited_ngram",
    "live_profile",
    "load_experiments",
    "mean_curves",
    "metric_value",
    "overfitting_sentence",
    "plot_budget",
    "progress",
    "progress_rows",
    "provenance_line",
    "run_live",
    "sweep_curves",
    "sweep_sentences",
    "sweep_table",
    "takase_kiyono_sentences",
    "values",
]

NOT_RECORDED = "not recorded yet at this profile"

METRICS: dict[str, str] = {
    "val_loss": "validation loss",
    "best_val_loss": "best validation loss",
    "train_loss": "training loss",
    "gap": "train-validation gap",
}
# Outcome of a comparison: lower / higher (the 95% interval excludes zero and, when the
# family is corrected, the Holm-adjusted p is below 0.05), none (it spans zero, or the
# correction drops it), too few paired seeds for an interval, one of the two arms not
# recorded, or the baseline itself.
EFFECTS: tuple[str, ...] = (
    "lower",
    "higher",
    "none",
    "too few",
    "not recorded",
    "baseline",
)
PROGRESS_HEADERS = ("experiment", "finished runs", "diverged", "planned", "state")
COMPARISON_HEADERS = (
    "model",
    "parameters",
    "training FLOPs / token",
    "seeds",
    "mean (95% CI)",
    "paired difference (95% CI)",
)


# ----------------------------------------------------------------------------- the file
def load_experiments(
    path: str | Path | None = None, profile: str | None = None
) -> dict[str, Any]:
    """The experiments file at ``path``, or the best recorded profile's (gpu > cpu, or
    ``profile``), validated.

    ``"profile"`` and ``"path"`` are added as ``recorded.load_recorded`` does.
    """
    if path is None:
        data = load_recorded(SUITE_RESULTS_NAME, profile)
        validate_results(data)
        return data
    data = load_results(path)
    return {
        **data,
        "profile": data.get("profile") or Path(path).name.split(".")[-2],
        "path": str(path),
    }


def file_profile(data: Mapping[str, Any]) -> Profile:
    """The ``Profile`` the file was run with: its stored ``profile_settings``, else the
    named profile."""
    settings = data.get("profile_settings")
    if not settings:
        return get_profile(data.get("profile", ""))
    names = {f.name for f in dataclasses.fields(Profile)}
    return Profile(
        **{
            k: tuple(v) if isinstance(v, list) else v
            for k, v in settings.items()
            if k in names
        }
    )


def provenance_line(data: Mapping[str, Any]) -> str:
    """Which profile, command, commit, date and machine produced ``data``, and how much
    training it holds."""
    prov = data["provenance"]

    def short(commit: str) -> str:
        return commit.split("+")[0][:12] + (
            "+dirty" if commit.endswith("+dirty") else ""
        )

    by_commit = Counter(str(r.get("commit", prov["commit"])) for r in data["runs"])
    made_at = (
        f"commit `{short(next(iter(by_commit)))}`"
        if len(by_commit) == 1
        else "commits "
        + ", ".join(f"`{short(c)}` ({n} runs)" for c, n in by_commit.items())
    )
    if len(prov.get("sharedlib_hashes", [])) == 1:
        made_at += (
            f", all by the same library code (hash `{prov['sharedlib_hashes'][0]}`)"
        )
    machine = f" ({prov['machine']})" if prov.get("machine") else ""
    runs = data["runs"]
    trained = sum(1 for r in runs if not r.get("reused_from"))
    hashes = prov.get("sharedlib_hashes", [])
    code = (
        f" The runs come from {len(hashes)} versions of the library code "
        f"({', '.join(hashes)})."
        if len(hashes) > 1
        else ""
    )
    minutes = prov["wall_seconds"] / 60
    took = (
        "under a minute"
        if minutes < 1
        else f"{minutes:.0f} minute{'s' if round(minutes) != 1 else ''}"
    )
    reused = (
        "all trained"
        if trained == len(runs)
        else f"{trained} trained, the rest copied from an identical run"
    )
    return (
        f"Profile `{data.get('profile', '?')}`: written by `{prov['command']}` at "
        f"{made_at}; last on {prov['date']}, on {prov['device']}{machine}, "
        f"torch {prov['torch']}, Python {prov['python']}, {prov['threads']} "
        f"thread{'' if prov['threads'] == 1 else 's'}. "
        f"It holds {len(runs)} run{'s' if len(runs) != 1 else ''} ({reused}) from "
        f"{took} of computing.{code}"
    )


def _plan(data: Mapping[str, Any], experiment: str) -> list:
    p = file_profile(data)
    if experiment == "lr-sweep":
        return plan(p, experiment)
    # how many runs does not depend on the rates
    labels = (*ALL_STRATEGIES, *budget_labels(p))
    return plan(p, experiment, dict.fromkeys(labels, p.lrs[0]))


def planned_labels(data: Mapping[str, Any], experiment: str) -> list[str]:
    """The labels ``experiment`` has at the file's profile, in plan order."""
    return list(dict.fromkeys(spec.label for spec in _plan(data, experiment)))


def progress(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per experiment: finished and diverged runs, runs planned at the file's profile,
    and a state in words."""
    out = []
    for name in EXPERIMENTS:
        mine = [r for r in data["runs"] if r["experiment"] == name]
        ok = sum(r["status"] == "ok" for r in mine)
        planned = len(_plan(data, name))
        if not mine:
            state = NOT_RECORDED
        elif len(mine) >= planned:
            state = "complete"
        else:
            state = (
                f"partial: {len(mine)} of {planned} runs; the rest is {NOT_RECORDED}"
            )
        out.append(
            {
                "experiment": name,
                "finished": ok,
                "diverged": len(mine) - ok,
                "planned": planned,
                "state": state,
            }
        )
    for name, where in SEPARATE_EXPERIMENTS.items():
        out.append(
            {
                "experiment": name,
                "finished": 0,
                "diverged": 0,
                "planned": 0,
                "state": f"not part of this suite: {where}",
            }
        )
    return out


def progress_rows(data: Mapping[str, Any]) -> list[tuple]:
    """``progress`` as table rows (``PROGRESS_HEADERS``)."""
    return [
        (p["experiment"], p["finished"], p["diverged"], p["planned"], p["state"])
        for p in progress(data)
    ]


def is_recorded(data: Mapping[str, Any], experiment: str) -> bool:
    """True when at least one run of ``experiment`` finished."""
    return any(
        r["experiment"] == experiment and r["status"] == "ok" for r in data["runs"]
    )


# --------------------------------------------------------------------- baselines, sweep
def baseline_rows(
    data: Mapping[str, Any], live: Mapping[str, float]
) -> list[tuple[str, str, str, str]]:
    """n-gram baselines: (order, recorded in the file, computed now, whether they agree
    to 1e-9)."""
    recorded = {
        k: v
        for k, v in data.get("baselines", {}).items()
        if isinstance(v, (int, float))
        and not isinstance(v, bool)
        and k not in ("val_fraction",)
    }
    rows = []
    for name in dict.fromkeys([*live, *recorded]):
        a, b = recorded.get(name), live.get(name)
        same = (
            "yes"
            if a is not None
            and b is not None
            and math.isclose(a, b, rel_tol=0, abs_tol=1e-9)
            else ("no" if a is not None and b is not None else "-")
        )
        rows.append(
            (
                name,
                "not recorded" if a is None else f"{a:.3f}",
                "-" if b is None else f"{b:.3f}",
                same,
            )
        )
    return rows


def learned_sentence(data: Mapping[str, Any], baselines: Mapping[str, float]) -> str:
    """Where the recorded models end (final validation loss of every finished training
    run on the full training split, copies of an identical run counted once) against the
    n-gram ``baselines``: how many runs beat each, per training length when the file
    holds several."""
    runs = [
        r
        for r in data["runs"]
        if r["status"] == "ok"
        and r["kind"] == "train"
        and not r.get("split", {}).get("train_bytes")
        and not r.get("reused_from")
    ]  # each trained run once
    if not runs:
        return f"Trained models: {NOT_RECORDED}."
    by_steps: dict[int, list[float]] = {}
    for r in sorted(runs, key=lambda r: r["steps"]):
        by_steps.setdefault(int(r["steps"]), []).append(float(r["val_loss"]))

    def counts(losses: list[float]) -> str:
        return "; ".join(
            f"below the {name} ({value:.3f}): "
            f"{sum(x < value for x in losses)} of {len(losses)}"
            for name, value in baselines.items()
        )

    if len(by_steps) == 1:
        losses = next(iter(by_steps.values()))
        if len(losses) == 1:
            return (
                "The one finished training run on the full training split ends at "
                f"{losses[0]:.3f} {LOSS_UNIT}; {counts(losses)}."
            )
        return (
            f"The {len(losses)} finished training runs on the full training split "
            f"end between {min(losses):.3f} and {max(losses):.3f} {LOSS_UNIT} of "
            f"validation loss; {counts(losses)}."
        )
    parts = [
        f"the {len(losses)} of {steps:,} steps end between {min(losses):.3f} and "
        f"{max(losses):.3f} ({counts(losses)})"
        if len(losses) > 1
        else f"the one of {steps:,} steps ends at {losses[0]:.3f} ({counts(losses)})"
        for steps, losses in by_steps.items()
    ]
    return (
        f"Of the {len(runs)} finished training runs on the full training split "
        f"(validation loss in {LOSS_UNIT}), " + "; ".join(parts) + "."
    )


def sweep_table(data: Mapping[str, Any]) -> tuple[list[str], list[tuple]]:
    """Headers and rows of the learning-rate sweep: the loss each choice is made on
    (select windows) per strategy and rate, rates added beyond the grid included, and
    the chosen rate."""
    p = file_profile(data)
    runs = [r for r in data["runs"] if r["experiment"] == "lr-sweep"]
    chosen = chosen_lrs(runs, p)
    edge = set(lrs_at_grid_edge(runs, p))
    rates = sorted({float(lr) for lr in p.lrs} | {float(r["lr"]) for r in runs})
    headers = ["strategy", *[f"lr {lr:g}" for lr in rates], "chosen"]
    rows = []
    for label in p.strategies:
        mine = {float(r["lr"]): r for r in runs if r["label"] == label}
        cells = []
        for lr in rates:
            r = mine.get(lr)
            cells.append(
                "-"
                if r is None
                else "diverged"
                if r["status"] != "ok"
                else f"{selection_loss(r):.3f}"
            )
        if label in chosen:
            pick = f"{chosen[label]:g}" + (" (grid edge)" if label in edge else "")
        else:
            pick = (
                f"{len(mine)} of {len(p.lrs)} rates recorded" if mine else NOT_RECORDED
            )
        rows.append((label, *cells, pick))
    return headers, rows


def sweep_curves(data: Mapping[str, Any]) -> dict[str, dict[float, float | None]]:
    """``{strategy: {lr: loss on the select windows, or None if it diverged}}`` of the
    recorded sweep runs."""
    out: dict[str, dict[float, float | None]] = {}
    for r in data["runs"]:
        if r["experiment"] == "lr-sweep":
            out.setdefault(r["label"], {})[float(r["lr"])] = (
                selection_loss(r) if r["status"] == "ok" else None
            )
    return {label: dict(sorted(v.items())) for label, v in out.items()}


def sweep_sentences(data: Mapping[str, Any]) -> list[str]:
    """What the sweep decided and where it may be too narrow (chosen rate at the
    smallest or largest of the grid)."""
    p = file_profile(data)
    runs = [r for r in data["runs"] if r["experiment"] == "lr-sweep"]
    if not runs:
        return [f"The learning-rate sweep is {NOT_RECORDED}."]
    chosen = chosen_lrs(runs, p)
    out = []
    missing = [s for s in p.strategies if s not in chosen]
    if chosen:
        out.append(
            "Chosen rates: "
            + ", ".join(f"{s} {lr:g}" for s, lr in chosen.items())
            + "."
        )
    if missing:
        out.append(
            f"Sweep incomplete for {', '.join(missing)}: {NOT_RECORDED}, so "
            f"{'its' if len(missing) == 1 else 'their'} other experiments have not "
            "started."
        )
    widened = sorted(
        {
            r["label"]
            for r in runs
            if not any(math.isclose(float(r["lr"]), lr) for lr in p.lrs)
        },
        key=list(p.strategies).index,
    )
    if widened:
        out.append(
            f"Widened beyond the grid because the best rate sat at its edge: "
            f"{', '.join(widened)} (the extra rates are the table's last columns)."
        )
    edge = lrs_at_grid_edge(runs, p)
    for side, rate in (("smallest", min(p.lrs)), ("largest", max(p.lrs))):
        at = [label for label in edge if chosen[label] == rate]
        if at:
            which = "this strategy" if len(at) == 1 else "these strategies"
            out.append(
                f"At the {side} rate of the grid ({rate:g}): {', '.join(at)}. A wider "
                f"grid might find a better rate, so {which} may be under-tuned."
            )
    diverged = sorted(
        {(r["label"], float(r["lr"])) for r in runs if r["status"] != "ok"}
    )
    if diverged:
        out.append(
            "Diverged: " + ", ".join(f"{s} at {lr:g}" for s, lr in diverged) + "."
        )
    return out


# ------------------------------------------------------------------- paired comparisons
def metric_value(run: Mapping[str, Any], metric: str) -> float:
    """``run[metric]``; ``"gap"`` is validation minus training loss, both on fixed
    windows at the end."""
    check_choice("metric", metric, METRICS)
    if metric == "gap":
        return float(run["val_loss"]) - float(run["train_loss"])
    if run.get(metric) is None:
        raise ValueError(
            f"run {run['experiment']!r} / {run['label']!r} has no {metric!r}"
        )
    return float(run[metric])


def finished_runs(
    data: Mapping[str, Any], experiment: str, label: str
) -> list[Mapping[str, Any]]:
    """The finished runs of ``experiment`` / ``label``, in file order."""
    return [
        r
        for r in data["runs"]
        if r["experiment"] == experiment and r["label"] == label and r["status"] == "ok"
    ]


def values(
    data: Mapping[str, Any], experiment: str, label: str, metric: str = "val_loss"
) -> dict[int, float]:
    """``{seed: metric}`` of the finished runs of ``experiment`` / ``label`` (empty when
    none finished)."""
    out = {}
    for r in finished_runs(data, experiment, label):
        if r["seed"] in out:
            raise ValueError(
                f"two runs of {experiment!r} / {label!r} have seed {r['seed']}; "
                "expected one"
            )
        out[r["seed"]] = metric_value(r, metric)
    return out


@dataclass(frozen=True)
class Comparison:
    """One arm of an experiment against a baseline arm, over the seeds both have
    finished."""

    experiment: str
    label: str
    baseline: str
    metric: str
    parameters: int | None  # None when the arm has no finished run
    flops_per_token: int | None
    seeds: int  # finished seeds of the arm
    planned_seeds: int
    mean: float | None  # mean of the metric over the arm's seeds
    low: float | None  # its 95% t-interval (None below 2 seeds)
    high: float | None
    # label - baseline over the common seeds (None below 2 of them)
    difference: PairedDifference | None
    effect: str  # one of EFFECTS, after the Holm correction when there is one
    sentence: str  # generated, claims no more than ``difference`` allows
    p_value: float | None = None  # of ``difference`` (paired t test), uncorrected
    # Holm-adjusted within the family (the comparisons of one call with a difference);
    # None without a difference or when the call asked for no correction
    adjusted_p: float | None = None
    family_size: int | None = None  # comparisons in that family, None when uncorrected

    @property
    def dropped_by_correction(self) -> bool:
        """True when the interval excludes zero but the Holm correction drops it."""
        return (
            self.effect == "none"
            and self.difference is not None
            and self.difference.excludes_zero
            and self.adjusted_p is not None
        )


def _digits(difference: PairedDifference, least: int = 3) -> int:
    """Decimals that show the mean difference with two significant digits (at least
    ``least``), so that a small but real difference is not printed as 0.000."""
    size = abs(difference.mean)
    return least if size == 0 else max(least, min(8, 1 - math.floor(math.log10(size))))


def compare_pairs(
    data: Mapping[str, Any],
    experiment: str,
    pairs: Sequence[tuple[str, str]],
    metric: str = "val_loss",
    level: float = 0.95,
    correct: bool = True,
) -> list[Comparison]:
    """A ``Comparison`` of each (label, baseline) pair of ``experiment``; a pair with a
    label equal to its baseline describes the baseline itself (no difference, the
    sentence says so).

    The pairs with a paired difference (both arms recorded, at least 2 common seeds) are
    one family: with ``correct`` (the default) their p-values are Holm-adjusted together
    (``evidence.holm_adjust``), an effect needs the adjusted p below 1 - ``level`` as
    well as an interval that excludes zero, and the sentences give the adjusted p and
    the family's size. ``correct=False`` words each pair on its own.
    """
    planned = file_profile(data).seeds
    quantity = METRICS[metric] if metric in METRICS else metric
    rows = []
    for label, baseline in pairs:
        mine, base = (
            values(data, experiment, label, metric),
            values(data, experiment, baseline, metric),
        )
        run = next(iter(finished_runs(data, experiment, label)), None)
        mean = low = high = None
        if len(mine) >= 2:
            mean, low, high = mean_interval(mine.values(), level)
        elif mine:
            mean = statistics.fmean(mine.values())
        common = sorted(set(mine) & set(base))
        diff = None
        if label == baseline:
            effect = "baseline"
            sentence = (
                f"{label} is the baseline"
                if mine
                else f"{label} (the baseline): {NOT_RECORDED}"
            )
        elif not mine or not base:
            effect = "not recorded"
            missing = [x for x, v in ((label, mine), (baseline, base)) if not v]
            verb = "is" if len(missing) == 1 else "are"
            sentence = (
                f"{label} against {baseline}: {' and '.join(missing)} {verb} "
                f"{NOT_RECORDED}"
            )
        elif len(common) < 2:
            effect = "too few"
            sentence = (
                f"{label} against {baseline}: {len(common)} paired seed(s) recorded so "
                "far, too few for an interval, so no conclusion yet"
            )
        else:
            diff = paired_difference(
                {s: mine[s] for s in common}, {s: base[s] for s in common}, level
            )
            effect = sentence = ""  # once the family is known
        rows.append(
            Comparison(
                experiment,
                label,
                baseline,
                metric,
                None if run is None else run["parameters"],
                None if run is None else run["flops_per_token"],
                len(mine),
                planned,
                mean,
                low,
                high,
                diff,
                effect,
                sentence,
                None if diff is None else diff.p_value,
            )
        )
    family = [c.p_value for c in rows if c.difference is not None]
    adjusted = iter(holm_adjust(family))  # in the order of ``rows``
    out = []
    for c in rows:
        d = c.difference
        if d is None:
            out.append(c)
            continue
        adjusted_p, size = (next(adjusted), len(family)) if correct else (None, None)
        effect = (
            ("lower" if d.high < 0 else "higher")
            if claims_effect(d, adjusted_p)
            else "none"
        )
        sentence = conclusion(
            d, c.label, c.baseline, quantity, LOSS_UNIT, _digits(d), adjusted_p, size
        )
        if d.n < planned:
            sentence += f"; {d.n} of the {planned} planned seeds are recorded so far"
        out.append(
            dataclasses.replace(
                c,
                effect=effect,
                sentence=sentence,
                adjusted_p=adjusted_p,
                family_size=size,
            )
        )
    return out


def compare_to_baseline(
    data: Mapping[str, Any],
    experiment: str,
    baseline: str,
    labels: Iterable[str] | None = None,
    metric: str = "val_loss",
    level: float = 0.95,
    correct: bool = True,
) -> list[Comparison]:
    """Every label of ``experiment`` (default: all planned, baseline first) against
    ``baseline``: one family, Holm-corrected unless ``correct`` is False
    (``compare_pairs``)."""
    labels = planned_labels(data, experiment) if labels is None else list(labels)
    labels = [baseline, *[x for x in labels if x != baseline]]
    return compare_pairs(
        data,
        experiment,
        [(label, baseline) for label in labels],
        metric,
        level,
        correct,
    )


def comparison_table(comparisons: Sequence[Comparison]) -> Markdown | None:
    """The comparisons as a Markdown table (chapters 6 and 8), or ``None`` while none of
    their models has run."""
    if not any(c.seeds for c in comparisons):
        return None
    return markdown_table(COMPARISON_HEADERS, comparison_rows(comparisons))


def comparison_rows(comparisons: Iterable[Comparison], digits: int = 3) -> list[tuple]:
    """Table rows (``COMPARISON_HEADERS``) of ``comparisons``."""
    f = lambda v: f"{v:.{digits}f}"  # noqa: E731
    rows = []
    for c in comparisons:
        if c.seeds == 0:
            rows.append(
                (c.label, "-", "-", f"0 of {c.planned_seeds}", NOT_RECORDED, "-")
            )
            continue
        mean = f(c.mean) + (
            f" ({f(c.low)} to {f(c.high)})" if c.low is not None else ""
        )
        if c.label == c.baseline:
            diff = "baseline"
        elif c.difference is None:
            diff = (
                "too few paired seeds"
                if c.effect == "too few"
                else f"baseline {NOT_RECORDED}"
            )
        else:
            d, k = c.difference, _digits(c.difference, digits)
            diff = f"{d.mean:+.{k}f} ({d.low:+.{k}f} to {d.high:+.{k}f})"
        rows.append(
            (
                c.label,
                c.parameters,
                c.flops_per_token,
                f"{c.seeds} of {c.planned_seeds}",
                mean,
                diff,
            )
        )
    return rows


def bullets(comparisons: Iterable[Comparison]) -> str:
    """The generated sentences as a Markdown list (the baseline's own row left out); the
    comparisons with a side not recorded yet are gathered in one line."""
    comparisons = [c for c in comparisons if c.effect != "baseline"]
    lines = [f"- {c.sentence}." for c in comparisons if c.effect != "not recorded"]
    missing = [c for c in comparisons if c.effect == "not recorded"]
    if missing:
        quantity = METRICS.get(missing[0].metric, missing[0].metric)
        pairs = ", ".join(f"{c.label} against {c.baseline}" for c in missing)
        lines.append(f"- {quantity.capitalize()}, {pairs}: {NOT_RECORDED}.")
    return "\n".join(lines)


def effect_summary(comparisons: Iterable[Comparison], what: str) -> str:
    """One sentence counting the outcomes of ``comparisons`` (which ``what``
    describes), claiming no more: the counts are those after the Holm correction within
    the family (the sentence says so, and how many lost an effect to it) unless the
    comparisons were made with ``correct=False``."""
    rest = [c for c in comparisons if c.effect != "baseline"]
    if not rest:
        raise ValueError("comparisons must hold at least one arm besides its baseline")
    counts = {
        k: sum(c.effect == k for c in rest)
        for k in ("lower", "higher", "none", "too few", "not recorded")
    }
    if counts["not recorded"] == len(rest):
        return f"{what}: {NOT_RECORDED}"
    quantity = METRICS.get(rest[0].metric, rest[0].metric)
    n_seeds = sorted({c.difference.n for c in rest if c.difference is not None})
    seeds = (
        (f"{n_seeds[0]}" if len(n_seeds) == 1 else f"{n_seeds[0]} to {n_seeds[-1]}")
        if n_seeds
        else "no"
    )

    def verb(key: str, one: str, many: str) -> str:
        """``counts[key]`` and the verb that agrees with it."""
        return f"{counts[key]} {one if counts[key] == 1 else many}"

    parts = []
    if counts["lower"]:
        parts.append(f"{verb('lower', 'has', 'have')} a lower {quantity}")
    if counts["higher"]:
        parts.append(f"{verb('higher', 'has', 'have')} a higher {quantity}")
    if counts["none"]:
        dropped = sum(c.dropped_by_correction for c in rest)
        how_many = (
            ""
            if dropped == counts["none"] == 1
            else "all "
            if dropped == counts["none"]
            else f"{dropped} of them "
        )
        its = "its interval excludes" if dropped == 1 else "their intervals exclude"
        which = (
            f" ({how_many}because of the Holm correction: {its} zero)"
            if dropped
            else ""
        )
        parts.append(
            f"{verb('none', 'shows', 'show')} no evidence of a difference{which}"
        )
    if counts["too few"]:
        parts.append(f"{verb('too few', 'has', 'have')} too few paired seeds to say")
    if counts["not recorded"]:
        parts.append(f"{verb('not recorded', 'is', 'are')} {NOT_RECORDED}")
    baselines = sorted({c.baseline for c in rest})
    n = f"{len(rest)} comparison{'s' if len(rest) != 1 else ''}"
    sizes = sorted({c.family_size for c in rest if c.family_size is not None})
    if not sizes:
        family = ""
    elif len(sizes) > 1:
        family = "; counted after Holm correction within each family of comparisons"
    elif sizes[0] == 1:
        family = "; one comparison with an interval, so no correction was needed"
    else:
        family = (
            f"; counted after Holm correction within the {sizes[0]} comparisons"
            + (" with an interval" if sizes[0] < len(rest) else "")
        )
    return (
        f"{what}: of {n} against {' / '.join(baselines)}, "
        + ", ".join(parts)
        + f" (95% CI of the paired difference, {seeds} paired seeds{family})"
    )


# ------------------------------------------------------------------------------- curves
def mean_curves(
    data: Mapping[str, Any], experiment: str, labels: Iterable[str] | None = None
) -> dict[str, dict[str, list[float]]]:
    """Per label with finished runs: steps, training FLOPs, mean training and validation
    loss over its seeds at the evaluation points they share, and the number of seeds
    (``"seeds": [n]``)."""
    labels = planned_labels(data, experiment) if labels is None else list(labels)
    out = {}
    for label in labels:
        runs = [r for r in finished_runs(data, experiment, label) if r["kind"] != "svd"]
        if not runs:
            continue
        steps = sorted(set.intersection(*({p[0] for p in r["curve"]} for r in runs)))
        at = [{p[0]: p for p in r["curve"]} for r in runs]
        flops = dict(
            zip(
                [p[0] for p in runs[0]["curve"]],
                [f for f, _ in flops_curve(runs[0])],
                strict=True,
            )
        )
        out[label] = {
            "steps": steps,
            "flops": [flops[s] for s in steps],
            "train": [statistics.fmean(a[s][1] for a in at) for s in steps],
            "val": [statistics.fmean(a[s][2] for a in at) for s in steps],
            "seeds": [len(runs)],
        }
    return out


def overfitting_sentence(data: Mapping[str, Any], experiment: str, label: str) -> str:
    """How far ``label``'s final validation loss is above its best, averaged over seeds
    (does it overfit?)."""
    runs = finished_runs(data, experiment, label)
    if not runs:
        return f"{label}: {NOT_RECORDED}"
    rise = [r["val_loss"] - r["best_val_loss"] for r in runs]
    best_steps = sorted(r["best_val_step"] for r in runs)
    steps = runs[0]["steps"]
    where = (
        f"at step {best_steps[0]}"
        if best_steps[0] == best_steps[-1]
        else f"between steps {best_steps[0]} and {best_steps[-1]}"
    )
    if max(rise) == 0:
        return (
            f"{label} has not overfitted within {steps} steps: every seed's validation "
            f"loss is lowest at the last evaluation ({len(runs)} seeds)"
        )
    return (
        f"{label} overfits: its validation loss is lowest {where} and ends "
        f"{statistics.fmean(rise):.3f} {LOSS_UNIT} above that on average "
        f"({len(runs)} seeds, {steps} steps)"
    )


# ------------------------------------------------------------------ experiment-specific
def equal_params_comparisons(
    data: Mapping[str, Any], correct: bool = True
) -> tuple[list[Comparison], list[Comparison]]:
    """Takase & Kiyono's setting: every shared arm against the vanilla M-layer model
    (same parameters) and against the vanilla model of its own depth N (same FLOPs);
    each of the two lists is one family (``compare_pairs``)."""
    p = file_profile(data)
    m = p.n_unique
    shared = [
        label
        for label in planned_labels(data, "equal-params")
        if not label.startswith("none")
    ]
    same_params = compare_pairs(
        data,
        "equal-params",
        [(label, f"none N={m}") for label in shared],
        correct=correct,
    )
    same_flops = compare_pairs(
        data,
        "equal-params",
        [(label, f"none N={label.rsplit('N=', 1)[1]}") for label in shared],
        correct=correct,
    )
    return same_params, same_flops


def takase_kiyono_sentences(data: Mapping[str, Any], correct: bool = True) -> list[str]:
    """The paper's two findings at equal parameters, each set against what the recorded
    runs show (each finding's comparisons one Holm-corrected family unless
    ``correct`` is False)."""
    same_params, _ = equal_params_comparisons(data, correct)
    if all(c.effect == "not recorded" for c in same_params):
        return [
            f"The equal-parameter experiment is {NOT_RECORDED}, so neither finding is "
            "tested here yet"
        ]
    better = [c.label for c in same_params if c.effect == "lower"]
    corrected = _holm_clause(same_params)
    first = (
        "Takase & Kiyono report that M blocks applied N > M times beat the vanilla "
        f"M-layer model. Here {len(better)} of {len(same_params)} shared orders "
        f"{'has' if len(better) == 1 else 'have'} a lower validation loss than it with "
        f"a 95% interval that excludes zero{corrected}"
        + (f" ({', '.join(better)})" if better else "")
    )
    p = file_profile(data)
    n = 2 * p.n_unique
    orders = compare_pairs(
        data,
        "equal-params",
        [
            (f"{s} M={p.n_unique} N={n}", f"sequence M={p.n_unique} N={n}")
            for s in ("cycle", "cycle-rev")
        ],
        correct=correct,
    )
    lower = [c.label for c in orders if c.effect == "lower"]
    second = (
        "Their own table has no order best at every depth: at N = 2M the three are "
        "within about a tenth of a BLEU point, and cycle and cycle-rev lead only at "
        "N = 3M. Here "
        f"{len(lower)} of the two have a lower validation loss than sequence with an "
        f"interval that excludes zero{_holm_clause(orders)}: "
        + "; ".join(c.sentence for c in orders)
    )
    return [first, second]


def _holm_clause(comparisons: Sequence[Comparison]) -> str:
    """The words that say an effect passed the Holm correction too (" and a
    Holm-adjusted p below 0.05 within these m comparisons"), or "" when the comparisons
    hold no corrected family (or a family of one)."""
    sizes = sorted({c.family_size for c in comparisons if c.family_size is not None})
    if not sizes or sizes == [1]:
        return ""
    level = next(c.difference.level for c in comparisons if c.family_size)
    within = (
        f"within these {sizes[0]} comparisons"
        if len(sizes) == 1
        else "within its family"
    )
    return f" and a Holm-adjusted p below {1 - level:.2g} {within}"


# ------------------------------------------------------------------------ live "try it"
def live_profile(
    profile: str | Profile = "ci",
    strategies: Sequence[str] | None = None,
    steps: int | None = None,
    seeds: int | None = None,
    device: str | None = None,
) -> Profile:
    """``profile`` cut down for a live run in a notebook: fewer strategies
    (``limited_strategies`` and the sweep follow), fewer steps (full and limited-data
    runs alike) or seeds, another device."""
    p = get_profile(profile)
    changes: dict[str, Any] = {}
    if strategies is not None:
        strategies = tuple(strategies)
        if "none" not in strategies:
            raise ValueError(
                f"strategies must include the baseline 'none', got {strategies}"
            )
        changes.update(
            strategies=strategies,
            limited_strategies=tuple(s for s in p.limited_strategies if s in strategies)
            or ("none",),
        )
    if steps is not None:
        steps = check_int("steps", steps)
        changes.update(
            steps=steps,
            limited_steps=steps,
            eval_every=min(p.eval_every, steps),
            limited_eval_every=min(p.limited_eval_every, steps),
        )
    if seeds is not None:
        changes["seeds"] = seeds
    if device is not None:
        changes["device"] = device
    return dataclasses.replace(p, **changes)  # Profile.__post_init__ checks the result


def run_live(profile: Profile, experiments: Sequence[str]) -> dict[str, Any]:
    """Run ``experiments`` (and the sweep they need) at ``profile`` in a temporary
    folder and return the results, shaped like a recorded file (chapters 6 and 8,
    "try it")."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        command = f"sharedlib.book.report.run_live({list(experiments)})"
        path = run_experiments(profile, experiments, folder, command=command)
        return load_experiments(path)


# ------------------------------------------------------------------ budgets and widths
def _budget_pairs(data: Mapping[str, Any]) -> list[tuple[str, str, int, int]]:
    """(all label, none label, width, steps) of each budget-width cell."""
    p = file_profile(data)
    return [
        (f"all H={h} S={p.steps * k}", f"none H={h} S={p.steps * k}", h, p.steps * k)
        for h in p.budget_widths
        for k in p.budget_multipliers
    ]


BUDGET_EXPERIMENTS = ("budget-width", "budget-stopped")


def budget_comparisons(
    data: Mapping[str, Any],
    metric: str = "val_loss",
    experiment: str = "budget-width",
) -> list[Comparison]:
    """``all`` against ``none`` in every width x budget cell of ``experiment`` (rates
    chosen at the last step, or at the best one) on ``metric``, one Holm family
    (chapter 6)."""
    check_choice("experiment", experiment, BUDGET_EXPERIMENTS)
    pairs = [(a, n) for a, n, _, _ in _budget_pairs(data)]
    return compare_pairs(data, experiment, pairs, metric=metric)


def _difference_cell(c: Comparison) -> str:
    """``+0.094 [+0.074, +0.115], p_adj < 0.001`` or a dash without a difference."""
    d = c.difference
    if d is None:
        return "—"
    p = "" if c.adjusted_p is None else f", p_adj {format_p(c.adjusted_p, 1 - d.level)}"
    return f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]{p}"


def _mean_cell(v: Mapping[Any, float]) -> str:
    """Mean and 95% interval over seeds, one value alone, or not recorded."""
    if len(v) >= 2:
        mean, low, high = mean_interval(v.values())
        return f"{mean:.3f} [{low:.3f}, {high:.3f}]"
    return NOT_RECORDED if not v else f"{next(iter(v.values())):.3f}"


def budget_rows(data: Mapping[str, Any]) -> tuple[list[str], list[tuple]]:
    """Per cell: width, steps, both models' chosen learning rate, report loss at the
    last step and their paired difference."""
    header = ["width", "steps", "lr none, all", "none", "all", "all - none (Holm)"]
    chosen = chosen_lrs(data["runs"], file_profile(data))
    rows = []
    for (a, n, h, steps), c in zip(
        _budget_pairs(data), budget_comparisons(data), strict=True
    ):
        cells = [_mean_cell(values(data, "budget-width", label)) for label in (n, a)]
        rates = ", ".join(f"{chosen[x]:g}" if x in chosen else "—" for x in (n, a))
        rows.append((h, f"{steps:,}", rates, *cells, _difference_cell(c)))
    return header, rows


def budget_stopping_rows(data: Mapping[str, Any]) -> tuple[list[str], list[tuple]]:
    """Per cell of ``budget-stopped`` (rates chosen at each sweep run's best step):
    the rates, each model's best step (range over seeds), its report loss there and
    the paired difference ``all - none`` (chapter 6)."""
    header = [
        "width",
        "steps",
        "lr none, all",
        "best step none",
        "best step all",
        "none",
        "all",
        "all - none (Holm)",
    ]
    chosen = chosen_lrs(data["runs"], file_profile(data), "best")
    comparisons = budget_comparisons(data, "best_val_loss", "budget-stopped")
    rows = []
    for (a, n, h, steps), c in zip(_budget_pairs(data), comparisons, strict=True):
        best = []
        for label in (n, a):
            found = sorted(
                int(r["best_val_step"])
                for r in finished_runs(data, "budget-stopped", label)
            )
            best.append(
                "—"
                if not found
                else f"{found[0]:,}"
                if found[0] == found[-1]
                else f"{found[0]:,}–{found[-1]:,}"
            )
        losses = [
            _mean_cell(values(data, "budget-stopped", x, "best_val_loss"))
            for x in (n, a)
        ]
        rates = ", ".join(f"{chosen[x]:g}" if x in chosen else "—" for x in (n, a))
        rows.append((h, f"{steps:,}", rates, *best, *losses, _difference_cell(c)))
    return header, rows


def _listed(items: Sequence[str], last: str = " and ") -> str:
    """``"a, b and c"``: ``items`` in words, ``last`` before the final one."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + last + items[-1]


# (experiment, metric, how the summary names it): the last step, the best step, the gap
BUDGET_MEASURES: tuple[tuple[str, str, str], ...] = (
    ("budget-width", "val_loss", "at the last step, all's validation loss is"),
    (
        "budget-stopped",
        "best_val_loss",
        "stopped at each run's best step (rates chosen for it), it is",
    ),
    ("budget-width", "gap", "its train-validation gap at the last step is"),
)


def budget_summary(data: Mapping[str, Any], what: str) -> str:
    """One sentence naming, for each of ``BUDGET_MEASURES``, the cells where ``all`` is
    higher, lower or not shown to differ from ``none`` (chapter 6, FAQ)."""
    pairs = _budget_pairs(data)
    parts, seeds = [], set()
    for experiment, metric, lead in BUDGET_MEASURES:
        groups: dict[str, list[str]] = {}
        comparisons = budget_comparisons(data, metric, experiment)
        for (_, _, h, steps), c in zip(pairs, comparisons, strict=True):
            groups.setdefault(c.effect, []).append(f"{h} x {steps:,}")
            if c.difference is not None:
                seeds.add(c.difference.n)
        said = []
        for effect, phrase in (
            ("higher", "higher"),
            ("lower", "lower"),
            ("none", "not shown to differ"),
            ("too few", "short of paired seeds"),
            ("not recorded", NOT_RECORDED),
        ):
            cells = groups.get(effect, [])
            if len(cells) == len(pairs) > 1:
                said.append(f"{phrase} in all {len(pairs)} cells")
            elif cells:
                said.append(f"{phrase} at {_listed(cells)}")
        parts.append(f"{lead} {_listed(said, ', and ')}")
    if not seeds:
        return f"{what}: {NOT_RECORDED}"
    n = f"{min(seeds)}" if len(seeds) == 1 else f"{min(seeds)} to {max(seeds)}"
    return (
        f"{what}, all against none in each width x steps cell ({n} paired seeds, 95% "
        f"CI, Holm over the {len(pairs)} cells of each measure): " + "; ".join(parts)
    )


@dataclass(frozen=True)
class GapChange:
    """The change of the gap ``all - none`` between two budget-width cells, paired over
    seeds, with its Holm-adjusted p-value over the family of such changes."""

    where: str  # "at width 64" or "at 1,200 steps"
    change: str  # "from 1,200 to 4,800 steps" or "from width 64 to 128"
    difference: PairedDifference
    adjusted_p: float
    family_size: int

    @property
    def verdict(self) -> str:
        if not claims_effect(self.difference, self.adjusted_p):
            return "shows no evidence of a change"
        return "rises" if self.difference.mean > 0 else "falls"


def budget_gap_changes(
    data: Mapping[str, Any],
    metric: str = "val_loss",
    experiment: str = "budget-width",
) -> list[GapChange]:
    """Does the gap ``all - none`` in ``metric`` change with the budget (at each width)
    or with the width (at each budget)? Each pair of cells paired over the seeds both
    have, Holm over the pairs (chapter 6)."""
    check_choice("experiment", experiment, BUDGET_EXPERIMENTS)
    p = file_profile(data)

    def gaps(h: int, k: int) -> dict[Any, float]:
        a = values(data, experiment, f"all H={h} S={p.steps * k}", metric)
        n = values(data, experiment, f"none H={h} S={p.steps * k}", metric)
        return {s: a[s] - n[s] for s in a.keys() & n.keys()}

    widths, budgets = p.budget_widths, p.budget_multipliers
    pairs = [
        (f"at width {h}", (h, budgets[-1]), (h, budgets[0]), "budget")
        for h in widths
        if len(budgets) > 1
    ] + [
        (f"at {p.steps * k:,} steps", (widths[-1], k), (widths[0], k), "width")
        for k in budgets
        if len(widths) > 1
    ]
    found = []
    for where, late, early, what in pairs:
        a, b = gaps(*late), gaps(*early)
        common = a.keys() & b.keys()
        if len(common) >= 2:
            d = paired_difference({s: a[s] for s in common}, {s: b[s] for s in common})
            change = (
                f"from {p.steps * early[1]:,} to {p.steps * late[1]:,} steps"
                if what == "budget"
                else f"from width {early[0]} to {late[0]}"
            )
            found.append((where, change, d))
    adjusted = holm_adjust([d.p_value for *_, d in found]) if found else []
    return [
        GapChange(where, change, d, adj, len(found))
        for (where, change, d), adj in zip(found, adjusted, strict=True)
    ]


def budget_trends(
    data: Mapping[str, Any],
    metric: str = "val_loss",
    experiment: str = "budget-width",
) -> list[str]:
    """One sentence per ``budget_gap_changes`` entry (chapter 6)."""
    changes = budget_gap_changes(data, metric, experiment)
    if not changes:
        return [f"How the gap changes with budget and width: {NOT_RECORDED}"]
    gap = "the loss gap" if metric == "val_loss" else f"the gap in {METRICS[metric]}"
    return [
        f"{c.where}, {gap} all - none {c.verdict} {c.change}: "
        f"{c.difference.mean:+.3f} {LOSS_UNIT} (95% CI {c.difference.low:+.3f} to "
        f"{c.difference.high:+.3f}, {c.difference.n} paired seeds, Holm-adjusted p "
        f"{format_p(c.adjusted_p, 1 - c.difference.level)} over {c.family_size} "
        "comparisons)"
        for c in changes
    ]


def budget_trend_summary(data: Mapping[str, Any]) -> str:
    """For the FAQ: where the gap ``all - none`` at the last step moves with budget or
    width, and how many changes show no evidence; then the same count for the gap at
    each run's best step (chapter 6)."""
    return _last_step_trends(data) + _best_step_trends(data)


def _best_step_trends(data: Mapping[str, Any]) -> str:
    """``". With each run stopped at its best step, the gap falls in 4 of the 4
    comparisons (Holm over 4)"`` (``budget-stopped``), or nothing when not recorded."""
    changes = budget_gap_changes(data, "best_val_loss", "budget-stopped")
    if not changes:
        return ""
    counts = Counter(c.verdict for c in changes)
    said = [
        f"{verdict} in {counts[verdict]}"
        for verdict in ("falls", "rises", "shows no evidence of a change")
        if counts[verdict]
    ]
    body = _listed(said)
    return (
        ". With each run stopped at its best step (rates chosen for it), the "
        f"gap {body} of the {len(changes)} comparisons (Holm over {len(changes)})"
    )


def _last_step_trends(data: Mapping[str, Any]) -> str:
    """The last-step half of ``budget_trend_summary``."""
    changes = budget_gap_changes(data)
    if not changes:
        return f"How the gap all - none changes with budget and width: {NOT_RECORDED}"
    moved = [c for c in changes if c.verdict != "shows no evidence of a change"]
    parts = [
        f"{c.verdict} {c.change} {c.where} ({c.difference.mean:+.3f} {LOSS_UNIT}, 95% "
        f"CI {c.difference.low:+.3f} to {c.difference.high:+.3f})"
        for c in moved
    ]
    rest = len(changes) - len(moved)
    if parts and rest:
        parts.append(
            f"shows no evidence of a change in the other {rest} "
            + ("comparison" if rest == 1 else "comparisons")
        )
    elif not parts:
        parts.append(
            f"shows no evidence of a change in any of the {len(changes)} comparisons"
        )
    body = parts[0]
    if len(parts) > 1:
        body = "; it ".join(parts[:-1]) + "; and it " + parts[-1]
    return (
        f"At the last step, the gap all - none {body} (paired over seeds, Holm over "
        f"{len(changes)})"
    )


def budget_late_falls(data: Mapping[str, Any]) -> list[str]:
    """How much each budget-width cell's report loss still falls over its last
    evaluation interval (a sixth of the run at the recorded profiles): mean over seeds
    and 95% interval, ``none`` then ``all`` (is the longer budget nearer a plateau?
    chapter 6)."""
    out = []
    for a, n, h, steps in _budget_pairs(data):
        curves = {
            label: [
                r["curve"]
                for r in finished_runs(data, "budget-width", label)
                if len(r["curve"]) >= 2
            ]
            for label in (n, a)
        }
        parts = []
        for label, found in curves.items():
            name = label.split()[0]
            if len(found) < 2:
                parts.append(f"{name} {NOT_RECORDED}")
                continue
            mean, low, high = mean_interval(c[-2][2] - c[-1][2] for c in found)
            parts.append(f"{name} {mean:+.3f} [{low:+.3f}, {high:+.3f}]")
        first = next((c for found in curves.values() for c in found), None)
        span = first[-1][0] - first[-2][0] if first else None
        last = f"the last {span:,} steps" if span else "the last interval"
        out.append(
            f"width {h}, {steps:,} steps: fall of the report loss over {last} "
            f"({LOSS_UNIT}, positive while it still falls): " + "; ".join(parts)
        )
    return out


def detectable_sentence(comparison: Comparison, power: float = 0.8) -> str:
    """What a comparison that found no difference could have found: the smallest true
    difference its seeds detect with probability ``power`` (chapter 8)."""
    d = comparison.difference
    if d is None:
        return f"{comparison.label}: {NOT_RECORDED}"
    mdd = minimum_detectable_difference(d, power)
    return (
        f"with {d.n} paired seeds and the spread they show, a true difference of "
        f"{mdd:.3f} {LOSS_UNIT} between {comparison.label} and {comparison.baseline} "
        f"would be detected {power:.0%} of the time by a paired t test at the "
        f"{1 - d.level:.0%} level, before any correction for multiple comparisons; "
        "smaller ones could go unseen"
    )


def plot_budget(data: Mapping[str, Any]) -> Any:
    """Report loss against training FLOPs and against parameters, none and all at every
    width and budget (mean and 95% interval over seeds)."""
    import matplotlib.pyplot as plt

    from .plots import BLUE, ORANGE

    fig, (by_flops, by_params) = plt.subplots(1, 2, figsize=(8.8, 3.4), sharey=True)
    for strategy, colour in (("none", ORANGE), ("all", BLUE)):
        points = []
        for a, n, h, steps in _budget_pairs(data):
            label = a if strategy == "all" else n
            runs = finished_runs(data, "budget-width", label)
            if len(runs) < 2:
                continue
            mean, low, high = mean_interval(r["val_loss"] for r in runs)
            flops = runs[0]["flops_per_token"] * runs[0]["tokens"]
            points.append((flops, runs[0]["parameters"], mean, low, high, h, steps))
        for ax, x in ((by_flops, 0), (by_params, 1)):
            for point in points:
                ax.errorbar(
                    point[x],
                    point[2],
                    yerr=[[point[2] - point[3]], [point[4] - point[2]]],
                    fmt="o" if point[6] == min(q[6] for q in points) else "s",
                    color=colour,
                    ms=4,
                    capsize=2,
                )
        by_flops.plot([], [], "o", color=colour, label=strategy)
    by_flops.plot([], [], "o", color="grey", label="shortest budget")
    by_flops.plot([], [], "s", color="grey", label="longest budget")
    for ax, name in ((by_flops, "training FLOPs"), (by_params, "parameters")):
        ax.set_xscale("log")
        ax.set_xlabel(name)
    by_flops.set_ylabel(f"report loss ({LOSS_UNIT})")
    by_flops.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------ limited data
LIMITED_CONTROLS: tuple[str, ...] = (
    "none",
    "none N=1",
    "none dropout=0.1",
    "none wd=0.1",
)


def limited_comparisons(
    data: Mapping[str, Any], metric: str = "best_val_loss"
) -> list[Comparison]:
    """``all`` on the small slice against the unshared model and its three controls
    (equal parameters, dropout, weight decay), one Holm family (chapter 6)."""
    planned = planned_labels(data, "limited-data")
    pairs = [("all", label) for label in LIMITED_CONTROLS if label in planned]
    return compare_pairs(data, "limited-data", pairs, metric)


def limited_ngram(data: Mapping[str, Any]) -> tuple[str, float] | None:
    """The best Kneser-Ney n-gram fitted on the slice itself, scored on the report
    windows: (order, loss), or None when the file has none (first edition)."""
    slice_baselines = data.get("baselines", {}).get("limited-data")
    if not slice_baselines:
        return None
    kn = slice_baselines["kneser-ney"]
    order = min(kn, key=kn.get)
    return order, kn[order]
