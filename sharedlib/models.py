"""The encoder of the book: only the unique sublayers are stored, applied in
``layer_to_block`` order (chapter 5)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import TransformerConfig
from .data import IGNORE
from .layers import Embeddings, FeedForward, LayerKV, Residual, SelfAttention
from .validation import check_int, check_token_ids

__all__ = [
    "LOSS_UNIT",
    "SharedTransformer",
    "init_weights",
    "next_token_loss",
    "scored_cross_entropy",
    "windows_loss",
]


class SharedTransformer(nn.Module):
    """An encoder (or causal LM) whose layers reuse parameter sets as
    ``config.strategy`` says (chapter 5)."""

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
        """Final hidden states (B, T, H); ``n_iterations`` runs a fully shared block
        more or fewer times.

        ``attention_mask`` (B, T) follows Hugging Face: 1 or True marks a real token,
        0 or False padding, the opposite of ``nn.TransformerEncoder``'s
        ``src_key_padding_mask`` (pass ``~padding_mask``). Additive float masks
        (0 / -inf) are refused: convert one with ``mask == 0``. Chapter 5 explains why.
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
        caches: Sequence[LayerKV] | None = None,
    ) -> torch.Tensor:
        """Run the layer stack on hidden states (B, T, H).

        ``key_mask`` (B, T) is True at real tokens; ``caches``, one per applied layer,
        make it a decoding step (6b).
        """
        schedule = self.layer_schedule(n_iterations)
        self.check_hidden(x, key_mask, caches, len(schedule))
        for layer, (a, f) in enumerate(schedule):
            cache = None if caches is None else caches[layer]
            x = self.apply_layer(layer, a, f, x, key_mask, cache)  # (B, T, H)
        return self.final_norm(x) if self.final_norm is not None else x

    def apply_layer(
        self,
        layer: int,
        a: int,
        f: int,
        x: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        cache: LayerKV | None = None,
    ) -> torch.Tensor:
        """Layer ``layer`` of the stack: attention block ``a``, then FFN block ``f``.

        The hook a variant overrides to change what one layer computes (chapter 8).
        """
        x = self.attention[a](x, key_mask=key_mask, cache=cache)  # (B, T, H)
        return self.ffn[f](x)  # (B, T, H)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits (B, T, V) through the tied token embedding."""
        if not self.config.lm_head:
            raise ValueError("logits needs a config with lm_head=True")
        if self.lm_projection is not None:
            hidden = self.lm_projection(hidden)  # (B, T, E)
        return hidden @ self.embeddings.tokens.weight.T  # (B, T, V)

    def layer_schedule(self, n_iterations: int | None) -> list[tuple[int, int]]:
        """(attention block, FFN block) of each applied layer: the config's layer map,
        or ``n_iterations`` uses of the one shared block."""
        if n_iterations is None:
            return list(zip(self.attention_map, self.ffn_map, strict=True))
        if self.config.strategy != "all":
            raise ValueError(
                "n_iterations needs strategy 'all' (one shared block), "
                f"got {self.config.strategy!r}"
            )
        return [(0, 0)] * check_int("n_iterations", n_iterations)

    def cache_depth(self, n_iterations: int | None, slots: int | None = None) -> int:
        """LayerKVs a decoding cache needs: one per applied layer (``slots`` is for a
        ``LoopedTransformer``, chapter 5d)."""
        if slots is not None:
            raise ValueError(
                "slots (cache sets reused across iterations) needs a LoopedTransformer"
            )
        return len(self.layer_schedule(n_iterations))

    def check_hidden(
        self,
        x: torch.Tensor,
        key_mask: torch.Tensor | None,
        caches: Sequence[LayerKV] | None,
        depth: int,
    ) -> None:
        """Validate the inputs of ``encode``: (B, T, d_model) states, a (B, T) bool
        mask, one cache per applied layer and not both a mask and caches."""
        if (
            not isinstance(x, torch.Tensor)
            or x.dim() != 3
            or x.shape[-1] != self.config.d_model
        ):
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"hidden states must be (batch, sequence, {self.config.d_model}), "
                f"got {got}"
            )
        if key_mask is not None and (
            key_mask.dtype != torch.bool or key_mask.shape != x.shape[:2]
        ):
            raise ValueError(
                f"key_mask must be a bool tensor of shape {tuple(x.shape[:2])} "
                f"(True = real token), got {key_mask.dtype} {tuple(key_mask.shape)}"
            )
        if caches is None:
            return
        if key_mask is not None:
            raise ValueError(
                "key_mask and caches cannot be combined: cached decoding assumes "
                "unpadded sequences"
            )
        if not self.config.causal:
            raise ValueError(
                "caches need a causal model (TransformerConfig(causal=True))"
            )
        if len(caches) != depth:
            raise ValueError(
                f"caches must hold one LayerKV per applied layer ({depth}), "
                f"got {len(caches)}: were they made for another model or depth?"
            )

    def check_inputs(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """Validate the inputs of ``forward``; return the (B, T) bool key mask."""
        check_token_ids("input_ids", input_ids, self.config.vocab_size)
        if input_ids.shape[1] > self.config.max_len:
            raise ValueError(
                f"sequence length {input_ids.shape[1]} exceeds "
                f"max_len={self.config.max_len}"
            )
        if token_type_ids is not None:
            n_types = self.config.n_token_types
            if n_types == 0:
                raise ValueError(
                    "token_type_ids given, but the config has n_token_types=0 "
                    "(no segment embeddings)"
                )
            _check_like_input_ids("token_type_ids", token_type_ids, input_ids)
            check_token_ids("token_type_ids", token_type_ids, n_types, "n_token_types")
        if attention_mask is None:
            return None
        _check_like_input_ids("attention_mask", attention_mask, input_ids)
        if attention_mask.dtype != torch.bool:
            if attention_mask.is_floating_point() or attention_mask.is_complex():
                raise ValueError(
                    "attention_mask must be bool or integer with 1 = real token, "
                    f"0 = padding, got {attention_mask.dtype}. Additive float masks "
                    "(0 = keep, -inf or -10000 = masked) are not accepted: convert "
                    "one with `mask == 0`, or a 0./1. float mask with `mask.bool()`"
                )
            if attention_mask.numel():
                low, high = torch.stack(torch.aminmax(attention_mask)).tolist()
                if low < 0 or high > 1:
                    raise ValueError(
                        "attention_mask values must be 0 (padding) or 1 (real token), "
                        f"found {low}..{high}"
                    )
            attention_mask = attention_mask.bool()
        empty = ~attention_mask.any(dim=1)  # (B,) rows with nothing to attend to
        if empty.any():
            rows = empty.nonzero().flatten().tolist()
            raise ValueError(
                "attention_mask has no real token (all 0 / False) in batch row(s) "
                f"{rows[:8]}: every position of such a row has nothing to attend to; "
                "drop the row, or check that 1 / True means a real token"
            )
        return attention_mask


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
            f"{name} must have the shape of input_ids {tuple(input_ids.shape)}, "
            f"got {got}"
        )


