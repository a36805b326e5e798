"""The recorded experiments of chapters 6 and 8: what runs each experiment has at each
profile, how one run is executed and recorded, and the resumable loop behind
``scripts/run_experiments.py``.

Method. Runs that share a seed see the same training batches in the same order (the
batch generator is seeded by the seed) and are scored on the same fixed, evenly strided
validation windows (not random ones), so the difference of two strategies' losses seed
by seed is a paired difference (``sharedlib.evidence``). Every strategy gets its own
learning rate: ``lr-sweep`` trains each at seed 0 with every rate of the profile's grid,
and the other experiments use the rate with the lowest validation loss. Losses are in
nats per token (``models.LOSS_UNIT``; a token is a byte here). ``flops_per_token``
counts training FLOPs, 3x the forward pass (``counting``).

Experiments:
  * ``lr-sweep``: every strategy at the profile's depth, each learning rate, seed 0;
  * ``equal-depth``: every strategy at the same N, width and budget (equal FLOPs, fewer
    parameters when shared);
  * ``equal-params`` (Takase & Kiyono, 2021): M blocks applied N = 2M (and 3M where the
    profile says) times with sequence, cycle and cycle-rev, against a vanilla M-layer
    model and a vanilla N-layer model;
  * ``limited-data``: a small slice of the training split, many epochs:
    train-validation gap, best loss;
  * ``relaxed-scratch`` (chapter 8): a fully shared model with per-layer rank-r deltas
    trained from scratch;
  * ``svd-relaxation`` (chapter 8): trained unshared models compressed into one block
    plus rank-r SVD deltas;
  * ``budget-sweep``, ``budget-width``: ``none`` and ``all`` at two widths x two
    training budgets, the learning rate swept per cell (seed 0) and then every seed at
    the rate chosen at the last step;
  * ``budget-stopped``: the same cells at the rate chosen at each sweep run's best
    step (early stopping), so a comparison at the best step is tuned for it too; runs
    equal to ``budget-width``'s are copied, not re-trained.
``iterations-hops`` (looped models following pointer chains, trained on up to L hops
and tested on up to 2L, more iterations at test time) has its own runner and record,
``sharedlib.experiments.hops``; it is listed in ``SEPARATE_EXPERIMENTS`` and this suite
refuses it with a pointer there.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import TransformerConfig
from ..counting import forward_flops_per_token
from ..data import TextCorpus, load_text_corpus
from ..measure import count_module_parameters
from ..models import LOSS_UNIT, SharedTransformer, next_token_loss
from ..relaxed import RelaxedSharedTransformer, relax_unshared
from ..runtime import atomic_write, file_lock, resolve_device
from ..train import History, TrainConfig, train
from ..validation import check_choice, check_int
from .baselines import ngram_window_baselines
from .recorded import check_output, provenance

__all__ = [
    "ALL_STRATEGIES",
    "EXPERIMENTS",
    "FIRST_LOSSES",
    "PROFILES",
    "PROVENANCE_FIELDS",
    "REPLAY_RTOL",
    "RESULT_MODULES",
    "SELECTION_RULES",
    "SEPARATE_EXPERIMENTS",
    "SUITE_RESULTS_NAME",
    "Profile",
    "RunSpec",
    "budget_labels",
    "budget_model_config",
    "chosen_lrs",
    "code_hash",
    "corpus_for",
    "device_description",
    "execute_run",
    "fixed_windows",
    "flops_curve",
    "get_profile",
    "grid_extensions",
    "load_results",
    "lrs_at_grid_edge",
    "merge_results",
    "module_path",
    "ordered_experiments",
    "plan",
    "plan_all",
    "profile_model_config",
    "replay_matches",
    "replay_mismatches",
    "replay_run",
    "run_experiments",
    "run_key",
    "selection_loss",
    "split_evaluations",
    "validate_results",
    "validation_windows",
    "window_baselines",
    "window_loss",
    "write_results",
]

SUITE_RESULTS_NAME = "experiments"  # notebooks/results/experiments.<profile>.json
EXPERIMENTS: tuple[str, ...] = (
    "lr-sweep",
    "equal-depth",
    "equal-params",
    "limited-data",
    "relaxed-scratch",
    "svd-relaxation",
    "budget-sweep",
    "budget-width",
    "budget-stopped",
)
# experiment -> where it is run and recorded instead
SEPARATE_EXPERIMENTS: dict[str, str] = {
    "iterations-hops": (
        "scripts/run_experiments.py --suite hops runs it (sharedlib.experiments.hops)"
    ),
}
# SharedTransformer, RelaxedSharedTransformer, relax_unshared
KINDS: tuple[str, ...] = ("train", "relaxed", "svd")
ALL_STRATEGIES: tuple[str, ...] = (
    "none",
    "all",
    "attention",
    "ffn",
    "sequence",
    "cycle",
    "cycle-rev",
)
FIRST_LOSSES = 10  # training losses of the first steps kept in each record, for replays
PROVENANCE_FIELDS = (
    "command",
    "commit",
    "date",
    "device",
    "torch",
    "python",
    "threads",
    "wall_seconds",
)
RUN_FIELDS: dict[str, tuple[type, ...]] = {
    "experiment": (str,),
    "label": (str,),
    "strategy": (str,),
    "seed": (int,),
    "data": (str,),
    "parameters": (int,),
    "flops_per_token": (int,),
    "steps": (int,),
    "tokens": (int,),
    "lr": (float, int),
    "train_loss": (float, int, type(None)),
    "val_loss": (float, int, type(None)),
    "curve": (list,),
    "model_config": (dict,),
    "train_config": (dict,),
    "kind": (str,),
    "status": (str,),
}


@dataclass(frozen=True)
class Profile:
    """Sizes of one profile: ``ci`` (seconds, re-run by the tests), ``cpu`` (recorded on
    2 cores), ``gpu``."""

    name: str
    d_model: int
    n_heads: int
    d_ff: int
    n_layers: int  # N of every experiment but the deeper equal-params runs
    n_unique: int  # M for sequence / cycle / cycle-rev (N = 2M)
    batch_size: int
    seq_len: int
    steps: int
    warmup: int
    eval_every: int
    # held-out share of the corpus; large enough for val_windows * seq_len tokens
    val_fraction: float
    val_windows: int  # fixed validation windows of seq_len tokens
    eval_chunk: int  # windows per evaluation batch; divides val_windows
    seeds: int
    lrs: tuple[float, ...]  # learning-rate grid of lr-sweep
    strategies: tuple[str, ...] = ALL_STRATEGIES  # swept and compared at equal depth
    deeper: tuple[int, ...] = ()  # extra N (multiples of M) for equal-params: 3M, ...
    limited_bytes: int = 16384  # training bytes of limited-data
    limited_steps: int = 1000
    limited_eval_every: int = 100
    limited_strategies: tuple[str, ...] = ("none", "all")
    relaxed_ranks: tuple[int, ...] = (4, 16)
    svd_ranks: tuple[int, ...] = (1, 4, 16, 64)
    # budget-width: widths x budgets (multiples of steps), each cell's own rate
    budget_widths: tuple[int, ...] = ()
    budget_multipliers: tuple[int, ...] = (1, 4)
    budget_strategies: tuple[str, ...] = ("none", "all")
    budget_lrs: tuple[float, ...] = ()  # learning-rate grid of budget-sweep
    # rates a sweep may add past its grid per label and side, if the best is at an edge
    max_grid_extensions: int = 2
    device: str = "cpu"
    amp: bool = False

    def __post_init__(self) -> None:
        if self.val_windows % self.eval_chunk:
            raise ValueError(
                f"eval_chunk={self.eval_chunk} must divide "
                f"val_windows={self.val_windows}"
            )
        unknown = set(self.strategies) - set(ALL_STRATEGIES)
        if unknown:
            raise ValueError(
                f"strategies must be among {ALL_STRATEGIES}, got {sorted(unknown)}"
            )
        if self.seeds < 1 or not self.lrs:
            raise ValueError(
                f"need seeds >= 1 and at least one lr, got seeds={self.seeds}, "
                f"lrs={self.lrs}"
            )


PROFILES: dict[str, Profile] = {
    "ci": Profile(
        "ci",
        d_model=32,
        n_heads=2,
        d_ff=64,
        n_layers=4,
        n_unique=2,
        batch_size=8,
        seq_len=32,
        steps=24,
        warmup=4,
        eval_every=8,
        val_fraction=0.15,
        val_windows=32,
        eval_chunk=16,
        seeds=2,
        lrs=(3e-3, 6e-3),
        limited_bytes=1024,
        limited_steps=24,
        limited_eval_every=8,
        relaxed_ranks=(2,),
        svd_ranks=(1, 32),
        budget_widths=(16, 32),
        budget_multipliers=(1, 2),
        budget_lrs=(3e-3, 6e-3),
    ),
    "cpu": Profile(
        "cpu",
        d_model=64,
        n_heads=4,
        d_ff=256,
        n_layers=4,
        n_unique=2,
        batch_size=32,
        seq_len=64,
        steps=1200,
        warmup=50,
        eval_every=200,
        val_fraction=0.15,
        val_windows=1024,
        eval_chunk=256,
        seeds=5,
        lrs=(1e-3, 2e-3, 4e-3, 8e-3),
        limited_bytes=16384,
        limited_steps=1000,
        limited_eval_every=100,
        relaxed_ranks=(4, 16),
        svd_ranks=(1, 2, 4, 8, 16, 32, 64),
        budget_widths=(64, 128),
        budget_multipliers=(1, 4),
        budget_lrs=(2e-3, 4e-3, 8e-3),
    ),
    "gpu": Profile(
        "gpu",
        d_model=256,
        n_heads=4,
        d_ff=1024,
        n_layers=4,
        n_unique=2,
        batch_size=64,
        seq_len=128,
        steps=5000,
        warmup=200,
        eval_every=500,
        val_fraction=0.15,
        val_windows=512,
        eval_chunk=128,
        seeds=5,
        lrs=(5e-4, 1e-3, 2e-3, 4e-3),
        deeper=(6,),
        limited_bytes=65536,
        limited_steps=4000,
        limited_eval_every=250,
        relaxed_ranks=(4, 16, 64),
        svd_ranks=(1, 4, 16, 64, 128, 256),
        budget_widths=(256, 512),
        budget_multipliers=(1, 4),
        budget_lrs=(5e-4, 1e-3, 2e-3),
        device="auto",
        amp=True,
    ),
}


def get_profile(profile: str | Profile) -> Profile:
    """The ``Profile`` named ``profile`` (one of ``PROFILES``), or ``profile``
    itself."""
    if isinstance(profile, Profile):
        return profile
    return PROFILES[check_choice("profile", profile, PROFILES)]


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines one run (rebuilt from a record by
    ``spec_from_record``)."""

    experiment: str
    label: str
    # for kind "svd": the unshared model that is trained, then compressed
    model: TransformerConfig
    # train.seed is the run's seed: it fixes the batches, torch.manual_seed(seed) the
    # initial weights
    train: TrainConfig
    batch_size: int
    seq_len: int
    val_fraction: float
    val_windows: int
    eval_chunk: int
    # only the first train_bytes of the training split (limited-data)
    train_bytes: int | None = None
    kind: str = "train"
    rank: int | None = None  # relaxed / svd

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, KINDS)
        if (self.rank is None) != (self.kind == "train"):
            raise ValueError(
                "rank is required for kinds 'relaxed' and 'svd' and refused for "
                f"'train', got {self.rank}"
            )
        if self.train.eval_batches * self.eval_chunk != self.val_windows:
            raise ValueError(
                f"train.eval_batches ({self.train.eval_batches}) * eval_chunk "
                f"({self.eval_chunk}) must equal val_windows ({self.val_windows}): "
                "every evaluation scores all fixed windows"
            )
        if self.val_windows % 2 or (self.val_windows // 2) % self.eval_chunk:
            raise ValueError(
                f"val_windows ({self.val_windows}) must split into two halves (select, "
                f"report) of whole chunks of eval_chunk ({self.eval_chunk})"
            )
        if self.kind == "svd" and self.model.strategy != "none":
            raise ValueError(
                "kind 'svd' compresses an unshared model; model.strategy must be "
                f"'none', got {self.model.strategy!r}"
            )
        if self.kind == "relaxed" and self.model.strategy != "all":
            raise ValueError(
                "kind 'relaxed' needs model.strategy 'all', "
                f"got {self.model.strategy!r}"
            )

    @property
    def seed(self) -> int:
        return self.train.seed

    @property
    def key(self) -> tuple[str, str, int, float]:
        """What makes a run unique in a results file: experiment, label, seed, learning
        rate."""
        return (self.experiment, self.label, self.seed, float(self.train.lr))

    def fingerprint(self) -> dict[str, Any]:
        """The fields that determine the numbers (not experiment or label, device or
        progress bar)."""
        train = {
            k: v
            for k, v in asdict(self.train).items()
            if k not in ("device", "progress")
        }
        return {
            "model": asdict(self.model),
            "train": train,
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
            "val_fraction": self.val_fraction,
            "val_windows": self.val_windows,
            "eval_chunk": self.eval_chunk,
            "train_bytes": self.train_bytes,
            "kind": self.kind,
            "rank": self.rank,
        }

    @property
    def spec_hash(self) -> str:
        return hashlib.sha256(
            json.dumps(self.fingerprint(), sort_keys=True).encode()
        ).hexdigest()[:16]


def run_key(record: Mapping[str, Any]) -> tuple[str, str, int, float]:
    """The key of a recorded run (see ``RunSpec.key``)."""
    return (record["experiment"], record["label"], record["seed"], float(record["lr"]))


# --------------------------------------------------------------------- data and scoring
@functools.lru_cache(maxsize=4)
def _corpus(val_fraction: float) -> TextCorpus:
    return load_text_corpus(val_fraction=val_fraction)


def corpus_for(spec: RunSpec) -> TextCorpus:
    """The built-in byte corpus split at ``spec.val_fraction``; its training split cut
    to ``spec.train_bytes``."""
    corpus = _corpus(spec.val_fraction)
    if spec.train_bytes is None:
        return corpus
    if spec.train_bytes > len(corpus.train):
        raise ValueError(
            f"train_bytes={spec.train_bytes} exceeds the training split "
            f"({len(corpus.train)} bytes)"
        )
    return TextCorpus(
        train=corpus.train[: spec.train_bytes], val=corpus.val, source=corpus.source
    )


def fixed_windows(data: torch.Tensor, seq_len: int, n_windows: int) -> torch.Tensor:
    """``n_windows`` non-overlapping windows of ``seq_len + 1`` tokens, evenly strided
    over ``data``: (W, T+1)."""
    available = (len(data) - 1) // seq_len
    if n_windows < 1 or n_windows > available:
        raise ValueError(
            f"n_windows must be in 1..{available} (non-overlapping windows of "
            f"{seq_len} + 1 tokens in {len(data)} tokens), got {n_windows}"
        )
    span = len(data) - seq_len - 1
    starts = [k * span // max(n_windows - 1, 1) for k in range(n_windows)]
    return torch.stack([data[s : s + seq_len + 1] for s in starts])  # (W, T + 1)


def validation_windows(
    corpus: TextCorpus, spec: RunSpec
) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed windows that select (first half of the held-out split: learning rates,
    best steps) and those that report (second half): (W/2, T+1) each."""
    half = len(corpus.val) // 2
    n = spec.val_windows // 2
    return (
        fixed_windows(corpus.val[:half], spec.seq_len, n),
        fixed_windows(corpus.val[half:], spec.seq_len, n),
    )


def split_evaluations(
    val_chunks: Sequence[float], n_chunks: int
) -> tuple[list[float], list[float]]:
    """Per evaluation, the mean loss of the select and of the report windows, from the
    chunk losses in the order ``train`` computed them (select chunks first)."""
    half = n_chunks // 2
    select, report = [], []
    for i in range(0, len(val_chunks) - n_chunks + 1, n_chunks):
        select.append(statistics.fmean(val_chunks[i : i + half]))
        report.append(statistics.fmean(val_chunks[i + half : i + n_chunks]))
    return select, report


@torch.no_grad()
def window_loss(
    model: nn.Module,
    windows: torch.Tensor,
    chunk: int,
    device: torch.device | str = "cpu",
) -> float:
    """Mean next-token loss (nats per token) over every position of ``windows``
    (W, T+1), ``chunk`` at a time."""
    model.eval()
    total, count = 0.0, 0
    for part in windows.split(chunk):
        part = part.to(device)  # (C, T+1)
        loss = next_token_loss(model, (part[:, :-1], part[:, 1:]))
        total += loss.item() * part.shape[0]
        count += part.shape[0]
    return total / count


class _StopReplay(Exception):  # noqa: N818 (a signal, not an error)
    """Raised inside ``train`` to end a replay after the requested number of steps."""


@dataclass
class _Capture:
    """Training losses and validation-chunk losses in the order ``train`` computed
    them."""

    train: list[float] = field(default_factory=list)
    val_chunks: list[float] = field(default_factory=list)


class _FixedValidation:
    """``get_batch`` for ``train``: random training windows from the seed's generator;
    for "val", the fixed windows chunk after chunk, cycling, so that any
    ``eval_batches`` consecutive calls score every window once."""

    def __init__(
        self,
        corpus: TextCorpus,
        spec: RunSpec,
        windows: torch.Tensor,
        stop_after: int | None,
    ) -> None:
        self.corpus, self.spec = corpus, spec
        self.chunks = windows.split(spec.eval_chunk)
        self.calls, self.train_calls, self.stop_after = 0, 0, stop_after

    def __call__(
        self, split: str, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if split == "val":
            chunk = self.chunks[self.calls % len(self.chunks)]
            self.calls += 1
            return chunk[:, :-1], chunk[:, 1:]  # (C, T), (C, T)
        self.train_calls += 1
        if self.stop_after is not None and self.train_calls > self.stop_after:
            raise _StopReplay
        # (B, T) each
        return self.corpus.batch(
            split, self.spec.batch_size, self.spec.seq_len, generator
        )


def _build(spec: RunSpec) -> nn.Module:
    torch.manual_seed(spec.seed)
    if spec.kind == "relaxed":
        return RelaxedSharedTransformer(spec.model, spec.rank)
    return SharedTransformer(spec.model)


def _train(
    spec: RunSpec, stop_after: int | None = None, first_edition: bool = False
) -> tuple[nn.Module, History | None, _Capture]:
    """Build and train the model of ``spec`` (for "svd", the unshared source); history
    None when stopped early."""
    corpus = corpus_for(spec)
    if first_edition:  # records made before the select / report split: one window set
        windows = fixed_windows(corpus.val, spec.seq_len, spec.val_windows)
    else:
        windows = torch.cat(validation_windows(corpus, spec))  # select, then report
    model = _build(spec)
    capture = _Capture()

    def loss_fn(m: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        loss = next_token_loss(m, batch)
        (capture.train if m.training else capture.val_chunks).append(loss.item())
        return loss

    get_batch = _FixedValidation(corpus, spec, windows, stop_after)
    try:
        history = train(model, loss_fn, get_batch, spec.train)
    except _StopReplay:
        return model, None, capture
    return model, history, capture


def _curve(
    train_losses: Sequence[float],
    eval_steps: Sequence[int],
    report_losses: Sequence[float],
    select_losses: Sequence[float],
) -> list[list]:
    """[[step, mean training loss since the previous point, report loss, select loss],
    ...]: index 2 is the loss a chapter reports, index 3 the one choices are made on."""
    curve, previous = [], 0
    points = zip(eval_steps, report_losses, select_losses, strict=True)
    for step, report, select in points:
        curve.append(
            [step, statistics.fmean(train_losses[previous:step]), report, select]
        )
        previous = step
    return curve


def flops_per_token(config: TransformerConfig, seq_len: int) -> int:
    """Training FLOPs per token: forward (``counting.forward_flops_per_token``) plus
    backward, 3x forward."""
    return 3 * sum(forward_flops_per_token(config, seq_len).values())


def execute_run(
    spec: RunSpec, trained: dict[str, dict[str, torch.Tensor]] | None = None
) -> dict[str, Any]:
    """Run ``spec`` and return its record (without commit and provenance, which the
    runner adds).

    ``trained`` caches the state of trained unshared models by spec hash, so that "svd"
    runs compress the model an earlier run of the same command trained instead of
    training it again.
    """
    start = time.perf_counter()
    corpus = corpus_for(spec)
    device = resolve_device(spec.train.device)
    record: dict[str, Any] = {
        "experiment": spec.experiment,
        "label": spec.label,
        "kind": spec.kind,
        "rank": spec.rank,
        "strategy": "all" if spec.kind == "svd" else spec.model.strategy,
        "n_layers": spec.model.n_layers,
        "n_unique": spec.model.n_unique,
        "seed": spec.seed,
        "data": corpus.source,
        "lr": spec.train.lr,
        "steps": spec.train.steps,
        "tokens": spec.train.steps * spec.batch_size * spec.seq_len,
        "batch_size": spec.batch_size,
        "seq_len": spec.seq_len,
        "loss_unit": LOSS_UNIT,
        "split": {
            "val_fraction": spec.val_fraction,
            "train_bytes": spec.train_bytes,
            "train_split_tokens": len(corpus.train),
            "val_split_tokens": len(corpus.val),
            "val_windows": spec.val_windows,
            "eval_chunk": spec.eval_chunk,
            "val_tokens": spec.val_windows * spec.seq_len,
            # choices (learning rate, best step) use the first half of the held-out
            # split, reported losses the second half
            "selection": "select: first half of val; report: second half",
        },
        "model_config": asdict(spec.model),
        "train_config": asdict(spec.train),
        "spec_hash": spec.spec_hash,
        "flops_per_token": flops_per_token(spec.model, spec.seq_len),
        "forward_flops_per_token": sum(
            forward_flops_per_token(spec.model, spec.seq_len).values()
        ),
        "threads": torch.get_num_threads(),
        "device": str(device),
    }
    source = replace(spec, kind="train", rank=None)
    try:
        if spec.kind == "svd" and trained is not None and source.spec_hash in trained:
            model = SharedTransformer(spec.model)
            model.load_state_dict(trained[source.spec_hash])
            model.to(device)
            history, capture = None, _Capture()
        else:
            model, history, capture = _train(spec)
    # sharedlib.train.NonFiniteLossError: the learning rate is too high
    except FloatingPointError as error:
        parameters = count_module_parameters(_build(spec))
        record.update(
            status="diverged",
            error=str(error)[:400],
            parameters=parameters,
            train_loss=None,
            val_loss=None,
            curve=[],
            first_losses=[],
            wall_seconds=time.perf_counter() - start,
        )
        return record
    if (
        trained is not None
        and spec.model.strategy == "none"
        and spec.kind in ("train", "svd")
    ):
        trained[source.spec_hash] = {
            k: v.detach().cpu().clone() for k, v in model.state_dict().items()
        }
    select_windows, report_windows = validation_windows(corpus, spec)
    n_train = min(spec.val_windows, (len(corpus.train) - 1) // spec.seq_len)
    train_windows = fixed_windows(corpus.train, spec.seq_len, n_train)
    val_loss = window_loss(model, report_windows, spec.eval_chunk, device)
    select_loss = window_loss(model, select_windows, spec.eval_chunk, device)
    if history is not None:
        selects, reports = split_evaluations(
            capture.val_chunks, spec.train.eval_batches
        )
        if not (
            math.isclose(val_loss, reports[-1], rel_tol=1e-5, abs_tol=1e-6)
            and math.isclose(select_loss, selects[-1], rel_tol=1e-5, abs_tol=1e-6)
        ):
            raise RuntimeError(
                f"train.evaluate scored {selects[-1]!r} / {reports[-1]!r} but the "
                f"fixed select / report windows give {select_loss!r} / {val_loss!r}: "
                "evaluate no longer scores each window once per evaluation, in order; "
                "update sharedlib.experiments.suite"
            )
        record.update(
            curve=_curve(history.train_loss, history.eval_steps, reports, selects),
            first_losses=history.train_loss[:FIRST_LOSSES],
        )
    else:
        record.update(curve=[], first_losses=capture.train[:FIRST_LOSSES])
    # "svd": compress the trained unshared model; its own numbers are kept as source_*
    if spec.kind == "svd":
        record.update(
            source_val_loss=val_loss, source_parameters=count_module_parameters(model)
        )
        model = relax_unshared(model.cpu(), spec.rank).to(device)
        val_loss = window_loss(model, report_windows, spec.eval_chunk, device)
        select_loss = window_loss(model, select_windows, spec.eval_chunk, device)
    train_loss = window_loss(model, train_windows, spec.eval_chunk, device)
    if spec.kind == "svd":
        # one point: the compressed model
        record["curve"] = [[spec.train.steps, train_loss, val_loss, select_loss]]
    else:
        # the best step is chosen on the select windows and reported on the others
        best = min(range(len(record["curve"])), key=lambda i: record["curve"][i][3])
        record.update(
            best_val_loss=record["curve"][best][2],
            best_val_step=record["curve"][best][0],
        )
    record.update(
        status="ok",
        parameters=count_module_parameters(model),
        train_loss=train_loss,
        val_loss=val_loss,
        select_val_loss=select_loss,
        train_windows=n_train,
        wall_seconds=time.perf_counter() - start,
    )
    return record


def flops_curve(record: Mapping[str, Any]) -> list[tuple[int, float]]:
    """(training FLOPs so far, validation loss) at each curve point: flops_per_token x
    tokens seen by that step."""
    per_step = record["flops_per_token"] * record["batch_size"] * record["seq_len"]
    return [(step * per_step, val) for step, _, val, *_ in record["curve"]]


def spec_from_record(record: Mapping[str, Any]) -> RunSpec:
    """The ``RunSpec`` a recorded run was made from (its stored model and train config,
    data and seed)."""
    split = record["split"]
    return RunSpec(
        experiment=record["experiment"],
        label=record["label"],
        model=TransformerConfig(**record["model_config"]),
        train=TrainConfig(**record["train_config"]),
        batch_size=record["batch_size"],
        seq_len=record["seq_len"],
        val_fraction=split["val_fraction"],
        val_windows=split["val_windows"],
        eval_chunk=split["eval_chunk"],
        train_bytes=split["train_bytes"],
        kind=record["kind"],
        rank=record["rank"],
    )


# A replay matches its record to within this relative difference, not bit for bit:
# another x86 CPU (AVX-512, AVX2, scalar kernels; Intel or AMD) or another torch build
# rounds float32 sums differently in the last bits. Measured on committed CPU runs, ten
# replayed steps each (torch 2.13, an Intel Xeon, against files recorded on an AMD
# EPYC), the largest relative difference: 4.1e-7 natively (AVX-512), 5.0e-7 with
# ATEN_CPU_CAPABILITY=avx2 and 5.0e-7 with ATEN_CPU_CAPABILITY=default
# ONEDNN_MAX_CPU_ISA=SSE41 MKL_CBWR=COMPATIBLE (the first edition's binary-addition
# file: all 56 runs; experiments: 20 of its 81 train/relaxed runs natively, 8 in the
# other two modes, at most 1.8e-7). A real change moves some step far more (the
# smallest, over the runs tried, of the largest difference over ten steps): learning
# rate x1.01 >= 1.1e-4, x1.001 >= 1.05e-5, seed + 1 >= 9e-3, the curve one step shifted
# >= 1.1e-2. So 5e-6: 10x the drift, 1/20 of a 1% rate.
REPLAY_RTOL = 5e-6


def replay_mismatches(
    replayed: Any, stored: Any, rtol: float = REPLAY_RTOL
) -> list[str]:
    """Where a replay (losses, or a curve of ``[step, train, val]`` rows) departs from
    the stored values: numbers farther apart than ``rtol`` relative (with an absolute
    floor of ``rtol / 100`` nats, for losses near zero), different lengths or other
    values. A NaN or infinite number never matches. Empty when the replay matches."""
    problems: list[str] = []

    def walk(a: Any, b: Any, where: str) -> None:
        if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
            if len(a) != len(b):
                problems.append(f"{where}: {len(a)} values replayed, {len(b)} stored")
            # a length apart is reported above
            for i, (x, y) in enumerate(zip(a, b, strict=False)):
                walk(x, y, f"{where}[{i}]")
        elif all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b)
        ):
            if not (
                math.isfinite(a)
                and math.isfinite(b)
                and math.isclose(a, b, rel_tol=rtol, abs_tol=rtol / 100)
            ):
                problems.append(f"{where}: replayed {a!r}, stored {b!r}")
        elif a != b:
            problems.append(f"{where}: replayed {a!r}, stored {b!r}")

    walk(replayed, stored, "")
    return problems


def replay_matches(replayed: Any, stored: Any, rtol: float = REPLAY_RTOL) -> bool:
    """Whether a replay equals the stored values to within ``REPLAY_RTOL`` (see
    ``replay_mismatches``)."""
    return not replay_mismatches(replayed, stored, rtol)


def replay_run(
    record: Mapping[str, Any], steps: int, device: str = "cpu"
) -> dict[str, list]:
    """Re-run the first ``steps`` steps of a recorded run from its stored configs and
    seed.

    Returns ``{"first_losses": [...], "curve": [...]}`` computed exactly as the
    record's: on the same kind of CPU with the same thread count they equal the stored
    values bit for bit; on another CPU or torch build they match to within
    ``REPLAY_RTOL`` (``replay_matches``; chapter 6's reproducibility test).
    """
    if record["kind"] == "svd":
        raise ValueError(
            "replay_run re-trains 'train' and 'relaxed' runs; an 'svd' run has no "
            "training curve of its own"
        )
    check_int("steps", steps, 1, record["steps"])
    spec = spec_from_record(record)
    spec = replace(spec, train=replace(spec.train, device=device, progress=False))
    threads = torch.get_num_threads()
    torch.set_num_threads(int(record.get("threads", threads)))
    first_edition = "select_val_loss" not in record
    try:
        _, _, capture = _train(spec, stop_after=steps, first_edition=first_edition)
    finally:
        torch.set_num_threads(threads)
    selects, reports = split_evaluations(capture.val_chunks, spec.train.eval_batches)
    if first_edition:  # one validation loss per evaluation, the mean of both halves
        reports = [(a + b) / 2 for a, b in zip(selects, reports, strict=True)]
    eval_steps = [
        s
        for s in range(1, steps + 1)
        if s % spec.train.eval_every == 0 or s == spec.train.steps
    ]
    return {
        "first_losses": capture.train[:FIRST_LOSSES],
        "curve": [
            row[:3] if first_edition else row
            for row in _curve(capture.train, eval_steps, reports, selects)
        ],
    }


# -------------------------------------------------------------------------------- plans
def profile_model_config(
    profile: Profile, strategy: str, n_layers: int | None = None
) -> TransformerConfig:
    """The byte-level causal LM of ``profile`` with ``strategy`` (M = profile.n_unique
    where a strategy needs M)."""
    needs_m = strategy in ("sequence", "cycle", "cycle-rev")
    return TransformerConfig(
        d_model=profile.d_model,
        n_heads=profile.n_heads,
        d_ff=profile.d_ff,
        n_layers=profile.n_layers if n_layers is None else n_layers,
        strategy=strategy,
        n_unique=profile.n_unique if needs_m else None,
        vocab_size=256,
        max_len=profile.seq_len,
        causal=True,
        lm_head=True,
        dropout=0.0,
    )


def _spec(
    profile: Profile,
    experiment: str,
    label: str,
    model: TransformerConfig,
    lr: float,
    seed: int,
    limited: bool = False,
    kind: str = "train",
    rank: int | None = None,
    weight_decay: float | None = None,
    budget: int = 1,
) -> RunSpec:
    steps = profile.limited_steps if limited else profile.steps * budget
    every = profile.limited_eval_every if limited else profile.eval_every * budget
    train_config = TrainConfig(
        steps=steps,
        lr=lr,
        warmup=min(profile.warmup, steps),
        eval_every=every,
        eval_batches=profile.val_windows // profile.eval_chunk,
        seed=seed,
        device=profile.device,
        amp=profile.amp,
    )
    if weight_decay is not None:
        train_config = replace(train_config, weight_decay=weight_decay)
    return RunSpec(
        experiment,
        label,
        model,
        train_config,
        profile.batch_size,
        profile.seq_len,
        profile.val_fraction,
        profile.val_windows,
        profile.eval_chunk,
        profile.limited_bytes if limited else None,
        kind,
        rank,
    )


# the step a learning rate is chosen at: the last one, or the best one (early stopping)
SELECTION_RULES: tuple[str, ...] = ("last", "best")


def selection_loss(record: Mapping[str, Any], rule: str = "last") -> float:
    """The loss a choice is made on: the select windows' at the last step (first
    edition: the only validation loss) or, with ``rule="best"``, at the best
    evaluation."""
    check_choice("rule", rule, SELECTION_RULES)
    if rule == "last":
        return record.get("select_val_loss", record["val_loss"])
    if not record["curve"] or len(record["curve"][0]) < 4:
        raise ValueError(
            f"rule 'best' needs select losses in the curve; run {record['label']!r} "
            "has none (a first-edition record)"
        )
    return min(point[3] for point in record["curve"])


def chosen_lrs(
    runs: Iterable[Mapping[str, Any]], profile: str | Profile, rule: str = "last"
) -> dict[str, float]:
    """Per strategy (and budget cell), the learning rate of the lowest select loss in
    the finished sweep runs, at the last step or at each run's best (``rule``)."""
    check_choice("rule", rule, SELECTION_RULES)
    profile = get_profile(profile)
    runs = list(runs)
    out = {}
    sweeps = [("lr-sweep", label, profile.lrs) for label in profile.strategies]
    sweeps += [
        ("budget-sweep", label, profile.budget_lrs) for label in budget_labels(profile)
    ]
    for experiment, label, grid in sweeps:
        sweep = [r for r in runs if r["experiment"] == experiment]
        mine = {float(r["lr"]): r for r in sweep if r["label"] == label}
        missing = [lr for lr in grid if float(lr) not in mine]
        if missing:
            continue
        finished = [r for r in mine.values() if r["status"] == "ok"]
        if not finished:
            raise ValueError(
                f"every lr-sweep run of {label!r} diverged; lower the profile's "
                "learning rates"
            )
        out[label] = float(min(finished, key=lambda r: selection_loss(r, rule))["lr"])
    return out


def _tried_rates(runs: Sequence[Mapping[str, Any]], experiment: str, label: str):
    return sorted(
        {
            float(r["lr"])
            for r in runs
            if r["experiment"] == experiment and r["label"] == label
        }
    )


def lrs_at_grid_edge(
    runs: Iterable[Mapping[str, Any]], profile: str | Profile
) -> list[str]:
    """Labels whose chosen learning rate is the smallest or largest rate tried (the
    sweep may be too narrow: ``grid_extensions`` widens it)."""
    p = get_profile(profile)
    runs = list(runs)
    budget = set(budget_labels(p))
    out = []
    for label, lr in chosen_lrs(runs, p).items():
        tried = _tried_rates(
            runs, "budget-sweep" if label in budget else "lr-sweep", label
        )
        if lr in (tried[0], tried[-1]):
            out.append(label)
    return out


def grid_extensions(
    runs: Iterable[Mapping[str, Any]], profile: str | Profile, experiment: str
) -> list[RunSpec]:
    """Seed-0 runs that widen ``experiment``'s sweep where the chosen rate is at the
    edge of the rates tried: half the smallest or twice the largest, at most
    ``profile.max_grid_extensions`` per side."""
    p = get_profile(profile)
    runs = list(runs)
    check_choice("experiment", experiment, ("lr-sweep", "budget-sweep"))
    grid = p.lrs if experiment == "lr-sweep" else p.budget_lrs
    chosen = chosen_lrs(runs, p)
    cells = {label: (s, h, k) for label, s, h, k in _budget_cells(p)}
    labels = p.strategies if experiment == "lr-sweep" else list(cells)
    specs = []
    for label in labels:
        if label not in chosen:
            continue
        tried = _tried_rates(runs, experiment, label)
        lr = chosen[label]
        if (
            lr == tried[-1]
            and sum(r > max(grid) for r in tried) < p.max_grid_extensions
        ):
            rate = lr * 2
        elif (
            lr == tried[0] and sum(r < min(grid) for r in tried) < p.max_grid_extensions
        ):
            rate = lr / 2
        else:
            continue
        if experiment == "lr-sweep":
            specs.append(
                _spec(p, experiment, label, profile_model_config(p, label), rate, 0)
            )
        else:
            s, h, k = cells[label]
            model = budget_model_config(p, s, h)
            specs.append(_spec(p, experiment, label, model, rate, 0, budget=k))
    return specs


def _budget_cells(p: Profile) -> list[tuple[str, str, int, int]]:
    """(label, strategy, width, budget multiple) of every budget-width arm."""
    return [
        (f"{s} H={h} S={p.steps * k}", s, h, k)
        for h in p.budget_widths
        for k in p.budget_multipliers
        for s in p.budget_strategies
    ]


def budget_labels(p: Profile) -> list[str]:
    return [label for label, *_ in _budget_cells(p)]


def budget_model_config(p: Profile, strategy: str, width: int) -> TransformerConfig:
    """The profile's LM at width ``width`` (d_ff = 4 x width, the profile's heads)."""
    return replace(profile_model_config(p, strategy), d_model=width, d_ff=4 * width)


def plan(
    profile: str | Profile, experiment: str, lrs: Mapping[str, float] | None = None
) -> list[RunSpec]:
    """The runs of ``experiment`` at ``profile``, seed by seed; all but ``lr-sweep``
    need the chosen ``lrs``."""
    p = get_profile(profile)
    if experiment in SEPARATE_EXPERIMENTS:
        raise ValueError(
            f"experiment {experiment!r} is not part of this suite: "
            f"{SEPARATE_EXPERIMENTS[experiment]}"
        )
    check_choice("experiment", experiment, EXPERIMENTS)
    if experiment == "lr-sweep":
        return [
            _spec(p, experiment, s, profile_model_config(p, s), lr, 0)
            for s in p.strategies
            for lr in p.lrs
        ]
    if experiment == "budget-sweep":
        return [
            _spec(p, experiment, label, budget_model_config(p, s, h), lr, 0, budget=k)
            for label, s, h, k in _budget_cells(p)
            for lr in p.budget_lrs
        ]
    lrs = dict(lrs or {})

    def lr(label: str) -> float:
        if label not in lrs:
            raise ValueError(
                f"experiment {experiment!r} needs the lr-sweep result for {label!r}; "
                "run lr-sweep first"
            )
        return lrs[label]

    # label, model, lr, extra spec fields
    arms: list[tuple[str, TransformerConfig, float, dict[str, Any]]] = []
    if experiment == "equal-depth":
        arms = [(s, profile_model_config(p, s), lr(s), {}) for s in p.strategies]
    elif experiment == "equal-params":
        m = p.n_unique
        arms.append((f"none N={m}", profile_model_config(p, "none", m), lr("none"), {}))
        for n in (2 * m, *p.deeper):
            for s in ("sequence", "cycle", "cycle-rev"):
                arms.append(
                    (f"{s} M={m} N={n}", profile_model_config(p, s, n), lr(s), {})
                )
            arms.append(
                (f"none N={n}", profile_model_config(p, "none", n), lr("none"), {})
            )
    elif experiment == "limited-data":
        arms = [
            (s, profile_model_config(p, s), lr(s), {"limited": True})
            for s in p.limited_strategies
        ]
        # controls: capacity (one unshared layer: the parameters of "all"), dropout,
        # weight decay; each at the unshared model's rate
        none = profile_model_config(p, "none")
        arms += [
            (
                "none N=1",
                profile_model_config(p, "none", 1),
                lr("none"),
                {"limited": True},
            ),
            (
                "none dropout=0.1",
                replace(none, dropout=0.1),
                lr("none"),
                {"limited": True},
            ),
            ("none wd=0.1", none, lr("none"), {"limited": True, "weight_decay": 0.1}),
        ]
    elif experiment == "relaxed-scratch":
        arms = [(s, profile_model_config(p, s), lr(s), {}) for s in ("none", "all")]
        # neighbours in parameter count: M = 2 shared blocks, and 2 unshared layers
        m = p.n_unique
        arms.append((f"none N={m}", profile_model_config(p, "none", m), lr("none"), {}))
        if "sequence" in p.strategies:
            seq = profile_model_config(p, "sequence")
            arms.append((f"sequence M={m}", seq, lr("sequence"), {}))
        arms += [
            (
                f"relaxed r={r}",
                profile_model_config(p, "all"),
                lr("all"),
                {"kind": "relaxed", "rank": r},
            )
            for r in p.relaxed_ranks
        ]
    elif experiment in ("budget-width", "budget-stopped"):
        arms = [
            (label, budget_model_config(p, s, h), lr(label), {"budget": k})
            for label, s, h, k in _budget_cells(p)
        ]
    elif experiment == "svd-relaxation":
        arms = [("none", profile_model_config(p, "none"), lr("none"), {})]
        arms += [
            (
                f"svd r={r}",
                profile_model_config(p, "none"),
                lr("none"),
                {"kind": "svd", "rank": r},
            )
            for r in p.svd_ranks
        ]
    return [
        _spec(p, experiment, label, model, rate, seed, **extra)
        for seed in range(p.seeds)
        for label, model, rate, extra in arms
    ]


def plan_all(
    profile: str | Profile,
    experiments: Sequence[str] = EXPERIMENTS,
    lr: float | None = None,
) -> list[RunSpec]:
    """Every distinct run of ``experiments`` (each learning rate assumed ``lr``, default
    the grid's middle)."""
    p = get_profile(profile)
    rate = p.lrs[len(p.lrs) // 2] if lr is None else lr
    lrs = {s: rate for s in (*ALL_STRATEGIES, *budget_labels(p))}
    seen: dict[str, RunSpec] = {}
    for name in experiments:
        for spec in plan(p, name, lrs):
            seen.setdefault(spec.spec_hash, spec)
    return list(seen.values())


# --------------------------------------------------------------------- the results file
# The modules a recorded run executes, dotted paths below ``sharedlib``: a change in any
# of them may change the numbers (diagrams, plots, exercises and the other chapters'
# modules cannot).
RESULT_MODULES: tuple[str, ...] = (
    "config",
    "counting",
    "data",
    "experiments.baselines",
    "experiments.live",
    "experiments.recorded",
    "experiments.suite",
    "layers",
    "measure",
    "models",
    "relaxed",
    "runtime",
    "sharing",
    "train",
    "validation",
)


def module_path(name: str) -> Path:
    """The file of the ``sharedlib`` module ``name`` (a dotted path below
    ``sharedlib``, e.g. ``experiments.suite``)."""
    package = Path(__file__).resolve().parents[1]  # sharedlib/
    return package.joinpath(*name.split(".")).with_suffix(".py")


def code_hash(modules: Sequence[str] = RESULT_MODULES) -> str:
    """A hash of the ``sharedlib`` modules a run executes: runs made by different code
    must not be mixed unnoticed."""
    digest = hashlib.sha256()
    for name in modules:
        digest.update(name.encode() + b"\0" + module_path(name).read_bytes())
    return digest.hexdigest()[:16]


def _non_finite(value: Any, where: str = "") -> list[tuple[str, float]]:
    """(path, number) of every NaN or infinite float in nested dicts and lists: JSON
    (``allow_nan=False``) has none."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [(where or "(top)", value)]
    if isinstance(value, dict):
        return [
            found
            for k, v in value.items()
            for found in _non_finite(v, f"{where}.{k}" if where else str(k))
        ]
    if isinstance(value, (list, tuple)):
        return [
            found
            for i, v in enumerate(value)
            for found in _non_finite(v, f"{where}[{i}]")
        ]
    return []


def validate_results(data: Any) -> None:
    """Raise ``ValueError`` listing every way ``data`` departs from the recorded-results
    shape (chapter 6)."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise ValueError(
            f"a results file must be a JSON object, got {type(data).__name__}"
        )
    prov = data.get("provenance")
    if not isinstance(prov, dict):
        problems.append("provenance: missing or not an object")
    else:
        problems += [
            f"provenance.{k}: missing" for k in PROVENANCE_FIELDS if k not in prov
        ]
        seconds = prov.get("wall_seconds", 0)
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not 0 <= seconds < math.inf
        ):
            problems.append(
                "provenance.wall_seconds: expected a finite number >= 0, "
                f"got {seconds!r}"
            )
        if "threads" in prov and (
            isinstance(prov["threads"], bool) or not isinstance(prov["threads"], int)
        ):
            problems.append("provenance.threads: not an integer")
        # a string would be extended character by character
        commands = prov.get("commands", [])
        if not isinstance(commands, list) or not all(
            isinstance(c, str) for c in commands
        ):
            problems.append(
                "provenance.commands: expected a list of command strings, "
                f"got {commands!r}"
            )
    problems += [
        f"{where}: {value!r} is not finite; JSON cannot hold it (the writer would "
        "refuse the file after the next run)"
        for where, value in _non_finite(data)
    ][:20]
    runs = data.get("runs")
    if not isinstance(runs, list):
        problems.append("runs: missing or not a list")
        runs = []
    keys = set()
    for i, run in enumerate(runs):
        where = f"runs[{i}]"
        if not isinstance(run, dict):
            problems.append(f"{where}: not an object")
            continue
        for name, types in RUN_FIELDS.items():
            if name not in run:
                problems.append(f"{where}.{name}: missing")
            elif not isinstance(run[name], types) or (
                isinstance(run[name], bool) and bool not in types
            ):
                expected = "/".join(t.__name__ for t in types)
                problems.append(
                    f"{where}.{name}: expected {expected}, got {run[name]!r}"
                )
        if not all(n in run for n in RUN_FIELDS):
            continue
        if run["status"] not in ("ok", "diverged"):
            problems.append(
                f"{where}.status: must be 'ok' or 'diverged', got {run['status']!r}"
            )
        if run["status"] == "ok":
            for name in ("train_loss", "val_loss"):
                if (
                    not isinstance(run[name], (int, float))
                    or not math.isfinite(run[name])
                    or run[name] < 0
                ):
                    problems.append(
                        f"{where}.{name}: a finished run needs a finite loss >= 0, "
                        f"got {run[name]!r}"
                    )
            if not run["curve"]:
                problems.append(
                    f"{where}.curve: a finished run needs at least one point"
                )
        previous = 0
        for j, point in enumerate(run["curve"]):
            ok = (
                isinstance(point, list)
                and len(point) in (3, 4)  # 3: the first edition, without select
                and isinstance(point[0], int)
            )
            ok = ok and all(
                isinstance(v, (int, float)) and math.isfinite(v) for v in point[1:]
            )
            if not ok or point[0] <= previous or point[0] > run["steps"]:
                problems.append(
                    f"{where}.curve[{j}]: expected [step, train_loss, val_loss] or "
                    "[step, train_loss, val_loss, select_val_loss] with "
                    f"increasing steps in 1..{run['steps']}, got {point!r}"
                )
                break
            previous = point[0]
        if run["kind"] not in KINDS:
            problems.append(
                f"{where}.kind: must be one of {KINDS}, got {run['kind']!r}"
            )
        key = run_key(run)
        if key in keys:
            problems.append(
                f"{where}: a second run with experiment, label, seed, lr = {key}"
            )
        keys.add(key)
    if problems:
        raise ValueError(
            "invalid results file: "
            + "; ".join(problems[:20])
            + (" ..." if len(problems) > 20 else "")
        )


def load_results(path: str | Path) -> dict[str, Any]:
    """Read and validate a results file (``ValueError`` naming the problems)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path} is not valid JSON ({error}); it is left as it is"
        ) from error
    validate_results(data)
    return data


def write_results(path: str | Path, data: Mapping[str, Any]) -> None:
    """Validate ``data``, then write it atomically (``runtime.atomic_write``): a crash
    never leaves half a file."""
    validate_results(data)

    def dump(file: Any) -> None:
        json.dump(data, file, indent=1, allow_nan=False)
        file.write("\n")

    atomic_write(path, dump)


def merge_results(
    path: str | Path, data: Mapping[str, Any], stamp: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """Under ``path``'s lock, re-read it and add the runs of ``data`` it lacks (by
    ``run_key``), let ``stamp`` set the merged provenance, then write it atomically:
    concurrent writers never drop each other's runs.

    ``stamp`` receives the merged data with the file's provenance (``data``'s when there
    is no file yet); the merged data is returned, for the caller to go on from."""
    path = Path(path)
    with file_lock(path):
        merged = dict(data)
        if path.exists():
            disk = load_results(path)
            for key in ("profile", "profile_settings"):
                if (
                    key in disk
                    and key in data
                    and disk[key] != json.loads(json.dumps(data[key]))
                ):
                    raise ValueError(
                        f"{path} holds runs of another {key} ({disk[key]!r}, these "
                        f"runs have {data[key]!r}); write them to another output_dir"
                    )
            known = {run_key(r) for r in disk["runs"]}
            mine = [r for r in data["runs"] if run_key(r) not in known]
            merged = {**merged, **disk, "runs": [*disk["runs"], *mine]}
        stamp(merged)
        write_results(path, merged)
    return merged


def device_description(device: str) -> str:
    """The device a run on ``device`` uses, for provenance: the GPU's name, else the
    CPU's model name (Linux) and the thread count."""
    if device != "cpu" and torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name()}"
    n = torch.get_num_threads()
    threads = f"{n} thread{'' if n == 1 else 's'}"
    info = Path("/proc/cpuinfo")
    for line in info.read_text().splitlines() if info.is_file() else []:
        if line.startswith("model name"):
            return f"cpu: {line.split(':', 1)[1].strip()}, {threads}"
    return f"cpu: {threads}"


