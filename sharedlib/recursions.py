"""Expert-choice Mixture-of-Recursions (chapter 5b, *Looping done properly*).

One shared block is applied up to R times (Bae et al., 2025). Before recursion r a
router scores the tokens that took recursion r - 1, and only the top k_r of them (per
sequence) take recursion r: they are gathered into a shorter sequence, attend only to
one another, and are scattered back, weighted by their router score. The others keep
their state. The saving is real: recursion r costs what a block costs on k_r tokens.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .config import TransformerConfig
from .models import SharedTransformer, init_weights, scored_cross_entropy
from .validation import check_instance, check_int, check_real

__all__ = [
    "MixtureOfRecursions",
    "Routing",
    "default_capacities",
    "routed_loss",
    "tokens_per_recursion",
]


def default_capacities(n_iterations: int) -> tuple[float, ...]:
    """Capacities 1, (R-1)/R, ..., 1/R for R = ``n_iterations`` recursions: every token
    takes one, 1/R of them take all R (chapter 5b)."""
    R = check_int("n_iterations", n_iterations)
    return tuple((R - r) / R for r in range(R))


def tokens_per_recursion(capacities: Sequence[float], length: int) -> list[int]:
    """k_r = max(1, floor(capacity_r * length)), the tokens per sequence that take
    recursion r (as MoR's code)."""
    check_int("length", length)
    return [max(1, int(c * length)) for c in _check_capacities(capacities)]


@dataclass
class Routing:
    """What the routers chose: per recursion r, the token indices (B, k_r) and their
    gate values (B, k_r)."""

    depths: torch.Tensor  # (B, T) int64: recursions token t took, 0 .. R
    # R tensors (B, k_r) int64: positions that took recursion r, sorted
    selected: list[torch.Tensor]
    # R tensors (B, k_r): g = alpha * sigmoid(router score) of those positions
    gates: list[torch.Tensor]


class MixtureOfRecursions(nn.Module):
    """A shared block applied up to ``config.n_layers`` times; before each recursion a
    router keeps the top tokens.

    ``config.strategy`` must be "all", and the model holds a
    ``SharedTransformer(config)`` (``self.base``) for its embeddings, its one block,
    final LayerNorm and tied output layer. ``capacities`` (one per recursion,
    non-increasing, in (0, 1]) are the shares of the sequence that take each recursion;
    ``alpha`` scales the sigmoid gate. Position embeddings must be added at the input
    ("learned" or "none"), because a recursion sees its tokens as a shorter sequence.
    """

    def __init__(
        self,
        config: TransformerConfig,
        capacities: Sequence[float] | None = None,
        alpha: float = 1.0,
    ) -> None:
        super().__init__()
        check_instance("config", config, TransformerConfig, "a TransformerConfig")
        if config.strategy != "all":
            raise ValueError(
                "config.strategy must be 'all' (one shared block), "
                f"got {config.strategy!r}"
            )
        if config.position not in ("learned", "none"):
            raise ValueError(
                f"config.position must be 'learned' or 'none' (added at the input), "
                f"got {config.position!r}"
            )
        capacities = (
            default_capacities(config.n_layers) if capacities is None else capacities
        )
        self.capacities = _check_capacities(capacities)
        if len(self.capacities) != config.n_layers:
            raise ValueError(
                f"capacities must have one value per recursion (config.n_layers = "
                f"{config.n_layers}), got {len(self.capacities)}"
            )
        self.config = config
        self.alpha = check_real("alpha", alpha, 0, open_minimum=True)
        # embeddings, the shared block, final norm, tied output layer
        self.base = SharedTransformer(config)
        # a router per recursion: a score per token, g = alpha * sigmoid(w_r . h + b_r)
        self.routers = nn.ModuleList(
            nn.Linear(config.d_model, 1) for _ in range(config.n_layers)
        )
        self.routers.apply(init_weights)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, Routing]:
        """Final hidden states (B, T, H) after the final LayerNorm, and the routing."""
        base = self.base
        key_mask = base.check_inputs(input_ids, attention_mask, token_type_ids)
        h = base.embeddings(input_ids, token_type_ids)  # (B, T, H)
        B, T, H = h.shape
        # positions that took the last recursion: all of them before the first
        active = torch.arange(T, device=h.device).expand(B, T)  # (B, T)
        depths = torch.zeros(B, T, dtype=torch.long, device=h.device)
        selected, gates = [], []
        for r, k in enumerate(tokens_per_recursion(self.capacities, T)):
            k = min(k, active.shape[1])  # never more than the tokens still active
            candidates = h.gather(1, active[..., None].expand(-1, -1, H))  # (B, k', H)
            g = self.alpha * torch.sigmoid(self.routers[r](candidates))  # (B, k', 1)
            g = g.squeeze(-1)  # (B, k') the gate of every candidate
            top = g.topk(k, dim=1).indices.sort(dim=1).values  # (B, k) in token order
            active = active.gather(1, top)  # (B, k) positions in the full sequence
            g = g.gather(1, top)  # (B, k)
            index = active[..., None].expand(-1, -1, H)  # (B, k, H)
            mask = None if key_mask is None else key_mask.gather(1, active)  # (B, k)
            update = self.block(h.gather(1, index), mask)  # (B, k, H) on k tokens only
            h = h.scatter_add(1, index, g[..., None] * update)  # h_t += g_t f(h_t)
            depths = depths.scatter_add(1, active, torch.ones_like(active))
            selected.append(active)
            gates.append(g)
        if base.final_norm is not None:
            h = base.final_norm(h)  # (B, T, H)
        return h, Routing(depths=depths, selected=selected, gates=gates)

    def block(
        self, x: torch.Tensor, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The shared attention and FFN block (residuals included) on a gathered
        sequence (B, k, H)."""
        return self.base.ffn[0](self.base.attention[0](x, key_mask=key_mask))

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits (B, T, V) through the tied token embedding
        (as ``SharedTransformer.logits``)."""
        return self.base.logits(hidden)


def routed_loss(
    model: MixtureOfRecursions, batch: tuple[torch.Tensor, ...]
) -> torch.Tensor:
    """Cross-entropy of the scored targets (not ``IGNORE``) of a
    ``MixtureOfRecursions``."""
    inputs, targets = batch[0], batch[1]
    hidden, _ = model(inputs)  # (B, T, H)
    return scored_cross_entropy(model.logits(hidden), targets)


def _check_capacities(capacities: object) -> tuple[float, ...]:
    message = (
        "capacities must be a non-empty, non-increasing sequence of real numbers "
        "in (0, 1]"
    )
    if (
        isinstance(capacities, (str, bytes))
        or not isinstance(capacities, Sequence)
        or not capacities
    ):
        raise ValueError(f"{message}, got {capacities!r}")
    try:
        values = [
            check_real("capacity", c, 0, 1, open_minimum=True) for c in capacities
        ]
    except ValueError:
        raise ValueError(f"{message}, got {capacities!r}") from None
    if any(b > a for a, b in itertools.pairwise(values)):
        raise ValueError(f"{message}, got {capacities!r}")
    return tuple(values)
