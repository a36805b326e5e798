"""Relaxed sharing: one shared block plus low-rank deltas (chapter 8, *Outlook*).

Every weight matrix gets a low-rank delta per layer: layer i computes with W + B_i A_i
instead of W, as in Relaxed Recursive Transformers (Bae et al., 2025), whose deltas are
LoRA modules (Hu et al., 2022). With B_i = 0 the model is exactly the shared model.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn
from torch.func import functional_call

from .config import TransformerConfig
from .counting import count_parameters
from .layers import LayerKV
from .models import SharedTransformer
from .validation import check_int

__all__ = [
    "LowRankDelta",
    "RelaxedSharedTransformer",
    "delta_parameters",
    "fit_delta",
    "relax_unshared",
    "relaxed_parameters",
]


class LowRankDelta(nn.Module):
    """The matrix B @ A of shape (out, in) and rank <= r; B starts at zero, so the delta
    starts at zero."""

    def __init__(self, out_features: int, in_features: int, rank: int) -> None:
        super().__init__()
        # (r, in)
        self.A = nn.Parameter(torch.randn(rank, in_features) / in_features**0.5)
        self.B = nn.Parameter(torch.zeros(out_features, rank))  # (out, r)

    def forward(self) -> torch.Tensor:
        return self.B @ self.A  # (out, in)


def _linear_weights(block: nn.Module) -> dict[str, torch.Tensor]:
    """The weight matrix of every ``nn.Linear`` inside ``block``, by parameter name."""
    return {
        f"{name}.weight": m.weight
        for name, m in block.named_modules()
        if isinstance(m, nn.Linear)
    }


def _deltas_for(block: nn.Module, rank: int) -> nn.ModuleDict:
    # ModuleDict keys may not contain dots, so "inner.qkv.weight" is stored as
    # "inner__qkv__weight".
    return nn.ModuleDict(
        {
            name.replace(".", "__"): LowRankDelta(*w.shape, rank)
            for name, w in _linear_weights(block).items()
        }
    )


def _run_with_deltas(
    block: nn.Module, deltas: nn.ModuleDict, x: torch.Tensor, **kwargs
) -> torch.Tensor:
    """Apply ``block`` to ``x`` with every weight matrix W replaced by W + its delta;
    other parameters as they are."""
    weights = {
        name: w + deltas[name.replace(".", "__")]()
        for name, w in _linear_weights(block).items()
    }
    return functional_call(block, weights, (x,), kwargs, strict=False)  # (B, T, H)


def delta_parameters(config: TransformerConfig, rank: int) -> int:
    """Parameters that rank-r deltas add: r * (in + out) per weight matrix, 8H + 2F of
    them per layer."""
    rank = check_int("rank", rank)
    H, F = config.d_model, config.d_ff
    return config.depth * rank * (8 * H + 2 * F)


class RelaxedSharedTransformer(SharedTransformer):
    """``SharedTransformer(config)`` whose layer i adds its own low-rank deltas to the
    shared weight matrices."""

    def __init__(self, config: TransformerConfig, rank: int) -> None:
        rank = check_int("rank", rank)
        super().__init__(config)
        self.rank = rank
        depth = len(self.attention_map)
        self.attention_deltas = nn.ModuleList(
            _deltas_for(self.attention[0], rank) for _ in range(depth)
        )
        self.ffn_deltas = nn.ModuleList(
            _deltas_for(self.ffn[0], rank) for _ in range(depth)
        )

    def apply_layer(
        self,
        layer: int,
        a: int,
        f: int,
        x: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        cache: LayerKV | None = None,
    ) -> torch.Tensor:
        """Layer ``layer`` with W + B_i A_i in place of each shared weight matrix W."""
        attention, ffn = self.attention_deltas[layer], self.ffn_deltas[layer]
        x = _run_with_deltas(
            self.attention[a], attention, x, key_mask=key_mask, cache=cache
        )  # (B, T, H)
        return _run_with_deltas(self.ffn[f], ffn, x)  # (B, T, H)

    def layer_schedule(self, n_iterations: int | None) -> list[tuple[int, int]]:
        if n_iterations is not None:
            raise ValueError(
                "n_iterations is not available: "
                "each layer of a relaxed model has its own deltas"
            )
        return super().layer_schedule(None)


def relaxed_parameters(config: TransformerConfig, rank: int) -> int:
    """Closed-form parameter count of ``RelaxedSharedTransformer(config, rank)``."""
    return count_parameters(config) + delta_parameters(config, rank)


@torch.no_grad()
def relax_unshared(model: SharedTransformer, rank: int) -> RelaxedSharedTransformer:
    """Compress an unshared model into one shared block (the layers' mean) plus rank-r
    SVD deltas (Bae et al.)."""
    if model.config.strategy != "none":
        raise ValueError(
            "relax_unshared needs an unshared model (strategy 'none'), "
            f"got {model.config.strategy!r}"
        )
    relaxed = RelaxedSharedTransformer(
        replace(model.config, strategy="all", n_unique=None), rank
    )
    relaxed.embeddings.load_state_dict(model.embeddings.state_dict())
    for name in ("final_norm", "lm_projection"):
        if getattr(model, name) is not None:
            getattr(relaxed, name).load_state_dict(getattr(model, name).state_dict())
    for stack, shared, deltas in (
        (model.attention, relaxed.attention[0], relaxed.attention_deltas),
        (model.ffn, relaxed.ffn[0], relaxed.ffn_deltas),
    ):
        shared_parameters = dict(shared.named_parameters())
        for name, p in shared_parameters.items():
            p.copy_(
                torch.stack(
                    [dict(layer.named_parameters())[name] for layer in stack]
                ).mean(0)
            )
        for layer, layer_deltas in zip(stack, deltas, strict=True):
            for name, w in _linear_weights(layer).items():
                fit_delta(
                    layer_deltas[name.replace(".", "__")], w - shared_parameters[name]
                )
    return relaxed


def fit_delta(delta: LowRankDelta, residual: torch.Tensor) -> None:
    """Set B @ A to the best rank-r approximation of ``residual`` (truncated SVD,
    Eckart-Young)."""
    # (out, k), (k,), (k, in)
    U, S, Vh = torch.linalg.svd(residual, full_matrices=False)
    r = min(delta.A.shape[0], S.numel())
    delta.B.zero_()
    delta.A.zero_()
    delta.B[:, :r] = U[:, :r] * S[:r]  # (out, r)
    delta.A[:r] = Vh[:r]  # (r, in)
