"""The encoder of the book: only unique sublayers are stored, applied in ``layer_to_block`` order (chapter 5)."""

from __future__ import annotations

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
            Residual(SelfAttention(config), config) for _ in range(max(self.attention_map) + 1)
        )
        self.ffn = nn.ModuleList(Residual(FeedForward(config), config) for _ in range(max(self.ffn_map) + 1))
        self.final_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps) if config.norm == "pre" else None
        self.lm_projection = (
            nn.Linear(config.d_model, config.embedding_dim) if config.lm_head and config.embedding_size else None
        )
        self.apply(_init_weights)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        n_iterations: int | None = None,
    ) -> torch.Tensor:
        """Final hidden states (B, T, H); ``n_iterations`` re-runs a fully shared block more or fewer times."""
        key_mask = self._check_inputs(input_ids, attention_mask)
        return self.encode(self.embeddings(input_ids, token_type_ids), key_mask, n_iterations)

    def encode(
        self, x: torch.Tensor, key_mask: torch.Tensor | None = None, n_iterations: int | None = None
    ) -> torch.Tensor:
        """Run the layer stack on hidden states (B, T, H); ``key_mask`` (B, T) is True where a token is real."""
        if x.dim() != 3 or x.shape[-1] != self.config.d_model:
            raise ValueError(f"hidden states must be (batch, sequence, {self.config.d_model}), got {tuple(x.shape)}")
        for layer, (a, f) in enumerate(self._schedule(n_iterations)):
            x = self._layer(layer, a, f, x, key_mask)  # (B, T, H)
        return self.final_norm(x) if self.final_norm is not None else x

    def _layer(self, layer: int, a: int, f: int, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """Layer ``layer`` of the stack: attention block ``a`` then FFN block ``f`` (chapter 8 overrides it)."""
        x = self.attention[a](x, key_mask=key_mask)  # (B, T, H)
        return self.ffn[f](x)  # (B, T, H)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits (B, T, V) through the tied token embedding."""
        if not self.config.lm_head:
            raise ValueError("logits needs a config with lm_head=True")
        if self.lm_projection is not None:
            hidden = self.lm_projection(hidden)  # (B, T, E)
        return hidden @ self.embeddings.tokens.weight.T  # (B, T, V)

    def _schedule(self, n_iterations: int | None) -> list[tuple[int, int]]:
        if n_iterations is None:
            return list(zip(self.attention_map, self.ffn_map, strict=True))
        if self.config.strategy != "all":
            raise ValueError(f"n_iterations needs strategy 'all' (one shared block), got {self.config.strategy!r}")
        if not isinstance(n_iterations, int) or n_iterations < 1:
            raise ValueError(f"n_iterations must be a positive integer, got {n_iterations!r}")
        return [(0, 0)] * n_iterations

    def _check_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor | None:
        if input_ids.dim() != 2 or input_ids.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"input_ids must be an integer tensor (batch, sequence), got {tuple(input_ids.shape)}")
        if input_ids.shape[1] > self.config.max_len:
            raise ValueError(f"sequence length {input_ids.shape[1]} exceeds max_len={self.config.max_len}")
        if attention_mask is None:
            return None
        if attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, "
                f"got {tuple(attention_mask.shape)}"
            )
        return attention_mask.bool()


def _init_weights(module: nn.Module) -> None:
    """BERT-style initialisation: N(0, 0.02) weights, zero biases."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def next_token_loss(model: SharedTransformer, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Cross-entropy of next-token prediction; targets equal to -100 are not scored (chapter 6)."""
    inputs, targets = batch[0], batch[1]
    logits = model.logits(model(inputs))  # (B, T, V)
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
