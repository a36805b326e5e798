"""Tables, comparisons, sentences and the figure of the recorded pointer-hops experiment
(chapter 6).

Everything here reads a results file of ``sharedlib.experiments.hops``
(``notebooks/results/hops.<profile>.json``); nothing is trained. Accuracies are in
percent of the scored positions whose root bit is right (chance: 50%); "trained" is the
test set of 0 .. L hops, "beyond" the one of L+1 .. 2L hops. Comparisons are paired over
seeds (``evidence.paired_difference``) and Holm-corrected within the family that one
sentence summarises; a sentence claims an effect only when both allow it. The figure's
colours come from the book's palette in ``plots``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from ..evidence import (
    PairedDifference,
    claims_effect,
    conclusion,
    format_p,
    holm_adjust,
    mean_interval,
    paired_difference,
)
from ..experiments.hops import EXPERIMENT, arm_label, chosen_lr
from .plots import BLUE, DARK_GREY, GREEN, LIGHT_GREY, ORANGE

__all__ = [
    "COMPARISON_HEADERS",
    "Comparison",
    "accuracy_by_seed",
    "best_depth",
    "check_hops_file",
    "comparison_rows",
    "compute_rows",
    "compute_sentence",
    "deeper_vs_trained",
    "final_runs",
    "headline",
    "hop_counts",
    "hops_rows",
    "iteration_curves",
    "labels",
    "looped_labels",
    "mean_accuracy",
    "plot_iterations_by_hops",
    "pointer_rows",
    "pointers_equivalent",
    "settings",
    "settings_line",
    "shortcut_accuracy",
    "summary",
    "sweep_rows",
    "trained_depth",
    "versus_shortcut",
    "versus_unshared",
]

# unshared, looped, looped / random depth: the arms of ``HopsProfile.arms``
UNSHARED = arm_label("none", "fixed")
COLOURS: dict[str, str] = {
    UNSHARED: BLUE,
    arm_label("all", "fixed"): ORANGE,
    arm_label("all", "random"): GREEN,
}
COMPARISON_HEADERS: list[str] = [
    "family",
    "comparison",
    "mean difference (points)",
    "95% CI",
    "p",
    "Holm p",
    "effect claimed",
]
# compute counts as matched when the training FLOPs differ by less than this share
MATCHED_SHARE = 0.01


# ------------------------------------------------------------------------- the file
def check_hops_file(data: Mapping[str, Any]) -> None:
    """``ValueError`` unless ``data`` is a pointer-hops results file with finished runs
    (chapter 6)."""
    where = data.get("path", "the data") if isinstance(data, Mapping) else "the data"
    if not isinstance(data, Mapping):
        raise ValueError(f"expected a pointer-hops results file, got {type(data)}")
    missing = [k for k in ("profile_settings", "baselines", "runs") if k not in data]
    if missing:
        raise ValueError(
            f"{where} is not a pointer-hops result (sharedlib.experiments.hops): it "
            f"lacks {missing}"
        )
    other = sorted({str(r.get("experiment")) for r in data["runs"]} - {EXPERIMENT})
    if other:
        raise ValueError(
            f"{where} is not a pointer-hops result: it holds runs of {other}, "
            f"expected only {EXPERIMENT!r}"
        )
    if "train_hops" not in data["profile_settings"]:
        raise ValueError(f"{where}: its profile settings have no 'train_hops'")
    if not any(r.get("status") == "ok" for r in data["runs"]):
        raise ValueError(f"{where} holds no finished run of {EXPERIMENT!r}")


def settings(data: Mapping[str, Any]) -> dict[str, Any]:
    """The profile settings the file was recorded with (checked to be a hops file);
    chapter 6."""
    check_hops_file(data)
    return dict(data["profile_settings"])


def trained_depth(data: Mapping[str, Any]) -> int:
    """N: the unshared model's layers and the looped models' training iterations
    (chapter 6)."""
    return int(settings(data)["n_layers"])


def hop_counts(data: Mapping[str, Any]) -> dict[str, list[int]]:
    """The hop counts scored in each test set: ``{"trained": [0 .. L], "beyond":
    [L+1 .. 2L]}`` (chapter 6)."""
    L = int(settings(data)["train_hops"])
    return {"trained": list(range(L + 1)), "beyond": list(range(L + 1, 2 * L + 1))}


def settings_line(data: Mapping[str, Any]) -> str:
    """The sizes of the recorded runs in one sentence (chapter 6)."""
    s = settings(data)
    ks = s["test_iterations"]
    return (
        f"Sizes: width {s['d_model']}, {s['n_heads']} heads, FFN width {s['d_ff']}, "
        f"N = {s['n_layers']} layers (the looped models: one block run N times), "
        f"{s['position']} positions; sequences of {s['length']} positions whose "
        f"pointers reach 1 to {s['max_offset']} positions back; training chains of 0 "
        f"to L = {s['train_hops']} hops, {s['steps']:,} steps of {s['batch_size']} "
        f"sequences; {s['seeds']} seeds per model; two fixed test sets of "
        f"{s['test_examples']:,} sequences (0 to {s['train_hops']} hops, and "
        f"{s['train_hops'] + 1} to {2 * s['train_hops']}); looped models tested at "
        f"{ks[0]} to {ks[-1]} iterations."
    )


def labels(data: Mapping[str, Any]) -> list[str]:
    """Arm labels in recorded order (chapter 6)."""
    check_hops_file(data)
    return list(dict.fromkeys(r["label"] for r in data["runs"]))


def final_runs(data: Mapping[str, Any], label: str) -> list[Mapping[str, Any]]:
    """The finished runs of ``label`` at its chosen learning rate, one per seed
    (chapter 6)."""
    lr = chosen_lr(data["runs"], label)
    runs = sorted(
        (
            r
            for r in data["runs"]
            if r["label"] == label and r["status"] == "ok" and r["lr"] == lr
        ),
        key=lambda r: r["seed"],
    )
    if not runs:
        raise ValueError(f"no finished run of {label!r} at its chosen learning rate")
    return runs


def looped_labels(data: Mapping[str, Any]) -> list[str]:
    """The arms with one looped block, in recorded order (chapter 6)."""
    return [
        label
        for label in labels(data)
        if final_runs(data, label)[0]["strategy"] == "all"
    ]


def _test(run: Mapping[str, Any], test_set: str, iterations: int) -> Mapping[str, Any]:
    rows = [
        t
        for t in run["tests"]
        if t["test_set"] == test_set and t["iterations"] == iterations
    ]
    if len(rows) != 1:
        raise ValueError(
            f"{run['label']!r} seed {run['seed']} has no {test_set!r} test at "
            f"{iterations} iterations"
        )
    return rows[0]


def accuracy_by_seed(
    data: Mapping[str, Any],
    label: str,
    test_set: str = "beyond",
    iterations: int | None = None,
    hops: int | None = None,
) -> dict[int, float]:
    """``{seed: percent}`` of ``label`` on ``test_set`` at ``iterations`` (default: the
    trained depth N), over all its scored positions or those of ``hops`` hops
    (chapter 6)."""
    k = trained_depth(data) if iterations is None else iterations
    out = {}
    for run in final_runs(data, label):
        row = _test(run, test_set, k)
        if hops is None:
            out[run["seed"]] = 100.0 * row["accuracy"]
            continue
        at = [h for h in row["by_hops"] if h["hops"] == hops]
        if not at:
            raise ValueError(
                f"the {test_set!r} test set has no position of {hops} hops"
            )
        out[run["seed"]] = 100.0 * at[0]["accuracy"]
    return out


def mean_accuracy(
    data: Mapping[str, Any],
    label: str,
    test_set: str = "beyond",
    iterations: int | None = None,
    hops: int | None = None,
) -> float:
    """Mean over seeds of ``accuracy_by_seed`` (percent); chapter 6."""
    values = accuracy_by_seed(data, label, test_set, iterations, hops)
    return sum(values.values()) / len(values)


def _interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and 95% t interval, the mean three times for a single seed."""
    values = list(values)
    return mean_interval(values) if len(values) > 1 else (values[0],) * 3


