"""Autoregressive decoding with a K/V cache (chapter 6b).

The cache holds one (K, V) per *applied* layer, shared weights or not. Prefill runs the
prompt once and stores every layer's keys and values; each decode step then embeds one
new token at position t, attends to the t cached positions plus itself, and appends its
K, V. Per token, the weights are read once per applied layer (a shared block is re-read
from cache), while the cache holds

    2 (K and V) * depth * B * t * H * bytes per element

whichever blocks the layers use: sharing weights does not shrink it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .layers import LayerKV
from .models import SharedTransformer
from .validation import check_instance, check_int, check_real, check_token_ids

__all__ = [
    "KVCache",
    "decode_step",
    "decode_teacher_forced",
    "extend",
    "generate",
    "prefill",
]


@dataclass
class KVCache:
    """One ``LayerKV`` per applied layer, and the schedule it was built for (6b)."""

    layers: list[LayerKV]  # one per (attention, FFN) pair of ``schedule``
    schedule: list[tuple[int, int]]  # ``model.layer_schedule(n_iterations)``
    n_iterations: int | None = None  # as in ``model.forward``: None = the config's map
    # a looped model's cache sets per core layer, reused in turn (None: one each)
    slots: int | None = None

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
        """Buffer bytes, filled or not: 2 * depth * B * capacity * H * element size."""
        return sum(
            t.numel() * t.element_size()
            for layer in self.layers
            for t in (layer.k, layer.v)
        )

    def crop(self, length: int) -> None:
        """Forget every position from ``length`` on (the buffers stay; later steps
        overwrite them)."""
        if not isinstance(length, int) or not 0 <= length <= self.length:
            raise ValueError(
                f"length must be an int in 0..{self.length} (the cached positions), "
                f"got {length!r}"
            )
        for layer in self.layers:
            layer.length = length


def _check_model(model: SharedTransformer) -> None:
    check_instance("model", model, SharedTransformer, "a sharedlib SharedTransformer")
    config = model.config
    if not (config.causal and config.lm_head):
        raise ValueError(
            "decoding needs a causal language model: TransformerConfig(causal=True, "
            f"lm_head=True), got causal={config.causal}, lm_head={config.lm_head}"
        )
    if model.training and config.dropout > 0:
        raise ValueError(
            f"dropout={config.dropout} is active in training mode: "
            "call model.eval() before decoding"
        )


def _check_prompt(model: SharedTransformer, ids: torch.Tensor) -> None:
    check_token_ids("ids", ids, model.config.vocab_size)
    if ids.shape[1] == 0:
        raise ValueError(
            "ids must hold a prompt of at least one token per sequence, got shape "
            f"{tuple(ids.shape)}: the next token is predicted from the last one"
        )


def _run(model: SharedTransformer, ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """Logits (B, T, V) of T new tokens at positions t..t+T-1; K, V join ``cache``."""
    t0, T = cache.length, ids.shape[1]
    if t0 + T > model.config.max_len:
        raise ValueError(
            f"{t0} cached + {T} new positions exceed max_len={model.config.max_len} "
            "(the longest input accepted)"
        )
    x = model.embeddings(ids, start=t0)  # (B, T, H) at positions t0..t0+T-1
    hidden = model.encode(x, n_iterations=cache.n_iterations, caches=cache.layers)
    return model.logits(hidden)  # (B, T, V)


@torch.inference_mode()
def prefill(
    model: SharedTransformer,
    ids: torch.Tensor,
    capacity: int | None = None,
    n_iterations: int | None = None,
    slots: int | None = None,
) -> tuple[torch.Tensor, KVCache]:
    """Logits (B, T, V) of the prompt ``ids`` (B, T) and a cache of its keys and values.

    ``capacity`` (default ``max_len``) sizes the buffers; ``n_iterations`` sets the
    depth of a fully shared or looped model as in ``model.forward`` (chapter 6b);
    ``slots`` reuses a looped model's cache sets across iterations (chapter 5d).
    """
    _check_model(model)
    _check_prompt(model, ids)
    B, T = ids.shape
    config = model.config
    capacity = config.max_len if capacity is None else capacity
    capacity = check_int("capacity", capacity, T, config.max_len)
    if n_iterations is not None:
        n_iterations = check_int("n_iterations", n_iterations)
    weight = model.embeddings.tokens.weight  # the cache takes its dtype and device
    schedule = model.layer_schedule(n_iterations)
    layers = [
        LayerKV(
            B,
            config.n_heads,
            config.head_dim,
            capacity,
            dtype=weight.dtype,
            device=weight.device,
        )
        for _ in range(model.cache_depth(n_iterations, slots))
    ]
    cache = KVCache(layers, schedule, n_iterations, slots)
    return _run(model, ids, cache), cache


def _check_cache(model: SharedTransformer, ids: torch.Tensor, cache: KVCache) -> None:
    check_instance("cache", cache, KVCache, "the KVCache returned by prefill")
    if ids.shape[0] != cache.batch_size:
        raise ValueError(
            f"tokens have batch size {ids.shape[0]}, "
            f"but the cache was built for {cache.batch_size}"
        )
    if cache.schedule != model.layer_schedule(cache.n_iterations):
        raise ValueError(
            "cache was built for another model: its layer schedule "
            f"{cache.schedule} is not this model's"
        )


@torch.inference_mode()
def extend(
    model: SharedTransformer, ids: torch.Tensor, cache: KVCache
) -> tuple[torch.Tensor, KVCache]:
    """Logits (B, T, V) of T more tokens ``ids`` (B, T) after the cached ones;
    ``cache`` grows by T (chapter 6b)."""
    _check_model(model)
    check_token_ids("ids", ids, model.config.vocab_size)
    _check_cache(model, ids, cache)
    return _run(model, ids, cache), cache


@torch.inference_mode()
def decode_teacher_forced(
    model: SharedTransformer,
    ids: torch.Tensor,
    prompt_length: int,
    n_iterations: int | None = None,
    slots: int | None = None,
) -> tuple[torch.Tensor, KVCache]:
    """Logits (B, T, V) of ``ids`` (B, T): the first ``prompt_length`` tokens prefilled,
    the rest fed one at a time through the cache (chapters 6b and 5d)."""
    check_int("prompt_length", prompt_length, 1, ids.shape[-1])
    logits, cache = prefill(model, ids[:, :prompt_length], None, n_iterations, slots)
    steps = [logits]  # (B, prompt_length, V), then (B, 1, V) per token
    for t in range(prompt_length, ids.shape[1]):
        step, cache = extend(model, ids[:, t : t + 1], cache)
        steps.append(step)
    return torch.cat(steps, 1), cache


@torch.inference_mode()
def decode_step(
    model: SharedTransformer, token: torch.Tensor, cache: KVCache
) -> tuple[torch.Tensor, KVCache]:
    """Logits (B, V) of the next position after feeding ``token`` (B,) or (B, 1);
    ``cache`` grows by one (chapter 6b)."""
    _check_model(model)
    if isinstance(token, torch.Tensor) and token.dim() == 1:
        token = token[:, None]  # (B, 1)
    check_token_ids("token", token, model.config.vocab_size)
    if token.shape[1] != 1:
        raise ValueError(
            f"token must have shape (batch,) or (batch, 1), got {tuple(token.shape)}"
        )
    _check_cache(model, token, cache)
    return _run(model, token, cache)[:, -1], cache  # (B, V)


@torch.inference_mode()
def generate(
    model: SharedTransformer,
    ids: torch.Tensor,
    n_new: int,
    greedy: bool = True,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The prompt (B, T) followed by ``n_new`` generated tokens: (B, T + n_new).

    Greedy takes the most likely token, otherwise tokens are sampled from
    softmax(logits / temperature) (chapter 6b).
    """
    n_new = check_int("n_new", n_new)
    if not greedy:
        check_real("temperature", temperature, 0, open_minimum=True)
    _check_model(model)
    _check_prompt(model, ids)
    total = ids.shape[1] + n_new
    if total > model.config.max_len:
        raise ValueError(
            f"prompt {ids.shape[1]} + n_new {n_new} = {total} "
            f"exceeds max_len={model.config.max_len}"
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
            next_logits = _run(model, token[:, None], cache)[:, -1]  # (B, V)
    return torch.cat(out, dim=1)  # (B, T + n_new)
