"""Data-parallel training of shared and unshared models, and the bytes each all-reduces (chapter 6b).

Run under torchrun, e.g. 2 CPU processes with gloo:

    python -m torch.distributed.run --standalone --nproc_per_node 2 -m sharedlib.distributed --layers 6
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel

from .config import TransformerConfig
from .counting import count_parameters
from .models import SharedTransformer, next_token_loss


class NextTokenLoss(nn.Module):
    """Wraps a model so that ``forward(batch)`` returns its loss: DDP must see the whole step."""

    def __init__(self, model: SharedTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return next_token_loss(self.model, (tokens[:, :-1], tokens[:, 1:]))


def allreduce_bytes_per_step(module: nn.Module, tokens: torch.Tensor, steps: int = 2) -> int:
    """Train ``module`` (whose forward returns the loss) under DDP; gradient bytes all-reduced per step."""
    ddp = DistributedDataParallel(module)
    sent = {"bytes": 0}

    def counting_allreduce(state, bucket):  # unannotated: DDP checks annotations at runtime
        sent["bytes"] += bucket.buffer().numel() * bucket.buffer().element_size()
        return default_hooks.allreduce_hook(None, bucket)

    ddp.register_comm_hook(None, counting_allreduce)
    optimizer = torch.optim.AdamW(ddp.parameters(), lr=1e-3)
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        ddp(tokens).backward()
        optimizer.step()
    return sent["bytes"] // steps


def compare_strategies(d_model: int, layers: int, batch: int, seq_len: int, steps: int) -> dict[str, dict[str, int]]:
    """All-reduce bytes per step and unique parameters of the unshared and the fully shared model."""
    results = {}
    for strategy in ("none", "all"):
        config = TransformerConfig(
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
        torch.manual_seed(0)  # the same initial weights on every rank
        module = NextTokenLoss(SharedTransformer(config))
        shard = torch.Generator().manual_seed(dist.get_rank())  # different data on every rank
        tokens = torch.randint(0, 256, (batch, seq_len + 1), generator=shard)
        results[strategy] = {
            "parameters": count_parameters(config),
            "allreduce_bytes_per_step": allreduce_bytes_per_step(module, tokens, steps),
        }
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="All-reduce bytes of shared vs unshared models under DDP")
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args(argv)
    dist.init_process_group("gloo")
    try:
        results = compare_strategies(args.d_model, args.layers, args.batch, args.seq_len, args.steps)
        if dist.get_rank() == 0:
            results["world_size"] = dist.get_world_size()
            print(json.dumps(results))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