def _cell(mean: float, low: float, high: float) -> str:
    return f"{mean:.1f} [{max(low, 0.0):.1f}, {min(high, 100.0):.1f}]"


def shortcut_accuracy(
    data: Mapping[str, Any], test_set: str, steps: int, hops: int | None = None
) -> float:
    """Percent right of ``hops.ancestor_guess`` after ``steps`` pointers (follow them,
    then take the nearest root's bit) on ``test_set``, all positions or those of
    ``hops`` hops (chapter 6)."""
    check_hops_file(data)
    rows = data["baselines"]["ancestor_guess"][test_set]
    row = next((r for r in rows if r["steps"] == steps), None)
    if row is None:
        raise ValueError(f"no shortcut reference after {steps} pointers")
    by_hops = [h for h in row["by_hops"] if hops is None or h["hops"] == hops]
    if not by_hops:
        raise ValueError(f"the {test_set!r} test set has no position of {hops} hops")
    total = sum(h["positions"] for h in by_hops)
    return 100.0 * sum(h["accuracy"] * h["positions"] for h in by_hops) / total


def pointers_equivalent(
    data: Mapping[str, Any],
    label: str,
    test_set: str = "beyond",
    iterations: int | None = None,
) -> float | None:
    """How many pointers the shortcut of ``shortcut_accuracy`` must follow to be as
    accurate on ``test_set`` as ``label`` at ``iterations`` (mean over seeds; linear
    between whole pointers), or None outside the shortcut's range (chapter 6).

    A reading of accuracy, not of mechanism: a model that follows one pointer per
    iteration scores about k at k iterations, one that doubles pointers about 2^k.
    """
    accuracy = mean_accuracy(data, label, test_set, iterations)
    rows = data["baselines"]["ancestor_guess"][test_set]
    steps = sorted(r["steps"] for r in rows)
    guess = [shortcut_accuracy(data, test_set, k) for k in steps]
    if accuracy < guess[0] or accuracy > guess[-1]:
        return None
    for i, (k, value) in enumerate(zip(steps, guess, strict=True)):
        if value >= accuracy:
            if i == 0 or value == guess[i - 1]:
                return float(k)
            share = (accuracy - guess[i - 1]) / (value - guess[i - 1])
            return steps[i - 1] + share * (k - steps[i - 1])
    return float(steps[-1])  # not reached: accuracy <= guess[-1]


