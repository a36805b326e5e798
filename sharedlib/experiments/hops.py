"""Pointer chains in a causal decoder: trained on up to L hops, tested on up to 2L, with
1 to 4N iterations of a looped model at test time (chapter 6).

Every position is a root holding a bit or a pointer to a parent 1 .. ``max_offset``
positions to its left; its answer is its root's bit and its hop count the number of
pointers followed to get there. Parents lie to the left, so a causal decoder can answer
at every position. Why the task needs depth: a causal layer moves a root's bit at most
one pointer per attention step unless it composes pointers, so a model that follows
pointers one by one needs ``hops`` layers. Composing them is possible: pointer doubling
(each position learns where its ancestor 2^k hops up lies, then 2^(k+1)) could need only
about log2(hops) layers. "Needs depth" therefore means at least log2(hops) sequential
steps, not hops steps; how many a trained model uses is measured (accuracy per hop count
at 1 .. 4N iterations), not assumed.

Losses are in nats per token (``models.LOSS_UNIT``), a token being one position's
answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

from ..config import POSITIONS, TransformerConfig
from ..counting import forward_flops_per_token
from ..data import (
    ANSWER_BITS,
    IGNORE,
    POINTER_OFFSET,
    ROOT_OFFSET,
    chain_vocab_size,
)
from ..measure import count_module_parameters
from ..models import LOSS_UNIT, SharedTransformer, scored_cross_entropy
from ..runtime import resolve_device
from ..train import NonFiniteLossError, TrainConfig, train
from ..validation import check_choice, check_int
from .recorded import provenance
from .suite import (
    FIRST_LOSSES,
    code_hash,
    device_description,
    load_results,
    merge_results,
    run_key,
)

__all__ = [
    "DEPTHS",
    "HOPS_MODULES",
    "HOPS_PROFILES",
    "HOPS_RESULTS_NAME",
    "SELECT_SEED",
    "TEST_SEED",
    "HopsProfile",
    "ancestor_guess",
    "arm_config",
    "arm_label",
    "check_seeds",
    "chosen_lr",
    "count_hops",
    "data_seeds",
    "execute_arm",
    "flops_per_token",
    "get_hops_profile",
    "hop_batch",
    "hop_logits",
    "hop_test_set",
    "nearest_root_bits",
    "random_depths",
    "replace_steps",
    "replay_arm",
    "run_hops",
    "score_hops",
    "selection_set",
    "shortcut_baselines",
    "train_arm",
]

HOPS_RESULTS_NAME = "hops"  # notebooks/results/hops.<profile>.json
EXPERIMENT = "iterations-hops"
# training depth of a looped model: always N, or drawn per step
DEPTHS: tuple[str, ...] = ("fixed", "random")
# The data seeds. Training batches come from the run's seed (0 .. seeds-1, the
# ``TrainConfig.seed`` of ``train``); the selection set (learning rates) from
# SELECT_SEED + i; the test set of max_hops h from TEST_SEED + h, the same for every
# model and seed. ``check_seeds`` refuses a profile where two of them meet.
SELECT_SEED = 2_000_003
TEST_SEED = 1_000_003
# the random-depth draws of seed s come from DEPTH_SEED + s, apart from the batches
DEPTH_SEED = 10_000


# ----------------------------------------------------------------------------- the task
def hop_batch(
    batch_size: int,
    length: int,
    max_offset: int,
    max_hops: int,
    generator: torch.Generator,
    min_hops: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Causal pointer chains of at most ``max_hops`` hops: inputs, targets (root bits)
    and hop counts, each (B, L); targets of positions under ``min_hops`` hops are
    ``IGNORE`` (chapter 6).

    Position 0 is a root. Every later position draws a hop count d uniformly from
    0 .. ``max_hops``: d = 0 makes a root with a random bit, else it points to a random
    one of the deepest positions among the ``max_offset`` to its left that have fewer
    than d hops (a root if there is none), so its hop count is at most d. Tokens as in
    ``data.pointer_chain_batch`` (``chain_vocab_size(max_offset)``).

    Why it needs depth: a causal attention step moves a root's bit at most one pointer
    further unless the model composes pointers; pointer doubling would need only about
    log2(hops) steps, so the claim is "at least log2(hops) sequential steps", and the
    experiment measures how many a trained model uses. The guesses of
    ``ancestor_guess`` show what a model gets without following the whole chain.
    """
    check_int("batch_size", batch_size)
    check_int("length", length)
    check_int("max_offset", max_offset)
    check_int("max_hops", max_hops)
    check_int("min_hops", min_hops, 0, max_hops)
    bit = torch.randint(0, 2, (batch_size, length), generator=generator)  # (B, L)
    # (B, L) the hop count each position asks for
    wanted = torch.randint(0, max_hops + 1, (batch_size, length), generator=generator)
    # (B, L, O) tie-breaks among equally deep parents
    noise = torch.rand(batch_size, length, max_offset, generator=generator)
    hops = torch.zeros(batch_size, length, dtype=torch.long)  # (B, L)
    targets = bit.clone()  # (B, L) roots keep their own bit
    offset = torch.zeros_like(hops)  # (B, L) 0: a root
    for t in range(1, length):
        width = min(t, max_offset)
        window = hops[:, t - width : t].flip(1)  # (B, W) offsets 1 .. W
        allowed = window < wanted[:, t, None]  # (B, W)
        score = torch.where(allowed, window + noise[:, t, :width], -1.0)  # (B, W)
        best, index = score.max(dim=1)  # (B,)
        pointer = best >= 0  # (B,)
        parent = (t - 1 - index)[:, None]  # (B, 1)
        offset[:, t] = torch.where(pointer, index + 1, 0)
        hops[:, t] = torch.where(pointer, hops.gather(1, parent)[:, 0] + 1, 0)
        targets[:, t] = torch.where(pointer, targets.gather(1, parent)[:, 0], bit[:, t])
    # (B, L)
    inputs = torch.where(offset > 0, POINTER_OFFSET - 1 + offset, ROOT_OFFSET + bit)
    targets = torch.where(hops < min_hops, IGNORE, targets)  # (B, L)
    return inputs, targets, hops


