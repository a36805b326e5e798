"""A small trainer that knows nothing about the model (chapter 6): AdamW, warmup +
cosine, clipping, bf16 autocast on GPU, periodic evaluation, a tqdm bar, and atomic,
validated, resumable checkpoints.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .runtime import DEVICES, atomic_write, resolve_device, unwritable_reason
from .validation import check_callable, check_instance, check_int, check_real

__all__ = [
    "Batch",
    "CheckpointError",
    "History",
    "NonFiniteLossError",
    "TrainConfig",
    "evaluate",
    "lr_factor",
    "train",
]

Batch = tuple[torch.Tensor, ...]

# bumped whenever the checkpoint layout changes; older files are refused
CHECKPOINT_FORMAT = 2
# may differ between a run and its resume
RESUME_FREE_FIELDS: frozenset[str] = frozenset({"device", "progress"})
_INT_FIELDS = {"steps": 1, "warmup": 0, "eval_every": 1, "eval_batches": 1, "seed": 0}
# name -> (minimum, maximum, open_minimum)
_REAL_FIELDS = {
    "lr": (0.0, None, True),
    "min_lr_ratio": (0.0, 1.0, False),
    "weight_decay": (0.0, None, False),
    "grad_clip": (0.0, None, False),
}
_BOOL_FIELDS = ("amp", "progress")


class NonFiniteLossError(FloatingPointError):
    """Training stopped because a loss or the gradient norm was NaN or infinite (nothing
    was saved)."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or that belongs to another model or
    optimisation setting."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; invalid values raise ``ValueError`` naming the field."""

    steps: int = 200  # optimizer steps
    lr: float = 3e-3  # peak learning rate
    warmup: int = 20  # linear warmup steps, then cosine decay to min_lr_ratio * lr
    min_lr_ratio: float = 0.1  # floor of the cosine schedule, relative to lr
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    grad_clip: float = 1.0  # max global gradient norm (0 disables)
    # evaluate on the validation batches every this many steps (and at the end)
    eval_every: int = 50
    eval_batches: int = 4  # validation batches per evaluation
    seed: int = 0  # seeds the batch generators
    device: str = "auto"  # "auto" picks CUDA when present
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    progress: bool = False  # a tqdm bar (off in notebooks whose outputs are compared)

    def __post_init__(self) -> None:
        for name, minimum in _INT_FIELDS.items():
            object.__setattr__(
                self, name, check_int(name, getattr(self, name), minimum)
            )
        for name, (low, high, open_low) in _REAL_FIELDS.items():
            check_real(name, getattr(self, name), low, high, open_minimum=open_low)
        for name in _BOOL_FIELDS:
            check_instance(name, getattr(self, name), bool, "True or False")
        if not isinstance(self.device, str) or not (
            self.device in DEVICES or re.fullmatch(r"cuda:\d+", self.device)
        ):
            raise ValueError(
                f"device must be one of {DEVICES} or 'cuda:N', got {self.device!r}"
            )


@dataclass
class History:
    """What happened during training: losses by step and the learning rate used."""

    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)


