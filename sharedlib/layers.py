"""A Transformer layer from its parts (chapter 2, *Core concepts*).

Chapter 5 explains each line.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import TransformerConfig

__all__ = [
    "ROPE_BASE",
    "Embeddings",
    "FeedForward",
    "LayerKV",
    "Residual",
    "SelfAttention",
    "apply_rotary",
    "merge_heads",
    "rotary_angles",
    "split_heads",
]


ROPE_BASE = 10000.0  # theta of rotary embeddings (Su et al., 2021; Llama uses the same)

_ACTIVATIONS = {
    "gelu": nn.GELU,
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "relu": nn.ReLU,
}


def rotary_angles(
    positions: torch.Tensor, head_dim: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (T, d) of RoPE's angles p / base^(2j/d); feature j and j + d/2 share
    frequency j (chapter 5b)."""
    inverse_frequency = ROPE_BASE ** (
        -torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device)
        / head_dim
    )  # (d/2,)
    angles = positions.float()[:, None] * inverse_frequency  # (T, d/2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, d)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, start: int = 0) -> torch.Tensor:
    """Rotate each pair (x_j, x_{j+d/2}) of queries or keys (B, h, T, d) by the angle
    of its position start + t.

    A query at p and a key at q then score q_p . k_q = q . R(q - p) k: only the offset
    q - p is seen.
    """
    T, d = x.shape[-2], x.shape[-1]
    # (T, d) each
    cos, sin = rotary_angles(torch.arange(start, start + T, device=x.device), d)
    half = d // 2
    # (B, h, T, d): (x1, x2) -> (-x2, x1)
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)  # (B, h, T, d)


def split_heads(t: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, T, C) -> (B, h, T, C/h): each head attends with its own C/h features."""
    B, T, C = t.shape
    return t.view(B, T, n_heads, C // n_heads).transpose(1, 2)  # (B, h, T, C/h)


def merge_heads(y: torch.Tensor) -> torch.Tensor:
    """(B, h, T, C/h) -> (B, T, C): the heads' outputs side by side."""
    B, h, T, d = y.shape
    return y.transpose(1, 2).contiguous().view(B, T, h * d)  # (B, T, C)