def pointer_rows(data: Mapping[str, Any]) -> tuple[list[str], list[tuple]]:
    """Per arm, at 1, 2, N, 2N and 4N iterations (the unshared model at N only): the
    pointers' worth of its accuracy beyond the trained hops (``pointers_equivalent``;
    "-" where it is below the nearest-root guess or not run); chapter 6."""
    depth = trained_depth(data)
    tested = settings(data)["test_iterations"]
    ks = [k for k in dict.fromkeys((1, 2, depth, 2 * depth, 4 * depth)) if k in tested]
    header = ["model", *[f"k = {k}" for k in ks]]
    looped = looped_labels(data)
    rows = []
    for label in labels(data):
        cells = []
        for k in ks:
            if label not in looped and k != depth:
                cells.append("-")
                continue
            value = pointers_equivalent(data, label, "beyond", k)
            cells.append("-" if value is None else f"{value:.1f}")
        rows.append((label, *cells))
    return header, rows


# ----------------------------------------------------------------------------- tables
def sweep_rows(data: Mapping[str, Any]) -> tuple[list[str], list[tuple]]:
    """The seed-0 learning-rate sweep: selection-set loss (nats per token, a token being
    one position's answer) per arm and rate, the chosen rate marked (chapter 6)."""
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
                mark = " *" if lr == chosen else ""
                cells.append(f"{run['select_loss']:.2e}{mark}")
        rows.append((label, *cells))
    return header, rows


