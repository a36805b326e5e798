"""Data-parallel training of shared and unshared models, and the bytes each
communicates (chapter 6b).

Run under torchrun, e.g. 2 CPU processes with gloo (``--fsdp`` for fully sharded data
parallel):

    python -m torch.distributed.run --standalone --nproc_per_node 2 \\
        -m sharedlib.experiments.distributed --layers 6

prints ``{"world_size": 2, "by_depth": {"6": {"none": {...}, "all": {...}}}}``;
``read_report`` reads it back from the finished launch. Counting FSDP's traffic needs
torch >= 2.13: ``fsdp_unavailable_reason`` says, before launching, why an older torch
cannot.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.distributed.fsdp import fully_shard
from torch.nn.parallel import DistributedDataParallel

from ..config import TransformerConfig
from ..counting import count_parameters
from ..models import SharedTransformer, next_token_loss

__all__ = [
    "counting_collectives",
    "fsdp_unavailable_reason",
    "launch_unavailable_reason",
    "missing_fsdp_collectives",
    "read_report",
    "traffic_model_config",
]


class NextTokenLoss(nn.Module):
    """Wraps a model so that ``forward(batch)`` returns its loss: DDP must see the whole
    step."""

    def __init__(self, model: SharedTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return next_token_loss(self.model, (tokens[:, :-1], tokens[:, 1:]))


def allreduce_bytes_per_step(
    module: nn.Module, tokens: torch.Tensor, steps: int = 2
) -> int:
    """Train ``module`` (whose forward returns the loss) under DDP; gradient bytes
    all-reduced per step."""
    ddp = DistributedDataParallel(module)
    sent = {"bytes": 0}

    # unannotated: DDP checks annotations at runtime
    def counting_allreduce(state, bucket):
        sent["bytes"] += bucket.buffer().numel() * bucket.buffer().element_size()
        return default_hooks.allreduce_hook(None, bucket)

    ddp.register_comm_hook(None, counting_allreduce)
    optimizer = torch.optim.AdamW(ddp.parameters(), lr=1e-3)
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        ddp(tokens).backward()
        optimizer.step()
    return sent["bytes"] // steps


# The collectives FSDP2 (fully_shard) calls, and the argument that holds the full,
# unsharded tensor. torch.distributed has them from torch 2.13 on (checked: 2.11.0 and
# 2.12.0 lack them, and 2.11's fully_shard calls all_gather_into_tensor and
# reduce_scatter_tensor instead).
FSDP_COLLECTIVES = {"all_gather_single": "output", "reduce_scatter_single": "input"}
FSDP_COLLECTIVES_SINCE = "2.13"


def missing_fsdp_collectives() -> list[str]:
    """The names of ``FSDP_COLLECTIVES`` this torch.distributed lacks: all of them
    before torch 2.13."""
    return [name for name in FSDP_COLLECTIVES if not hasattr(dist, name)]


def launch_unavailable_reason(platform: str = sys.platform) -> str | None:
    """Why ``torch.distributed.run`` cannot start the workers on this platform, or None
    where it can (chapter 6b)."""
    if platform == "win32":
        return (
            "torchrun cannot start its workers on Windows: its rendezvous asks for "
            "libuv, which PyTorch's Windows wheels are built without. Run the chapter "
            "on Linux or macOS (or Colab) to measure the bytes."
        )
    return None


def fsdp_unavailable_reason() -> str | None:
    """Why this torch cannot count FSDP's bytes (``--fsdp`` would fail in every
    process), or None if it can."""
    missing = missing_fsdp_collectives()
    if not missing:
        return launch_unavailable_reason()
    names = " or ".join(f"torch.distributed.{name}" for name in missing)
    return (
        f"torch {torch.__version__} has no {names}, the collectives whose bytes this "
        f"count adds up (new in torch {FSDP_COLLECTIVES_SINCE}); its fully_shard calls "
        "older ones."
    )


def workers_stderr(stderr: str, tail_lines: int = 40) -> str:
    """The last lines the worker processes wrote to a torchrun launch's stderr: what
    comes before torchrun's own traceback, which only says that a child failed (all of
    ``stderr`` when there is no such traceback)."""
    lines = stderr.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback")]
    launcher = next(
        (i for i in starts if "distributed/run.py" in "".join(lines[i : i + 6])),
        len(lines),
    )
    return "\n".join((lines[:launcher] or lines)[-tail_lines:])


def read_report(launched: subprocess.CompletedProcess) -> dict:
    """The ``by_depth`` report that a torchrun launch of this module printed last; a
    ``RuntimeError`` carrying the end of the workers' stderr if the launch failed."""
    lines = launched.stdout.splitlines() if launched.returncode == 0 else []
    if not lines:
        raise RuntimeError(
            f"the torchrun launch exited with status {launched.returncode}; the end of "
            "its workers' stderr:\n" + workers_stderr(launched.stderr)
        )
    return json.loads(lines[-1])["by_depth"]


