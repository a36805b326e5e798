"""Looped language models on the book's corpus (chapter 5d): training depth (fixed or
random) tested at 1 .. 4r iterations, exits, loop caches, the injection bound at a high
learning rate, and unshared models made recursive against recursion from scratch.

Every run is one model at one seed and rate, with the suite's data, batches and the
select / report halves of its held-out windows (``suite.validation_windows``): rates are
chosen on the select half, every reported loss is on the report half. Losses are in nats
per token (``models.LOSS_UNIT``).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import TransformerConfig
from ..decoding import prefill
from ..looped import (
    LoopConfig,
    LoopedTransformer,
    exit_decode,
    exit_probabilities,
    gated_loss,
    injection_spectral_norm,
    looped_flops_per_token,
    random_depth_loss,
    recursive_from_unshared,
    relax_recursive,
    sample_iterations,
)
from ..measure import count_module_parameters
from ..models import (
    LOSS_UNIT,
    SharedTransformer,
    next_token_loss,
    scored_cross_entropy,
    windows_loss,
)
from ..runtime import file_lock
from ..train import TrainConfig, train
from ..validation import check_choice, check_int
from . import suite
from .recorded import (
    check_output,
    check_resumable,
    provenance,
    read_validated,
    run_list_problems,
    write_validated,
)

__all__ = [
    "ARMS",
    "LOOPS_MODULES",
    "LOOPS_PROFILES",
    "LOOPS_RESULTS_NAME",
    "LoopsProfile",
    "arm_model",
    "chosen_rate",
    "execute_arm",
    "get_loops_profile",
    "load_loops",
    "plan_jobs",
    "replay_first_point",
    "run_loops",
]

LOOPS_RESULTS_NAME = "loops"  # notebooks/results/loops.<profile>.json
EXPERIMENT = "looped-lm"
# label -> what is trained (rates: swept at seed 0 unless the arm borrows them)
ARMS: dict[str, str] = {
    "fixed": "looped, r iterations every step",
    "random": "looped, depth ~ log-normal Poisson of mean r, gradients through k",
    "gate": "looped, r iterations, Ouro's entropy-regularised exit gate",
    "fixed high-lr": "as fixed, at the profile's high rate",
    "bounded high-lr": "as fixed high-lr, the injection's spectral norm bounded",
    "unshared": "N unshared layers (the suite's none)",
    "cycle scratch": "M = N/2 blocks cycled (the suite's cycle), from scratch",
    "stepwise": "unshared for half the steps, made recursive (stepwise), uptrained",
    "average": "unshared for half the steps, made recursive (average), uptrained",
    "lower": "unshared for half the steps, made recursive (lower), uptrained",
    "average + LoRA": "as average, plus per-layer rank-8 deltas fitted by SVD",
}
SWEPT = ("fixed", "random", "gate", "unshared", "cycle scratch")
CONVERSIONS = ("stepwise", "average", "lower", "average + LoRA")
RELAX_RANK = 8  # rank of the per-layer deltas of "average + LoRA"


@dataclass(frozen=True)
class LoopsProfile:
    """The looped models and their tests, on the data, batches, steps and windows of the
    suite profile ``model_profile``."""

    name: str
    model_profile: str  # a suite profile: width, data, batch, steps, windows, device
    seeds: int
    lrs: tuple[float, ...]  # swept at seed 0, chosen on the select windows
    n_iterations: int = 4  # r: trained depth (fixed) or mean depth (random)
    max_iterations: int = 16  # cap of a sampled depth, and the deepest test
    backprop_iterations: int = 4  # k of the random arm (the fixed arm: all r)
    sigma: float = 0.5  # of the log-normal (Huginn's)
    entropy_weight: float = 0.05  # beta of the gate arm
    high_lr: float = 0.032  # the stability arms' rate
    injection_bound: float = 1.0  # the bounded arm's spectral norm
    exit_windows: int = 64  # report windows decoded token by token
    kl_thresholds: tuple[float, ...] = (0.1, 0.01, 0.001)
    gate_quantiles: tuple[float, ...] = (0.5, 0.7, 0.9)

    def __post_init__(self) -> None:
        check_int("seeds", self.seeds, 2)  # an interval needs two
        check_int("n_iterations", self.n_iterations, 2)
        check_int("max_iterations", self.max_iterations, self.n_iterations)
        check_int("exit_windows", self.exit_windows, 1, self.model.val_windows // 2)
        if not self.lrs:
            raise ValueError("lrs must hold at least one learning rate")

    @property
    def model(self) -> suite.Profile:
        return suite.get_profile(self.model_profile)

    def loop(self, label: str) -> LoopConfig:
        """The loop of a looped arm: P = R = C = 1, concat injection."""
        base = LoopConfig(
            n_prelude=1,
            n_core=1,
            n_coda=1,
            n_iterations=self.n_iterations,
            max_iterations=self.max_iterations,
            sigma=self.sigma,
        )
        if label == "random":
            return replace(
                base,
                sampling="lognormal-poisson",
                backprop_iterations=self.backprop_iterations,
            )
        if label == "gate":
            return replace(base, exit_gate=True)
        if label == "bounded high-lr":
            return replace(base, injection_bound=self.injection_bound)
        return base


LOOPS_PROFILES: dict[str, LoopsProfile] = {
    # seconds: run by the tests
    "ci": LoopsProfile(
        "ci", "ci", seeds=2, lrs=(3e-3, 6e-3), max_iterations=8, exit_windows=4
    ),
    # the recorded file: the suite's cpu width, data and 1200 steps, on 2 cores
    "cpu": LoopsProfile("cpu", "cpu", seeds=5, lrs=(2e-3, 4e-3, 8e-3)),
}

# The modules a recorded run executes: the code hash covers them.
LOOPS_MODULES: tuple[str, ...] = (*suite.RESULT_MODULES, "decoding", "looped")


def get_loops_profile(profile: str | LoopsProfile) -> LoopsProfile:
    """The ``LoopsProfile`` named ``profile`` (one of ``LOOPS_PROFILES``), or
    ``profile`` itself."""
    if isinstance(profile, LoopsProfile):
        return profile
    return LOOPS_PROFILES[check_choice("profile", profile, LOOPS_PROFILES)]


# ------------------------------------------------------------------------------- models
def arm_model(profile: LoopsProfile, label: str) -> TransformerConfig:
    """The ``TransformerConfig`` of arm ``label``: the looped arms' P + R + C unique
    layers, else the suite's N-layer model (none or cycle)."""
    check_choice("label", label, ARMS)
    m = profile.model
    if label in SWEPT[:3] or label.endswith("high-lr"):
        unique = profile.loop(label).unique_layers
        return replace(suite.profile_model_config(m, "none"), n_layers=unique)
    if label == "unshared" or label in CONVERSIONS:
        return suite.profile_model_config(m, "none")
    return suite.profile_model_config(m, "cycle")


