"""Autoregressive decoding with a K/V cache: one (K, V) per *applied* layer, shared weights or not (chapter 6b).

Prefill runs the prompt once and stores every layer's keys and values; each decode step then embeds one new
token at position t, attends to the t cached positions plus itself, and appends its K, V. Per token, the
weights are read once per applied layer (a shared block is re-read from cache), while the cache holds

    2 (K and V) * depth * B * t * H * bytes per element

whichever blocks the layers use: sharing weights does not shrink it.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch

from .layers import LayerKV
from .models import SharedTransformer


@dataclass
class KVCache:
    """One ``LayerKV`` per applied layer, in ``model.layer_schedule`` order, and the schedule it was built for."""

    layers: list[LayerKV]
    schedule: list[
        tuple[int, int]
    ]  # (attention block, FFN block) of each applied layer

    @property
    def length(self) -> int:
        """t: positions cached so far (the next token goes to position t)."""
        return self.layers[0].length

    @property
    def batch_size(self) -> int:
        """B: sequences decoded side by side."""
        return self.layers[0].k.shape[0]

    @property
    def capacity(self) -> int:
        """Positions the buffers can hold."""
        return self.layers[0].capacity

    def nbytes(self) -> int:
        """Bytes of the filled keys and values: 2 * depth * B * t * H * element size."""
        return sum(
            t.numel() * t.element_size()
            for layer in self.layers
            for t in layer.filled()
        )

    def allocated_bytes(self) -> int:
        """Bytes of the buffers, filled or not: 2 * depth * B * capacity * H * element size."""
        return sum(
            t.numel() * t.element_size()
            for layer in self.layers
            for t in (layer.k, layer.v)
        )

    def crop(self, length: int) -> None:
        """Forget every position from ``length`` on (the buffers stay; later steps overwrite them)."""
        if not isinstance(length, int) or not 0 <= length <= self.length:
            raise ValueError(
                f"length must be an int in 0..{self.length} (the cached positions), got {length!r}"
            )
        for layer in self.layers:
            layer.length = length


def _check_model(model: SharedTransformer) -> None:
    if not isinstance(model, SharedTransformer):
        raise ValueError(
            f"model must be a sharedlib SharedTransformer, got {type(model).__name__}"
        )
    if type(model)._layer is not SharedTransformer._layer:
        raise ValueError(
            f"{type(model).__name__} overrides the per-layer hook _layer (e.g. relaxed sharing); cached decoding "
            "only knows SharedTransformer's attention-then-FFN layer and would silently drop the override"
        )
    config = model.config
    if not (config.causal and config.lm_head):
        raise ValueError(
            f"decoding needs a causal language model: TransformerConfig(causal=True, lm_head=True), got "
            f"causal={config.causal}, lm_head={config.lm_head}"
        )
    if model.training and config.dropout > 0:
        raise ValueError(
            f"dropout={config.dropout} is active in training mode: call model.eval() before decoding"
        )


ID_DTYPES: tuple[torch.dtype, ...] = (
    torch.int64,
    torch.int32,
)  # the index types nn.Embedding accepts


def _check_ids(name: str, ids: torch.Tensor, model: SharedTransformer) -> None:
    if (
        not isinstance(ids, torch.Tensor)
        or ids.dim() != 2
        or ids.dtype not in ID_DTYPES
    ):
        got = (
            f"{ids.dtype} {tuple(ids.shape)}"
            if isinstance(ids, torch.Tensor)
            else type(ids).__name__
        )
        raise ValueError(
            f"{name} must be a (batch, sequence) tensor of dtype torch.int64 or torch.int32, got {got}"
            + (
                " (convert with .long())"
                if isinstance(ids, torch.Tensor) and ids.dim() == 2
                else ""
            )
        )
    if ids.numel() and (
        int(ids.min()) < 0 or int(ids.max()) >= model.config.vocab_size
    ):
        raise ValueError(
            f"{name} must be token ids in 0..vocab_size-1 = 0..{model.config.vocab_size - 1}"
        )


def _check_prompt(ids: torch.Tensor) -> None:
    if ids.shape[1] == 0:
        raise ValueError(
            f"ids must hold a prompt of at least one token per sequence, got shape {tuple(ids.shape)}: the next "
            "token is predicted from the last one"
        )


def _run(model: SharedTransformer, ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """Logits (B, T, V) of T new tokens at positions t..t+T-1, appending their K, V to ``cache``."""
    t0, T = cache.length, ids.shape[1]
    if t0 + T > model.config.max_len:
        raise ValueError(
            f"{t0} cached + {T} new positions exceed max_len={model.config.max_len} (the longest input accepted)"
        )
    x = model.embeddings(ids, start=t0)  # (B, T, H) at positions t0..t0+T-1
    for (a, f), layer_cache in zip(cache.schedule, cache.layers, strict=True):
        x = model.attention[a](
            x, cache=layer_cache
        )  # (B, T, H) attends to (B, t0+T) keys
        x = model.ffn[f](x)  # (B, T, H)
    if model.final_norm is not None:
        x = model.final_norm(x)  # (B, T, H)
    return model.logits(x)  # (B, T, V)


@torch.inference_mode()
def prefill(
    model: SharedTransformer,
    ids: torch.Tensor,
    capacity: int | None = None,
    n_iterations: int | None = None,
) -> tuple[torch.Tensor, KVCache]:
    """Logits (B, T, V) of the prompt ``ids`` (B, T) and a cache of its keys and values (chapter 6b).

    ``capacity`` (default ``max_len``) sizes the buffers; ``n_iterations`` changes the depth of a fully shared
    model as in ``model.forward``.
    """
    _check_model(model)
    _check_ids("ids", ids, model)
    _check_prompt(ids)
    if n_iterations is not None:
        if isinstance(n_iterations, bool) or not isinstance(
            n_iterations, numbers.Integral
        ):
            raise ValueError(
                f"n_iterations must be None or a positive integer (a bool is not a count), got "
                f"{n_iterations!r}"
            )
        n_iterations = int(n_iterations)
    B, T = ids.shape
    config = model.config
    capacity = config.max_len if capacity is None else capacity
    if (
        isinstance(capacity, bool)
        or not isinstance(capacity, int)
        or not T <= capacity <= config.max_len
    ):
        raise ValueError(
            f"capacity must be an int in {T}..max_len={config.max_len} (prompt of {T}), got {capacity!r}"
        )
    schedule = model.layer_schedule(n_iterations)
    reference = model.embeddings.tokens.weight
    layers = [
        LayerKV(
            B,
            config.n_heads,
            config.head_dim,
            capacity,
            dtype=reference.dtype,
            device=reference.device,
        )
        for _ in schedule
    ]
    cache = KVCache(layers, schedule)
    return _run(model, ids, cache), cache


def _check_cache(model: SharedTransformer, ids: torch.Tensor, cache: KVCache) -> None:
    if not isinstance(cache, KVCache):
        raise ValueError(
            f"cache must be the KVCache returned by prefill, got {type(cache).__name__}"
        )
    if ids.shape[0] != cache.batch_size:
        raise ValueError(
            f"tokens have batch size {ids.shape[0]}, but the cache was built for {cache.batch_size}"
        )
    if any(a >= len(model.attention) or f >= len(model.ffn) for a, f in cache.schedule):
        raise ValueError(
            "cache was built for another model: its layer schedule names blocks this model lacks"
        )


@torch.inference_mode()
def extend(
    model: SharedTransformer, ids: torch.Tensor, cache: KVCache
) -> tuple[torch.Tensor, KVCache]:
    """Logits (B, T, V) of T more tokens ``ids`` (B, T) after the cached ones; ``cache`` grows by T (chapter 6b)."""
    _check_model(model)
    _check_ids("ids", ids, model)
    _check_cache(model, ids, cache)
    return _run(model, ids, cache), cache


@torch.inference_mode()
def decode_step(
    model: SharedTransformer, token: torch.Tensor, cache: KVCache
) -> tuple[torch.Tensor, KVCache]:
    """Logits (B, V) of the next position after feeding ``token`` (B,) or (B, 1); ``cache`` grows by one."""
    _check_model(model)
    if isinstance(token, torch.Tensor) and token.dim() == 1:
        token = token[:, None]  # (B, 1)
    _check_ids("token", token, model)
    if token.shape[1] != 1:
        raise ValueError(
            f"token must have shape (batch,) or (batch, 1), got {tuple(token.shape)}"
        )
    _check_cache(model, token, cache)
    logits = _run(model, token, cache)  # (B, 1, V)
    return logits[:, -1], cache  # (B, V)


@torch.inference_mode()
def generate(
    model: SharedTransformer,
    ids: torch.Tensor,
    n_new: int,
    greedy: bool = True,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The prompt (B, T) followed by ``n_new`` generated tokens: (B, T + n_new) (chapter 6b).

    Greedy takes the most likely token; otherwise tokens are sampled from softmax(logits / temperature).
    """
    if isinstance(n_new, bool) or not isinstance(n_new, numbers.Integral) or n_new < 1:
        raise ValueError(f"n_new must be a positive integer, got {n_new!r}")
    n_new = int(n_new)
    if not greedy and not temperature > 0:
        raise ValueError(f"temperature must be > 0 when sampling, got {temperature!r}")
    _check_model(model)
    _check_ids("ids", ids, model)
    _check_prompt(ids)
    total = ids.shape[1] + n_new
    if total > model.config.max_len:
        raise ValueError(
            f"prompt {ids.shape[1]} + n_new {n_new} = {total} exceeds max_len={model.config.max_len}"
        )
    logits, cache = prefill(model, ids, capacity=total - 1)
    next_logits = logits[:, -1]  # (B, V)
    out = [ids]
    for i in range(n_new):
        if greedy:
            token = next_logits.argmax(dim=-1)  # (B,)
        else:
            probs = torch.softmax(next_logits.float() / temperature, dim=-1)  # (B, V)
            token = torch.multinomial(probs, 1, generator=generator)[:, 0]  # (B,)
        out.append(token[:, None])
        if i < n_new - 1:  # the last token is returned, never fed
            next_logits, cache = decode_step(model, token, cache)
    return torch.cat(out, dim=1)  # (B, T + n_new)