class SelfAttention(nn.Module):
    """Multi-head self-attention with fused Q, K, V: 4*H*H weights and 4*H biases."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.causal = config.causal
        self.dropout = config.dropout
        self.rotary = config.position == "rotary"  # rotate Q and K by their positions
        # W_Q, W_K, W_V stacked
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.out = nn.Linear(config.d_model, config.d_model)  # W_O

    def forward(
        self,
        x: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        cache: LayerKV | None = None,
    ) -> torch.Tensor:
        """softmax(Q K^T/sqrt(C/h) + mask) V per head, then W_O: (B, T, C) -> (B, T, C).

        ``key_mask`` (B, T) is True at real tokens; with ``cache`` the T new positions
        follow the t0 cached ones and attend to them too (chapter 6b).
        """
        C = x.shape[-1]  # x: (B, T, C), positions t0 .. t0+T-1
        # (B, h, T, C/h) each
        q, k, v = (split_heads(t, self.n_heads) for t in self.qkv(x).split(C, dim=2))
        t0 = 0 if cache is None else cache.length
        if self.rotary:
            q, k = apply_rotary(q, t0), apply_rotary(k, t0)  # cached keys stay rotated
        if cache is not None:
            k, v = cache.append(k, v)  # (B, h, t0+T, C/h): every position so far
        mask = self._mask(key_mask, q.shape[2], t0, x.device)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=self.causal and mask is None and q.shape[2] > 1,
        )  # (B, h, T, C/h)
        return self.out(merge_heads(y))  # (B, T, C)

    def _mask(
        self, key_mask: torch.Tensor | None, n_new: int, t0: int, device: torch.device
    ) -> torch.Tensor | None:
        """The boolean attention mask (True = may attend), or None where SDPA's own
        ``is_causal`` (a top-left triangle) or no mask at all is right."""
        T, causal = n_new, None
        if self.causal and T > 1 and (t0 > 0 or key_mask is not None):
            # query t0+i sees keys 0..t0+i: a lower triangle shifted right by t0
            causal = torch.ones(T, t0 + T, dtype=torch.bool, device=device).tril(t0)
        if key_mask is None:
            return causal  # (T, t0+T) or None
        mask = key_mask[:, None, None, :]  # (B, 1, 1, T): keys that are real tokens
        return mask if causal is None else mask & causal  # (B, 1, T, T)


class LayerKV:
    """Keys and values of one *applied* layer, in buffers of ``capacity`` positions
    (chapter 6b).

    Layers that share weights still each keep their own K and V: they see different
    inputs.
    """

    def __init__(
        self,
        batch: int,
        n_heads: int,
        head_dim: int,
        capacity: int,
        *,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> None:
        shape = (batch, n_heads, capacity, head_dim)  # (B, h, P, C/h)
        self.k = torch.zeros(shape, dtype=dtype, device=device)  # (B, h, P, C/h)
        self.v = torch.zeros(shape, dtype=dtype, device=device)  # (B, h, P, C/h)
        self.length = 0  # t: positions filled so far

    @property
    def capacity(self) -> int:
        """Positions the buffers can hold."""
        return self.k.shape[2]

    def append(
        self, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the K, V (B, h, T, C/h) of T new positions; return the filled
        (B, h, t+T, C/h) views."""
        expected = (self.k.shape[0], self.k.shape[1], k.shape[2], self.k.shape[3])
        if tuple(k.shape) != expected or k.shape != v.shape:
            raise ValueError(
                f"cache holds batch {expected[0]}, {expected[1]} heads of width "
                f"{expected[3]}; got keys of shape {tuple(k.shape)} "
                "(batch, heads, new positions, head width): "
                "was this cache made for other inputs?"
            )
        t0, t1 = self.length, self.length + k.shape[2]
        if t1 > self.capacity:
            raise ValueError(
                f"cache capacity {self.capacity} exceeded: "
                f"{t0} cached + {k.shape[2]} new positions"
            )
        # (B, h, T, C/h) written in place: no copy of the earlier positions
        self.k[:, :, t0:t1] = k
        self.v[:, :, t0:t1] = v
        self.length = t1
        return self.k[:, :, :t1], self.v[:, :, :t1]  # (B, h, t+T, C/h)

    def filled(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Views (B, h, t, C/h) of the filled keys and values."""
        return self.k[:, :, : self.length], self.v[:, :, : self.length]


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
        self.norm = (
            nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
            if config.norm != "none"
            else None
        )
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, **kwargs: object) -> torch.Tensor:
        if self.placement == "pre":
            return x + self.drop(self.inner(self.norm(x), **kwargs))  # (B, T, C)
        y = x + self.drop(self.inner(x, **kwargs))  # (B, T, C)
        return self.norm(y) if self.norm is not None else y


class Embeddings(nn.Module):
    """Token, (learned) position and segment embeddings, optionally factorised as
    V*E + E*H (ALBERT)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        E = config.embedding_dim
        self.tokens = nn.Embedding(config.vocab_size, E)
        self.positions = (
            nn.Embedding(config.max_len, E) if config.position == "learned" else None
        )
        self.token_types = (
            nn.Embedding(config.n_token_types, E) if config.n_token_types else None
        )
        self.norm = (
            nn.LayerNorm(E, eps=config.layer_norm_eps)
            if config.embedding_norm
            else None
        )
        self.drop = nn.Dropout(config.dropout)
        self.projection = (
            nn.Linear(E, config.d_model) if config.embedding_size is not None else None
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        start: int = 0,
    ) -> torch.Tensor:
        """Embedded tokens (B, T, H) at positions ``start .. start+T-1``
        (a non-zero start: cached decoding, 6b)."""
        T = input_ids.shape[1]
        x = self.tokens(input_ids)  # (B, T, E)
        # learned positions; rotary ones act inside attention, "none" has none
        if self.positions is not None:
            x = x + self.positions(
                torch.arange(start, start + T, device=input_ids.device)
            )  # (B, T, E)
        if self.token_types is not None:
            types = (
                token_type_ids
                if token_type_ids is not None
                else torch.zeros_like(input_ids)
            )
            x = x + self.token_types(types)  # (B, T, E)
        if self.norm is not None:
            x = self.norm(x)
        x = self.drop(x)
        return self.projection(x) if self.projection is not None else x  # (B, T, H)
