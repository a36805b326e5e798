"""A Transformer layer from its parts (chapter 2, *Core concepts*; chapter 5 explains each line)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import TransformerConfig

ROPE_BASE = 10000.0  # theta of rotary embeddings (Su et al., 2021; Llama uses the same)

_ACTIVATIONS = {
    "gelu": nn.GELU,
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "relu": nn.ReLU,
}


def rotary_angles(
    positions: torch.Tensor, head_dim: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (T, d) of RoPE's angles p / base^(2j/d); feature j and j + d/2 share frequency j (chapter 5b)."""
    inverse_frequency = ROPE_BASE ** (
        -torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device)
        / head_dim
    )  # (d/2,)
    angles = positions.float()[:, None] * inverse_frequency  # (T, d/2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, d)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, start: int = 0) -> torch.Tensor:
    """Rotate each pair (x_j, x_{j+d/2}) of queries or keys (B, h, T, d) by the angle of its position start + t.

    A query at p and a key at q then score q_p . k_q = q . R(q - p) k: only the offset q - p is seen.
    """
    T, d = x.shape[-2], x.shape[-1]
    cos, sin = rotary_angles(
        torch.arange(start, start + T, device=x.device), d
    )  # (T, d) each
    half = d // 2
    rotated = torch.cat(
        [-x[..., half:], x[..., :half]], dim=-1
    )  # (B, h, T, d): (x1, x2) -> (-x2, x1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)  # (B, h, T, d)


class SelfAttention(nn.Module):
    """Multi-head self-attention with fused Q, K, V: 4*H*H weights and 4*H biases."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.causal = config.causal
        self.dropout = config.dropout
        # rotate Q and K by their positions (no position table)
        self.rotary = config.position == "rotary"
        # W_Q, W_K, W_V stacked
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.out = nn.Linear(config.d_model, config.d_model)  # W_O

    def forward(
        self,
        x: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        cache: LayerKV | None = None,
    ) -> torch.Tensor:
        """Attention output (B, T, C); with ``cache`` the keys of earlier positions come
        from it (chapter 6b)."""
        if cache is not None:
            return self._cached(x, key_mask, cache)
        B, T, C = x.shape  # (B, T, C)
        q, k, v = self.qkv(x).split(C, dim=2)  # 3 x (B, T, C)
        q, k, v = (
            t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)
            for t in (q, k, v)
        )  # (B, h, T, C/h)
        if self.rotary:
            q, k = apply_rotary(q), apply_rotary(k)  # (B, h, T, C/h), positions 0..T-1
        mask = None
        if key_mask is not None:  # (B, T) True where a key may be attended to
            mask = key_mask[:, None, None, :]  # (B, 1, 1, T)
            if self.causal:
                causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
                mask = mask & causal  # (B, 1, T, T)
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

    def _cached(
        self, x: torch.Tensor, key_mask: torch.Tensor | None, cache: LayerKV
    ) -> torch.Tensor:
        """Causal attention of T new positions to the cached ``t0`` earlier ones and to
        themselves (chapter 6b)."""
        if not self.causal:
            raise ValueError(
                "a K/V cache needs a causal model (TransformerConfig(causal=True))"
            )
        if key_mask is not None:
            raise ValueError(
                "key_mask and cache cannot be combined: cached decoding "
                "assumes unpadded sequences"
            )
        B, T, C = x.shape  # (B, T, C) the new positions t0 .. t0+T-1
        q, k, v = self.qkv(x).split(C, dim=2)  # 3 x (B, T, C)
        q, k, v = (
            t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)
            for t in (q, k, v)
        )  # (B, h, T, C/h)
        t0 = cache.length
        if self.rotary:
            # positions t0 .. t0+T-1; the cached keys stay rotated
            q, k = apply_rotary(q, t0), apply_rotary(k, t0)
        k, v = cache.append(k, v)  # (B, h, t0+T, C/h): K and V of every position so far
        # Query t0+i may see keys 0..t0+i: a lower-triangular (T, t0+T) mask shifted
        # right by t0. SDPA's own is_causal aligns the triangle top-left, which is right
        # only when t0 == 0; one new query sees everything.
        mask = None
        if T > 1 and t0 > 0:
            mask = torch.ones(T, t0 + T, dtype=torch.bool, device=x.device).tril(
                diagonal=t0
            )  # (T, t0+T)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=T > 1 and t0 == 0,
        )  # (B, h, T, C/h)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.out(y)  # (B, T, C)


class LayerKV:
    """Keys and values of one *applied* layer, in buffers of ``capacity`` positions (chapter 6b).

    Layers that share weights still each keep their own K and V: they see different inputs.
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
        """Store the K, V (B, h, T, C/h) of T new positions; return the filled (B, h, t+T, C/h) views."""
        expected = (self.k.shape[0], self.k.shape[1], k.shape[2], self.k.shape[3])
        if tuple(k.shape) != expected or k.shape != v.shape:
            raise ValueError(
                f"cache holds batch {expected[0]}, {expected[1]} heads of width {expected[3]}; got keys of shape "
                f"{tuple(k.shape)} (batch, heads, new positions, head width): was this cache made for other inputs?"
            )
        t0, t1 = self.length, self.length + k.shape[2]
        if t1 > self.capacity:
            raise ValueError(
                f"cache capacity {self.capacity} exceeded: {t0} cached + {k.shape[2]} new positions"
            )
        self.k[:, :, t0:t1] = (
            k  # (B, h, T, C/h) written in place: no copy of the earlier positions
        )
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
    """Token, (learned) position and segment embeddings, optionally factorised as V*E + E*H (ALBERT)."""

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
        """Embedded tokens (B, T, H) at positions ``start .. start+T-1`` (a non-zero start: cached decoding, 6b)."""
        T = input_ids.shape[1]
        x = self.tokens(input_ids)  # (B, T, E)
        if (
            self.positions is not None
        ):  # learned positions; rotary ones act inside attention, "none" has none
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