def ordered_experiments(experiments: Sequence[str] | None) -> list[str]:
    """``experiments`` in suite order, with ``lr-sweep`` first whenever another
    experiment needs it."""
    names = list(EXPERIMENTS if experiments is None else experiments)
    for name in names:
        if name in SEPARATE_EXPERIMENTS:
            raise ValueError(
                f"experiment {name!r} is not part of this suite: "
                f"{SEPARATE_EXPERIMENTS[name]}"
            )
        check_choice("experiments", name, EXPERIMENTS)
    if names and "lr-sweep" not in names:
        names.append("lr-sweep")
    return [name for name in EXPERIMENTS if name in names]


BASELINE_ORDER = 5  # n-gram baselines of orders 1..5 beside the models


def window_baselines(profile: str | Profile) -> dict[str, Any]:
    """n-gram cross-entropies scored like the models: on the report windows, the
    history cut at each window start; Kneser-Ney (the stronger here) at the top level,
    Witten-Bell and the limited-data slice's own n-grams beside it (chapter 6)."""
    p = get_profile(profile)
    corpus = _corpus(p.val_fraction)
    probe = _spec(p, "equal-depth", "none", profile_model_config(p, "none"), 1e-3, 0)
    _, report_windows = validation_windows(corpus, probe)
    scored = functools.partial(
        ngram_window_baselines, windows=report_windows, max_order=BASELINE_ORDER
    )
    return {
        "data": corpus.source,
        "val_fraction": p.val_fraction,
        "unit": LOSS_UNIT,
        "scoring": (
            "the report windows, as the models: the history of a byte stops at the "
            "start of its window"
        ),
        "smoothing": "interpolated Kneser-Ney (one discount per order)",
        **scored(corpus.train, smoothing="kneser-ney"),
        "witten-bell": scored(corpus.train, smoothing="witten-bell"),
        "limited-data": {
            "train_bytes": p.limited_bytes,
            "kneser-ney": scored(
                corpus.train[: p.limited_bytes], smoothing="kneser-ney"
            ),
            "witten-bell": scored(
                corpus.train[: p.limited_bytes], smoothing="witten-bell"
            ),
        },
    }


