"""A small trainer that knows nothing about the model (chapter 6): AdamW, warmup + cosine, clipping,
bf16 autocast on GPU, periodic evaluation, a tqdm bar, and atomic, resumable checkpoints.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from .runtime import resolve_device

Batch = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; invalid values raise ``ValueError`` naming the field."""

    steps: int = 200  # optimizer steps
    lr: float = 3e-3  # peak learning rate
    warmup: int = 20  # linear warmup steps, then cosine decay to min_lr_ratio * lr
    min_lr_ratio: float = 0.1  # floor of the cosine schedule, relative to lr
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    grad_clip: float = 1.0  # max global gradient norm (0 disables)
    eval_every: int = 50  # evaluate on the validation batches every this many steps (and at the end)
    eval_batches: int = 4  # validation batches per evaluation
    seed: int = 0  # seeds the batch generators
    device: str = "auto"  # "auto" picks CUDA when present
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    progress: bool = False  # show a tqdm bar (off in notebooks whose outputs are compared)

    def __post_init__(self) -> None:
        for name in ("steps", "eval_every", "eval_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1 or self.warmup < 0 or self.grad_clip < 0:
            raise ValueError("need lr > 0, 0 <= min_lr_ratio <= 1, warmup >= 0 and grad_clip >= 0")


@dataclass
class History:
    """What happened during training: losses by step and the learning rate used."""

    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)


def lr_factor(step: int, config: TrainConfig) -> float:
    """Multiplier of ``config.lr`` at ``step``: linear warmup, then cosine decay to ``min_lr_ratio``."""
    if step < config.warmup:
        return (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def train(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, Batch], torch.Tensor],
    get_batch: Callable[[str, torch.Generator], Batch],
    config: TrainConfig,
    checkpoint: str | Path | None = None,
) -> History:
    """Train ``model`` on ``get_batch("train", g)`` with ``loss_fn(model, batch)``; resumes from ``checkpoint``."""
    device = resolve_device(config.device)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, config))
    train_gen = torch.Generator().manual_seed(config.seed)
    history, start = History(), 0
    if checkpoint is not None and Path(checkpoint).exists():
        start, history = _load(Path(checkpoint), model, optimizer, scheduler, train_gen)
    autocast = torch.autocast("cuda", torch.bfloat16, enabled=config.amp and device.type == "cuda")
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, disable=not config.progress)
    for step in bar:
        model.train()
        batch = tuple(t.to(device) for t in get_batch("train", train_gen))
        with autocast:
            loss = loss_fn(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        history.lr.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
        history.steps.append(step + 1)
        history.train_loss.append(loss.item())
        if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
            history.eval_steps.append(step + 1)
            history.val_loss.append(evaluate(model, loss_fn, get_batch, config, device))
            bar.set_postfix(train=f"{loss.item():.3f}", val=f"{history.val_loss[-1]:.3f}")
            if checkpoint is not None:
                _save(Path(checkpoint), model, optimizer, scheduler, train_gen, step + 1, history)
    return history


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, Batch], torch.Tensor],
    get_batch: Callable[[str, torch.Generator], Batch],
    config: TrainConfig,
    device: torch.device,
) -> float:
    """Mean loss over ``config.eval_batches`` validation batches, always the same ones (fixed seed)."""
    model.eval()
    generator = torch.Generator().manual_seed(config.seed + 1)
    losses = [
        loss_fn(model, tuple(t.to(device) for t in get_batch("val", generator))).item()
        for _ in range(config.eval_batches)
    ]
    return sum(losses) / len(losses)


def _save(path: Path, model, optimizer, scheduler, generator, step: int, history: History) -> None:
    """Write the checkpoint to a temporary file, then rename it over the old one (atomic on POSIX)."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "generator": generator.get_state(),
        "step": step,
        "history": asdict(history),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _load(path: Path, model, optimizer, scheduler, generator) -> tuple[int, History]:
    state = torch.load(path, weights_only=True, map_location="cpu")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    generator.set_state(state["generator"])
    return state["step"], History(**state["history"])
