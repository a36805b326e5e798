"""Why can one block stand in for many? Chapter 5c's measurements, recorded on several
seeds at a size that learns (issue 23, item 8).

Chapter 5c trains a shared and an unshared model live, at a size that runs in seconds,
and measures them. This module runs the same measurements on the models of the recorded
suite (``suite.profile_model_config`` at a ``suite`` profile, its steps and schedule,
each strategy's rate from the suite's ``lr-sweep``), one record per seed, so that the
chapter's summary rests on means with intervals rather than on one seed. The training
of seed s is the suite's ``equal-depth`` run of seed s (same spec, same batches): each
record names that run's recorded loss where the suite's file has it.

Per seed, with N the depth and K = ``iteration_factor`` x N:
  * ``models``: validation loss (the suite's report windows), selection and training
    loss of the unshared ("none") and the shared ("all") model;
  * ``cka``: linear CKA of consecutive hidden states h_k, h_(k+1) (k = 0 .. N-1), of
    consecutive updates Delta_k = h_k - h_(k-1), and of h_1 with h_N, on the probe
    windows' tokens; for the shared block also past its trained depth (k = N .. K-1);
  * ``iterations``: the shared model's loss when its block runs k = 1 .. K times, and
    the relative update of the stream h_k and of LN(h_k) at every k;
  * ``weights``: cosine and relative distance of consecutive unshared layers' weight
    matrices, trained and at initialisation; how far each moved from its initial value
    and the cosine of neighbouring layers' moves; and the same comparison of the FFN
    after matching the hidden units of layer i + 1 to those of layer i
    (``aligned_similarity``): an FFN is unchanged when its hidden units are permuted,
    so two layers can compute the same function with raw weights that look unrelated;
  * ``coherence``: at several steps, the shared block's gradient split into its N uses
    (``optimization.per_use_gradients``): ||sum g|| / sum ||g||, their mean pairwise
    cosine and the shared gradient's norm over a mean use's;
  * ``gradient_norms``: the shared block's gradient norm over a mean unshared layer's
    at the first step and its median over training (``optimization.GradientLog``).
The file's ``baselines`` are n-gram cross-entropies on the same report windows
(``baselines.ngram_window_baselines``). Losses are in nats per token (a byte).
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..models import LOSS_UNIT, SharedTransformer, next_token_loss
from ..optimization import (
    GradientLog,
    block_parameters,
    gradient_coherence,
    per_use_gradients,
)
from ..runtime import file_lock
from ..similarity import (
    SUBLAYER_WEIGHTS,
    hidden_states,
    linear_cka,
    relative_updates,
    state_losses,
    sublayer_weight,
    weight_similarity,
)
from ..train import TrainConfig, train
from ..validation import check_choice, check_int
from . import suite
from .baselines import ngram_window_baselines
from .recorded import (
    check_output,
    provenance,
    read_validated,
    recorded_path,
    write_validated,
)

__all__ = [
    "EXPERIMENT",
    "PROFILES",
    "STATISTICS",
    "STRATEGIES",
    "WHY_MODULES",
    "WHY_RESULTS_NAME",
    "WhyProfile",
    "aligned_similarity",
    "chosen_rates",
    "consecutive_cka",
    "execute_seed",
    "ffn_units",
    "get_why_profile",
    "iteration_losses",
    "load_why",
    "probe_windows",
    "run_spec",
    "run_why",
    "seed_statistics",
    "unit_permutation",
    "validate_why",
]

WHY_RESULTS_NAME = "why_one_block"  # notebooks/results/why_one_block.<profile>.json
EXPERIMENT = "why-one-block"
STRATEGIES: tuple[str, ...] = ("none", "all")  # unshared, one shared block
# + seed: the training batch that the per-use gradients are taken on
PROBE_BATCH_SEED = 7_000


@dataclass(frozen=True)
class WhyProfile:
    """What one recording measures: the models, batches, schedule and validation windows
    of the suite profile ``model_profile``, at each of ``seeds`` seeds."""

    name: str
    model_profile: str  # a suite profile (suite.PROFILES)
    seeds: int
    probe_windows: int  # report windows whose tokens feed CKA and the updates
    # steps (0: initialisation) at which the per-use gradients are measured
    coherence_steps: tuple[int, ...]
    iteration_factor: int = 4  # the shared block is run k = 1 .. factor x N times

    def __post_init__(self) -> None:
        model = suite.get_profile(self.model_profile)
        check_int("seeds", self.seeds, 2)  # an interval needs two
        check_int("probe_windows", self.probe_windows, 1, model.val_windows // 2)
        check_int("iteration_factor", self.iteration_factor, 2)
        if not self.coherence_steps or any(
            not 0 <= s <= model.steps for s in self.coherence_steps
        ):
            raise ValueError(
                f"coherence_steps must be steps in 0..{model.steps}, "
                f"got {self.coherence_steps}"
            )

    @property
    def model(self) -> suite.Profile:
        return suite.get_profile(self.model_profile)


PROFILES: dict[str, WhyProfile] = {
    # seconds: re-run by the tests
    "ci": WhyProfile("ci", "ci", seeds=2, probe_windows=8, coherence_steps=(0, 12, 24)),
    # the recorded file: the suite's cpu models, 1200 steps, on 2 cores
    "cpu": WhyProfile(
        "cpu",
        "cpu",
        seeds=5,
        probe_windows=128,
        coherence_steps=(0, 100, 300, 600, 1200),
    ),
}

# The modules a recording executes: the code hash covers them.
WHY_MODULES: tuple[str, ...] = (
    *suite.RESULT_MODULES,
    "experiments.why",
    "optimization",
    "similarity",
)


def get_why_profile(profile: str | WhyProfile) -> WhyProfile:
    """The ``WhyProfile`` named ``profile`` (one of ``PROFILES``), or ``profile``
    itself."""
    if isinstance(profile, WhyProfile):
        return profile
    return PROFILES[check_choice("profile", profile, PROFILES)]


# ---------------------------------------------------------------------------- settings
def chosen_rates(profile: str | WhyProfile) -> tuple[dict[str, float], str]:
    """Per strategy, the learning rate of the suite's recorded ``lr-sweep`` at the model
    profile (``suite.chosen_lrs``), and where it came from; the middle of the profile's
    grid for both when no finished sweep of both is recorded."""
    p = get_why_profile(profile)
    model = p.model
    try:
        path = recorded_path(suite.SUITE_RESULTS_NAME, model.name)
        chosen = suite.chosen_lrs(suite.load_results(path)["runs"], model)
    except (FileNotFoundError, ValueError):  # no recorded file at this profile
        path, chosen = None, {}
    if path is not None and all(s in chosen for s in STRATEGIES):
        return (
            {s: chosen[s] for s in STRATEGIES},
            f"lr-sweep of {path.name} (suite.chosen_lrs)",
        )
    middle = float(model.lrs[len(model.lrs) // 2])
    return (
        {s: middle for s in STRATEGIES},
        "the middle of the profile's lr grid (no finished lr-sweep recorded)",
    )


def run_spec(
    profile: str | WhyProfile, strategy: str, seed: int, lr: float
) -> suite.RunSpec:
    """The suite's ``equal-depth`` run of ``strategy`` at the model profile, seed
    ``seed`` and rate ``lr``: the same spec (``spec_hash``), so the same training."""
    p = get_why_profile(profile)
    check_choice("strategy", strategy, STRATEGIES)
    m = p.model
    config = TrainConfig(
        steps=m.steps,
        lr=lr,
        warmup=min(m.warmup, m.steps),
        eval_every=m.eval_every,
        eval_batches=m.val_windows // m.eval_chunk,
        seed=seed,
        device=m.device,
        amp=m.amp,
    )
    return suite.RunSpec(
        EXPERIMENT,
        strategy,
        suite.profile_model_config(m, strategy),
        config,
        m.batch_size,
        m.seq_len,
        m.val_fraction,
        m.val_windows,
        m.eval_chunk,
    )


def probe_windows(report: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` of the report windows (W, T+1), evenly strided: (n, T+1)."""
    check_int("n", n, 1, len(report))
    index = torch.linspace(0, len(report) - 1, n).round().long()
    return report[index]


