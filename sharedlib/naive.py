"""The source document's shared model, rebuilt to show its defects (chapters 4 and 5).

One attention and one FFN reused ``n_layers`` times with residuals and *no
normalisation*, in ``nn.MultiheadAttention``'s default sequence-first layout (T, B, C).
Do not use it for real work.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["NaiveSharedTransformer", "unshared_naive_stack"]


class NaiveSharedTransformer(nn.Module):
    """Shared attention + ReLU FFN with residuals, no LayerNorm; input (T, B, C) as in
    the source."""

    def __init__(self, d_model: int, d_ff: int, n_heads: int, n_layers: int) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"n_heads={n_heads} must divide d_model={d_model}")
        self.n_layers = n_layers
        # batch_first=False: (T, B, C)
        self.attention = nn.MultiheadAttention(d_model, n_heads)
        self.feed_forward = nn.Sequential(
            nn.Linear(d_model, d_ff), nn.ReLU(), nn.Linear(d_ff, d_model)
        )

    def forward(
        self, x: torch.Tensor, return_all: bool = False
    ) -> torch.Tensor | list[torch.Tensor]:
        """(T, B, C) -> (T, B, C); ``return_all`` also returns every layer's output for
        inspection."""
        outputs = []
        for _ in range(self.n_layers):
            x = self.attention(x, x, x, need_weights=False)[0] + x  # (T, B, C)
            x = self.feed_forward(x) + x  # (T, B, C)
            outputs.append(x)
        return outputs if return_all else x


def unshared_naive_stack(
    d_model: int, d_ff: int, n_heads: int, n_layers: int
) -> nn.ModuleList:
    """The same layers without sharing: ``n_layers`` independent attention + FFN pairs
    (for counting)."""
    return nn.ModuleList(
        NaiveSharedTransformer(d_model, d_ff, n_heads, 1) for _ in range(n_layers)
    )