def hops_rows(data: Mapping[str, Any]) -> tuple[list[str], list[tuple]]:
    """Header and rows: per hop count (then each test set as a whole), the positions
    scored, every arm's mean accuracy [95% CI over seeds] at its trained depth N, and
    the shortcut that follows N pointers (chapter 6)."""
    depth = trained_depth(data)
    arms = labels(data)
    header = [
        "hops",
        "test set",
        "positions",
        *[f"{label} (N = {depth})" for label in arms],
        f"follow {depth} pointers, then nearest root",
    ]
    first = final_runs(data, arms[0])[0]
    rows = []
    for test_set, counts in hop_counts(data).items():
        tested = _test(first, test_set, depth)["by_hops"]
        positions = {h["hops"]: h["positions"] for h in tested}
        for h in [*counts, None]:
            cells = [
                _cell(
                    *_interval(
                        list(accuracy_by_seed(data, a, test_set, None, h).values())
                    )
                )
                for a in arms
            ]
            rows.append(
                (
                    f"{counts[0]}-{counts[-1]} (all)" if h is None else str(h),
                    test_set,
                    sum(positions.values()) if h is None else positions[h],
                    *cells,
                    f"{shortcut_accuracy(data, test_set, depth, h):.1f}",
                )
            )
    return header, rows


def iteration_curves(
    data: Mapping[str, Any], test_set: str = "beyond", hops: int | None = None
) -> dict[str, dict[int, tuple[float, float, float]]]:
    """For every looped arm: ``{iterations: (mean, low, high)}`` accuracy in percent
    on ``test_set`` (all positions or ``hops`` hops) at every test iteration count
    (chapter 6)."""
    out = {}
    for label in looped_labels(data):
        out[label] = {
            k: _interval(
                list(accuracy_by_seed(data, label, test_set, k, hops).values())
            )
            for k in settings(data)["test_iterations"]
        }
    return out


def compute_rows(data: Mapping[str, Any]) -> tuple[list[str], list[tuple]]:
    """Per arm: parameters, iterations per training step (mean over steps and seeds),
    training FLOPs per token and in all (mean over seeds), and the ratio to the
    unshared model's (chapter 6)."""
    header = [
        "model",
        "parameters",
        "iterations per step (mean)",
        "training FLOPs per token",
        "training FLOPs",
        "vs unshared",
    ]
    base = _mean_flops(data, UNSHARED)
    rows = []
    for label in labels(data):
        runs = final_runs(data, label)
        iterations = sum(r["mean_iterations"] for r in runs) / len(runs)
        per_token = sum(r["flops_per_token"] for r in runs) / len(runs)
        flops = _mean_flops(data, label)
        rows.append(
            (
                label,
                runs[0]["parameters"],
                f"{iterations:.3f}",
                f"{per_token:,.0f}",
                f"{flops:.3e}",
                f"{flops / base:.3f}",
            )
        )
    return header, rows


def _mean_flops(data: Mapping[str, Any], label: str) -> float:
    runs = final_runs(data, label)
    return sum(r["train_flops"] for r in runs) / len(runs)


def compute_sentence(data: Mapping[str, Any]) -> str:
    """Whether the arms trained with matched compute: the random-depth arms' real mean
    iterations and FLOPs against the fixed ones' (chapter 6)."""
    depth = trained_depth(data)
    base = _mean_flops(data, UNSHARED)
    parts = []
    for label in labels(data):
        runs = final_runs(data, label)
        if runs[0]["depth"] != "random":
            continue
        low, high = runs[0]["train_config"]["random_depths"]
        iterations = sum(r["mean_iterations"] for r in runs) / len(runs)
        ratio = _mean_flops(data, label) / base
        matched = abs(ratio - 1) < MATCHED_SHARE
        parts.append(
            f"{label} drew {low} to {high} iterations per training step, "
            f"{iterations:.2f} on average against N = {depth}, so it trained with "
            f"{ratio:.3f} times the FLOPs of the fixed-depth models: compute was "
            + ("matched" if matched else "not matched")
            + (
                ""
                if matched
                else f" (it had {abs(ratio - 1):.1%} "
                + ("more" if ratio > 1 else "less")
                + ")"
            )
        )
    fixed = [
        _mean_flops(data, label)
        for label in labels(data)
        if final_runs(data, label)[0]["depth"] == "fixed"
    ]
    same = max(fixed) / min(fixed) - 1 < MATCHED_SHARE
    lead = (
        "The unshared and the fixed-depth looped models run the same N layers per step "
        "and trained with the same FLOPs"
        if same
        else "The fixed-depth models' training FLOPs differ"
    )
    return ". ".join([lead, *parts]) + "."


