"""A Transformer layer from its parts (chapter 2, *Core concepts*; chapter 5 explains each line)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import TransformerConfig

_ACTIVATIONS = {
    "gelu": nn.GELU,
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "relu": nn.ReLU,
}


class SelfAttention(nn.Module):
    """Multi-head self-attention with fused Q, K, V: 4*H*H weights and 4*H biases."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.causal = config.causal
        self.dropout = config.dropout
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)  # W_Q, W_K, W_V stacked
        self.out = nn.Linear(config.d_model, config.d_model)  # W_O

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T, C = x.shape  # (B, T, C)
        q, k, v = self.qkv(x).split(C, dim=2)  # 3 x (B, T, C)
        q, k, v = (t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2) for t in (q, k, v))  # (B, h, T, C/h)
        mask = None
        if key_mask is not None:  # (B, T) True where a key may be attended to
            mask = key_mask[:, None, None, :]  # (B, 1, 1, T)
            if self.causal:
                mask = mask & torch.ones(T, T, dtype=torch.bool, device=x.device).tril()  # (B, 1, T, T)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=self.causal and mask is None,
        )  # (B, h, T, C/h)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.out(y)  # (B, T, C)


class FeedForward(nn.Module):
    """Position-wise FFN: 2*H*F weights and F + H biases."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.up = nn.Linear(config.d_model, config.d_ff)
        self.act = _ACTIVATIONS[config.activation]()
        self.down = nn.Linear(config.d_ff, config.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.up(x)))  # (B, T, C) -> (B, T, F) -> (B, T, C)


class Residual(nn.Module):
    """A sublayer with its residual connection and LayerNorm (pre, post or none)."""

    def __init__(self, inner: nn.Module, config: TransformerConfig) -> None:
        super().__init__()
        self.inner = inner
        self.placement = config.norm
        self.norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps) if config.norm != "none" else None
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, **kwargs: torch.Tensor | None) -> torch.Tensor:
        if self.placement == "pre":
            return x + self.drop(self.inner(self.norm(x), **kwargs))  # (B, T, C)
        y = x + self.drop(self.inner(x, **kwargs))  # (B, T, C)
        return self.norm(y) if self.norm is not None else y


class Embeddings(nn.Module):
    """Token, position and segment embeddings, optionally factorised as V*E + E*H (ALBERT)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        E = config.embedding_dim
        self.tokens = nn.Embedding(config.vocab_size, E)
        self.positions = nn.Embedding(config.max_len, E)
        self.token_types = nn.Embedding(config.n_token_types, E) if config.n_token_types else None
        self.norm = nn.LayerNorm(E, eps=config.layer_norm_eps) if config.embedding_norm else None
        self.drop = nn.Dropout(config.dropout)
        self.projection = nn.Linear(E, config.d_model) if config.embedding_size is not None else None

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        T = input_ids.shape[1]
        x = self.tokens(input_ids) + self.positions(torch.arange(T, device=input_ids.device))  # (B, T, E)
        if self.token_types is not None:
            types = token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids)
            x = x + self.token_types(types)  # (B, T, E)
        if self.norm is not None:
            x = self.norm(x)
        x = self.drop(x)
        return self.projection(x) if self.projection is not None else x  # (B, T, H)
