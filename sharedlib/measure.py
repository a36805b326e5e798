"""Measured counterparts of the closed forms in ``counting`` (chapter 4 checks one
against the other)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from .config import TransformerConfig
from .validation import check_int

__all__ = [
    "count_forward_flops",
    "count_module_parameters",
    "hidden_state_rms",
    "math_backend_extra_values",
    "residual_updates",
    "saved_activation_bytes",
    "training_state_bytes",
]


def count_module_parameters(module: nn.Module) -> int:
    """Unique trainable parameters: ``parameters()`` yields a shared tensor once."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def count_forward_flops(forward: Callable[[], object]) -> int:
    """FLOPs of one call of ``forward`` as FlopCounterMode counts matmuls; attention
    runs on the math backend so that its two batched matmuls are counted too (fused CPU
    kernels are invisible to it)."""
    with sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:
        forward()
    return counter.get_total_flops()


def saved_activation_bytes(
    module: nn.Module, forward: Callable[[], torch.Tensor]
) -> int:
    """Bytes autograd keeps for backward during ``forward()``, each storage once,
    parameters excluded."""
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


def math_backend_extra_values(
    config: TransformerConfig, batch_size: int, seq_len: int
) -> int:
    """Values the math attention backend saves beyond the fused CPU kernel in one
    forward (chapter 4).

    Per layer and token it keeps the softmax probabilities (h heads x T keys) instead of
    one log-sum-exp per head, so h*(T - 1) more. Its matmul operands are fresh copies of
    q, k and v that replace the fused kernel's saved Q|K|V; with one sequence (B = 1)
    the copy of v is a view of Q|K|V, which then stays alive beside the copies of q and
    k: 2H more. No dropout and no mask are assumed.
    """
    check_int("batch_size", batch_size)
    check_int("seq_len", seq_len)
    if config.dropout:
        raise ValueError(
            "math_backend_extra_values assumes dropout=0, "
            f"got config.dropout={config.dropout!r}"
        )
    per_token = config.n_heads * (seq_len - 1) + (
        2 * config.d_model if batch_size == 1 else 0
    )
    return config.depth * batch_size * seq_len * per_token


def training_state_bytes(
    module: nn.Module, loss_fn: Callable[[], torch.Tensor]
) -> dict[str, int]:
    """Bytes of parameters, gradients and AdamW state after one real training step."""
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
    optimizer.zero_grad(set_to_none=True)
    loss_fn().backward()
    optimizer.step()
    params = list(module.parameters())
    state_tensors = [
        t
        for state in optimizer.state.values()
        for t in state.values()
        if torch.is_tensor(t) and t.numel() > 1
    ]
    return {
        "parameters": sum(p.numel() * p.element_size() for p in params),
        "gradients": sum(
            p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None
        ),
        "optimizer_state": sum(t.numel() * t.element_size() for t in state_tensors),
    }


def hidden_state_rms(model: nn.Module, forward: Callable[[], object]) -> list[float]:
    """RMS of the residual stream after every applied layer of a ``SharedTransformer``
    (chapter 5).

    A forward hook on a shared module fires once per use, so hooks on the unique FFN
    sublayers see every layer.
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


def residual_updates(model: nn.Module, x: torch.Tensor) -> list[dict[str, float]]:
    """Per applied sublayer of a ``SharedTransformer`` on hidden states (B, T, H): RMS
    of the stream it reads, RMS of the update it adds, their cosine (over all entries),
    and RMS of the stream after (chapter 5).

    Variance adds when updates are orthogonal to the stream:
    ``after**2 = stream**2 + update**2`` before any normalisation; the cosine measures
    how far that holds.
    """
    if x.dim() != 3 or x.shape[-1] != model.config.d_model:
        raise ValueError(
            f"x must be hidden states (batch, sequence, {model.config.d_model}), "
            f"got {tuple(x.shape)}"
        )
    rows: list[dict[str, float]] = []

    def rms(t: torch.Tensor) -> float:
        return t.float().pow(2).mean().sqrt().item()

    with torch.no_grad():
        for a, f in zip(model.attention_map, model.ffn_map, strict=True):
            for block in (model.attention[a], model.ffn[f]):
                read = block.norm(x) if block.placement == "pre" else x  # (B, T, H)
                update = block.inner(read)  # (B, T, H)
                after = x + update  # (B, T, H)
                if block.placement == "post":
                    after = block.norm(after)
                cosine = torch.nn.functional.cosine_similarity(
                    x.flatten(), update.flatten(), dim=0
                ).item()
                rows.append(
                    {
                        "stream": rms(x),
                        "update": rms(update),
                        "cosine": cosine,
                        "after": rms(after),
                    }
                )
                x = after
    return rows