# ------------------------------------------------------------------------ comparisons
class Comparison:
    """One paired comparison in a Holm family: what is compared, the difference in
    percentage points, its adjusted p and the sentence (chapter 6)."""

    def __init__(
        self,
        family: str,
        subject: str,
        baseline: str,
        difference: PairedDifference,
        adjusted_p: float,
        family_size: int,
    ) -> None:
        self.family = family
        self.subject = subject
        self.baseline = baseline
        self.difference = difference
        self.adjusted_p = adjusted_p
        self.family_size = family_size

    @property
    def effect(self) -> bool:
        """Whether the interval excludes zero and the Holm-adjusted p passes."""
        return claims_effect(self.difference, self.adjusted_p)

    @property
    def sentence(self) -> str:
        """``evidence.conclusion`` worded for accuracy in percentage points."""
        d = self.difference
        digits = 1
        while d.excludes_zero and round(min(abs(d.low), abs(d.high)), digits) == 0:
            digits += 1
        text = conclusion(
            d,
            self.subject,
            self.baseline,
            quantity="accuracy",
            unit="percentage points",
            digits=digits,
            adjusted_p=self.adjusted_p,
            family_size=self.family_size,
        )
        return text.replace("has a lower accuracy", "is less accurate").replace(
            "has a higher accuracy", "is more accurate"
        )


def _family(
    name: str, items: Sequence[tuple[str, str, PairedDifference]]
) -> list[Comparison]:
    """The comparisons of one family with their Holm-adjusted p-values."""
    adjusted = holm_adjust([d.p_value for *_, d in items])
    return [
        Comparison(name, subject, baseline, d, p, len(items))
        for (subject, baseline, d), p in zip(items, adjusted, strict=True)
    ]


def best_depth(data: Mapping[str, Any], label: str, test_set: str = "beyond") -> int:
    """The test iteration count with the highest mean accuracy of ``label`` on
    ``test_set`` (the smallest on a tie); chosen on the test set itself (chapter 6)."""
    ks = settings(data)["test_iterations"]
    means = {k: mean_accuracy(data, label, test_set, k) for k in ks}
    return max(ks, key=lambda k: (means[k], -k))


def versus_unshared(data: Mapping[str, Any], at: str = "best") -> list[Comparison]:
    """Each looped arm against the unshared model at N on the beyond set, at its best
    test depth (``at="best"``) or at N (``at="trained"``): one Holm family
    (chapter 6)."""
    depth = trained_depth(data)
    items = []
    for label in looped_labels(data):
        k = best_depth(data, label) if at == "best" else depth
        items.append(
            (
                f"{label} run {k} times",
                f"{UNSHARED} ({depth} layers)",
                paired_difference(
                    accuracy_by_seed(data, label, "beyond", k),
                    accuracy_by_seed(data, UNSHARED, "beyond"),
                ),
            )
        )
    name = (
        "looped at its best test depth vs unshared"
        if at == "best"
        else ("looped at N vs unshared")
    )
    return _family(name, items)


def _more(data: Mapping[str, Any]) -> list[int]:
    """2N and 4N where tested, else the largest tested iteration count."""
    depth = trained_depth(data)
    ks = settings(data)["test_iterations"]
    wanted = [m * depth for m in (2, 4) if m * depth in ks]
    return wanted or [max(ks)]


def deeper_vs_trained(data: Mapping[str, Any]) -> list[Comparison]:
    """Each looped arm run 2N and 4N times against itself run N times, on the beyond
    set: one Holm family (chapter 6)."""
    depth = trained_depth(data)
    items = [
        (
            f"{label} run {k} times",
            f"the same model run {depth} times",
            paired_difference(
                accuracy_by_seed(data, label, "beyond", k),
                accuracy_by_seed(data, label, "beyond"),
            ),
        )
        for label in looped_labels(data)
        for k in _more(data)
    ]
    return _family("looped at 2N and 4N vs at N", items)