# ------------------------------------------------------------------- the measurements
def consecutive_cka(states: Sequence[torch.Tensor]) -> list[float]:
    """Linear CKA of every state (B, T, H) with the next one, tokens as examples:
    ``len(states) - 1`` values."""
    flat = [s.reshape(-1, s.shape[-1]) for s in states]  # (B*T, H) each
    return [linear_cka(a, b) for a, b in itertools.pairwise(flat)]


def _cka_record(states: Sequence[torch.Tensor], n_layers: int) -> dict[str, Any]:
    """CKA of one model's h_0 .. h_N (and, for a shared block run further, beyond)."""
    trained = states[: n_layers + 1]
    updates = [b - a for a, b in itertools.pairwise(trained)]  # Delta_1 .. Delta_N
    flat = [s.reshape(-1, s.shape[-1]) for s in trained]
    record = {
        "consecutive": consecutive_cka(trained),  # (h_k, h_k+1), k = 0 .. N-1
        "updates": consecutive_cka(updates),  # (Delta_k, Delta_k+1), k = 1 .. N-1
        "span": linear_cka(flat[1], flat[n_layers]),  # h_1 with h_N
    }
    if len(states) > n_layers + 1:  # (h_k, h_k+1), k = N .. K-1
        record["beyond"] = consecutive_cka(states[n_layers:])
    return record