@contextlib.contextmanager
def counting_collectives() -> Iterator[dict[str, int]]:
    """Count the bytes of the full tensors FSDP all-gathers and reduce-scatters inside
    the ``with`` block."""
    reason = fsdp_unavailable_reason()
    if reason:
        raise RuntimeError(reason)
    counts = dict.fromkeys(FSDP_COLLECTIVES, 0)
    originals = {name: getattr(dist, name) for name in FSDP_COLLECTIVES}

    def counted(name: str, full: str):
        def collective(*args, **kwargs):
            tensor = (
                kwargs[full] if full in kwargs else args[0 if full == "output" else 1]
            )
            counts[name] += tensor.numel() * tensor.element_size()
            return originals[name](*args, **kwargs)

        return collective

    try:
        for name, full in FSDP_COLLECTIVES.items():
            setattr(dist, name, counted(name, full))
        yield counts
    finally:
        for name, original in originals.items():
            setattr(dist, name, original)


def fsdp_bytes_per_step(
    module: NextTokenLoss,
    tokens: torch.Tensor,
    reshard_after_forward: bool,
    steps: int = 2,
) -> dict[str, int]:
    """Shard every attention and FFN block, then the whole model, with ``fully_shard``;
    train ``steps`` steps and return the bytes all-gathered and reduce-scattered per
    step."""
    # the unique blocks, each sharded once
    for block in [*module.model.attention, *module.model.ffn]:
        fully_shard(block, reshard_after_forward=reshard_after_forward)
    fully_shard(module, reshard_after_forward=reshard_after_forward)
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
    with counting_collectives() as counts:
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            module(tokens).backward()
            optimizer.step()
    if not all(counts.values()):
        raise RuntimeError(
            f"no FSDP collective was counted ({counts}): torch's FSDP calls other "
            "functions"
        )
    return {
        "all_gather_bytes_per_step": counts["all_gather_single"] // steps,
        "reduce_scatter_bytes_per_step": counts["reduce_scatter_single"] // steps,
    }


def traffic_model_config(
    d_model: int, layers: int, seq_len: int, strategy: str
) -> TransformerConfig:
    """The small causal language model whose traffic this module measures (4 heads,
    d_ff = 4H, 256 tokens)."""
    return TransformerConfig(
        d_model=d_model,
        n_heads=4,
        d_ff=4 * d_model,
        n_layers=layers,
        strategy=strategy,
        vocab_size=256,
        max_len=seq_len,
        causal=True,
        lm_head=True,
    )


def compare_strategies(
    d_model: int, layers: int, batch: int, seq_len: int, steps: int, fsdp: bool = False
) -> dict[str, dict[str, int]]:
    """Unique parameters and bytes communicated per step of the unshared and the fully
    shared model: all-reduced under DDP, or all-gathered and reduce-scattered under FSDP
    with and without resharding after forward."""
    results = {}
    for strategy in ("none", "all"):
        config = traffic_model_config(d_model, layers, seq_len, strategy)
        # different data on every rank
        shard = torch.Generator().manual_seed(dist.get_rank())
        tokens = torch.randint(0, 256, (batch, seq_len + 1), generator=shard)
        results[strategy] = {"parameters": count_parameters(config)}
        for reshard in (True, False) if fsdp else (None,):
            torch.manual_seed(0)  # the same initial weights on every rank
            module = NextTokenLoss(SharedTransformer(config))
            if reshard is None:
                results[strategy]["allreduce_bytes_per_step"] = (
                    allreduce_bytes_per_step(module, tokens, steps)
                )
            else:
                traffic = fsdp_bytes_per_step(module, tokens, reshard, steps)
                results[strategy].update(
                    {
                        f"reshard_after_forward={reshard}: {k}": v
                        for k, v in traffic.items()
                    }
                )
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Bytes communicated by shared vs unshared models under DDP or FSDP"
    )
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument(
        "--layers", type=int, nargs="+", default=[6], help="one or more depths"
    )
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument(
        "--fsdp", action="store_true", help="fully_shard instead of DDP"
    )
    args = parser.parse_args(argv)
    dist.init_process_group("gloo")
    try:
        results = {
            str(layers): compare_strategies(
                args.d_model, layers, args.batch, args.seq_len, args.steps, args.fsdp
            )
            for layers in args.layers
        }
        if dist.get_rank() == 0:
            print(
                json.dumps({"world_size": dist.get_world_size(), "by_depth": results})
            )
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
