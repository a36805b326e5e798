"""The encoder of the book: only unique sublayers are stored, applied in ``layer_to_block`` order (chapter 5)."""

from __future__ import annotations

import numbers

import torch
from torch import nn

from .config import TransformerConfig
from .layers import Embeddings, FeedForward, Residual, SelfAttention


class SharedTransformer(nn.Module):
    """An encoder (or causal LM) whose layers reuse parameter sets as ``config.strategy`` says."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.attention_map = config.block_map("attention")
        self.ffn_map = config.block_map("ffn")
        self.embeddings = Embeddings(config)
        self.attention = nn.ModuleList(
            Residual(SelfAttention(config), config)
            for _ in range(max(self.attention_map) + 1)
        )
        self.ffn = nn.ModuleList(
            Residual(FeedForward(config), config) for _ in range(max(self.ffn_map) + 1)
        )
        self.final_norm = (
            nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
            if config.norm == "pre"
            else None
        )
        self.lm_projection = (
            nn.Linear(config.d_model, config.embedding_dim)
            if config.lm_head and config.embedding_size
            else None
        )
        self.apply(init_weights)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        n_iterations: int | None = None,
    ) -> torch.Tensor:
        """Final hidden states (B, T, H); ``n_iterations`` re-runs a fully shared block more or fewer times.

        ``attention_mask`` (B, T) follows Hugging Face: 1 or True marks a real token that may be attended to,
        0 or False marks padding. This is the opposite of ``nn.TransformerEncoder``'s ``src_key_padding_mask``
        (True = padding): pass ``~padding_mask``. Additive float masks (0 / -inf) are refused; convert Hugging
        Face's extended mask with ``mask == 0``. Chapter 5 explains the choice.
        """
        key_mask = self.check_inputs(input_ids, attention_mask, token_type_ids)
        return self.encode(
            self.embeddings(input_ids, token_type_ids), key_mask, n_iterations
        )

    def encode(
        self,
        x: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        n_iterations: int | None = None,
    ) -> torch.Tensor:
        """Run the layer stack on batch-first hidden states (B, T, H); ``key_mask``
        (B, T) is True at real tokens."""
        if x.dim() != 3 or x.shape[-1] != self.config.d_model:
            raise ValueError(
                "hidden states must be (batch, sequence, "
                f"{self.config.d_model}), got {tuple(x.shape)}"
            )
        if key_mask is not None and (
            key_mask.dtype != torch.bool or key_mask.shape != x.shape[:2]
        ):
            raise ValueError(
                f"key_mask must be a bool tensor of shape {tuple(x.shape[:2])} "
                f"(True = real token), got {key_mask.dtype} {tuple(key_mask.shape)}"
            )
        for layer, (a, f) in enumerate(self.layer_schedule(n_iterations)):
            x = self._layer(layer, a, f, x, key_mask)  # (B, T, H)
        return self.final_norm(x) if self.final_norm is not None else x

    def _layer(
        self, layer: int, a: int, f: int, x: torch.Tensor, key_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Layer ``layer`` of the stack: attention block ``a`` then FFN block ``f``
        (chapter 8 overrides it)."""
        x = self.attention[a](x, key_mask=key_mask)  # (B, T, H)
        return self.ffn[f](x)  # (B, T, H)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits (B, T, V) through the tied token embedding."""
        if not self.config.lm_head:
            raise ValueError("logits needs a config with lm_head=True")
        if self.lm_projection is not None:
            hidden = self.lm_projection(hidden)  # (B, T, E)
        return hidden @ self.embeddings.tokens.weight.T  # (B, T, V)

    def layer_schedule(self, n_iterations: int | None) -> list[tuple[int, int]]:
        if n_iterations is None:
            return list(zip(self.attention_map, self.ffn_map, strict=True))
        if self.config.strategy != "all":
            raise ValueError(
                f"n_iterations needs strategy 'all' (one shared block), got {self.config.strategy!r}"
            )
        if (
            isinstance(n_iterations, bool)
            or not isinstance(n_iterations, numbers.Integral)
            or n_iterations < 1
        ):
            raise ValueError(
                f"n_iterations must be a positive integer, got {n_iterations!r}"
            )
        return [(0, 0)] * n_iterations

    def check_inputs(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """Validate the inputs of ``forward`` (one min/max reduction per tensor); return the (B, T) bool key mask."""
        if (
            not isinstance(input_ids, torch.Tensor)
            or input_ids.dim() != 2
            or input_ids.dtype not in _INT_DTYPES
        ):
            shape = (
                tuple(input_ids.shape)
                if isinstance(input_ids, torch.Tensor)
                else type(input_ids).__name__
            )
            dtype = (
                f" of {input_ids.dtype}" if isinstance(input_ids, torch.Tensor) else ""
            )
            raise ValueError(
                f"input_ids must be an int64 or int32 tensor (batch, sequence), got {shape}{dtype}"
            )
        if input_ids.shape[1] > self.config.max_len:
            raise ValueError(
                f"sequence length {input_ids.shape[1]} exceeds max_len={self.config.max_len}"
            )
        _check_range("input_ids", input_ids, "vocab_size", self.config.vocab_size)
        if token_type_ids is not None:
            n_types = self.config.n_token_types
            if n_types == 0:
                raise ValueError(
                    "token_type_ids given, but the config has n_token_types=0 (no segment embeddings)"
                )
            _check_like_input_ids("token_type_ids", token_type_ids, input_ids)
            _check_range("token_type_ids", token_type_ids, "n_token_types", n_types)
        if attention_mask is None:
            return None
        _check_like_input_ids("attention_mask", attention_mask, input_ids)
        if attention_mask.dtype != torch.bool:
            if attention_mask.is_floating_point() or attention_mask.is_complex():
                raise ValueError(
                    "attention_mask must be bool or integer with 1 = real token, 0 = padding, got "
                    f"{attention_mask.dtype}. Additive float masks (0 = keep, -inf or -10000 = masked) are not"
                    " accepted: convert one with `mask == 0`, or a 0./1. float mask with `mask.bool()`"
                )
            low, high = _min_max(attention_mask)
            if low < 0 or high > 1:
                raise ValueError(
                    f"attention_mask values must be 0 (padding) or 1 (real token), found {low}..{high}"
                )
            attention_mask = attention_mask.bool()
        empty = ~attention_mask.any(
            dim=1
        )  # (B,) rows without a real token: nothing to attend to
        if empty.any():
            rows = empty.nonzero().flatten().tolist()
            raise ValueError(
                f"attention_mask has no real token (all 0 / False) in batch row(s) {rows[:8]}: every position of"
                " such a row has nothing to attend to; drop the row, or check that 1 / True means a real token"
            )
        return attention_mask


_INT_DTYPES = (torch.int32, torch.int64)  # what nn.Embedding takes as indices


def _check_like_input_ids(
    name: str, tensor: torch.Tensor, input_ids: torch.Tensor
) -> None:
    if not isinstance(tensor, torch.Tensor) or tensor.shape != input_ids.shape:
        got = (
            tuple(tensor.shape)
            if isinstance(tensor, torch.Tensor)
            else type(tensor).__name__
        )
        raise ValueError(
            f"{name} must have the shape of input_ids {tuple(input_ids.shape)}, got {got}"
        )


def _check_range(name: str, ids: torch.Tensor, limit_name: str, limit: int) -> None:
    """Raise ``ValueError`` unless every value of the integer tensor ``ids`` is in ``0..limit-1``."""
    if ids.dtype not in _INT_DTYPES:
        raise ValueError(f"{name} must be an int64 or int32 tensor, got {ids.dtype}")
    low, high = _min_max(
        ids
    )  # nn.Embedding would raise a bare IndexError (or a device assert on CUDA)
    if low < 0 or high >= limit:
        raise ValueError(
            f"{name} must be in 0..{limit_name}-1 = 0..{limit - 1}, found {low if low < 0 else high}"
        )


def _min_max(tensor: torch.Tensor) -> tuple[int, int]:
    """Smallest and largest value of an integer tensor in one reduction and one device sync; (0, 0) if empty."""
    if not tensor.numel():
        return 0, 0
    low, high = torch.stack(torch.aminmax(tensor)).tolist()
    return low, high


def init_weights(module: nn.Module) -> None:
    """BERT-style initialisation: N(0, 0.02) weights, zero biases."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def next_token_loss(
    model: SharedTransformer, batch: tuple[torch.Tensor, ...]
) -> torch.Tensor:
    """Cross-entropy of next-token prediction; targets equal to -100 are not scored (chapter 6)."""
    inputs, targets = batch[0], batch[1]
    logits = model.logits(model(inputs))  # (B, T, V)
    return torch.nn.functional.cross_entropy(
        logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100
    )