def _build(profile: LoopsProfile, label: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    config = arm_model(profile, label)
    if config.strategy == "none" and label not in ("unshared", *CONVERSIONS):
        return LoopedTransformer(config, profile.loop(label))
    return SharedTransformer(config)


def _spec(profile: LoopsProfile, label: str) -> suite.RunSpec:
    """A suite spec that carries the data settings (corpus, windows, batches)."""
    m = profile.model
    return suite.RunSpec(
        EXPERIMENT,
        label,
        suite.profile_model_config(m, "none"),
        TrainConfig(
            steps=m.steps,
            eval_batches=m.val_windows // m.eval_chunk,
            device=m.device,
            amp=m.amp,
        ),
        m.batch_size,
        m.seq_len,
        m.val_fraction,
        m.val_windows,
        m.eval_chunk,
    )


def _gate_loss(beta: float) -> Callable[[nn.Module, tuple], torch.Tensor]:
    def loss(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        inputs, targets = batch[0], batch[1]
        if not model.training:  # evaluated at r, as every arm
            return scored_cross_entropy(model.logits(model(inputs)), targets)
        logits, gates = model.iteration_outputs(inputs)  # (r, B, T, V), (r, B, T)
        per_token = torch.stack(
            [
                torch.nn.functional.cross_entropy(
                    step.flatten(0, 1).float(), targets.flatten(), reduction="none"
                ).view_as(targets)
                for step in logits
            ]
        )  # (r, B, T)
        return gated_loss(per_token, gates, beta)

    return loss


class _Stop(Exception):  # noqa: N818 (a signal, not an error)
    """Raised by ``get_batch`` to end a replay after its first evaluation."""


def _train(
    profile: LoopsProfile,
    label: str,
    model: nn.Module,
    lr: float,
    seed: int,
    steps: int,
    loss_fn: Callable[[nn.Module, tuple], torch.Tensor],
    select: torch.Tensor,
    stop_after: int | None = None,
) -> list[list[float]]:
    """Train on the suite's batches of ``seed``; the curve [step, mean training loss,
    select loss] at each evaluation (only up to ``stop_after`` steps, for replays)."""
    m = profile.model
    corpus = suite.corpus_for(_spec(profile, label))
    chunks = select.split(m.eval_chunk)
    calls = {"val": 0, "train": 0}
    losses: dict[str, list[float]] = {"train": [], "val": []}

    def get_batch(split: str, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        if split == "val":  # every select window once per evaluation
            chunk = chunks[calls["val"] % len(chunks)]
            calls["val"] += 1
            return chunk[:, :-1], chunk[:, 1:]
        calls["train"] += 1
        if stop_after is not None and calls["train"] > stop_after:
            raise _Stop
        return corpus.batch(split, m.batch_size, m.seq_len, generator)

    def recorded(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        loss = loss_fn(model, batch)
        losses["train" if model.training else "val"].append(loss.item())
        return loss

    config = TrainConfig(
        steps=steps,
        lr=lr,
        warmup=min(m.warmup, steps),
        eval_every=min(m.eval_every, steps),
        eval_batches=len(chunks),
        seed=seed,
        device=m.device,
        amp=m.amp,
    )
    try:
        train(model, recorded, get_batch, config)
    except _Stop:
        pass
    curve, previous = [], 0
    every, n = config.eval_every, len(chunks)
    for k in range(len(losses["val"]) // n):  # one evaluation = n select chunks
        step = min((k + 1) * every, steps)
        val = statistics.fmean(losses["val"][k * n : (k + 1) * n])
        curve.append([step, statistics.fmean(losses["train"][previous:step]), val])
        previous = step
    return curve


def _exit_rows(
    model: LoopedTransformer, windows: torch.Tensor, thresholds: Sequence[float]
) -> list[dict[str, float]]:
    """KL exits decoded token by token on one cache slot: loss and mean iterations per
    threshold (0: no exit, every token at max_iterations)."""
    rows = []
    inputs, targets = windows[:, :-1], windows[:, 1:]
    for threshold in (0.0, *thresholds):
        logits, counts = exit_decode(
            model, inputs, threshold, model.loop.max_iterations
        )
        rows.append(
            {
                "threshold": threshold,
                "loss": scored_cross_entropy(logits, targets).item(),
                "mean_iterations": counts.float().mean().item(),
            }
        )
    return rows


@torch.no_grad()
def _gate_rows(
    model: LoopedTransformer, windows: torch.Tensor, quantiles: Sequence[float]
) -> list[dict[str, float]]:
    """Exits by the gate: each token stops at the first iteration whose cumulative exit
    probability reaches q (the full sequence computed at every iteration)."""
    model.eval()
    inputs, targets = windows[:, :-1], windows[:, 1:]
    logits, gates = model.iteration_outputs(inputs)  # (r, B, T, V), (r, B, T)
    cdf = exit_probabilities(gates).cumsum(0)  # (r, B, T)
    rows = []
    for q in quantiles:
        # the first i with cdf >= q; the last iteration's cdf is 1
        stop = (cdf < q).sum(0).clamp_max(len(logits) - 1)  # (B, T)
        chosen = logits.gather(0, stop[None, ..., None].expand(1, *logits.shape[1:]))[
            0
        ]  # (B, T, V)
        rows.append(
            {
                "quantile": q,
                "loss": scored_cross_entropy(chosen, targets).item(),
                "mean_iterations": (stop + 1).float().mean().item(),
            }
        )
    return rows


def _cache_rows(
    model: LoopedTransformer, windows: torch.Tensor, r: int
) -> dict[str, Any]:
    """Loss and cache bytes per token at r iterations: one cache set per iteration
    (exact, the full forward) against one set reused by every iteration (Huginn)."""
    inputs, targets = windows[:, :-1], windows[:, 1:]
    exact = windows_loss(model, windows, windows.shape[0], r)
    logits, _ = exit_decode(model, inputs, 0.0, r)
    shared = scored_cross_entropy(logits, targets).item()
    tokens = inputs[:1]  # bytes per cached token, from a real cache
    per_token = {
        name: prefill(model, tokens, n_iterations=r, slots=slots)[1].nbytes()
        / tokens.shape[1]
        for name, slots in (("exact", None), ("one slot", 1))
    }
    return {
        "n_iterations": r,
        "exact_loss": exact,
        "one_slot_loss": shared,
        "exact_bytes_per_token": per_token["exact"],
        "one_slot_bytes_per_token": per_token["one slot"],
    }


def execute_arm(
    profile: str | LoopsProfile,
    label: str,
    lr: float,
    seed: int,
    rates: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Train arm ``label`` at ``lr`` and ``seed`` and return its record (without commit
    and provenance); conversions pretrain and uptrain at ``rates``."""
    p = get_loops_profile(profile)
    check_choice("label", label, ARMS)
    start = time.perf_counter()
    m = p.model
    spec = _spec(p, label)
    corpus = suite.corpus_for(spec)
    select, report = suite.validation_windows(corpus, spec)
    record: dict[str, Any] = {
        "experiment": EXPERIMENT,
        "label": label,
        "seed": seed,
        "lr": lr,
        "steps": m.steps,
        "tokens": m.steps * m.batch_size * m.seq_len,
        "data": corpus.source,
        "loss_unit": LOSS_UNIT,
        "model_config": asdict(arm_model(p, label)),
        "threads": torch.get_num_threads(),
    }
    model = _build(p, label, seed)
    looped = isinstance(model, LoopedTransformer)
    if looped:
        record["loop_config"] = asdict(model.loop)
        loss_fn = _gate_loss(p.entropy_weight) if label == "gate" else random_depth_loss
    else:
        loss_fn = next_token_loss
    try:
        if label in CONVERSIONS:
            rates = dict(rates or {})
            half = m.steps // 2
            curve = _train(
                p, label, model, rates["unshared"], seed, half, loss_fn, select
            )
            unshared = model
            init = label.split(" ")[0]  # "average + LoRA" starts as "average"
            model = recursive_from_unshared(unshared, m.n_unique, init)
            if label.endswith("LoRA"):
                model = relax_recursive(unshared, model, RELAX_RANK)
            record["converted_loss"] = windows_loss(model, report, m.eval_chunk)
            # the uptraining batches continue from another seed's stream
            more = _train(
                p, label, model, lr, seed + 10_000, m.steps - half, loss_fn, select
            )
            curve += [[half + s, t, v] for s, t, v in more]
        else:
            if looped:  # the sampled depths of the run: from the seed, apart
                torch.manual_seed(10_000 + seed)
                depths = [sample_iterations(model.loop) for _ in range(m.steps)]
                torch.manual_seed(10_000 + seed)  # the same draws during training
                record["mean_training_iterations"] = statistics.fmean(depths)
            curve = _train(p, label, model, lr, seed, m.steps, loss_fn, select)
    except FloatingPointError as error:  # train.NonFiniteLossError
        record.update(
            status="diverged",
            error=str(error)[:300],
            parameters=count_module_parameters(_build(p, label, seed)),
            wall_seconds=time.perf_counter() - start,
        )
        if looped and model.state_in is not None:
            record["injection_spectral_norm"] = _finite_or_none(
                injection_spectral_norm(model)
            )
        return record
    record.update(
        status="ok",
        curve=curve,
        parameters=count_module_parameters(model),
        select_loss=windows_loss(model, select, m.eval_chunk),
        report_loss=windows_loss(model, report, m.eval_chunk),
    )
    if looped:
        loop = model.loop
        record["injection_spectral_norm"] = injection_spectral_norm(model)
        record["by_iterations"] = [
            {
                "n_iterations": r,
                "report_loss": windows_loss(model, report, m.eval_chunk, r),
                "forward_flops_per_token": looped_flops_per_token(
                    model.config, loop, m.seq_len, r
                ),
            }
            for r in range(1, p.max_iterations + 1)
        ]
        mean_r = record.get("mean_training_iterations", loop.n_iterations)
        record["training_forward_flops_per_token"] = _flops_at_mean(
            model.config, loop, m.seq_len, mean_r
        )
        exits = report[torch.linspace(0, len(report) - 1, p.exit_windows).long()]
        if label in ("fixed", "random"):
            record["kl_exits"] = _exit_rows(model, exits, p.kl_thresholds)
            record["cache"] = _cache_rows(model, exits, loop.n_iterations)
        if label == "gate":
            record["gate_exits"] = _gate_rows(model, exits, p.gate_quantiles)
            record["gate_fixed_loss"] = windows_loss(model, exits, len(exits))
    record["wall_seconds"] = time.perf_counter() - start
    return record


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _flops_at_mean(
    config: TransformerConfig, loop: LoopConfig, seq_len: int, mean_r: float
) -> float:
    """Forward FLOPs per token at a mean depth: linear in r between integers."""
    low = looped_flops_per_token(config, loop, seq_len, 1)
    per_iteration = looped_flops_per_token(config, loop, seq_len, 2) - low
    return low + per_iteration * (mean_r - 1)


# ----------------------------------------------------------------------------- the runs
def chosen_rate(runs: Sequence[Mapping[str, Any]], label: str) -> float | None:
    """The swept rate of ``label`` with the lowest select loss at seed 0 (None: not all
    swept yet)."""
    swept = [r for r in runs if r["label"] == label and r["seed"] == 0]
    finished = [r for r in swept if r["status"] == "ok"]
    if not finished:
        return None
    return float(min(finished, key=lambda r: r["select_loss"])["lr"])


def plan_jobs(
    profile: str | LoopsProfile, runs: Sequence[Mapping[str, Any]]
) -> list[tuple[str, float, int]]:
    """(label, lr, seed) of every run still to do: the sweep first; once it is done the
    other seeds, the conversions and the high-rate arms."""
    p = get_loops_profile(profile)
    done = {(r["label"], float(r["lr"]), r["seed"]) for r in runs}
    sweep = [(label, float(lr), 0) for label in SWEPT for lr in p.lrs]
    todo = [job for job in sweep if job not in done]
    if todo:
        return todo
    rates = {label: chosen_rate(runs, label) for label in SWEPT}
    jobs = [
        (label, rates[label], seed)
        for seed in range(1, p.seeds)
        for label in SWEPT
        if rates[label] is not None
    ]
    jobs += [
        (label, rates["cycle scratch"], seed)
        for seed in range(p.seeds)
        for label in CONVERSIONS
    ]
    jobs += [
        (label, p.high_lr, seed)
        for seed in range(p.seeds)
        for label in ("fixed high-lr", "bounded high-lr")
    ]
    return [job for job in jobs if job not in done]


def validate_loops(data: Any) -> None:
    """``ValueError`` listing how ``data`` departs from a loops results file."""
    problems = run_list_problems(data, "label")
    if problems:
        raise ValueError("invalid loops file: " + "; ".join(problems[:20]))


def load_loops(path: str | Path) -> dict[str, Any]:
    """Read and validate a loops results file (``ValueError`` naming the problems)."""
    return read_validated(path, validate_loops)


def _write(path: Path, data: Mapping[str, Any]) -> None:
    write_validated(path, data, validate_loops)


def _execute_in_worker(job: tuple) -> dict[str, Any]:
    """``execute_arm(*job)`` in a worker process on one thread."""
    torch.set_num_threads(1)
    return execute_arm(*job)


def run_loops(
    profile: str | LoopsProfile = "cpu",
    output_dir: str | Path = "notebooks/results",
    command: str = "",
    log: Callable[[str], None] | None = None,
    workers: int = 1,
    allow_mixed: bool = False,
) -> Path:
    """Run (or resume) the recording at ``profile`` into
    ``<output_dir>/loops.<profile>.json``, one locked atomic append per finished run; a
    file of other settings is refused, and one of other sharedlib code unless
    ``allow_mixed`` (each run records its code hash) (chapter 5d)."""
    p = get_loops_profile(profile)
    workers = check_int("workers", workers)
    log = log or (lambda message: None)
    path = Path(output_dir) / f"{LOOPS_RESULTS_NAME}.{p.name}.json"
    check_output(path)  # before any work
    code = suite.code_hash(LOOPS_MODULES)
    settings = {"profile": p.name, "profile_settings": asdict(p)}
    if path.exists():
        data = load_loops(path)
        check_resumable(path, data, settings, code, allow_mixed)
    else:
        data = {"provenance": {}, **settings, "loss_unit": LOSS_UNIT, "runs": []}
    before = float(data["provenance"].get("wall_seconds", 0.0))
    started = time.perf_counter()
    commit = provenance(command, "", 0.0)["commit"]

    def add(record: dict[str, Any]) -> None:
        nonlocal data
        record.update(commit=commit, sharedlib_hash=code)
        with file_lock(path):  # re-read: keep what another command wrote meanwhile
            if path.exists():
                data = load_loops(path)
            key = (record["label"], float(record["lr"]), record["seed"])
            known = {(r["label"], float(r["lr"]), r["seed"]) for r in data["runs"]}
            if key not in known:
                data["runs"].append(record)
            seconds = max(
                before + time.perf_counter() - started,
                float(data["provenance"].get("wall_seconds", 0.0)),
            )
            device = suite.device_description(p.model.device)
            hashes = sorted({r["sharedlib_hash"] for r in data["runs"]})
            commands = data["provenance"].get("commands", [])
            data["provenance"] = {
                **provenance(command, device, seconds),
                "sharedlib_hash": hashes[0] if len(hashes) == 1 else "mixed",
                "sharedlib_hashes": hashes,
                "commands": commands + ([] if command in commands else [command]),
            }
            _write(path, data)
        log(
            f"{record['label']} / seed {record['seed']} / lr {record['lr']:g}: "
            f"{record['status']}, report {record.get('report_loss')} "
            f"({record['wall_seconds']:.0f} s)"
        )

    while jobs := plan_jobs(p, data["runs"]):
        rates = {label: chosen_rate(data["runs"], label) for label in SWEPT}
        rates = {"unshared": rates["unshared"], "cycle scratch": rates["cycle scratch"]}
        batch = [(p, label, lr, seed, rates) for label, lr, seed in jobs]
        if workers == 1:
            for job in batch:
                add(execute_arm(*job))
            continue
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_execute_in_worker, job) for job in batch]
            for future in as_completed(futures):
                add(future.result())
    return path


def replay_first_point(
    profile: str | LoopsProfile, record: Mapping[str, Any]
) -> list[float]:
    """Re-train an unconverted arm of ``record`` to its first evaluation, on the full
    schedule, and return that curve point [step, mean training loss, select loss]."""
    p = get_loops_profile(profile)
    label, seed, lr = record["label"], record["seed"], record["lr"]
    if label in CONVERSIONS:
        raise ValueError(f"replays cover unconverted arms, not {label!r}")
    m = p.model
    spec = _spec(p, label)
    select, _ = suite.validation_windows(suite.corpus_for(spec), spec)
    model = _build(p, label, seed)
    loss_fn = next_token_loss
    if isinstance(model, LoopedTransformer):
        loss_fn = _gate_loss(p.entropy_weight) if label == "gate" else random_depth_loss
        torch.manual_seed(10_000 + seed)  # the depth draws, as in execute_arm
    first = min(m.eval_every, m.steps)
    curve = _train(p, label, model, lr, seed, m.steps, loss_fn, select, first)
    return curve[0]
