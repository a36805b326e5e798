"""Binary addition, least significant bit first: trained on short numbers, tested on
long ones (chapter 6).

After a start token, position t holds the pair (a_t, b_t) as the token 2 a_t + b_t and
must output the sum bit s_t = a_t xor b_t xor c_t. The carry c_t is decided by the
nearest position k < t where a_k + b_k != 1 (both ones: carry; both zeros: none); every
position in between passes the carry on. A layer that looks one position to the left
resolves one link of that chain, so the depth an input needs grows with its longest run
of ``a + b = 1``: a looped model could meet longer inputs with more iterations, an
unshared one cannot add layers. The recorded experiment tests it.

The start token matters: rotary and no position embeddings leave the values of attention
position-free, so without it a run of equal tokens at the start (e.g. 3, 3) gives every
position the state of the first, and the model cannot see the carry the first pair makes
(``tests/test_addition.py`` shows it).

Losses are in nats per token (``models.LOSS_UNIT``), a token being one bit of the sum.
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
import torch.nn.functional as F
from torch import nn

from ..config import POSITIONS, TransformerConfig
from ..counting import forward_flops_per_token
from ..data import IGNORE
from ..measure import count_module_parameters
from ..models import LOSS_UNIT, SharedTransformer, scored_cross_entropy
from ..runtime import resolve_device
from ..train import NonFiniteLossError, TrainConfig, train
from ..validation import check_choice, check_int
from .recorded import provenance
from .suite import code_hash, device_description, load_results, merge_results, run_key

__all__ = [
    "ADDITION_MODULES",
    "ADDITION_PROFILES",
    "ADDITION_RESULTS_NAME",
    "START",
    "TEST_SEED",
    "AdditionModel",
    "addition_batch",
    "arm_config",
    "carry_span",
    "chosen_lr",
    "execute_arm",
    "get_addition_profile",
    "random_depths",
    "replace_steps",
    "replay_arm",
    "run_addition",
    "train_arm",
]

ADDITION_RESULTS_NAME = "addition"  # notebooks/results/addition.<profile>.json
EXPERIMENT = "iterations-length"
START = 4  # the start token, before the first pair
INPUT_TOKENS = 5  # 2 a + b for the pairs, and START
# training depth of a looped model: always N, or drawn per step
DEPTHS: tuple[str, ...] = ("fixed", "random")
# the test examples of n bits come from TEST_SEED + n: the same for every model and seed
TEST_SEED = 1_000_003


# ----------------------------------------------------------------------------- the task
def sum_bits(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The n + 1 bits of a + b (B, n+1), least significant first, by a ripple-carry
    loop (the reference)."""
    carry = torch.zeros(a.shape[0], dtype=torch.long)  # (B,)
    out = []
    for t in range(a.shape[1]):
        total = a[:, t] + b[:, t] + carry  # (B,)
        out.append(total % 2)
        carry = total // 2
    return torch.stack([*out, carry], dim=1)  # (B, n+1)