def init_weights(module: nn.Module) -> None:
    """BERT-style initialisation: N(0, 0.02) weights, zero biases."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


# the unit of every loss the book reports: a token is a byte of text, or a bit (6)
LOSS_UNIT = "nats per token"


def scored_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (nats per token) of logits (B, T, V) over the targets (B, T)
    that are scored: a target equal to ``data.IGNORE`` is not (chapter 6)."""
    # logits in float32 even under bf16 autocast
    return F.cross_entropy(
        logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE
    )


def next_token_loss(
    model: SharedTransformer, batch: tuple[torch.Tensor, ...]
) -> torch.Tensor:
    """Cross-entropy of next-token prediction, ``data.IGNORE`` targets not scored
    (chapter 6)."""
    inputs, targets = batch[0], batch[1]
    # logits (B, T, V)
    return scored_cross_entropy(model.logits(model(inputs)), targets)


@torch.no_grad()
def windows_loss(
    model: SharedTransformer,
    windows: torch.Tensor,
    chunk: int = 256,
    n_iterations: int | None = None,
) -> float:
    """Mean next-token loss over held-out ``windows`` (W, T+1) in eval mode, ``chunk``
    windows at a time; ``n_iterations`` as in ``forward`` (chapters 5d and 6)."""
    model.eval()
    total = 0.0
    for part in windows.split(chunk):  # (w, T+1)
        inputs, targets = part[:, :-1], part[:, 1:]
        logits = model.logits(model(inputs, n_iterations=n_iterations))  # (w, T, V)
        total += scored_cross_entropy(logits, targets).item() * part.shape[0]
    return total / windows.shape[0]