def lr_factor(step: int, config: TrainConfig) -> float:
    """Multiplier of ``config.lr`` at ``step``: linear warmup, then cosine decay to
    ``min_lr_ratio``."""
    if step < config.warmup:
        return (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (
        1 + math.cos(math.pi * min(progress, 1.0))
    )


def train(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, Batch], torch.Tensor],
    get_batch: Callable[[str, torch.Generator], Batch],
    config: TrainConfig,
    checkpoint: str | Path | None = None,
) -> History:
    """Train ``model`` on ``get_batch("train", g)`` with ``loss_fn(model, batch)``;
    resumes from ``checkpoint`` (chapter 6).

    With ``checkpoint``, the state is saved atomically at every evaluation (model,
    optimizer, schedule, batch generator, torch's RNG states, the ``TrainConfig`` and a
    model signature). If the file exists, training resumes from it, and a resumed run
    gives the same losses as an uninterrupted one (dropout included). The whole file is
    read and checked before the model is touched: a file that cannot be read, a model
    whose parameter names/shapes/dtypes or ``model.config`` differ, or a ``TrainConfig``
    that differs in anything but ``device`` and ``progress`` raises ``CheckpointError``
    (a ``ValueError``) naming the differences; delete the file or use another path to
    start afresh. A NaN or infinite training loss or gradient norm stops training before
    the optimizer step, and a non-finite validation loss before the save, with
    ``NonFiniteLossError`` (a ``FloatingPointError``): the checkpoint on disk stays the
    last good one.
    """
    _check_train_arguments(model, loss_fn, get_batch, config)
    # before any step: a path that cannot be written fails now, not at the save
    path = checkpoint_path(checkpoint)
    device = resolve_device(config.device)
    # reading and checking a checkpoint modifies nothing
    saved = _read(path, model, config) if path is not None and path.exists() else None
    model.to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, config)
    )
    train_gen = torch.Generator().manual_seed(config.seed)
    history, start = History(), 0
    if saved is not None:
        start, history = _apply(saved, path, model, optimizer, scheduler, train_gen)
    last_saved = start if saved is not None else None
    autocast = torch.autocast(
        "cuda", torch.bfloat16, enabled=config.amp and device.type == "cuda"
    )
    bar = tqdm(
        range(start, config.steps),
        initial=start,
        total=config.steps,
        disable=not config.progress,
    )
    for step in bar:
        model.train()
        batch = tuple(t.to(device) for t in get_batch("train", train_gen))
        with autocast:
            loss = loss_fn(model, batch)
        loss_value = loss.item()
        _require_finite("training loss", loss_value, step + 1, path, last_saved)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip:
            grad_norm = nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        else:
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            grad_norm = nn.utils.get_total_norm(grads)
        _require_finite("gradient norm", grad_norm.item(), step + 1, path, last_saved)
        history.lr.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
        history.steps.append(step + 1)
        history.train_loss.append(loss_value)
        if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
            val_loss = evaluate(model, loss_fn, get_batch, config, device)
            _require_finite("validation loss", val_loss, step + 1, path, last_saved)
            history.eval_steps.append(step + 1)
            history.val_loss.append(val_loss)
            bar.set_postfix(train=f"{loss_value:.3f}", val=f"{val_loss:.3f}")
            if path is not None:
                _save(
                    path,
                    model,
                    optimizer,
                    scheduler,
                    train_gen,
                    step + 1,
                    history,
                    config,
                )
                last_saved = step + 1
    return history


def _check_train_arguments(
    model: object, loss_fn: object, get_batch: object, config: object
) -> None:
    """``ValueError`` naming the argument of ``train`` that is of the wrong kind."""
    check_instance("model", model, nn.Module, "a torch nn.Module")
    check_callable("loss_fn", loss_fn)
    check_callable("get_batch", get_batch)
    check_instance("config", config, TrainConfig, "a sharedlib TrainConfig")


def checkpoint_path(checkpoint: object) -> Path | None:
    """``checkpoint`` as a ``Path`` (None stays None) once it is known to be writable as
    a file; else ``ValueError`` naming the problem: empty, a directory, a parent that is
    a file, or a directory that is not writable."""
    if checkpoint is None:
        return None
    if not isinstance(checkpoint, (str, os.PathLike)) or not isinstance(
        os.fspath(checkpoint), str
    ):
        raise ValueError(
            "checkpoint must be None or a file path (str or pathlib.Path), "
            f"got {checkpoint!r}"
        )
    if not os.fspath(checkpoint).strip():
        raise ValueError(
            "checkpoint must be a file path such as 'run.pt' or None (no checkpoint), "
            f"got {checkpoint!r}"
        )
    reason = unwritable_reason(checkpoint)
    if reason:
        raise ValueError(f"checkpoint {reason}")
    return Path(checkpoint)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, Batch], torch.Tensor],
    get_batch: Callable[[str, torch.Generator], Batch],
    config: TrainConfig,
    device: torch.device,
) -> float:
    """Mean loss over ``config.eval_batches`` validation batches, always the same ones
    (fixed seed)."""
    model.eval()
    generator = torch.Generator().manual_seed(config.seed + 1)
    losses = [
        loss_fn(model, tuple(t.to(device) for t in get_batch("val", generator))).item()
        for _ in range(config.eval_batches)
    ]
    return sum(losses) / len(losses)