@torch.no_grad()
def iteration_losses(
    model: SharedTransformer, windows: torch.Tensor, k_max: int, chunk: int
) -> list[float]:
    """Mean next-token loss on ``windows`` (W, T+1) when the shared block runs k = 1 ..
    ``k_max`` times: one pass of ``k_max`` iterations per chunk, each h_k read out
    through the final LayerNorm and the output layer (``similarity.state_losses``)."""
    model.eval()
    totals = [0.0] * k_max
    for part in windows.split(chunk):  # (C, T+1)
        states = hidden_states(model, part[:, :-1], n_iterations=k_max)  # h_0 .. h_K
        losses = state_losses(model, states[1:], part[:, 1:])
        totals = [t + loss * len(part) for t, loss in zip(totals, losses, strict=True)]
    return [t / len(windows) for t in totals]


def ffn_units(model: SharedTransformer, layer: int) -> torch.Tensor:
    """The FFN of applied layer ``layer`` as one row per hidden unit: its input weights,
    its bias and its output weights, (F, 2H + 1), float64. Permuting the rows (with the
    same permutation of all three parts) leaves the layer's function unchanged."""
    check_int("layer", layer, 0, model.config.n_layers - 1)
    inner = model.ffn[model.ffn_map[layer]].inner
    return (
        torch.cat([inner.up.weight, inner.up.bias[:, None], inner.down.weight.T], dim=1)
        .detach()
        .double()
    )


