"""Measured counterparts of the closed forms in ``counting`` (chapter 4 checks one against the other)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode


def count_module_parameters(module: nn.Module) -> int:
    """Unique trainable parameters: ``parameters()`` yields a shared tensor once."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def count_forward_flops(forward: Callable[[], object]) -> int:
    """FLOPs of one call of ``forward`` as FlopCounterMode counts matmuls; attention runs on the math
    backend so that its two batched matmuls are counted too (fused CPU kernels are invisible to it)."""
    with sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:
        forward()
    return counter.get_total_flops()


def saved_activation_bytes(module: nn.Module, forward: Callable[[], torch.Tensor]) -> int:
    """Bytes autograd keeps for backward during ``forward()``, each storage once, parameters excluded."""
    param_storages = {p.untyped_storage().data_ptr() for p in module.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in param_storages:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        forward()
    return sum(seen.values())


def training_state_bytes(module: nn.Module, loss_fn: Callable[[], torch.Tensor]) -> dict[str, int]:
    """Bytes of parameters, gradients and AdamW state after one real training step."""
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
    optimizer.zero_grad(set_to_none=True)
    loss_fn().backward()
    optimizer.step()
    params = list(module.parameters())
    state_tensors = [
        t for state in optimizer.state.values() for t in state.values() if torch.is_tensor(t) and t.numel() > 1
    ]
    return {
        "parameters": sum(p.numel() * p.element_size() for p in params),
        "gradients": sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None),
        "optimizer_state": sum(t.numel() * t.element_size() for t in state_tensors),
    }


def hidden_state_rms(model: nn.Module, forward: Callable[[], object]) -> list[float]:
    """RMS of the residual stream after every applied layer of a ``SharedTransformer`` (chapter 5).

    A forward hook on a shared module fires once per use, so hooks on the unique FFN sublayers see every layer.
    """
    values: list[float] = []

    def record(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        values.append(output.detach().float().pow(2).mean().sqrt().item())

    handles = [block.register_forward_hook(record) for block in model.ffn]
    try:
        with torch.no_grad():
            forward()
    finally:
        for handle in handles:
            handle.remove()
    return values