def _require_finite(
    what: str, value: float, step: int, path: Path | None, last_saved: int | None
) -> None:
    """Raise ``NonFiniteLossError`` naming the step, the value and what happened to the
    checkpoint."""
    if math.isfinite(value):
        return
    if path is None:
        kept = "no checkpoint was requested"
    elif last_saved is None:
        kept = f"no checkpoint had been written yet, nothing was saved to {path}"
    else:
        kept = f"the last good checkpoint {path} (step {last_saved}) was kept unchanged"
    when = (
        "before the checkpoint save"
        if what == "validation loss"
        else "before the optimizer step"
    )
    raise NonFiniteLossError(
        f"{what} is {value} at step {step}; training stopped {when} and {kept}. "
        "Lower lr, keep grad_clip > 0, or check the model and data for overflow."
    )


def model_signature(model: nn.Module) -> dict[str, Any]:
    """What a checkpoint must match: class, state-dict names/shapes/dtypes and
    ``model.config`` (if a dataclass)."""
    config = getattr(model, "config", None)
    is_config = dataclasses.is_dataclass(config) and not isinstance(config, type)
    return {
        "class": type(model).__qualname__,
        "state": {
            k: [list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()
        },
        "config": _plain(asdict(config)) if is_config else None,
    }


def _plain(value: Any) -> Any:
    """``value`` as built-in types only, so that ``torch.load(weights_only=True)`` can
    read it back."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return (
        value
        if value is None or isinstance(value, (bool, int, float, str))
        else repr(value)
    )


def _save(
    path: Path,
    model,
    optimizer,
    scheduler,
    generator,
    step: int,
    history: History,
    config: TrainConfig,
):
    """Write the checkpoint to a temporary file, fsync it, read it back and check it
    (``_read``), then rename it over the old one under its lock: a broken or unreadable
    state never replaces a good checkpoint."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "generator": generator.get_state(),
        "cpu_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "step": step,
        "history": asdict(history),
        "train_config": _plain(asdict(config)),
        "signature": model_signature(model),
    }

    def verify(written: Path) -> None:
        try:
            _read(written, model, config)
        except CheckpointError as error:
            raise CheckpointError(
                f"the new checkpoint for {path} did not read back ({error}); "
                f"{path} is left as it was"
            ) from error

    atomic_write(path, lambda file: torch.save(state, file), binary=True, verify=verify)


def _differences(
    saved: dict, current: dict, ignore: frozenset[str] = frozenset()
) -> list[str]:
    """``key: saved -> current`` for every key whose value differs (a missing key shows
    as <absent>)."""
    keys = sorted((set(saved) | set(current)) - ignore)
    absent = "<absent>"
    return [
        f"{k}: {saved.get(k, absent)!r} -> {current.get(k, absent)!r}"
        for k in keys
        if saved.get(k) != current.get(k)
    ]