def versus_shortcut(data: Mapping[str, Any]) -> list[Comparison]:
    """Every arm at N on the beyond set against following N pointers and taking the
    nearest root's bit (a fixed value: a one-sample t test over seeds); one Holm family
    (chapter 6)."""
    depth = trained_depth(data)
    reference = shortcut_accuracy(data, "beyond", depth)
    items = []
    for label in labels(data):
        values = accuracy_by_seed(data, label, "beyond")
        items.append(
            (
                f"{label} at N = {depth}",
                f"following {depth} pointers, then the nearest root",
                paired_difference(values, dict.fromkeys(values, reference)),
            )
        )
    return _family("every model at N vs the N-pointer shortcut", items)


def _families(data: Mapping[str, Any]) -> list[list[Comparison]]:
    return [
        versus_unshared(data, "trained"),
        versus_unshared(data, "best"),
        deeper_vs_trained(data),
        versus_shortcut(data),
    ]


def comparison_rows(data: Mapping[str, Any]) -> list[tuple]:
    """Rows under ``COMPARISON_HEADERS``: every comparison of every family, with its
    raw and Holm-adjusted p and whether a sentence claims an effect (chapter 6)."""
    rows = []
    for family in _families(data):
        for c in family:
            d = c.difference
            rows.append(
                (
                    f"{c.family} ({c.family_size})",
                    f"{c.subject} - {c.baseline}",
                    f"{d.mean:+.1f}",
                    f"{d.low:+.1f} to {d.high:+.1f}",
                    format_p(d.p_value),
                    format_p(c.adjusted_p),
                    "yes" if c.effect else "no",
                )
            )
    return rows


def _tally(comparisons: Sequence[Comparison]) -> str:
    better = sum(c.effect and c.difference.low > 0 for c in comparisons)
    worse = sum(c.effect and c.difference.high < 0 for c in comparisons)
    return (
        f"{better} more accurate, {worse} less accurate, "
        f"{len(comparisons) - better - worse} with no evidence of a difference"
    )


def summary(data: Mapping[str, Any]) -> list[str]:
    """Generated sentences, one per comparison, each family introduced by what it
    asks; effects only where the interval excludes zero and Holm passes
    (chapter 6)."""
    intro = {
        "looped at N vs unshared": "At the trained depth, beyond the trained hops",
        "looped at its best test depth vs unshared": (
            "At the test depth that suits it best (chosen on the test set itself, "
            "which favours the looped model), beyond the trained hops"
        ),
        "looped at 2N and 4N vs at N": "More iterations at test time, beyond the "
        "trained hops",
        "every model at N vs the N-pointer shortcut": "Against the shortcut, beyond "
        "the trained hops",
    }
    lines = []
    for family in _families(data):
        for c in family:
            lines.append(f"{intro[c.family]}: {c.sentence}.")
    return lines


def headline(data: Mapping[str, Any]) -> str:
    """One generated sentence for the conclusions and the FAQ: looped against unshared
    models beyond the trained hops, and 2N/4N test iterations against N (paired 95%
    intervals, Holm within each family), with the best accuracy there (chapter 6)."""
    s = settings(data)
    depth = trained_depth(data)
    L = int(s["train_hops"])
    versus = versus_unshared(data, "best")
    deeper = deeper_vs_trained(data)
    more = " and ".join(str(k) for k in _more(data))
    best = max(
        (mean_accuracy(data, label, "beyond", k), label, k)
        for label in labels(data)
        for k in (s["test_iterations"] if label in looped_labels(data) else [depth])
    )
    shortcut = shortcut_accuracy(data, "beyond", depth)
    return (
        f"On pointer chains in a causal decoder, trained on 0 to {L} hops and tested "
        f"on {L + 1} to {2 * L}: each looped model at its best test depth (picked on "
        f"the test set itself) against the unshared model of {depth} layers, "
        f"{len(versus)} comparisons: {_tally(versus)}; each looped model run {more} "
        f"instead of {depth} times, {len(deeper)} comparisons: {_tally(deeper)} "
        f"(paired 95% CIs over {versus[0].difference.n} seeds, Holm-corrected within "
        f"each family); the most accurate there is {best[1]}"
        + (f" run {best[2]} times" if best[1] in looped_labels(data) else "")
        + f", with {best[0]:.1f}% of root bits right, against {shortcut:.1f}% for "
        f"following {depth} pointers and taking the nearest root's bit"
    )