def unit_permutation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The permutation ``perm`` of the rows (units) of ``b`` (F, D) that makes
    ``b[perm]`` closest to ``a`` (F, D) in Frobenius norm, i.e. maximises the summed
    dot product of matched rows (the Hungarian method,
    ``scipy.optimize.linear_sum_assignment``)."""
    from scipy.optimize import linear_sum_assignment

    if a.dim() != 2 or a.shape != b.shape:
        raise ValueError(
            "a and b must be matrices of the same shape (units, features), "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    scores = (a.double() @ b.double().T).cpu().numpy()  # (F, F): unit i of a, j of b
    rows, cols = linear_sum_assignment(scores, maximize=True)
    return torch.as_tensor(cols[rows.argsort()], dtype=torch.long)


def aligned_similarity(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """Cosine similarity and relative distance ``||a - b|| / ||a||`` of two unit
    matrices (F, D) as they are ("raw") and after reordering the units of ``b`` to match
    those of ``a`` (``unit_permutation``, "aligned"). Aligned >= raw by construction;
    even independent random matrices gain from the matching, so compare with the same
    measure at initialisation."""
    raw_cosine, raw_distance = weight_similarity(a, b)
    cosine, distance = weight_similarity(a, b[unit_permutation(a, b)])
    return {
        "raw_cosine": raw_cosine,
        "raw_distance": raw_distance,
        "aligned_cosine": cosine,
        "aligned_distance": distance,
    }


def _weights_record(
    unshared: SharedTransformer,
    unshared_init: SharedTransformer,
    shared: SharedTransformer,
    shared_init: SharedTransformer,
) -> dict[str, Any]:
    n = unshared.config.n_layers
    out: dict[str, Any] = {"raw": {}, "moved": {}, "update_cosine": {}}
    for name in SUBLAYER_WEIGHTS:
        trained = [sublayer_weight(unshared, i, name) for i in range(n)]
        initial = [sublayer_weight(unshared_init, i, name) for i in range(n)]
        pairs = [weight_similarity(a, b) for a, b in itertools.pairwise(trained)]
        pairs0 = [weight_similarity(a, b) for a, b in itertools.pairwise(initial)]
        deltas = [t - i for t, i in zip(trained, initial, strict=True)]
        out["raw"][name] = {
            "cosine": [c for c, _ in pairs],
            "distance": [d for _, d in pairs],
            "cosine_init": [c for c, _ in pairs0],
            "distance_init": [d for _, d in pairs0],
        }
        out["moved"][name] = [
            (d.norm() / i.norm()).item() for d, i in zip(deltas, initial, strict=True)
        ]
        out["update_cosine"][name] = [
            weight_similarity(a, b)[0] for a, b in itertools.pairwise(deltas)
        ]
    out["shared_moved"] = {
        name: (
            (sublayer_weight(shared, 0, name) - sublayer_weight(shared_init, 0, name))
            .norm()
            .div(sublayer_weight(shared_init, 0, name).norm())
            .item()
        )
        for name in SUBLAYER_WEIGHTS
    }
    # FFN units of layer i+1 matched to those of layer i, trained and at init
    aligned = [
        aligned_similarity(ffn_units(unshared, i), ffn_units(unshared, i + 1))
        for i in range(n - 1)
    ]
    aligned0 = [
        aligned_similarity(ffn_units(unshared_init, i), ffn_units(unshared_init, i + 1))
        for i in range(n - 1)
    ]
    out["ffn_units"] = {
        **{k: [a[k] for a in aligned] for k in aligned[0]},
        **{f"{k}_init": [a[k] for a in aligned0] for k in aligned0[0]},
    }
    return out


def _coherence_rows(
    model: SharedTransformer, batch: tuple[torch.Tensor, ...], step: int
) -> list[dict[str, Any]]:
    uses = per_use_gradients(model.eval(), next_token_loss, batch)
    rows = []
    for name, per_use in uses.per_use.items():
        shared = uses.shared[name]
        ratio, cosine = gradient_coherence(per_use)
        summed = torch.stack(per_use).sum(0)  # (P,)
        mean_use = statistics.fmean(g.norm().item() for g in per_use)
        rows.append(
            {
                "step": step,
                "sublayer": name,
                "ratio": ratio,  # ||sum g|| / sum ||g||
                "mean_cosine": cosine,
                "norm_ratio": shared.norm().item() / mean_use,
                # the uses add up to the shared gradient
                "sum_error": ((summed - shared).norm() / shared.norm()).item(),
            }
        )
    return rows


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _model(spec: suite.RunSpec, state: Mapping[str, torch.Tensor]) -> SharedTransformer:
    model = SharedTransformer(spec.model)
    model.load_state_dict(state)
    return model.eval()


def _train(
    spec: suite.RunSpec, snapshot_steps: Sequence[int]
) -> tuple[SharedTransformer, dict[int, dict[str, torch.Tensor]], GradientLog, float]:
    """Train the suite's run ``spec`` (same batches, same evaluations) and keep the
    weights at ``snapshot_steps`` (0: initialisation), a log of every block's gradient
    norm and the mean training loss of the last tenth of the steps."""
    corpus = suite.corpus_for(spec)
    chunks = torch.cat(suite.validation_windows(corpus, spec)).split(spec.eval_chunk)
    torch.manual_seed(spec.seed)
    model = SharedTransformer(spec.model)
    snapshots, calls, train_losses = {}, [0, 0], []
    wanted = set(snapshot_steps)

    def loss_fn(m: torch.nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        if m.training:
            if calls[0] in wanted:  # the weights after calls[0] steps
                snapshots[calls[0]] = _state(m)
            calls[0] += 1
        loss = next_token_loss(m, batch)
        if m.training:
            train_losses.append(loss.item())
        return loss

    def get_batch(split: str, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        if split == "val":  # the suite's fixed windows, chunk after chunk
            chunk = chunks[calls[1] % len(chunks)]
            calls[1] += 1
            return chunk[:, :-1], chunk[:, 1:]
        return corpus.batch(split, spec.batch_size, spec.seq_len, generator)

    log = GradientLog(block_parameters(model))
    try:
        train(model, loss_fn, get_batch, spec.train)
    finally:
        log.close()
    if spec.train.steps in wanted:
        snapshots[spec.train.steps] = _state(model)
    tail = train_losses[-max(1, spec.train.steps // 10) :]
    return model.eval(), snapshots, log, statistics.fmean(tail)


def _find_run(path: Path, spec: suite.RunSpec) -> dict[str, Any] | None:
    try:
        runs = json.loads(path.read_text())["runs"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    for run in runs:
        if run.get("spec_hash") == spec.spec_hash and run.get("status") == "ok":
            return {
                "file": path.name,
                "experiment": run["experiment"],
                "val_loss": run["val_loss"],
            }
    return None


def execute_seed(
    profile: str | WhyProfile,
    seed: int,
    lrs: Mapping[str, float],
    suite_file: Path | None = None,
    keep_models: bool = False,
) -> dict[str, Any]:
    """Train both models at ``seed`` and measure them: the record of one seed (see the
    module's docstring). ``suite_file``: a suite results file whose run of the same spec
    is named beside the loss. ``keep_models``: also return the trained models and their
    initial states under ``"_models"`` (for tests; not JSON)."""
    p = get_why_profile(profile)
    start = time.perf_counter()
    m = p.model
    specs = {s: run_spec(p, s, seed, lrs[s]) for s in STRATEGIES}
    corpus = suite.corpus_for(specs["none"])
    device = torch.device("cpu")
    select, report = suite.validation_windows(corpus, specs["none"])
    n_train = min(m.val_windows, (len(corpus.train) - 1) // m.seq_len)
    train_windows = suite.fixed_windows(corpus.train, m.seq_len, n_train)
    trained, snaps, logs, models_record = {}, {}, {}, {}
    for s, spec in specs.items():
        model, snaps[s], logs[s], tail = _train(spec, (0, *p.coherence_steps))
        trained[s] = model.to(device)
        val = suite.window_loss(model, report, m.eval_chunk, device)
        models_record[s] = {
            "strategy": s,
            "lr": float(lrs[s]),
            "parameters": sum(t.numel() for t in model.parameters()),
            "spec_hash": spec.spec_hash,
            "val_loss": val,
            "select_val_loss": suite.window_loss(model, select, m.eval_chunk, device),
            "train_loss": suite.window_loss(model, train_windows, m.eval_chunk, device),
            "train_loss_last_tenth": tail,
            "suite_run": _find_run(suite_file, spec) if suite_file else None,
        }
    n = m.n_layers
    k_max = p.iteration_factor * n
    initial = {s: _model(specs[s], snaps[s][0]) for s in STRATEGIES}
    shared = trained["all"]
    # representations: CKA on the probe windows' tokens
    probe = probe_windows(report, p.probe_windows)[:, :-1]  # (P, T)
    states = {
        "none": hidden_states(trained["none"], probe),
        "all": hidden_states(shared, probe, n_iterations=k_max),  # h_0 .. h_K
    }
    cka = {s: _cka_record(states[s], n) for s in STRATEGIES}
    # the shared block run k = 1 .. K times
    losses = iteration_losses(shared, report, k_max, m.eval_chunk)
    if not math.isclose(losses[n - 1], models_record["all"]["val_loss"], abs_tol=1e-4):
        raise RuntimeError(
            f"the loss read out after N = {n} iterations ({losses[n - 1]!r}) differs "
            f"from the model's own ({models_record['all']['val_loss']!r})"
        )
    with torch.no_grad():
        normed = [shared.final_norm(h) for h in states["all"]]
    iterations = {
        "k": list(range(1, k_max + 1)),
        "loss": losses,
        "stream_update": relative_updates(states["all"]),
        "normed_update": relative_updates(normed),
        "unshared_stream_update": relative_updates(states["none"]),
    }
    weights = _weights_record(trained["none"], initial["none"], shared, initial["all"])
    # gradients: one fixed training batch, the weights at each step
    batch = corpus.batch(
        "train",
        m.batch_size,
        m.seq_len,
        torch.Generator().manual_seed(PROBE_BATCH_SEED + seed),
    )
    coherence = [
        row
        for step in p.coherence_steps
        for row in _coherence_rows(
            _model(specs["all"], snaps["all"][step]), batch, step
        )
    ]
    block = logs["all"].norms["block 0"]
    layers = [logs["none"].norms[f"block {i}"] for i in range(n)]
    mean_layer = [statistics.fmean(v) for v in zip(*layers, strict=True)]
    ratios = [s / u for s, u in zip(block, mean_layer, strict=True)]
    all_layers = [math.sqrt(sum(v * v for v in vs)) for vs in zip(*layers, strict=True)]
    record = {
        "experiment": EXPERIMENT,
        "seed": seed,
        "status": "ok",
        "steps": m.steps,
        "n_layers": n,
        "models": models_record,
        "cka": cka,
        "iterations": iterations,
        "weights": weights,
        "coherence": coherence,
        "gradient_norms": {
            "first_step_ratio": ratios[0],  # shared block / mean unshared layer
            "median_ratio": statistics.median(ratios),
            "first_step_ratio_all_layers": block[0] / all_layers[0],
        },
        "threads": torch.get_num_threads(),
        "wall_seconds": time.perf_counter() - start,
    }
    if keep_models:
        record["_models"] = {"trained": trained, "initial": initial, "probe": probe}
    return record


# --------------------------------------------------------------- per-seed statistics
STATISTICS: dict[str, str] = {
    "loss_none": "validation loss, unshared",
    "loss_all": "validation loss, shared",
    "loss_gap": "validation loss, shared - unshared",
    "cka_first_none": "CKA(h_0, h_1), unshared",
    "cka_first_all": "CKA(h_0, h_1), shared",
    "cka_none": "mean CKA(h_k, h_k+1), k = 1..N-1, unshared",
    "cka_all": "mean CKA(h_k, h_k+1), k = 1..N-1, shared",
    "cka_gap": "mean CKA(h_k, h_k+1), shared - unshared",
    "cka_beyond_all": "mean CKA(h_k, h_k+1), k = N..K-1, shared",
    "cka_span_none": "CKA(h_1, h_N), unshared",
    "cka_span_all": "CKA(h_1, h_N), shared",
    "update_cka_none": "mean CKA(Delta_k, Delta_k+1), unshared",
    "update_cka_all": "mean CKA(Delta_k, Delta_k+1), shared",
    "update_cka_gap": "mean CKA(Delta_k, Delta_k+1), shared - unshared",
    "w_cos": "cosine of consecutive unshared layers' weights, mean",
    "w_cos_max": "cosine of consecutive unshared layers' weights, max",
    "w_cos_init": "the same at initialisation, mean",
    "w_dist": "relative distance of consecutive unshared layers, mean",
    "w_dist_min": "relative distance of consecutive unshared layers, min",
    "w_dist_init": "the same at initialisation, mean",
    "w_moved_min": "||W - W_init|| / ||W_init||, unshared, min",
    "w_moved_shared": "||W - W_init|| / ||W_init||, shared block, mean",
    "w_update_cos_max": "cosine of neighbouring layers' moves, max",
    "ffn_raw_cos": "FFN units of consecutive layers, raw cosine",
    "ffn_aligned_cos": "FFN units, cosine after matching units",
    "ffn_aligned_cos_init": "FFN units, cosine after matching, at init",
    "ffn_aligned_gain": "matched cosine, trained - at init",
    "ffn_aligned_dist": "FFN units, relative distance after matching",
    "iter_loss_1": "shared block run once: loss",
    "iter_fewer": "loss at N-1 iterations - loss at N",
    "iter_more": "loss at N+1 iterations - loss at N",
    "iter_2n": "loss at 2N iterations - loss at N",
    "iter_k": "loss at K iterations - loss at N",
    "iter_best_k": "iterations of the lowest loss (1..K)",
    "normed_update_n": "relative change of LN(h_k) at k = N",
    "normed_update_k": "relative change of LN(h_k) at k = K",
    "stream_update_n": "relative update of h_k at k = N",
    "stream_update_k": "relative update of h_k at k = K",
    "gn_first_ratio": "gradient norm, shared block / mean unshared layer, step 1",
    "gn_median_ratio": "the same, median over training",
}


def seed_statistics(record: Mapping[str, Any]) -> dict[str, float]:
    """The named scalars of one seed's record (``STATISTICS``, then per coherence step
    s ``coherence_cos_s``: the smallest mean pairwise cosine of the uses over the
    sublayers, ``coherence_ratio_s``: the smallest ||sum g|| / sum ||g||, and
    ``coherence_norm_s``: the shared gradient over a mean use's, attention)."""
    n = record["n_layers"]
    models, cka, it = record["models"], record["cka"], record["iterations"]
    w = record["weights"]
    out: dict[str, float] = {
        "loss_none": models["none"]["val_loss"],
        "loss_all": models["all"]["val_loss"],
    }
    out["loss_gap"] = out["loss_all"] - out["loss_none"]
    for s in STRATEGIES:
        out[f"cka_first_{s}"] = cka[s]["consecutive"][0]
        out[f"cka_{s}"] = statistics.fmean(cka[s]["consecutive"][1:])
        out[f"cka_span_{s}"] = cka[s]["span"]
        out[f"update_cka_{s}"] = statistics.fmean(cka[s]["updates"])
    out["cka_gap"] = out["cka_all"] - out["cka_none"]
    out["cka_beyond_all"] = statistics.fmean(cka["all"]["beyond"])
    out["update_cka_gap"] = out["update_cka_all"] - out["update_cka_none"]
    raw = w["raw"].values()
    out["w_cos"] = statistics.fmean(c for r in raw for c in r["cosine"])
    out["w_cos_max"] = max(c for r in raw for c in r["cosine"])
    out["w_cos_init"] = statistics.fmean(c for r in raw for c in r["cosine_init"])
    out["w_dist"] = statistics.fmean(d for r in raw for d in r["distance"])
    out["w_dist_min"] = min(d for r in raw for d in r["distance"])
    out["w_dist_init"] = statistics.fmean(d for r in raw for d in r["distance_init"])
    out["w_moved_min"] = min(v for vs in w["moved"].values() for v in vs)
    out["w_moved_shared"] = statistics.fmean(w["shared_moved"].values())
    out["w_update_cos_max"] = max(v for vs in w["update_cosine"].values() for v in vs)
    units = w["ffn_units"]
    out["ffn_raw_cos"] = statistics.fmean(units["raw_cosine"])
    out["ffn_aligned_cos"] = statistics.fmean(units["aligned_cosine"])
    out["ffn_aligned_cos_init"] = statistics.fmean(units["aligned_cosine_init"])
    out["ffn_aligned_gain"] = out["ffn_aligned_cos"] - out["ffn_aligned_cos_init"]
    out["ffn_aligned_dist"] = statistics.fmean(units["aligned_distance"])
    loss = it["loss"]  # k = 1 .. K
    out["iter_loss_1"] = loss[0]
    out["iter_fewer"] = loss[n - 2] - loss[n - 1]
    out["iter_more"] = loss[n] - loss[n - 1]
    out["iter_2n"] = loss[2 * n - 1] - loss[n - 1]
    out["iter_k"] = loss[-1] - loss[n - 1]
    out["iter_best_k"] = float(min(range(len(loss)), key=loss.__getitem__) + 1)
    out["normed_update_n"] = it["normed_update"][n - 1]
    out["normed_update_k"] = it["normed_update"][-1]
    out["stream_update_n"] = it["stream_update"][n - 1]
    out["stream_update_k"] = it["stream_update"][-1]
    out["gn_first_ratio"] = record["gradient_norms"]["first_step_ratio"]
    out["gn_median_ratio"] = record["gradient_norms"]["median_ratio"]
    for step in sorted({row["step"] for row in record["coherence"]}):
        rows = [row for row in record["coherence"] if row["step"] == step]
        out[f"coherence_cos_{step}"] = min(r["mean_cosine"] for r in rows)
        out[f"coherence_ratio_{step}"] = min(r["ratio"] for r in rows)
        out[f"coherence_norm_{step}"] = next(
            r["norm_ratio"] for r in rows if r["sublayer"].startswith("attention")
        )
    return out


# -------------------------------------------------------------------- the results file
def _non_finite(value: Any, where: str = "") -> list[str]:
    if isinstance(value, float):
        return [] if math.isfinite(value) else [where]
    if isinstance(value, dict):
        return [f for k, v in value.items() for f in _non_finite(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [f for i, v in enumerate(value) for f in _non_finite(v, f"{where}[{i}]")]
    return []


def validate_why(data: Any) -> None:
    """``ValueError`` listing how ``data`` departs from a why-one-block results file:
    provenance fields, settings, one finished record per seed, finite numbers."""
    if not isinstance(data, dict):
        raise ValueError(f"a results file must be a JSON object, got {type(data)}")
    problems = []
    prov = data.get("provenance")
    if not isinstance(prov, dict):
        problems.append("provenance: missing or not an object")
    else:
        problems += [
            f"provenance.{k}: missing" for k in suite.PROVENANCE_FIELDS if k not in prov
        ]
    for key in ("profile", "profile_settings", "model_settings", "lrs", "baselines"):
        if key not in data:
            problems.append(f"{key}: missing")
    runs = data.get("runs")
    if not isinstance(runs, list):
        problems.append("runs: missing or not a list")
        runs = []
    seeds = []
    for i, run in enumerate(runs):
        fields = ("seed", "status", "models", "cka", "iterations", "weights")
        if not isinstance(run, dict) or not all(k in run for k in fields):
            problems.append(f"runs[{i}]: not a per-seed record with {fields}")
            continue
        if run["status"] != "ok":
            problems.append(f"runs[{i}].status: {run['status']!r}, expected 'ok'")
        seeds.append(run["seed"])
    if len(seeds) != len(set(seeds)):
        problems.append(f"runs: a seed recorded twice ({sorted(seeds)})")
    problems += [f"{w}: not finite" for w in _non_finite(data)][:10]
    if problems:
        raise ValueError("invalid why-one-block file: " + "; ".join(problems[:20]))


def load_why(path: str | Path) -> dict[str, Any]:
    """Read and validate a why-one-block results file (``ValueError`` naming the
    problems)."""
    return read_validated(path, validate_why)


def _write(path: Path, data: Mapping[str, Any]) -> None:
    write_validated(path, data, validate_why)


def _baselines(profile: WhyProfile) -> dict[str, Any]:
    spec = run_spec(profile, "none", 0, 1e-3)
    corpus = suite.corpus_for(spec)
    _, report = suite.validation_windows(corpus, spec)
    return {
        "data": corpus.source,
        "unit": LOSS_UNIT,
        "scoring": (
            "the suite's report windows, as the models: the history of a byte stops "
            "at the start of its window"
        ),
        "smoothing": "interpolated Kneser-Ney (one discount per order)",
        **ngram_window_baselines(
            corpus.train, report, max_order=suite.BASELINE_ORDER, smoothing="kneser-ney"
        ),
        "witten-bell": ngram_window_baselines(
            corpus.train,
            report,
            max_order=suite.BASELINE_ORDER,
            smoothing="witten-bell",
        ),
    }


def run_why(
    profile: str | WhyProfile = "cpu",
    output_dir: str | Path = "notebooks/results",
    command: str = "",
    log: Callable[[str], None] | None = None,
) -> Path:
    """Run (or resume) the recording at ``profile`` into
    ``<output_dir>/why_one_block.<profile>.json``: one record per seed, appended and the
    file rewritten atomically as each seed finishes; a restart skips the seeds it finds.
    A complete file is left untouched. A file of other settings (profile, rates) or
    written by other sharedlib code is refused: write elsewhere."""
    p = get_why_profile(profile)
    log = log or (lambda message: None)
    path = Path(output_dir) / f"{WHY_RESULTS_NAME}.{p.name}.json"
    check_output(path)  # before any work
    code = suite.code_hash(WHY_MODULES)
    lrs, lr_source = chosen_rates(p)
    settings = {
        "profile": p.name,
        "profile_settings": asdict(p),
        "model_settings": asdict(p.model),
        "lrs": lrs,
    }
    if path.exists():
        data = load_why(path)
        differ = [
            k for k, v in settings.items() if data[k] != json.loads(json.dumps(v))
        ]
        if differ:
            raise ValueError(
                f"{path} was recorded with other {', '.join(differ)}; write to another "
                "output_dir"
            )
        if data["provenance"].get("sharedlib_hash") != code:
            raise ValueError(
                f"{path} was written by other sharedlib code (hash "
                f"{data['provenance'].get('sharedlib_hash')}, now {code}); write to "
                "another output_dir"
            )
        if {r["seed"] for r in data["runs"]} >= set(range(p.seeds)):
            log(f"{path}: all {p.seeds} seeds recorded; nothing to do")
            return path
    else:
        data = {
            "provenance": {},
            **settings,
            "lr_source": lr_source,
            "loss_unit": LOSS_UNIT,
            "baselines": _baselines(p),
            "runs": [],
        }
    try:
        suite_file = recorded_path(suite.SUITE_RESULTS_NAME, p.model.name)
    except (FileNotFoundError, ValueError):
        suite_file = None
    before = float(data["provenance"].get("wall_seconds", 0.0))
    started = time.perf_counter()
    commit = provenance(command, "", 0.0)["commit"]
    for seed in range(p.seeds):
        if seed in {r["seed"] for r in data["runs"]}:
            continue
        record = execute_seed(p, seed, lrs, suite_file)
        record.update(commit=commit, sharedlib_hash=code)
        with file_lock(path):  # re-read: keep what another command wrote meanwhile
            if path.exists():
                data = load_why(path)
            if seed not in {r["seed"] for r in data["runs"]}:
                data["runs"].append(record)
            data["runs"].sort(key=lambda r: r["seed"])
            seconds = max(
                before + time.perf_counter() - started,
                float(data["provenance"].get("wall_seconds", 0.0)),
            )
            commands = data["provenance"].get("commands", [])
            device = suite.device_description(p.model.device)
            data["provenance"] = {
                **provenance(command, device, seconds),
                "sharedlib_hash": code,
                "commands": commands + ([] if command in commands else [command]),
            }
            _write(path, data)
        stats = seed_statistics(record)
        log(
            f"seed {seed}: loss unshared {stats['loss_none']:.4f}, shared "
            f"{stats['loss_all']:.4f} ({record['wall_seconds']:.0f} s)"
        )
    return path
