"""Recursive reasoning on Sudoku (chapter 5e): a tiny recursive reasoner (TRM) against
non-recursive networks of equal parameters and of equal training FLOPs, the ablation
that separates the outer refinement loop from the inner recursion, and memorisation
checks.

Arms (``arm_settings``), all on the same puzzles, seeds and optimiser:
  * ``recursive``: TRM, n latent updates and T recursions per improvement step, N_sup
    improvement steps with deep supervision and halting;
  * ``inner-only``: no outer loop: one improvement step of N_sup x T recursions, as
    many network applications per answer;
  * ``outer-only``: no inner recursion: one latent update and one answer update per
    improvement step (n = 1, T = 1), N_sup raised to the same applications per answer;
  * ``plain``: the network once, puzzle to answer (equal parameters, no loop);
  * ``plain-deep``: an unshared network as deep as the recursive arm's training pass
    costs per optimizer step (equal training FLOPs, more parameters, no loop);
  * ``shuffled-labels``: ``recursive`` trained on solutions of other puzzles: how much
    of the training set the model can memorise when nothing is there to learn.
Rates are swept at seed 0 and chosen on the *select* half of the held-out grids; every
solve rate reported is on the other half (*report*), whose solution grids no training
puzzle has. A second report set of the same grids with more blanks (``harder_blanks``)
tests puzzles deeper than any seen in training.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import TransformerConfig
from ..measure import count_module_parameters
from ..puzzles import SudokuSplit, propagation_rounds, sudoku_split
from ..reasoning import (
    DeepSupervision,
    PlainSolver,
    ReasonerConfig,
    TinyRecursiveReasoner,
    solver_loss,
)
from ..train import TrainConfig, train
from ..validation import check_choice
from . import suite
from .recorded import (
    append_run,
    check_output,
    check_resumable,
    provenance,
    read_validated,
    run_list_problems,
    write_validated,
)

__all__ = [
    "ARMS",
    "RATE_FROM",
    "SUDOKU_MODULES",
    "SUDOKU_PROFILES",
    "SUDOKU_RESULTS_NAME",
    "SudokuProfile",
    "arm_settings",
    "batch_source",
    "build_arm",
    "chosen_rate",
    "execute_arm",
    "get_sudoku_profile",
    "load_sudoku",
    "plan_jobs",
    "puzzle_sets",
    "run_sudoku",
    "solve_rates",
    "validate_sudoku",
]

ARMS: tuple[str, ...] = (
    "recursive",
    "inner-only",
    "outer-only",
    "plain",
    "plain-deep",
    "shuffled-labels",
)
# arms trained at another arm's chosen rate instead of a sweep of their own
RATE_FROM: dict[str, str] = {"shuffled-labels": "recursive"}
SUDOKU_RESULTS_NAME = "sudoku"
SUDOKU_MODULES: tuple[str, ...] = (
    "config",
    "counting",
    "layers",
    "models",
    "puzzles",
    "reasoning",
    "sharing",
    "train",
    "experiments.sudoku",
)


@dataclass(frozen=True)
class SudokuProfile:
    """Puzzles, network, recursion and budget of one recording (chapter 5e)."""

    name: str
    box_rows: int = 2  # 2 x 2 boxes: 4 x 4 Sudoku, 288 solution grids in all
    box_cols: int = 2
    blanks: int = 8  # hidden cells per training and report puzzle (2-4 rounds)
    harder_blanks: int = 10  # the deeper report set, same grids (2-5 rounds)
    n_train_grids: int = 240  # solution grids of the training puzzles
    n_test_grids: int = 48  # held-out grids: first half select, second half report
    puzzles_per_grid: int = 20
    data_seed: int = 0  # the puzzles; the same for every arm and seed
    d_model: int = 64
    n_heads: int = 4
    d_ff: int = 256
    # the network TRM recurses (TRM: 2 layers); one layer cannot propagate constraints
    # far in one pass (probe: 0.2% of 8-blank puzzles solved), so depth must come from
    # the loop
    n_layers: int = 1
    n_latent: int = 2  # n
    n_recursions: int = 2  # T
    n_supervision: int = 4  # N_sup, training and the reported step
    test_factor: int = 2  # test at 1 .. test_factor x N_sup improvement steps
    batch_size: int = 64
    steps: int = 1000  # optimizer steps, every arm
    warmup: int = 100
    weight_decay: float = 0.1
    lrs: tuple[float, ...] = (1e-3, 3e-3, 1e-2)  # swept at seed 0, every arm
    seeds: int = 5
    arms: tuple[str, ...] = ARMS
    device: str = "cpu"
    results_name: str = SUDOKU_RESULTS_NAME  # the file: <results_name>.<name>.json


SUDOKU_PROFILES: dict[str, SudokuProfile] = {
    # seconds: the tests' pipeline, not evidence
    "ci": SudokuProfile(
        name="ci",
        n_train_grids=24,
        n_test_grids=8,
        puzzles_per_grid=4,
        d_model=16,
        n_heads=2,
        d_ff=32,
        n_supervision=2,
        batch_size=8,
        steps=6,
        warmup=2,
        lrs=(3e-3, 1e-2),
        seeds=2,
    ),
    # the recorded evidence: 2 CPU cores
    "cpu": SudokuProfile(name="cpu"),
    # three times the training, the recursive arm and its one-pass baseline only
    "cpu-long": SudokuProfile(
        name="cpu",
        steps=3000,
        lrs=(1e-3, 3e-3),
        arms=("recursive", "plain"),
        results_name="sudoku_long",
    ),
}


def get_sudoku_profile(profile: str | SudokuProfile) -> SudokuProfile:
    """The ``SudokuProfile`` named ``profile`` (one of ``SUDOKU_PROFILES``), or
    ``profile`` itself."""
    if isinstance(profile, SudokuProfile):
        return profile
    return SUDOKU_PROFILES[check_choice("profile", profile, tuple(SUDOKU_PROFILES))]


def _network(p: SudokuProfile, n_layers: int) -> TransformerConfig:
    n = p.box_rows * p.box_cols
    return TransformerConfig(
        d_model=p.d_model,
        n_heads=p.n_heads,
        d_ff=p.d_ff,
        n_layers=n_layers,
        vocab_size=n + 1,  # 0 (blank), 1 .. n
        max_len=n * n,
    )


def arm_settings(
    p: SudokuProfile, arm: str
) -> tuple[TransformerConfig, ReasonerConfig | None]:
    """The network and the recursion (None: one pass) of ``arm``."""
    check_choice("arm", arm, ARMS)
    calls = p.n_supervision * p.n_recursions * (p.n_latent + 1)  # per answer
    trm = ReasonerConfig(p.n_latent, p.n_recursions, p.n_supervision)
    if arm in ("recursive", "shuffled-labels"):
        return _network(p, p.n_layers), trm
    if arm == "inner-only":
        reasoner = ReasonerConfig(p.n_latent, p.n_supervision * p.n_recursions, 1)
        return _network(p, p.n_layers), reasoner
    if arm == "outer-only":
        return _network(p, p.n_layers), ReasonerConfig(1, 1, calls // 2)
    if arm == "plain":
        return _network(p, p.n_layers), None
    # plain-deep: forward and backward cost 3 passes, a no-grad pass 1: as many layer
    # passes per optimizer step as one improvement step of the recursive arm
    no_grad = (p.n_recursions - 1) * (p.n_latent + 1) * p.n_layers
    with_grad = (p.n_latent + 1) * p.n_layers
    return _network(p, (no_grad + 3 * with_grad) // 3), None


def build_arm(p: SudokuProfile, arm: str, seed: int) -> nn.Module:
    """The model of ``arm``, initialised from ``seed``."""
    config, reasoner = arm_settings(p, arm)
    torch.manual_seed(seed)
    if reasoner is None:
        return PlainSolver(config)
    return TinyRecursiveReasoner(config, reasoner)


def puzzle_sets(p: SudokuProfile) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(puzzles, solutions) of ``train``, ``select`` and ``report`` (halves of the
    held-out grids) and ``harder`` (the report grids with ``harder_blanks``)."""
    grids = (p.box_rows, p.box_cols, p.n_train_grids, p.n_test_grids)
    split = sudoku_split(*grids, p.puzzles_per_grid, p.blanks, p.data_seed)
    harder = sudoku_split(*grids, p.puzzles_per_grid, p.harder_blanks, p.data_seed)
    select_grids = _first_grids(split, p.n_test_grids // 2)
    sets = {"train": (split.train_puzzles, split.train_solutions)}
    for name, source in (("select", split), ("report", split), ("harder", harder)):
        in_select = torch.tensor(
            [tuple(g.tolist()) in select_grids for g in source.test_solutions]
        )
        keep = in_select if name == "select" else ~in_select
        sets[name] = (source.test_puzzles[keep], source.test_solutions[keep])
    return sets


def _first_grids(split: SudokuSplit, n: int) -> set[tuple[int, ...]]:
    """The first ``n`` distinct test solution grids, in the split's order."""
    seen: list[tuple[int, ...]] = []
    for grid in split.test_solutions:
        key = tuple(grid.tolist())
        if key not in seen:
            seen.append(key)
    return set(seen[:n])


@torch.no_grad()
def solve_rates(
    model: nn.Module,
    puzzles: torch.Tensor,
    solutions: torch.Tensor,
    steps: int,
    chunk: int = 512,
) -> dict[str, list[float]]:
    """Fraction of puzzles solved (every cell right) and of blank cells right, after
    each of ``steps`` improvement steps (one value for a one-pass model)."""
    model.eval()
    answers = torch.cat([model.solve(part, steps) for part in puzzles.split(chunk)], 1)
    right = answers == solutions  # (S, P, L)
    blank = puzzles == 0  # (P, L)
    return {
        "solved": right.all(-1).float().mean(-1).tolist(),
        "blank_cells": (
            (right & blank).sum((1, 2)).float() / blank.sum().clamp_min(1)
        ).tolist(),
    }


def _by_rounds(
    model: nn.Module,
    puzzles: torch.Tensor,
    solutions: torch.Tensor,
    steps: int,
    box_rows: int,
    box_cols: int,
) -> dict[str, dict[str, float]]:
    """Solve rate at ``steps`` by the puzzle's propagation rounds ("none": stalls)."""
    rounds = [str(propagation_rounds(q.tolist(), box_rows, box_cols)) for q in puzzles]
    model.eval()
    with torch.no_grad():
        final = model.solve(puzzles, steps)[-1]  # (P, L)
    hit = (final == solutions).all(-1)  # (P,)
    out = {}
    for key in sorted(set(rounds)):
        mask = torch.tensor([r == key for r in rounds])
        out[key] = {
            "puzzles": int(mask.sum()),
            "solved": hit[mask].float().mean().item(),
        }
    return out


def _layer_passes(p: SudokuProfile, arm: str) -> dict[str, int]:
    """Layer applications per answer at the reported step, and per optimizer step
    (a pass with gradients counted 3 times: forward and backward)."""
    config, reasoner = arm_settings(p, arm)
    L = config.n_layers
    if reasoner is None:
        return {"per_answer": L, "per_training_step": 3 * L}
    per_step = reasoner.net_calls * L
    with_grad = (reasoner.n_latent + 1) * L
    return {
        "per_answer": per_step * reasoner.n_supervision,
        "per_training_step": per_step - with_grad + 3 * with_grad,
    }


def batch_source(
    train: tuple[torch.Tensor, torch.Tensor],
    held_out: tuple[torch.Tensor, torch.Tensor],
    batch_size: int,
) -> Callable[[str, torch.Generator], tuple[torch.Tensor, torch.Tensor]]:
    """``get_batch`` for ``sharedlib.train``: ``batch_size`` random (puzzles,
    solutions) of ``train``, or of ``held_out`` for any other split."""

    def get_batch(split: str, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        puzzles, solutions = train if split == "train" else held_out
        index = torch.randint(len(puzzles), (batch_size,), generator=g)
        return puzzles[index], solutions[index]

    return get_batch


def execute_arm(p: SudokuProfile, arm: str, lr: float, seed: int) -> dict[str, Any]:
    """Train one arm at one rate and seed; measure it on every puzzle set."""
    sets = puzzle_sets(p)
    train_puzzles, train_solutions = sets["train"]
    if arm == "shuffled-labels":  # each puzzle paired with another puzzle's grid
        order = torch.randperm(
            len(train_solutions), generator=torch.Generator().manual_seed(p.data_seed)
        )
        train_solutions = train_solutions[order]
    select = sets["select"]
    batch = batch_source((train_puzzles, train_solutions), select, p.batch_size)
    model = build_arm(p, arm, seed)
    _, reasoner = arm_settings(p, arm)
    if reasoner is None:
        loss_fn, get_batch = solver_loss, batch
    else:
        source = DeepSupervision(batch, reasoner.n_supervision)
        loss_fn, get_batch = source.loss_fn, source.get_batch
    config = TrainConfig(
        steps=p.steps,
        lr=lr,
        warmup=p.warmup,
        weight_decay=p.weight_decay,
        eval_every=max(p.steps // 6, 1),
        eval_batches=2,
        seed=seed,
        device=p.device,
        amp=False,
    )
    started = time.perf_counter()
    status = "ok"
    try:
        history = train(model, loss_fn, get_batch, config)
        window = max(p.steps // 50, 1)  # 50 points of the training loss
        curve = [
            [min(k + window, p.steps), sum(part) / len(part)]
            for k in range(0, len(history.train_loss), window)
            if (part := history.train_loss[k : k + window])
        ]
        val_curve = [
            [s, v] for s, v in zip(history.eval_steps, history.val_loss, strict=True)
        ]
    except FloatingPointError:
        status, curve, val_curve = "diverged", [], []
    seconds = time.perf_counter() - started
    model = model.cpu()
    steps = p.test_factor * reasoner.n_supervision if reasoner is not None else 1
    at = (reasoner.n_supervision if reasoner is not None else 1) - 1  # reported step
    record: dict[str, Any] = {
        "arm": arm,
        "seed": seed,
        "lr": lr,
        "status": status,
        "steps": p.steps,
        "parameters": count_module_parameters(model),
        "layer_passes": _layer_passes(p, arm),
        "reported_step": at + 1,
        "curve": curve,  # [step, mean training loss]
        "val_curve": val_curve,  # [step, select-batch loss at N_sup steps]
        "threads": torch.get_num_threads(),
        "wall_seconds": round(seconds, 1),
    }
    if status != "ok":
        return record
    record["select"] = solve_rates(model, *select, steps)
    record["report"] = solve_rates(model, *sets["report"], steps)
    record["harder"] = solve_rates(model, *sets["harder"], steps)
    sample = slice(0, len(sets["report"][0]))  # as many training puzzles as reported
    record["train"] = solve_rates(
        model, train_puzzles[sample], sets["train"][1][sample], steps
    )
    if arm == "shuffled-labels":  # the labels it was given
        record["train_fit"] = solve_rates(
            model, train_puzzles[sample], train_solutions[sample], steps
        )
    record["report_by_rounds"] = _by_rounds(
        model, *sets["report"], at + 1, p.box_rows, p.box_cols
    )
    record["harder_by_rounds"] = _by_rounds(
        model, *sets["harder"], at + 1, p.box_rows, p.box_cols
    )
    return record


def chosen_rate(runs: Sequence[Mapping[str, Any]], arm: str) -> float | None:
    """The seed-0 rate of ``arm`` with the highest select solve rate at the reported
    step (ties: the lower rate); None until the sweep has a finished run."""
    sweep = [r for r in runs if r["arm"] == arm and r["seed"] == 0 and "select" in r]
    if not sweep:
        return None
    best = max(
        sweep,
        key=lambda r: (r["select"]["solved"][r["reported_step"] - 1], -r["lr"]),
    )
    return float(best["lr"])


def plan_jobs(
    p: SudokuProfile, runs: Sequence[Mapping[str, Any]]
) -> list[tuple[str, float, int]]:
    """(arm, lr, seed) still to do: the seed-0 sweep first, then the other seeds at
    each arm's chosen rate (``RATE_FROM``: another arm's)."""
    done = {(r["arm"], float(r["lr"]), r["seed"]) for r in runs}
    swept = [arm for arm in p.arms if arm not in RATE_FROM]
    sweep = [(arm, float(lr), 0) for arm in swept for lr in p.lrs]
    todo = [job for job in sweep if job not in done]
    if todo:
        return todo
    rest = []
    for arm in p.arms:
        lr = chosen_rate(runs, RATE_FROM.get(arm, arm))
        lr = p.lrs[0] if lr is None else lr  # every sweep run diverged
        seeds = range(1 if arm not in RATE_FROM else 0, p.seeds)
        rest += [(arm, lr, s) for s in seeds if (arm, lr, s) not in done]
    return rest


def validate_sudoku(data: Any) -> None:
    """Raise ``ValueError`` naming what is wrong with a sudoku results file."""
    problems = run_list_problems(data, "arm", ARMS)
    if problems:
        raise ValueError("invalid sudoku file: " + "; ".join(problems[:20]))


def load_sudoku(path: str | Path) -> dict[str, Any]:
    """Read and validate a sudoku results file (``ValueError`` naming the problems)."""
    return read_validated(path, validate_sudoku)


def _write(path: Path, data: Mapping[str, Any]) -> None:
    write_validated(path, data, validate_sudoku)


def _key(run: Mapping[str, Any]) -> tuple[str, float, int]:
    return run["arm"], float(run["lr"]), run["seed"]


def _baselines(p: SudokuProfile) -> dict[str, Any]:
    """What the puzzles ask: sizes, and how many propagation rounds each set needs."""
    sets = puzzle_sets(p)
    out: dict[str, Any] = {}
    for name, (puzzles, _) in sets.items():
        rounds = [
            propagation_rounds(q.tolist(), p.box_rows, p.box_cols) for q in puzzles
        ]
        counts: dict[str, int] = {}
        for r in rounds:
            counts[str(r)] = counts.get(str(r), 0) + 1
        out[name] = {"puzzles": len(puzzles), "rounds": dict(sorted(counts.items()))}
    return out


def run_sudoku(
    profile: str | SudokuProfile = "cpu",
    output_dir: str | Path = "notebooks/results",
    command: str = "",
    log: Callable[[str], None] | None = None,
    allow_mixed: bool = False,
) -> Path:
    """Run (or resume) the recording at ``profile`` into the profile's
    ``<output_dir>/<results_name>.<name>.json``, one locked atomic append per finished
    run; a file of other settings is refused, and one of other sharedlib code unless
    ``allow_mixed`` (each run records its code hash) (chapter 5e)."""
    p = get_sudoku_profile(profile)
    log = log or (lambda message: None)
    path = Path(output_dir) / f"{p.results_name}.{p.name}.json"
    check_output(path)  # before any work
    code = suite.code_hash(SUDOKU_MODULES)
    settings = {"profile": p.name, "profile_settings": asdict(p)}
    if path.exists():
        data = load_sudoku(path)
        check_resumable(path, data, settings, code, allow_mixed)
    else:
        data = {"provenance": {}, **settings, "runs": []}
        data["baselines"] = _baselines(p)
    fresh = json.loads(json.dumps(data))
    before = float(data["provenance"].get("wall_seconds", 0.0))
    started = time.perf_counter()
    commit = provenance(command, "", 0.0)["commit"]
    while jobs := plan_jobs(p, data["runs"]):
        for arm, lr, seed in jobs:
            if (arm, lr, seed) in {_key(r) for r in data["runs"]}:
                continue
            record = execute_arm(p, arm, lr, seed)
            record.update(commit=commit, sharedlib_hash=code)
            data = append_run(
                path,
                record,
                _key,
                load_sudoku,
                _write,
                fresh,
                command,
                suite.device_description(p.device),
                before + time.perf_counter() - started,
            )
            solved = record.get("report", {}).get("solved")
            rate = (
                "-" if solved is None else f"{solved[record['reported_step'] - 1]:.3f}"
            )
            log(
                f"{arm} / seed {seed} / lr {lr:g}: {record['status']}, report solved "
                f"{rate} ({record['wall_seconds']:.0f} s)"
            )
    return path