def _read(path: Path, model: nn.Module, config: TrainConfig) -> dict:
    """Load ``path`` and check all of it against ``model`` and ``config``; raises
    ``CheckpointError``."""
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:
        raise CheckpointError(
            f"checkpoint {path} could not be read (corrupt or truncated?): "
            f"{type(error).__name__}: {error}. "
            "Delete it or pass another path to start afresh."
        ) from error
    required = {
        "format",
        "model",
        "optimizer",
        "scheduler",
        "generator",
        "cpu_rng",
        "cuda_rng",
        "step",
        "history",
    }
    required |= {"train_config", "signature"}
    if (
        not isinstance(state, dict)
        or state.get("format") != CHECKPOINT_FORMAT
        or not required <= set(state)
    ):
        raise CheckpointError(
            f"checkpoint {path} is not a format-{CHECKPOINT_FORMAT} sharedlib.train "
            "checkpoint (written by an older version or another program); delete it or "
            "pass another path to start afresh."
        )
    changed = _differences(
        state["train_config"], _plain(asdict(config)), RESUME_FREE_FIELDS
    )
    if changed:
        raise CheckpointError(
            f"cannot resume from {path}: the TrainConfig differs in "
            f"{', '.join(changed)}. Only {sorted(RESUME_FREE_FIELDS)} may change on "
            "resume; use the saved values or another checkpoint path."
        )
    _check_model(path, state, model)
    _check_optimizer(path, state["optimizer"], [p.shape for p in model.parameters()])
    step = state["step"]
    try:
        history = History(**state["history"])
        torch.Generator().set_state(state["generator"])
        torch.Generator().set_state(state["cpu_rng"])
    except Exception as error:
        raise CheckpointError(
            f"checkpoint {path} has an invalid history or RNG state: {error}"
        ) from error
    valid_step = isinstance(step, int) and 1 <= step <= config.steps
    if (
        not valid_step
        or len(history.steps) != step
        or state["scheduler"].get("last_epoch") != step
    ):
        raise CheckpointError(
            f"checkpoint {path} is inconsistent: step {step!r} does not match its "
            "history/schedule"
        )
    return state


def _check_model(path: Path, state: dict, model: nn.Module) -> None:
    saved, current = state["signature"], model_signature(model)
    problems = []
    if saved.get("class") != current["class"]:
        problems.append(f"model class {saved.get('class')!r} -> {current['class']!r}")
    if saved.get("config") != current["config"]:
        problems.append(
            "model.config "
            + "; ".join(
                _differences(saved.get("config") or {}, current["config"] or {})
            )
        )
    problems += [
        f"parameter {d}" for d in _differences(saved.get("state", {}), current["state"])
    ][:8]
    tensors = state["model"]
    actual = (
        {k: [list(v.shape), str(v.dtype)] for k, v in tensors.items()}
        if isinstance(tensors, dict)
        else None
    )
    if actual != current["state"] and not problems:
        problems.append(
            "the stored tensors do not match the stored signature "
            "(edited or damaged file?)"
        )
    if problems:
        raise CheckpointError(
            f"checkpoint {path} was written for another model: {'; '.join(problems)}"
        )


def _check_optimizer(path: Path, saved: dict, shapes: list[torch.Size]) -> None:
    """The saved AdamW state must have one group over all parameters, with moment
    tensors of their shapes."""
    try:
        groups, per_param = saved["param_groups"], saved["state"]
        ok = len(groups) == 1 and list(groups[0]["params"]) == list(range(len(shapes)))
        for index, entry in per_param.items():
            ok = ok and all(
                t.dim() == 0 or t.shape == shapes[index]
                for t in entry.values()
                if torch.is_tensor(t)
            )
    except (KeyError, TypeError, IndexError, AttributeError):
        ok = False
    if not ok:
        raise CheckpointError(
            f"checkpoint {path} has an optimizer state that does not fit this model's "
            "parameters"
        )


def _apply(
    state: dict, path: Path, model, optimizer, scheduler, generator
) -> tuple[int, History]:
    """Put a checked checkpoint into the model, optimizer, schedule and RNGs; on failure
    restore the model."""
    previous = {k: v.detach().clone() for k, v in model.state_dict().items()}
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
    except Exception as error:
        model.load_state_dict(previous)
        raise CheckpointError(
            f"checkpoint {path} could not be applied ({error}); model left unchanged"
        ) from error
    torch.set_rng_state(state["cpu_rng"])
    if (
        torch.cuda.is_available()
        and len(state["cuda_rng"]) == torch.cuda.device_count()
    ):
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return state["step"], History(**state["history"])