# ----------------------------------------------------------------------------- figure
def plot_iterations_by_hops(data: Mapping[str, Any]) -> Figure:
    """Accuracy against test-time iterations: one panel for the trained hops, one per
    hop count beyond; looped models as lines with 95% bands, the unshared model as a
    point at N, the pointer-following shortcut dashed (chapter 6)."""
    s = settings(data)
    depth = trained_depth(data)
    ks = list(s["test_iterations"])
    counts = hop_counts(data)
    panels: list[tuple[str, int | None, str]] = [
        ("trained", None, f"0-{counts['trained'][-1]} hops (trained)")
    ] + [("beyond", h, f"{h} hops") for h in counts["beyond"]]
    columns = min(3, len(panels))
    grid_rows = -(-len(panels) // columns)
    fig, grid = plt.subplots(
        grid_rows,
        columns,
        figsize=(3.0 * columns + 0.6, 3.0 * grid_rows + 0.9),
        sharey=True,
        squeeze=False,
    )
    axes = [ax for row in grid for ax in row]
    lowest = 100.0
    for ax, (test_set, h, title) in zip(axes, panels, strict=False):
        for label, by_k in iteration_curves(data, test_set, h).items():
            style = ":" if "random" in label else "-"
            means = [v[0] for v in by_k.values()]
            lowest = min(lowest, *means)
            ax.plot(
                list(by_k),
                means,
                style,
                marker="o",
                markersize=3,
                color=COLOURS.get(label, DARK_GREY),
                label=label,
            )
            ax.fill_between(
                list(by_k),
                [max(v[1], 0) for v in by_k.values()],
                [min(v[2], 100) for v in by_k.values()],
                color=COLOURS.get(label, DARK_GREY),
                alpha=0.15,
                linewidth=0,
            )
        mean, low, high = _interval(
            list(accuracy_by_seed(data, UNSHARED, test_set, None, h).values())
        )
        lowest = min(lowest, mean)
        ax.errorbar(
            [depth],
            [mean],
            yerr=[[mean - max(low, 0)], [min(high, 100) - mean]],
            fmt="s",
            color=COLOURS[UNSHARED],
            capsize=3,
            label=f"{UNSHARED} ({depth} layers)",
            zorder=3,
        )
        steps = [r["steps"] for r in data["baselines"]["ancestor_guess"][test_set]]
        steps = [k for k in steps if k >= 1]
        guess = [shortcut_accuracy(data, test_set, k, h) for k in steps]
        lowest = min(lowest, *guess)
        ax.plot(
            steps,
            guess,
            "--",
            color=DARK_GREY,
            linewidth=1,
            label="follow k pointers, then nearest root",
        )
        ax.axhline(
            shortcut_accuracy(data, test_set, 0, h),
            color=LIGHT_GREY,
            linestyle=(0, (1, 2)),
            linewidth=1,
            label="nearest root (no pointer)",
        )
        ax.axvline(depth, color=LIGHT_GREY, linewidth=0.8)
        ax.set_title(title)
        ax.set_xlabel("iterations (k)")
        ax.set_xticks([k for k in ks if k == 1 or k % depth == 0])
        ax.grid(True, alpha=0.3)
    for row in grid:
        row[0].set_ylabel("root bits right (%)")
    axes[0].set_ylim(max(0.0, min(45.0, lowest - 5)), 101)
    handles, names = axes[0].get_legend_handles_labels()
    spare = axes[len(panels) :]
    for ax in spare:
        ax.axis("off")
    if spare:  # the legend in the first empty panel
        spare[0].legend(handles, names, loc="center", frameon=False, fontsize=9)
        fig.tight_layout()
    else:
        fig.legend(
            handles, names, loc="lower center", ncol=2, frameon=False, fontsize=9
        )
        fig.tight_layout(rect=(0, 0.05 + 0.05 * -(-len(names) // 2), 1, 1))
    return fig
