"""How alike are a model's layers? Linear CKA of hidden states, similarity of weights,
and the shared block iterated past its trained depth (chapter 5c, *Why can one block
stand in for many?*)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from .models import SharedTransformer
from .validation import check_choice, check_instance, check_int

__all__ = [
    "SUBLAYER_WEIGHTS",
    "cka_matrix",
    "consecutive_weight_similarity",
    "hidden_states",
    "linear_cka",
    "loss_by_iterations",
    "relative_updates",
    "state_losses",
    "sublayer_weight",
    "weight_similarity",
]

# compared per layer
SUBLAYER_WEIGHTS: tuple[str, ...] = (
    "attention.qkv",
    "attention.out",
    "ffn.up",
    "ffn.down",
)


def _as_matrix(name: str, value: object) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.dim() != 2:
        described = (
            tuple(value.shape)
            if isinstance(value, torch.Tensor)
            else type(value).__name__
        )
        raise ValueError(
            f"{name} must be a 2-D tensor (examples, features), got {described}"
        )
    return value.detach().double()  # float64: the products below lose digits in float32


def _paired_examples(x: object, y: object) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` and ``y`` as float64 matrices of the same n >= 2 examples, neither constant
    over them (CKA is undefined there); else ``ValueError``."""
    x, y = _as_matrix("x", x), _as_matrix("y", y)
    if x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise ValueError(
            "x and y must have the same number (>= 2) of rows (examples), "
            f"got {x.shape[0]} and {y.shape[0]}"
        )
    if (x == x[0]).all() or (y == y[0]).all():
        raise ValueError(
            "x or y is constant over the examples: CKA is undefined for "
            "a zero-variance input"
        )
    return x, y


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al., 2019) of features x (n, p) and y (n, q) of the same
    n examples, in [0, 1].

    ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` after centering every column; the
    feature-space form of HSIC with linear kernels, so it costs O(n p q) and never
    builds an (n, n) Gram matrix.
    """
    x, y = _paired_examples(x, y)
    x = x - x.mean(dim=0)  # (n, p) centred columns
    y = y - y.mean(dim=0)  # (n, q)
    cross = (y.T @ x).square().sum()  # ||Y^T X||_F^2
    norms = (x.T @ x).square().sum().sqrt() * (y.T @ y).square().sum().sqrt()
    return (cross / norms).item()


def hidden_states(
    model: SharedTransformer, input_ids: torch.Tensor, n_iterations: int | None = None
) -> list[torch.Tensor]:
    """The residual stream h_0 (embeddings) .. h_L after every applied layer, each
    (B, T, H), before the final LayerNorm; recorded by forward hooks, which fire once
    per use of a shared module (chapter 5c)."""
    check_instance("model", model, SharedTransformer, "a SharedTransformer")
    states: list[torch.Tensor] = []

    def record(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        states.append(output.detach())  # (B, T, H)

    handles = [model.embeddings.register_forward_hook(record)]
    # an FFN sublayer ends every layer
    handles += [block.register_forward_hook(record) for block in model.ffn]
    try:
        with torch.no_grad():
            model(input_ids, n_iterations=n_iterations)
    finally:
        for handle in handles:
            handle.remove()
    return states


def cka_matrix(states: Sequence[torch.Tensor]) -> torch.Tensor:
    """Linear CKA between every pair of hidden states (each (B, T, H), tokens as
    examples): (L, L), symmetric."""
    if len(states) < 1:
        raise ValueError("states must hold at least one (B, T, H) tensor")
    flat = [s.reshape(-1, s.shape[-1]) for s in states]  # (B*T, H) each
    n = len(flat)
    matrix = torch.ones(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(i + 1, n):
            matrix[i, j] = matrix[j, i] = linear_cka(flat[i], flat[j])
    return matrix


def relative_updates(states: Sequence[torch.Tensor]) -> list[float]:
    """``||h_k - h_{k-1}|| / ||h_{k-1}||`` for k = 1 .. len(states) - 1 (norms over all
    entries)."""
    if len(states) < 2:
        raise ValueError(
            f"states must hold at least two hidden states, got {len(states)}"
        )
    return [((b - a).norm() / a.norm()).item() for a, b in itertools.pairwise(states)]


@torch.no_grad()
def loss_by_iterations(
    model: SharedTransformer, windows: torch.Tensor, iterations: Sequence[int]
) -> list[float]:
    """Mean next-token loss on ``windows`` (W, T+1) when the one shared block runs k
    times, for each k."""
    if model.config.strategy != "all":
        raise ValueError(
            "model must share one block (strategy 'all'), "
            f"got strategy {model.config.strategy!r}"
        )
    model.eval()
    inputs, targets = windows[:, :-1], windows[:, 1:]  # (W, T) each
    losses = []
    for k in iterations:
        logits = model.logits(model(inputs, n_iterations=k))  # (W, T, V)
        losses.append(
            torch.nn.functional.cross_entropy(
                logits.flatten(0, 1).float(), targets.flatten()
            ).item()
        )
    return losses


@torch.no_grad()
def state_losses(
    model: SharedTransformer, states: Sequence[torch.Tensor], targets: torch.Tensor
) -> list[float]:
    """Mean next-token loss if the stack stopped at each hidden state (B, T, H) of
    ``hidden_states``: the final LayerNorm and the output layer applied to it, scored
    against ``targets`` (B, T)."""
    losses = []
    for h in states:
        if h.shape[:2] != targets.shape:
            raise ValueError(
                f"targets must have shape {tuple(h.shape[:2])} (batch, sequence), "
                f"got {tuple(targets.shape)}"
            )
        normed = model.final_norm(h) if model.final_norm is not None else h  # (B, T, H)
        logits = model.logits(normed)  # (B, T, V)
        losses.append(
            torch.nn.functional.cross_entropy(
                logits.flatten(0, 1).float(), targets.flatten()
            ).item()
        )
    return losses


def sublayer_weight(model: SharedTransformer, layer: int, name: str) -> torch.Tensor:
    """The weight matrix ``name`` (one of SUBLAYER_WEIGHTS) that applied layer ``layer``
    uses."""
    check_choice("name", name, SUBLAYER_WEIGHTS)
    check_int("layer", layer, 0, model.config.n_layers - 1)
    part, linear = name.split(".")
    block = (
        model.attention[model.attention_map[layer]]
        if part == "attention"
        else model.ffn[model.ffn_map[layer]]
    )
    return getattr(block.inner, linear).weight.detach()


def weight_similarity(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """Cosine similarity of the flattened matrices and the relative distance
    ``||a - b|| / ||a||``."""
    if a.shape != b.shape:
        raise ValueError(
            "a and b must have the same shape, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    a, b = a.detach().double().flatten(), b.detach().double().flatten()
    cosine = (a @ b) / (a.norm() * b.norm())
    return cosine.item(), ((a - b).norm() / a.norm()).item()


def consecutive_weight_similarity(
    model: SharedTransformer,
) -> dict[str, list[tuple[float, float]]]:
    """Per sublayer weight, (cosine, relative distance) of layer i and layer i + 1 for
    i = 0 .. N-2."""
    n = model.config.n_layers
    return {
        name: [
            weight_similarity(
                sublayer_weight(model, i, name), sublayer_weight(model, i + 1, name)
            )
            for i in range(n - 1)
        ]
        for name in SUBLAYER_WEIGHTS
    }
