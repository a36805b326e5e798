"""Small seeded experiments comparing sharing strategies (chapter 6, *Applications*)."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import torch
from torch import nn

from ..config import TransformerConfig
from ..counting import count_parameters
from ..data import IGNORE, algorithmic_batch
from ..measure import count_module_parameters
from ..models import SharedTransformer, next_token_loss
from ..train import TrainConfig, train

__all__ = [
    "Summary",
    "answer_accuracy",
    "compare_strategies",
    "matching_width",
    "train_model",
]

BatchFn = Callable[[str, torch.Generator], tuple[torch.Tensor, ...]]
# e.g. lambda: RelaxedSharedTransformer(config, rank=4)
ModelBuilder = Callable[[], nn.Module]


@dataclass(frozen=True)
class Summary:
    """Validation losses of one configuration over several seeds."""

    label: str
    parameters: int
    losses: tuple[float, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.losses)

    @property
    def std(self) -> float:
        return statistics.stdev(self.losses) if len(self.losses) > 1 else 0.0


def train_model(
    config: TransformerConfig | ModelBuilder,
    get_batch: BatchFn,
    train_config: TrainConfig,
    seed: int,
):
    """Build ``SharedTransformer(config)`` (or call a builder) with ``seed`` and train
    it; returns (model, history)."""
    torch.manual_seed(seed)
    model = config() if callable(config) else SharedTransformer(config)
    history = train(model, next_token_loss, get_batch, replace(train_config, seed=seed))
    return model, history


def compare_strategies(
    configs: Mapping[str, TransformerConfig | ModelBuilder],
    get_batch: BatchFn,
    train_config: TrainConfig,
    seeds: int,
) -> dict[str, Summary]:
    """Final validation loss of every config (or model builder) for seeds 0..seeds-1."""
    summaries = {}
    for label, config in configs.items():
        runs = [train_model(config, get_batch, train_config, s) for s in range(seeds)]
        summaries[label] = Summary(
            label,
            count_module_parameters(runs[0][0]),
            tuple(h.val_loss[-1] for _, h in runs),
        )
    return summaries


def matching_width(
    reference: TransformerConfig, strategy: str, n_heads: int
) -> TransformerConfig:
    """The width (a multiple of ``n_heads``, d_ff = 4x) at which ``strategy`` has about
    ``reference``'s parameters."""
    target = count_parameters(reference)
    candidates = [
        replace(
            reference,
            strategy=strategy,
            n_unique=None,
            d_model=w,
            d_ff=4 * w,
            n_heads=n_heads,
        )
        for w in range(n_heads, 8 * reference.d_model + 1, n_heads)
    ]
    return min(candidates, key=lambda c: abs(count_parameters(c) - target))


@torch.no_grad()
def answer_accuracy(
    model: SharedTransformer,
    task: str,
    length: int,
    n_symbols: int,
    n: int,
    seed: int,
    n_iterations: int | None = None,
) -> float:
    """Fraction of ``n`` questions whose whole answer the model predicts exactly
    (teacher-forced)."""
    model.eval()
    device = next(model.parameters()).device
    inputs, targets = algorithmic_batch(
        task, n, length, n_symbols, torch.Generator().manual_seed(seed)
    )
    inputs, targets = inputs.to(device), targets.to(device)
    logits = model.logits(model(inputs, n_iterations=n_iterations))  # (B, T, V)
    predicted = logits.argmax(-1)  # (B, T)
    scored = targets != IGNORE
    return ((predicted == targets) | ~scored).all(dim=1).float().mean().item()