def run_experiments(
    profile: str | Profile,
    experiments: Sequence[str] | None = None,
    output_dir: str | Path = "notebooks/results",
    command: str = "",
    allow_mixed: bool = False,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Run (or resume) ``experiments`` at ``profile`` into
    ``<output_dir>/experiments.<profile>.json``.

    Each finished run is appended and the file rewritten atomically, so an interrupted
    command leaves a valid file and a restarted one skips the runs it finds (by
    experiment, label, seed, lr). A run whose settings equal a finished run's (e.g. a
    sweep run at the chosen rate) is copied with ``reused_from`` instead of re-trained.
    A file written by other ``sharedlib`` code (``code_hash``) is refused unless
    ``allow_mixed``; every run records its own commit and code hash either way. The
    provenance has the same fields as every recorded file of the book
    (``recorded.provenance``).
    """
    p = get_profile(profile)
    names = ordered_experiments(experiments)
    log = log or (lambda message: None)
    path = Path(output_dir) / f"{SUITE_RESULTS_NAME}.{p.name}.json"
    # before any training: a file, a read-only folder or a directory in its place fails
    check_output(path)
    code = code_hash()
    if path.exists():
        data = load_results(path)
        previous = data["provenance"].get("sharedlib_hash")
        if previous != code and not allow_mixed:
            raise ValueError(
                f"{path} was written by other sharedlib code (hash {previous}, now "
                f"{code}); pass allow_mixed (--allow-mixed) to add runs made by this "
                "code to it, or write to another --output-dir"
            )
    else:
        data = {
            "provenance": {},
            "profile": p.name,
            "profile_settings": asdict(p),
            "runs": [],
            "baselines": window_baselines(p),
        }
    base_seconds = float(data["provenance"].get("wall_seconds", 0.0))
    started = time.perf_counter()
    stamped = [False]  # whether this command is in the file's list of commands yet

    # ``target``: the runs merged with the file's, its provenance
    def stamp(target: dict[str, Any]) -> None:
        previous = target["provenance"]
        seconds = max(
            base_seconds + time.perf_counter() - started,
            float(previous.get("wall_seconds", 0.0)),
        )
        prov = provenance(command, device_description(p.device), seconds)
        code_hashes = sorted(
            {r.get("sharedlib_hash", code) for r in target["runs"]} | {code}
        )
        commands = [*previous.get("commands", []), *([] if stamped[0] else [command])]
        target["provenance"] = {
            **prov,
            "sharedlib_hash": code if len(code_hashes) == 1 else "mixed",
            "sharedlib_hashes": code_hashes,
            "commands": commands,
        }
        stamped[0] = True

    commit = provenance(command, "", 0.0)["commit"]
    done = {run_key(r) for r in data["runs"]}
    trained: dict[str, dict[str, torch.Tensor]] = {}

    def run(spec: RunSpec) -> None:
        nonlocal data, done
        if spec.key in done:
            return
        same = next(
            (
                r
                for r in data["runs"]
                if r.get("spec_hash") == spec.spec_hash and r["status"] == "ok"
            ),
            None,
        )
        if same is not None:
            record = {
                **copy.deepcopy(same),
                "experiment": spec.experiment,
                "label": spec.label,
                "reused_from": f"{same['experiment']} / {same['label']}",
                "wall_seconds": 0.0,
            }
        else:
            record = execute_run(spec, trained)
            record.update(commit=commit, sharedlib_hash=code)
        data["runs"].append(record)
        # with the runs another command wrote meanwhile
        data = merge_results(path, data, stamp)
        done |= {run_key(r) for r in data["runs"]}
        val = record["val_loss"]
        log(
            f"{spec.experiment} / {spec.label} / seed {spec.seed} / "
            f"lr {spec.train.lr:g}: "
            f"val {'diverged' if val is None else f'{val:.4f}'} "
            f"({record['wall_seconds']:.1f} s)"
        )

    for name in names:
        sweep = name.endswith("-sweep")
        rule = "best" if name == "budget-stopped" else "last"
        lrs = {} if sweep else chosen_lrs(data["runs"], p, rule)
        for spec in plan(p, name, lrs):
            run(spec)
        while sweep and (extra := grid_extensions(data["runs"], p, name)):
            for spec in extra:  # the chosen rate sat at the edge: widen the grid
                run(spec)
    # nothing to run: still leave a valid (empty) file with its provenance
    if not path.exists():
        merge_results(path, data, stamp)
    return path