def count_hops(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Root bits and hop counts (B, L) of pointer-chain inputs (B, L), read from the
    tokens alone by following every pointer (chapter 6)."""
    bits = torch.zeros_like(inputs)  # (B, L)
    hops = torch.zeros_like(inputs)  # (B, L)
    root = inputs < POINTER_OFFSET  # (B, L)
    for t in range(inputs.shape[1]):
        # (B,) 0 at a root
        offset = torch.where(root[:, t], 0, inputs[:, t] - (POINTER_OFFSET - 1))
        if bool((offset > t).any()):
            raise ValueError(f"a pointer at position {t} points before position 0")
        parent = (t - offset).clamp(min=0)[:, None]  # (B, 1)
        bits[:, t] = torch.where(
            root[:, t], inputs[:, t] - ROOT_OFFSET, bits.gather(1, parent)[:, 0]
        )
        hops[:, t] = torch.where(root[:, t], 0, hops.gather(1, parent)[:, 0] + 1)
    return bits, hops


def nearest_root_bits(inputs: torch.Tensor) -> torch.Tensor:
    """The bit of the nearest root at or left of each position (B, L): a guess that
    follows no pointer (chapter 6)."""
    root = inputs < POINTER_OFFSET  # (B, L)
    last = torch.zeros_like(inputs[:, 0])  # (B,)
    out = torch.zeros_like(inputs)  # (B, L)
    for t in range(inputs.shape[1]):
        last = torch.where(root[:, t], inputs[:, t] - ROOT_OFFSET, last)
        out[:, t] = last
    return out


def ancestor_guess(inputs: torch.Tensor, steps: int) -> torch.Tensor:
    """Follow ``steps`` pointers (a root stays put), then guess the nearest root's bit
    (B, L): what ``steps`` one-hop layers and a shortcut reach (chapter 6)."""
    check_int("steps", steps, 0)
    root = inputs < POINTER_OFFSET  # (B, L)
    offset = torch.where(root, 0, inputs - (POINTER_OFFSET - 1))  # (B, L)
    # (B, L) the parent of each position, a root its own
    parent = (torch.arange(inputs.shape[1]) - offset).clamp(min=0)
    at = torch.arange(inputs.shape[1]).expand_as(inputs)  # (B, L)
    for _ in range(steps):
        at = parent.gather(1, at)
    return nearest_root_bits(inputs).gather(1, at)  # (B, L)


# ----------------------------------------------------------------------------- profiles
@dataclass(frozen=True)
class HopsProfile:
    """Sizes of the iterations-and-hops experiment at one profile (``ci`` live, ``cpu``
    recorded, ``gpu``); chapter 6."""

    name: str
    d_model: int
    n_heads: int
    d_ff: int
    # N: layers of the unshared model, iterations of the looped one in training
    n_layers: int
    batch_size: int
    length: int  # positions per sequence, the same in training and test
    max_offset: int  # pointers reach 1 .. max_offset positions to the left
    train_hops: int  # L: training chains have at most L hops; tests reach 2L
    steps: int
    warmup: int
    eval_every: int
    eval_batches: int  # batches of the selection set
    seeds: int
    lrs: tuple[float, ...]  # swept at seed 0 for every arm
    test_iterations: tuple[int, ...]  # iterations tried on a looped model at test time
    test_examples: int  # sequences per test set
    position: str = "rotary"
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_choice("position", self.position, POSITIONS)
        check_int("train_hops", self.train_hops)
        for k in self.test_iterations:
            check_int("test_iterations", k)

    @property
    def test_hops(self) -> tuple[tuple[str, int, int], ...]:
        """(name, max_hops, min_hops) of the test sets: the trained range 0 .. L, and
        beyond it, L+1 .. 2L (the positions scored)."""
        L = self.train_hops
        return (("trained", L, 0), ("beyond", 2 * L, L + 1))

    def arms(self) -> list[tuple[str, str]]:
        """(strategy, depth) of every compared model: unshared, looped, looped trained
        at random depth."""
        return [("none", "fixed"), ("all", "fixed"), ("all", "random")]


def _all_iterations(n_layers: int) -> tuple[int, ...]:
    return tuple(range(1, 4 * n_layers + 1))


HOPS_PROFILES: dict[str, HopsProfile] = {
    "ci": HopsProfile(
        "ci",
        d_model=32,
        n_heads=2,
        d_ff=64,
        n_layers=2,
        batch_size=16,
        length=16,
        max_offset=4,
        train_hops=2,
        steps=30,
        warmup=3,
        eval_every=15,
        eval_batches=2,
        seeds=2,
        lrs=(3e-3,),
        test_iterations=(1, 2, 4, 8),
        test_examples=32,
    ),
    "cpu": HopsProfile(
        "cpu",
        d_model=64,
        n_heads=4,
        d_ff=256,
        n_layers=4,
        batch_size=32,
        length=32,
        max_offset=8,
        train_hops=4,
        steps=1500,
        warmup=50,
        eval_every=250,
        eval_batches=4,
        seeds=5,
        lrs=(1e-3, 3e-3, 1e-2),
        test_iterations=_all_iterations(4),
        test_examples=500,
    ),
    "gpu": HopsProfile(
        "gpu",
        d_model=256,
        n_heads=8,
        d_ff=1024,
        n_layers=8,
        batch_size=128,
        length=96,
        max_offset=16,
        train_hops=8,
        steps=10000,
        warmup=200,
        eval_every=1000,
        eval_batches=8,
        seeds=5,
        lrs=(3e-4, 1e-3, 3e-3),
        test_iterations=_all_iterations(8),
        test_examples=2000,
        device="auto",
    ),
}


def replace_steps(profile: HopsProfile, steps: int) -> HopsProfile:
    """``profile`` with ``steps`` training steps (and evaluations within them): for
    tests and probes (chapter 6)."""
    return replace(
        profile,
        steps=steps,
        warmup=min(profile.warmup, steps),
        eval_every=min(profile.eval_every, steps),
    )


def get_hops_profile(profile: str | HopsProfile) -> HopsProfile:
    """The ``HopsProfile`` named ``profile`` (one of ``HOPS_PROFILES``), or ``profile``
    itself (chapter 6)."""
    if isinstance(profile, HopsProfile):
        return profile
    return HOPS_PROFILES[check_choice("profile", profile, HOPS_PROFILES)]


def data_seeds(profile: HopsProfile) -> dict[str, list[int]]:
    """The generator seeds of the training batches, the selection set and the test sets
    of ``profile`` (chapter 6)."""
    return {
        "train": list(range(profile.seeds)),
        "select": [SELECT_SEED + i for i in range(profile.eval_batches)],
        "test": [TEST_SEED + max_hops for _, max_hops, _ in profile.test_hops],
    }


def check_seeds(profile: HopsProfile) -> None:
    """``ValueError`` if the training, selection and test data of ``profile`` share a
    generator seed (chapter 6)."""
    seeds = data_seeds(profile)
    names = list(seeds)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = set(seeds[a]) & set(seeds[b])
            if shared:
                raise ValueError(
                    f"the {a} and {b} data share generator seeds {sorted(shared)}: "
                    "use fewer seeds or eval_batches"
                )


def hop_test_set(
    profile: HopsProfile, name: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fixed test set ``name`` ("trained" or "beyond") of ``profile``: inputs,
    targets and hops (B, L), the same for every model and seed (chapter 6)."""
    sets = {n: (high, low) for n, high, low in profile.test_hops}
    max_hops, min_hops = sets[check_choice("name", name, sets)]
    generator = torch.Generator().manual_seed(TEST_SEED + max_hops)
    return hop_batch(
        profile.test_examples,
        profile.length,
        profile.max_offset,
        max_hops,
        generator,
        min_hops,
    )


def selection_set(
    profile: HopsProfile,
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The held-out batches that choose the learning rate (the training distribution,
    seeds apart from training and test): ``eval_batches`` of them (chapter 6)."""
    return [
        hop_batch(
            profile.batch_size,
            profile.length,
            profile.max_offset,
            profile.train_hops,
            torch.Generator().manual_seed(seed),
        )
        for seed in data_seeds(profile)["select"]
    ]


# ---------------------------------------------------------------------------- the model
def arm_label(strategy: str, depth: str) -> str:
    """The label of an arm: 'unshared', 'looped' or 'looped / random depth'
    (chapter 6)."""
    return ("looped" if strategy == "all" else "unshared") + (
        " / random depth" if depth == "random" else ""
    )


def arm_config(profile: HopsProfile, strategy: str) -> TransformerConfig:
    """The causal decoder of an arm: N layers, unshared ("none") or one block looped
    ("all"), with a tied head over the chain vocabulary (chapter 6)."""
    return TransformerConfig(
        d_model=profile.d_model,
        n_heads=profile.n_heads,
        d_ff=profile.d_ff,
        n_layers=profile.n_layers,
        strategy=check_choice("strategy", strategy, ("none", "all")),
        vocab_size=chain_vocab_size(profile.max_offset),
        max_len=profile.length,
        position=profile.position,
        causal=True,
        lm_head=True,
        dropout=0.0,
    )


def random_depths(n_layers: int) -> tuple[int, int]:
    """Range of iterations drawn uniformly per training step by a random-depth arm:
    1 .. 2N, N + 1/2 in expectation (chapter 6)."""
    return 1, 2 * check_int("n_layers", n_layers)


def flops_per_token(
    config: TransformerConfig, seq_len: int, mean_iterations: float
) -> dict[str, float]:
    """Training FLOPs per token (forward and backward, 3x forward) of a model that ran
    ``mean_iterations`` layers on average, with its per-iteration and head parts
    (chapter 6)."""
    parts = forward_flops_per_token(config, seq_len)
    layers = parts["attention_projections"] + parts["attention_scores"] + parts["ffn"]
    iteration = layers // config.depth  # one layer (or block application)
    head = parts["embedding_projection"] + parts["lm_head"]
    return {
        "iteration": iteration,
        "head": head,
        "train": 3 * (mean_iterations * iteration + head),
    }


def hop_logits(
    model: SharedTransformer,
    inputs: torch.Tensor,
    n_iterations: int | None = None,
    chunk: int = 256,
) -> torch.Tensor:
    """Logits (B, L, V) of ``model`` at ``n_iterations`` (looped models; None: as
    built), computed ``chunk`` sequences at a time on the model's device (chapter 6)."""
    device = next(model.parameters()).device
    parts = []
    for start in range(0, inputs.shape[0], chunk):
        x = inputs[start : start + chunk].to(device)  # (b, L)
        parts.append(model.logits(model(x, n_iterations=n_iterations)).float().cpu())
    return torch.cat(parts)  # (B, L, V)


@torch.no_grad()
def score_hops(
    model: SharedTransformer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    hops: torch.Tensor,
    n_iterations: int | None = None,
) -> dict[str, Any]:
    """Loss and accuracy over the scored positions of a test set, and per hop count
    (chapter 6).

    Loss: cross-entropy over the whole vocabulary (what was trained); accuracy: the
    answer token (0 or 1) with the larger logit is the root's bit.
    """
    model.eval()
    logits = hop_logits(model, inputs, n_iterations)  # (B, L, V)
    predicted = logits[..., :ANSWER_BITS].argmax(-1)  # (B, L)
    scored = targets != IGNORE  # (B, L)
    right = (predicted == targets) & scored  # (B, L)
    by_hops = []
    for h in sorted(set(hops[scored].tolist())):
        at = scored & (hops == h)  # (B, L)
        by_hops.append(
            {
                "hops": h,
                "positions": int(at.sum()),
                "accuracy": right[at].float().mean().item(),
                "loss": scored_cross_entropy(
                    logits, torch.where(at, targets, IGNORE)
                ).item(),
            }
        )
    return {
        "loss": scored_cross_entropy(logits, targets).item(),
        "accuracy": right[scored].float().mean().item(),
        "by_hops": by_hops,
    }


# ------------------------------------------------------------------------------ one run
class _ReplayStopError(Exception):
    """Raised by ``get_batch`` to end a replay after its first steps."""


def train_arm(
    profile: HopsProfile,
    strategy: str,
    depth: str,
    lr: float,
    seed: int,
    stop_after: int | None = None,
) -> tuple[SharedTransformer, Any, list[int], list[float]]:
    """Train one arm at ``seed`` (it fixes the init and, shared by every arm, the
    batches); return the model, its ``History`` (None when stopped after
    ``stop_after`` steps), the iterations of every step and the training losses
    (chapter 6)."""
    check_choice("depth", depth, DEPTHS)
    if depth == "random" and strategy != "all":
        raise ValueError(
            f"depth 'random' needs the looped strategy 'all', got {strategy!r}"
        )
    check_seeds(profile)
    check_int("seed", seed, 0, profile.seeds - 1)
    torch.manual_seed(seed)
    model = SharedTransformer(arm_config(profile, strategy))
    low, high = random_depths(profile.n_layers)
    # apart from the batches: they stay paired
    depth_generator = torch.Generator().manual_seed(DEPTH_SEED + seed)
    selection = selection_set(profile)
    depths: list[int] = []  # iterations per training step
    losses: list[float] = []
    calls = [0]  # selection batches handed out

    def get_batch(split: str, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        if split != "train":  # the fixed selection set, in order
            inputs, targets, _ = selection[calls[0] % len(selection)]
            calls[0] += 1
            return inputs, targets, torch.tensor(profile.n_layers)
        if stop_after is not None and len(losses) >= stop_after:
            raise _ReplayStopError
        inputs, targets, _ = hop_batch(
            profile.batch_size,
            profile.length,
            profile.max_offset,
            profile.train_hops,
            generator,
        )
        steps = profile.n_layers
        if depth == "random":
            steps = int(torch.randint(low, high + 1, (1,), generator=depth_generator))
        depths.append(steps)
        return inputs, targets, torch.tensor(steps)

    def loss_fn(m: SharedTransformer, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        inputs, targets, steps = batch
        k = int(steps) if strategy == "all" else None
        loss = scored_cross_entropy(m.logits(m(inputs, n_iterations=k)), targets)
        if m.training:
            losses.append(loss.item())
        return loss

    config = TrainConfig(
        steps=profile.steps,
        lr=lr,
        warmup=profile.warmup,
        eval_every=profile.eval_every,
        eval_batches=profile.eval_batches,
        seed=seed,
        device=profile.device,
    )
    try:
        history = train(model, loss_fn, get_batch, config)
    except _ReplayStopError:
        history = None
    return model, history, depths, losses


def replay_arm(
    data: Mapping[str, Any], record: Mapping[str, Any], steps: int = 10
) -> list[float]:
    """The first ``steps`` training losses of a recorded run, re-computed from the
    file's profile settings and the run's arm, rate and seed on the run's thread count
    (compare with ``suite.replay_matches``); chapter 6."""
    settings = {
        k: tuple(v) if isinstance(v, list) else v
        for k, v in data["profile_settings"].items()
    }
    profile = replace(HopsProfile(**settings), device="cpu")
    check_int("steps", steps, 1, len(record["first_losses"]))
    threads = torch.get_num_threads()
    torch.set_num_threads(int(record["threads"]))
    try:
        *_, losses = train_arm(
            profile,
            record["strategy"],
            record["depth"],
            record["lr"],
            record["seed"],
            stop_after=steps,
        )
    finally:
        torch.set_num_threads(threads)
    return losses


def execute_arm(
    profile: HopsProfile,
    strategy: str,
    depth: str,
    lr: float,
    seed: int,
) -> dict[str, Any]:
    """Train one arm and test it on both test sets (looped: at every test iteration
    count): one recorded run (chapter 6)."""
    start = time.perf_counter()
    config = arm_config(profile, strategy)
    record: dict[str, Any] = {
        "experiment": EXPERIMENT,
        "label": arm_label(strategy, depth),
        "strategy": strategy,
        "depth": depth,
        "seed": seed,
        "lr": lr,
        "kind": "train",
        "data": (
            f"causal pointer chains, {profile.length} positions, offsets "
            f"1..{profile.max_offset}, 0..{profile.train_hops} hops"
        ),
        "steps": profile.steps,
        "model_config": asdict(config),
        "train_config": {
            "steps": profile.steps,
            "lr": lr,
            "warmup": profile.warmup,
            "seed": seed,
            "batch_size": profile.batch_size,
            "train_hops": profile.train_hops,
            "random_depths": list(random_depths(profile.n_layers))
            if depth == "random"
            else None,
        },
        "parameters": count_module_parameters(SharedTransformer(config)),
        "loss_unit": LOSS_UNIT,  # a token is one position's answer
        "threads": torch.get_num_threads(),
        "device": str(resolve_device(profile.device)),
    }
    try:
        model, history, depths, _ = train_arm(profile, strategy, depth, lr, seed)
    except NonFiniteLossError as error:
        flops = flops_per_token(config, profile.length, float(profile.n_layers))
        record.update(
            status="diverged",
            error=str(error)[:400],
            tokens=0,
            mean_iterations=None,
            iteration_flops_per_token=flops["iteration"],
            head_flops_per_token=flops["head"],
            flops_per_token=round(flops["train"]),
            train_flops=0.0,
            train_loss=None,
            val_loss=None,
            select_loss=None,
            curve=[],
            first_losses=[],
            tests=[],
            wall_seconds=time.perf_counter() - start,
        )
        return record
    mean_iterations = sum(depths) / len(depths)
    flops = flops_per_token(config, profile.length, mean_iterations)
    tokens = len(depths) * profile.batch_size * profile.length
    curve = [
        [s, history.train_loss[s - 1], v]
        for s, v in zip(history.eval_steps, history.val_loss, strict=True)
    ]
    iterations = [None] if strategy != "all" else list(profile.test_iterations)
    tests = []
    for name, max_hops, min_hops in profile.test_hops:
        inputs, targets, hops = hop_test_set(profile, name)
        for k in iterations:
            tests.append(
                {
                    "test_set": name,
                    "max_hops": max_hops,
                    "min_hops": min_hops,
                    "iterations": profile.n_layers if k is None else k,
                    **score_hops(model, inputs, targets, hops, k),
                }
            )
    record.update(
        status="ok",
        tokens=tokens,
        # the compute the run used: random depth is compared at its mean iterations
        mean_iterations=mean_iterations,
        iteration_flops_per_token=flops["iteration"],
        head_flops_per_token=flops["head"],
        flops_per_token=round(flops["train"]),
        train_flops=flops["train"] * tokens,
        train_loss=history.train_loss[-1],
        val_loss=history.val_loss[-1],
        # the selection set at N iterations: what chooses the learning rate
        select_loss=history.val_loss[-1],
        curve=curve,
        first_losses=history.train_loss[:FIRST_LOSSES],
        tests=tests,
        wall_seconds=time.perf_counter() - start,
    )
    return record


# ---------------------------------------------------------------------------- the suite
def chosen_lr(runs: Sequence[Mapping[str, Any]], run_label: str) -> float | None:
    """The swept learning rate of the lowest selection-set loss of ``run_label`` at
    seed 0 (None: not swept); chapter 6."""
    swept = [
        r for r in runs if r["label"] == run_label and r["seed"] == 0 and r.get("sweep")
    ]
    finished = [r for r in swept if r["status"] == "ok"]
    if not finished:
        return None
    return float(min(finished, key=lambda r: r["select_loss"])["lr"])


def shortcut_baselines(profile: HopsProfile) -> dict[str, Any]:
    """Accuracy per hop count on each test set of ``ancestor_guess`` after 0 .. 2L
    pointers: what one-pointer-per-step models with a nearest-root shortcut reach
    (chapter 6)."""
    out: dict[str, Any] = {}
    for name, _, _ in profile.test_hops:
        inputs, targets, hops = hop_test_set(profile, name)
        scored = targets != IGNORE  # (B, L)
        rows = []
        for steps in range(2 * profile.train_hops + 1):
            right = ancestor_guess(inputs, steps) == targets  # (B, L)
            rows.append(
                {
                    "steps": steps,
                    "by_hops": [
                        {
                            "hops": h,
                            "positions": int((scored & (hops == h)).sum()),
                            "accuracy": right[scored & (hops == h)]
                            .float()
                            .mean()
                            .item(),
                        }
                        for h in sorted(set(hops[scored].tolist()))
                    ],
                }
            )
        out[name] = rows
    return {"ancestor_guess": out}


def _execute_in_worker(job: tuple) -> dict[str, Any]:
    """``execute_arm(*job)`` in a worker process, on one thread (so that two workers
    fill two cores without contention)."""
    torch.set_num_threads(1)
    return execute_arm(*job)


def run_hops(
    profile: str | HopsProfile,
    output_dir: str | Path = "notebooks/results",
    command: str = "",
    allow_mixed: bool = False,
    log: Callable[[str], None] | None = None,
    workers: int = 1,
) -> Path:
    """Run (or resume) the experiment at ``profile`` into
    ``<output_dir>/hops.<profile>.json``: a learning-rate sweep per arm at seed 0,
    chosen on the selection set, then every seed at the chosen rate; one atomic append
    per finished run (chapter 6).

    ``workers`` > 1 trains that many runs at once in processes of one thread each; a
    run's numbers do not depend on which worker ran it (each seeds its own generators).
    """
    p = get_hops_profile(profile)
    check_int("workers", workers)
    check_seeds(p)
    log = log or (lambda message: None)
    path = Path(output_dir) / f"{HOPS_RESULTS_NAME}.{p.name}.json"
    code = code_hash(HOPS_MODULES)
    if path.exists():
        data = load_results(path)
        previous = data["provenance"].get("sharedlib_hash")
        if previous != code and not allow_mixed:
            raise ValueError(
                f"{path} was written by other sharedlib code (hash {previous}, now "
                f"{code}); pass allow_mixed to add to it, or write to another "
                "output_dir"
            )
    else:
        data = {
            "provenance": {},
            "profile": p.name,
            "profile_settings": asdict(p),
            "data_seeds": data_seeds(p),
            "baselines": shortcut_baselines(p),
            "runs": [],
        }
    before = float(data["provenance"].get("wall_seconds", 0.0))
    started = time.perf_counter()
    commit = provenance(command, "", 0.0)["commit"]
    done = {run_key(r) for r in data["runs"]}

    # ``target``: the runs merged with the file's, its provenance
    def stamp(target: dict[str, Any]) -> None:
        seconds = max(
            before + time.perf_counter() - started,
            float(target["provenance"].get("wall_seconds", 0.0)),
        )
        hashes = sorted({r["sharedlib_hash"] for r in target["runs"]})
        target["provenance"] = {
            **provenance(command, device_description(p.device), seconds),
            "sharedlib_hash": hashes[0] if len(hashes) == 1 else "mixed",
            "sharedlib_hashes": hashes,
        }

    def add(record: dict[str, Any]) -> None:
        record.update(commit=commit, sharedlib_hash=code)
        data["runs"].append(record)
        # with the runs another command wrote meanwhile
        data.update(merge_results(path, data, stamp))
        done.update(run_key(r) for r in data["runs"])
        beyond = [
            row["accuracy"] for row in record["tests"] if row["test_set"] == "beyond"
        ]
        log(
            f"{record['label']} / seed {record['seed']} / lr {record['lr']:g}: "
            f"select {record['select_loss']}, best accuracy beyond the trained hops "
            f"{max(beyond, default=None)} ({record['wall_seconds']:.1f} s)"
        )

    def key(job: tuple) -> tuple[str, str, int, float]:
        """The ``run_key`` a job's record will have."""
        return (EXPERIMENT, arm_label(*job[1:3]), job[4], float(job[3]))

    def run_all(jobs: list[tuple], sweep: bool) -> None:
        jobs = [job for job in jobs if key(job) not in done]
        marks = {"sweep": True} if sweep else {}
        if workers == 1:
            for job in jobs:
                if key(job) not in done:  # another command's meanwhile?
                    add({**execute_arm(*job), **marks})
            return
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_execute_in_worker, job) for job in jobs]
            for future in as_completed(futures):  # in order of finishing
                add({**future.result(), **marks})

    arms = p.arms()
    # seed 0, every rate
    run_all([(p, *arm, lr, 0) for arm in arms for lr in p.lrs], sweep=True)
    chosen = {arm: chosen_lr(data["runs"], arm_label(*arm)) for arm in arms}
    run_all(
        [
            (p, *arm, chosen[arm], seed)
            for seed in range(1, p.seeds)
            for arm in arms
            if chosen[arm] is not None
        ],
        sweep=False,
    )
    return path


# The modules a recorded run executes (it borrows the results-file helpers of
# ``suite``): the code hash covers them.
HOPS_MODULES: tuple[str, ...] = (
    "config",
    "counting",
    "data",
    "experiments.baselines",
    "experiments.hops",
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