def carry_span(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per example (B,): the longest distance from a position to the nearest k < t with
    a_k + b_k != 1, the start of the number counting as such a position: the links a
    one-position-per-layer rule must resolve."""
    passes = (a + b == 1).long()  # (B, n)
    # distance back to the last deciding position
    run = torch.zeros(a.shape[0], dtype=torch.long)  # (B,)
    longest = torch.zeros_like(run)
    for t in range(a.shape[1] + 1):  # position t of the n + 1 outputs
        run = run + 1
        longest = torch.maximum(longest, run)
        if t < a.shape[1]:
            run = run * passes[:, t]  # a deciding position resets the distance
    return longest


def addition_batch(
    batch_size: int, n_bits: int, generator: torch.Generator, start: bool = True
) -> tuple[torch.Tensor, ...]:
    """Random n-bit a and b: inputs (B, n+2) of START, tokens 2a+b and a final 0 for the
    carry out; targets (B, n+2) holding the sum bits (``IGNORE`` at START); the carry
    spans (B,). ``start=False`` drops START."""
    check_int("batch_size", batch_size)
    check_int("n_bits", n_bits)
    a, b = torch.randint(0, 2, (2, batch_size, n_bits), generator=generator)  # (B, n)
    inputs = F.pad(2 * a + b, (0, 1))  # (B, n+1)
    targets = sum_bits(a, b)  # (B, n+1)
    if start:
        inputs = F.pad(inputs, (1, 0), value=START)  # (B, n+2)
        targets = F.pad(targets, (1, 0), value=IGNORE)  # (B, n+2)
    return inputs, targets, carry_span(a, b)


# ---------------------------------------------------------------------------- the model
class AdditionModel(nn.Module):
    """A causal ``SharedTransformer`` over the 4 input tokens with a 2-way head: the sum
    bit at every position."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        if config.vocab_size != INPUT_TOKENS or not config.causal or config.lm_head:
            raise ValueError(
                f"config needs vocab_size={INPUT_TOKENS}, causal=True and "
                f"lm_head=False, got vocab_size={config.vocab_size}, "
                f"causal={config.causal}, lm_head={config.lm_head}"
            )
        self.config = config
        self.body = SharedTransformer(config)
        self.head = nn.Linear(config.d_model, 2)

    def forward(
        self, inputs: torch.Tensor, n_iterations: int | None = None
    ) -> torch.Tensor:
        """Logits (B, T, 2); ``n_iterations`` runs a looped (strategy "all") model's
        block that many times."""
        hidden = self.body(inputs, n_iterations=n_iterations)  # (B, T, H)
        return self.head(hidden)  # (B, T, 2)


@torch.no_grad()
def accuracy(
    model: AdditionModel,
    n_bits: int,
    n_iterations: int | None,
    examples: int,
    chunk: int = 500,
) -> dict[str, float]:
    """Sequence accuracy (every sum bit right) and bit accuracy on the fixed test
    examples of ``n_bits`` bits."""
    model.eval()
    device = next(model.parameters()).device
    inputs, targets, spans = addition_batch(
        examples, n_bits, torch.Generator().manual_seed(TEST_SEED + n_bits)
    )
    right = []
    for start in range(0, examples, chunk):
        x = inputs[start : start + chunk].to(device)  # (b, n+1)
        y = targets[start : start + chunk]  # (b, n+2)
        predicted = model(x, n_iterations).argmax(-1).cpu()  # (b, n+2)
        right.append((predicted == y)[:, y[0] != IGNORE])  # (b, n+1) scored bits
    correct = torch.cat(right)  # (examples, n+1)
    return {
        "sequence_accuracy": correct.all(dim=1).float().mean().item(),
        "bit_accuracy": correct.float().mean().item(),
        "mean_span": spans.float().mean().item(),
        "max_span": int(spans.max()),
    }


# ----------------------------------------------------------------------------- profiles
@dataclass(frozen=True)
class AdditionProfile:
    """Sizes of the iterations-and-length experiment at one profile (``ci`` live,
    ``cpu`` recorded, ``gpu``)."""

    name: str
    d_model: int
    n_heads: int
    d_ff: int
    # N: layers of the unshared model, iterations of the looped one in training
    n_layers: int
    batch_size: int
    train_bits: int  # training numbers have 1 .. train_bits bits
    steps: int
    warmup: int
    eval_every: int
    eval_batches: int
    seeds: int
    lrs: tuple[float, ...]  # swept at seed 0 for every arm
    test_bits: tuple[int, ...]  # lengths tested (the first is the training length)
    test_iterations: tuple[int, ...]  # iterations tried on a looped model at test time
    test_examples: int
    positions: tuple[str, ...] = POSITIONS
    device: str = "cpu"

    @property
    def max_len(self) -> int:
        return max(self.test_bits) + 2  # START, the bits, the carry out

    def arms(self) -> list[tuple[str, str, str]]:
        """(strategy, position, depth) of every compared model: unshared and looped per
        position scheme, and a looped model trained at random depth where the scheme
        does not tie it to trained positions."""
        out = []
        for position in self.positions:
            out += [("none", position, "fixed"), ("all", position, "fixed")]
            if position != "learned":
                out.append(("all", position, "random"))
        return out


ADDITION_PROFILES: dict[str, AdditionProfile] = {
    "ci": AdditionProfile(
        "ci",
        d_model=32,
        n_heads=2,
        d_ff=64,
        n_layers=4,
        batch_size=32,
        train_bits=6,
        steps=40,
        warmup=4,
        eval_every=20,
        eval_batches=2,
        seeds=2,
        lrs=(3e-3,),
        test_bits=(6, 12),
        test_iterations=(2, 4, 8),
        test_examples=64,
        positions=("rotary",),
    ),
    "cpu": AdditionProfile(
        "cpu",
        d_model=64,
        n_heads=4,
        d_ff=256,
        n_layers=6,
        batch_size=64,
        train_bits=8,
        steps=2000,
        warmup=50,
        eval_every=250,
        eval_batches=4,
        seeds=5,
        lrs=(1e-3, 3e-3, 1e-2),
        test_bits=(8, 16, 32, 64),
        test_iterations=(1, 2, 4, 6, 8, 12, 16, 32),
        test_examples=1000,
    ),
    "gpu": AdditionProfile(
        "gpu",
        d_model=256,
        n_heads=8,
        d_ff=1024,
        n_layers=8,
        batch_size=256,
        train_bits=12,
        steps=10000,
        warmup=200,
        eval_every=1000,
        eval_batches=8,
        seeds=5,
        lrs=(3e-4, 1e-3, 3e-3),
        test_bits=(12, 24, 48, 96, 192),
        test_iterations=(2, 4, 8, 12, 16, 24, 32, 48, 64),
        test_examples=2000,
        device="auto",
    ),
}


def replace_steps(profile: AdditionProfile, steps: int) -> AdditionProfile:
    """``profile`` with ``steps`` training steps (and evaluations within them): for
    tests and "try it" runs."""
    return replace(
        profile,
        steps=steps,
        warmup=min(profile.warmup, steps),
        eval_every=min(profile.eval_every, steps),
    )


def get_addition_profile(profile: str | AdditionProfile) -> AdditionProfile:
    """The ``AdditionProfile`` named ``profile`` (one of ``ADDITION_PROFILES``), or
    ``profile`` itself."""
    if isinstance(profile, AdditionProfile):
        return profile
    return ADDITION_PROFILES[check_choice("profile", profile, ADDITION_PROFILES)]


def label(strategy: str, position: str, depth: str) -> str:
    """The label of an arm, e.g. 'looped / rotary / random depth'."""
    return f"{'looped' if strategy == 'all' else 'unshared'} / {position}" + (
        " / random depth" if depth == "random" else ""
    )


def arm_config(
    profile: AdditionProfile, strategy: str, position: str
) -> TransformerConfig:
    return TransformerConfig(
        d_model=profile.d_model,
        n_heads=profile.n_heads,
        d_ff=profile.d_ff,
        n_layers=profile.n_layers,
        strategy=strategy,
        vocab_size=INPUT_TOKENS,
        max_len=profile.max_len,
        position=position,
        causal=True,
        lm_head=False,
        dropout=0.0,
    )


def random_depths(n_layers: int) -> tuple[int, int]:
    """Range of iterations drawn uniformly per training step by a random-depth arm:
    N//2 .. 2N, about 1.25 N in expectation (about 1.25x the FLOPs of a fixed arm)."""
    return max(1, n_layers // 2), 2 * n_layers


# ------------------------------------------------------------------------------ one run
class _ReplayStopError(Exception):
    """Raised by ``get_batch`` to end a replay after its first steps."""


def train_arm(
    profile: AdditionProfile,
    strategy: str,
    position: str,
    depth: str,
    lr: float,
    seed: int,
    stop_after: int | None = None,
) -> tuple[AdditionModel, Any, int, list[float]]:
    """Train one arm at ``seed`` (it fixes the init and, shared by every arm, the
    batches and their lengths); return the model, its ``History`` (None when stopped
    after ``stop_after`` steps), the training tokens it saw and its training losses."""
    check_choice("depth", depth, DEPTHS)
    if depth == "random" and strategy != "all":
        raise ValueError(
            f"depth 'random' needs the looped strategy 'all', got {strategy!r}"
        )
    torch.manual_seed(seed)
    model = AdditionModel(arm_config(profile, strategy, position))
    low, high = random_depths(profile.n_layers)
    # apart from the batches: they stay paired
    depth_generator = torch.Generator().manual_seed(10_000 + seed)
    seen, losses = [0], []  # training tokens, training losses

    def get_batch(split: str, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        n_bits = int(
            torch.randint(1, profile.train_bits + 1, (1,), generator=generator)
        )
        inputs, targets, _ = addition_batch(profile.batch_size, n_bits, generator)
        steps = profile.n_layers
        if split == "train":
            if stop_after is not None and len(losses) >= stop_after:
                raise _ReplayStopError
            seen[0] += inputs.numel()
        if depth == "random" and split == "train":
            steps = int(torch.randint(low, high + 1, (1,), generator=depth_generator))
        return inputs, targets, torch.tensor(steps)

    def loss_fn(m: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        inputs, targets, steps = batch
        logits = m(inputs, int(steps) if strategy == "all" else None)  # (B, T, 2)
        loss = scored_cross_entropy(logits, targets)
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
    return model, history, seen[0], losses


def replay_arm(
    data: Mapping[str, Any], record: Mapping[str, Any], steps: int = 10
) -> list[float]:
    """The first ``steps`` training losses of a recorded run, re-computed from the
    file's profile settings and the run's arm, rate and seed on the run's thread count.

    On the recording's kind of CPU they equal the stored ``first_losses`` exactly,
    elsewhere to within ``suite.REPLAY_RTOL`` (compare with ``suite.replay_matches``).
    """
    settings = {
        k: tuple(v) if isinstance(v, list) else v
        for k, v in data["profile_settings"].items()
    }
    profile = replace(AdditionProfile(**settings), device="cpu")
    check_int("steps", steps, 1, len(record["first_losses"]))
    threads = torch.get_num_threads()
    torch.set_num_threads(int(record["threads"]))
    try:
        *_, losses = train_arm(
            profile,
            record["strategy"],
            record["position"],
            record["depth"],
            record["lr"],
            record["seed"],
            stop_after=steps,
        )
    finally:
        torch.set_num_threads(threads)
    return losses


def execute_arm(
    profile: AdditionProfile,
    strategy: str,
    position: str,
    depth: str,
    lr: float,
    seed: int,
    experiment: str = EXPERIMENT,
) -> dict[str, Any]:
    """Train one arm and test it at every length (and, looped, every iteration count):
    one recorded run."""
    start = time.perf_counter()
    config = arm_config(profile, strategy, position)
    record: dict[str, Any] = {
        "experiment": experiment,
        "label": label(strategy, position, depth),
        "strategy": strategy,
        "position": position,
        "depth": depth,
        "seed": seed,
        "lr": lr,
        "kind": "train",
        "data": (
            "binary addition, least significant bit first, "
            f"1..{profile.train_bits} bits"
        ),
        "steps": profile.steps,
        "model_config": asdict(config),
        "train_config": {
            "steps": profile.steps,
            "lr": lr,
            "warmup": profile.warmup,
            "seed": seed,
            "batch_size": profile.batch_size,
            "train_bits": profile.train_bits,
            "random_depths": list(random_depths(profile.n_layers))
            if depth == "random"
            else None,
        },
        # training FLOPs (forward and backward) per token at the longest training input
        # and N layers
        "flops_per_token": 3
        * sum(forward_flops_per_token(config, profile.train_bits + 2).values()),
        "parameters": count_module_parameters(AdditionModel(config)),
        "loss_unit": LOSS_UNIT,  # a token is a bit here
        "threads": torch.get_num_threads(),
        "device": str(resolve_device(profile.device)),
    }
    try:
        model, history, tokens, _ = train_arm(
            profile, strategy, position, depth, lr, seed
        )
    except NonFiniteLossError as error:
        record.update(
            status="diverged",
            error=str(error)[:400],
            tokens=0,
            train_loss=None,
            val_loss=None,
            curve=[],
            first_losses=[],
            accuracy=[],
            wall_seconds=time.perf_counter() - start,
        )
        return record
    curve = [
        [s, history.train_loss[s - 1], v]
        for s, v in zip(history.eval_steps, history.val_loss, strict=True)
    ]
    iterations = [None] if strategy != "all" else list(profile.test_iterations)
    table = [
        {
            "bits": n,
            "iterations": profile.n_layers if k is None else k,
            **accuracy(model, n, k, profile.test_examples),
        }
        for n in profile.test_bits
        for k in iterations
    ]
    record.update(
        status="ok",
        tokens=tokens,
        train_loss=history.train_loss[-1],
        val_loss=history.val_loss[-1],
        curve=curve,
        first_losses=history.train_loss[:10],
        accuracy=table,
        wall_seconds=time.perf_counter() - start,
    )
    return record


# ---------------------------------------------------------------------------- the suite
def chosen_lr(runs: Sequence[Mapping[str, Any]], run_label: str) -> float | None:
    """The swept learning rate of the lowest final validation loss of ``run_label`` at
    seed 0 (None: not swept)."""
    swept = [
        r for r in runs if r["label"] == run_label and r["seed"] == 0 and r.get("sweep")
    ]
    finished = [r for r in swept if r["status"] == "ok"]
    return float(min(finished, key=lambda r: r["val_loss"])["lr"]) if finished else None


def _execute_in_worker(job: tuple) -> dict[str, Any]:
    """``execute_arm(*job)`` in a worker process, on one thread (so that two workers
    fill two cores without contention)."""
    torch.set_num_threads(1)
    return execute_arm(*job)


def run_addition(
    profile: str | AdditionProfile,
    output_dir: str | Path = "notebooks/results",
    command: str = "",
    allow_mixed: bool = False,
    log: Callable[[str], None] | None = None,
    workers: int = 1,
) -> Path:
    """Run (or resume) the experiment at ``profile`` into
    ``<output_dir>/addition.<profile>.json``: a learning-rate sweep per arm at seed 0,
    then every seed at the chosen rate; one atomic append per finished run.

    ``workers`` > 1 trains that many runs at once in processes of one thread each; a
    run's numbers do not depend on which worker ran it (each seeds its own generators).
    """
    p = get_addition_profile(profile)
    check_int("workers", workers)
    log = log or (lambda message: None)
    path = Path(output_dir) / f"{ADDITION_RESULTS_NAME}.{p.name}.json"
    code = code_hash(ADDITION_MODULES)
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
        longest = max(p.test_bits)
        best = max(
            (
                row["sequence_accuracy"]
                for row in record["accuracy"]
                if row["bits"] == longest
            ),
            default=None,
        )
        log(
            f"{record['label']} / seed {record['seed']} / lr {record['lr']:g}: "
            f"val {record['val_loss']}, best sequence accuracy at {longest} bits "
            f"{best} ({record['wall_seconds']:.1f} s)"
        )

    def key(job: tuple) -> tuple[str, str, int, float]:
        """The ``run_key`` a job's record will have."""
        return (EXPERIMENT, label(*job[1:4]), job[5], float(job[4]))

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
    chosen = {arm: chosen_lr(data["runs"], label(*arm)) for arm in arms}
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
ADDITION_MODULES: tuple[str, ...] = (
    "config",
    "counting",
    "data",
    "experiments.addition",
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
