"""Looped (recurrent-depth) language models: a prelude, a core looped r times with the
input re-injected, a coda (chapter 5d, *Looped language models*).

Geiping et al. (2025, Huginn): P prelude layers turn the tokens into e; a state
s_0 = 0 is updated r times, s_i = R(A [s_{i-1}; e]), by the R core layers; C coda
layers read s_r. Training samples r per step (a log-normal Poisson) and backpropagates
through the last k iterations only. Exits follow Geiping (the KL between successive
iterations' outputs) and Ouro (Zhu et al., 2025: a learned gate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations

from .config import TransformerConfig
from .counting import count_parameters, forward_flops_per_token
from .layers import LayerKV
from .models import SharedTransformer, init_weights, scored_cross_entropy
from .relaxed import RelaxedSharedTransformer, fit_delta
from .validation import check_choice, check_instance, check_int, check_real

__all__ = [
    "DEPTH_SAMPLINGS",
    "INJECTIONS",
    "RECURSIVE_INITS",
    "LoopConfig",
    "LoopedTransformer",
    "exit_decode",
    "exit_probabilities",
    "gated_loss",
    "injection_spectral_norm",
    "loop_map",
    "looped_flops_per_token",
    "looped_parameters",
    "prelude_gradient_norm",
    "random_depth_loss",
    "recursive_from_unshared",
    "relax_recursive",
    "sample_iterations",
]

# how e re-enters each iteration: A [s; e] (Huginn's adapter), s + e, or only as s_0
INJECTIONS: tuple[str, ...] = ("concat", "add", "none")
DEPTH_SAMPLINGS: tuple[str, ...] = ("fixed", "lognormal-poisson")


@dataclass(frozen=True)
class LoopConfig:
    """The loop around a ``TransformerConfig``'s layers; invalid values raise
    ``ValueError`` naming the field."""

    n_prelude: int = 1  # P: unshared layers that embed the input (Huginn: 2)
    n_core: int = 1  # R: layers of the looped block (Huginn: 4)
    n_coda: int = 1  # C: unshared layers after the loop (Huginn: 2)
    n_iterations: int = 4  # r: loop count at test time; the mean depth in training
    injection: str = "concat"  # one of INJECTIONS
    sampling: str = "fixed"  # training depth, one of DEPTH_SAMPLINGS
    sigma: float = 0.5  # spread of the log-normal (Huginn: 0.5)
    max_iterations: int = 32  # a sampled depth is capped here
    # k: gradients through the last k iterations only (Huginn: 8); None: all
    backprop_iterations: int | None = None
    # Parcae-style bound on the spectral norm of A's state half; None: unconstrained
    injection_bound: float | None = None
    exit_gate: bool = False  # a learned exit gate per iteration (Ouro)

    def __post_init__(self) -> None:
        for name, minimum in (("n_prelude", 0), ("n_core", 1), ("n_coda", 0)):
            object.__setattr__(
                self, name, check_int(name, getattr(self, name), minimum)
            )
        check_int("n_iterations", self.n_iterations)
        check_choice("injection", self.injection, INJECTIONS)
        check_choice("sampling", self.sampling, DEPTH_SAMPLINGS)
        check_real("sigma", self.sigma, 0.0, open_minimum=True)
        check_int("max_iterations", self.max_iterations, self.n_iterations)
        if self.sampling == "lognormal-poisson" and self.n_iterations < 2:
            raise ValueError(
                "sampling='lognormal-poisson' draws 1 + Poisson(...) iterations: "
                f"n_iterations (the mean) must be at least 2, got {self.n_iterations}"
            )
        if self.backprop_iterations is not None:
            check_int("backprop_iterations", self.backprop_iterations)
        if self.injection_bound is not None:
            check_real("injection_bound", self.injection_bound, 0.0, open_minimum=True)
            if self.injection != "concat":
                raise ValueError(
                    "injection_bound constrains the state half of the concat adapter: "
                    f"it needs injection='concat', got {self.injection!r}"
                )

    @property
    def unique_layers(self) -> int:
        """P + R + C: the layers that hold parameters."""
        return self.n_prelude + self.n_core + self.n_coda

    def depth(self, n_iterations: int | None = None) -> int:
        """P + R r + C: the layers applied in one pass."""
        r = self.n_iterations if n_iterations is None else n_iterations
        return self.n_prelude + self.n_core * r + self.n_coda


def loop_map(loop: LoopConfig, n_iterations: int | None = None) -> list[int]:
    """The unique layer of each applied layer: prelude, the core r times (Takase and
    Kiyono's ``cycle``), coda."""
    check_instance("loop", loop, LoopConfig, "a sharedlib.LoopConfig")
    P, R, C = loop.n_prelude, loop.n_core, loop.n_coda
    r = check_int(
        "n_iterations", loop.n_iterations if n_iterations is None else n_iterations
    )
    core = [P + j % R for j in range(R * r)]  # P..P+R-1, repeated r times
    return [*range(P), *core, *range(P + R, P + R + C)]


def sample_iterations(
    loop: LoopConfig, generator: torch.Generator | None = None
) -> int:
    """A training depth: r itself, or 1 + Poisson(e^tau) with
    tau ~ N(log(r - 1) - s^2/2, s), whose mean is r, capped at ``max_iterations``."""
    check_instance("loop", loop, LoopConfig, "a sharedlib.LoopConfig")
    if loop.sampling == "fixed":
        return loop.n_iterations
    s = loop.sigma
    # E[e^tau] = r - 1: Geiping et al. use log(r) here, a mean of r + 1
    tau = (
        math.log(loop.n_iterations - 1)
        - s * s / 2
        + s * torch.randn(1, generator=generator)
    )
    draw = 1 + int(torch.poisson(tau.exp(), generator=generator).item())
    return min(draw, loop.max_iterations)


class LoopedTransformer(SharedTransformer):
    """Prelude, core looped r times, coda (chapter 5d): ``config`` gives the width and
    its P + R + C unique layers (strategy 'none'), ``loop`` the rest."""

    def __init__(self, config: TransformerConfig, loop: LoopConfig) -> None:
        check_instance("loop", loop, LoopConfig, "a sharedlib.LoopConfig")
        check_instance(
            "config", config, TransformerConfig, "a sharedlib.TransformerConfig"
        )
        if config.strategy != "none" or config.n_layers != loop.unique_layers:
            raise ValueError(
                "config must hold the unique layers unshared: strategy 'none' and "
                f"n_layers = P + R + C = {loop.unique_layers}, got strategy "
                f"{config.strategy!r}, n_layers={config.n_layers}"
            )
        super().__init__(config)
        self.loop = loop
        H = config.d_model
        self.state_in = self.input_in = self.exit_gate = None
        if loop.injection == "concat":
            # A [s; e] = A_s s + A_e e + b: the adapter as two halves
            self.state_in = nn.Linear(H, H, bias=False)  # A_s: (H, H)
            self.input_in = nn.Linear(H, H)  # A_e, b: (H, H), (H,)
            init_weights(self.state_in)
            init_weights(self.input_in)
            if loop.injection_bound is not None:
                # W / sigma_max(W), sigma_max by power iteration; scaled in ``inject``
                parametrizations.spectral_norm(self.state_in)
        if loop.exit_gate:
            self.exit_gate = nn.Linear(H, 1)  # lambda_i = sigmoid(w . h_i + b)
            init_weights(self.exit_gate)

    def layer_schedule(self, n_iterations: int | None) -> list[tuple[int, int]]:
        """(attention, FFN) block of each applied layer, from ``loop_map``."""
        return [(m, m) for m in loop_map(self.loop, n_iterations)]

    def cache_depth(self, n_iterations: int | None, slots: int | None = None) -> int:
        """LayerKVs a decoding cache needs: P + R * slots + C; ``slots`` None keeps one
        set per iteration (exact), fewer are reused in turn (Huginn)."""
        r = self.loop.n_iterations if n_iterations is None else n_iterations
        b = r if slots is None else check_int("slots", slots, 1, r)
        return self.loop.n_prelude + self.loop.n_core * b + self.loop.n_coda

    def inject(self, s: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """The core's input from the state s and the embedded input e (B, T, H)."""
        if self.loop.injection == "none":
            return s
        if self.loop.injection == "add":
            return s + e  # (B, T, H)
        state = self.state_in(s)  # (B, T, H)
        if self.loop.injection_bound is not None:
            state = self.loop.injection_bound * state  # ||A_s||_2 <= bound
        return state + self.input_in(e)  # (B, T, H)

    def encode(
        self,
        x: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        n_iterations: int | None = None,
        caches: list[LayerKV] | None = None,
    ) -> torch.Tensor:
        """Prelude, r iterations (gradients through the last k), coda, final norm:
        (B, T, H) -> (B, T, H)."""
        r = self.loop.n_iterations if n_iterations is None else n_iterations
        r = check_int("n_iterations", r)
        slots = self._slots(caches, r)
        self.check_hidden(x, key_mask, caches, self.cache_depth(r, slots))
        start = 0 if caches is None else caches[0].length  # positions cached before
        e = self.prelude(x, key_mask, caches)  # (B, T, H)
        s = e if self.loop.injection == "none" else torch.zeros_like(e)  # s_0
        k = (
            r
            if self.loop.backprop_iterations is None
            else self.loop.backprop_iterations
        )
        for i in range(r):
            # iterations before the last k build no graph (truncated backpropagation)
            with torch.set_grad_enabled(torch.is_grad_enabled() and i >= r - k):
                s = self.iterate(i, s, e, key_mask, caches, slots, start)  # (B, T, H)
        return self.coda(s, key_mask, caches, slots, start)  # (B, T, H)

    def prelude(
        self,
        x: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        caches: list[LayerKV] | None = None,
    ) -> torch.Tensor:
        """e: the P prelude layers on the embedded tokens (B, T, H)."""
        for j in range(self.loop.n_prelude):
            cache = None if caches is None else caches[j]
            x = self.apply_layer(j, j, j, x, key_mask, cache)  # (B, T, H)
        return x

    def iterate(
        self,
        i: int,
        s: torch.Tensor,
        e: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        caches: list[LayerKV] | None = None,
        slots: int = 1,
        start: int = 0,
    ) -> torch.Tensor:
        """s_{i+1} = R(inject(s_i, e)): iteration i of the core, cached in slot i mod
        ``slots`` from position ``start`` on."""
        P, R = self.loop.n_prelude, self.loop.n_core
        x = self.inject(s, e)  # (B, T, H)
        for j in range(R):
            cache = None if caches is None else caches[P + (i % slots) * R + j]
            if cache is not None:
                cache.length = start  # a reused slot is overwritten, not extended
            x = self.apply_layer(P + j, P + j, P + j, x, key_mask, cache)  # (B, T, H)
        return x

    def coda(
        self,
        s: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        caches: list[LayerKV] | None = None,
        slots: int = 1,
        start: int = 0,
    ) -> torch.Tensor:
        """The C coda layers and the final norm on a state (B, T, H), cached from
        position ``start`` on."""
        P, R = self.loop.n_prelude, self.loop.n_core
        for j in range(self.loop.n_coda):
            cache = None if caches is None else caches[P + slots * R + j]
            if cache is not None:
                cache.length = start  # an exit test may run the coda again
            layer = P + R + j
            s = self.apply_layer(layer, layer, layer, s, key_mask, cache)  # (B, T, H)
        return self.final_norm(s) if self.final_norm is not None else s

    def _slots(self, caches: list[LayerKV] | None, r: int) -> int:
        """The cache slots that ``caches`` holds: r when it keeps every iteration."""
        if caches is None:
            return r
        extra = len(caches) - self.loop.n_prelude - self.loop.n_coda
        if extra < self.loop.n_core or extra % self.loop.n_core:
            raise ValueError(
                f"caches must hold P + R * slots + C LayerKVs, got {len(caches)}: "
                "were they made for another model?"
            )
        return min(extra // self.loop.n_core, r)

    def iteration_outputs(
        self, input_ids: torch.Tensor, n_iterations: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits after every iteration (r, B, T, V), the coda run on each s_i, and the
        exit gate's lambda_i (r, B, T) when the loop has one."""
        r = check_int(
            "n_iterations",
            self.loop.n_iterations if n_iterations is None else n_iterations,
        )
        self.check_inputs(input_ids, None)
        e = self.prelude(self.embeddings(input_ids))  # (B, T, H)
        s = e if self.loop.injection == "none" else torch.zeros_like(e)
        logits, gates = [], []
        for i in range(r):
            s = self.iterate(i, s, e)  # (B, T, H)
            h = self.coda(s)  # (B, T, H)
            logits.append(self.logits(h))  # (B, T, V)
            if self.exit_gate is not None:
                gates.append(torch.sigmoid(self.exit_gate(h)[..., 0]))  # (B, T)
        return torch.stack(logits), (torch.stack(gates) if gates else None)


def random_depth_loss(
    model: LoopedTransformer, batch: tuple[torch.Tensor, ...]
) -> torch.Tensor:
    """Next-token loss at a depth drawn by ``sample_iterations`` in training (torch's
    global generator) and at r in evaluation."""
    inputs, targets = batch[0], batch[1]
    r = sample_iterations(model.loop) if model.training else model.loop.n_iterations
    # logits (B, T, V)
    return scored_cross_entropy(model.logits(model(inputs, n_iterations=r)), targets)


def exit_probabilities(gates: torch.Tensor) -> torch.Tensor:
    """p_i = lambda_i prod_{j<i} (1 - lambda_j), the last iteration taking what is left:
    (r, B, T) -> (r, B, T), summing to 1 over i."""
    survive = torch.cumprod(1 - gates, dim=0)  # (r, B, T): prod_{j<=i} (1 - lambda_j)
    before = torch.cat([torch.ones_like(gates[:1]), survive[:-1]])  # prod_{j<i}
    p = gates * before  # (r, B, T)
    return torch.cat([p[:-1], before[-1:]])  # the last iteration takes the rest


def gated_loss(
    step_losses: torch.Tensor, gates: torch.Tensor, entropy_weight: float
) -> torch.Tensor:
    """Ouro's objective: sum_i p_i L_i - beta H(p), averaged over tokens; losses and
    gates (r, B, T)."""
    beta = check_real("entropy_weight", entropy_weight, 0.0)
    p = exit_probabilities(gates)  # (r, B, T)
    entropy = -(p * p.clamp_min(1e-12).log()).sum(0)  # (B, T)
    return ((p * step_losses).sum(0) - beta * entropy).mean()


@torch.inference_mode()
def exit_decode(
    model: LoopedTransformer,
    ids: torch.Tensor,
    threshold: float,
    max_iterations: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced decoding of ``ids`` (B, T), one cache slot per core layer: each
    token iterates until the KL between successive outputs falls below ``threshold``.

    Returns the logits (B, T, V) at each token's exit and its iterations (B, T).
    """
    check_instance("model", model, LoopedTransformer, "a sharedlib LoopedTransformer")
    threshold = check_real("threshold", threshold, 0.0)  # 0: never exits early
    loop = model.loop
    r_max = check_int(
        "max_iterations",
        loop.n_iterations if max_iterations is None else max_iterations,
    )
    model.check_inputs(ids, None)
    B, T = ids.shape
    config, weight = model.config, model.embeddings.tokens.weight
    caches = [
        LayerKV(
            B,
            config.n_heads,
            config.head_dim,
            T,
            dtype=weight.dtype,
            device=weight.device,
        )
        for _ in range(model.cache_depth(r_max, 1))
    ]
    rewritten = caches[loop.n_prelude :]  # the core slot and the coda
    all_logits, all_counts = [], []
    for t in range(T):
        e = model.prelude(model.embeddings(ids[:, t : t + 1], start=t), None, caches)
        s = e if loop.injection == "none" else torch.zeros_like(e)  # (B, 1, H)
        done = torch.zeros(B, dtype=torch.bool, device=ids.device)
        count = torch.zeros(B, dtype=torch.long, device=ids.device)
        logits = previous = None
        for i in range(r_max):
            # each row's last keys and values at t, kept for the rows that have exited
            kept = [(c.k[:, :, t].clone(), c.v[:, :, t].clone()) for c in rewritten]
            s_next = model.iterate(i, s, e, None, caches, 1, t)  # (B, 1, H)
            step = model.logits(model.coda(s_next, None, caches, 1, t))[:, 0]  # (B, V)
            for c, (k, v) in zip(rewritten, kept, strict=True):
                c.k[done, :, t], c.v[done, :, t] = k[done], v[done]
            s = torch.where(done[:, None, None], s, s_next)
            logits = (
                step if logits is None else torch.where(done[:, None], logits, step)
            )
            count += ~done
            log_p = F.log_softmax(step.float(), dim=-1)  # (B, V)
            if previous is not None:
                kl = (log_p.exp() * (log_p - previous)).sum(-1)  # KL(p_i || p_{i-1})
                done |= kl.clamp_min(0) < threshold
            previous = log_p
            if bool(done.all()):
                break
        all_logits.append(logits)
        all_counts.append(count)
    return torch.stack(all_logits, 1), torch.stack(all_counts, 1)  # (B, T, V), (B, T)


def injection_spectral_norm(model: LoopedTransformer) -> float:
    """||A_s||_2: the largest singular value of the state half of the adapter, as the
    model applies it (bound included)."""
    check_instance("model", model, LoopedTransformer, "a sharedlib LoopedTransformer")
    if model.state_in is None:
        raise ValueError(
            f"injection={model.loop.injection!r} has no adapter: the spectral norm "
            "is defined for injection='concat'"
        )
    with torch.no_grad():
        weight = model.state_in.weight  # normalised when the loop is bounded
        scale = model.loop.injection_bound or 1.0
        return float(scale * torch.linalg.matrix_norm(weight.float(), ord=2))


def prelude_gradient_norm(model: LoopedTransformer, ids: torch.Tensor) -> float:
    """Norm of the gradient reaching the prelude's first FFN after one backward pass
    of the logits' mean square on ``ids`` (B, T); 0.0 where no graph reaches it (5d)."""
    check_instance("model", model, LoopedTransformer, "a sharedlib LoopedTransformer")
    if model.loop.n_prelude == 0:
        raise ValueError("the loop has no prelude (n_prelude=0): nothing to measure")
    model.zero_grad(set_to_none=True)
    model.logits(model(ids)).square().mean().backward()
    grad = model.ffn[0].inner.up.weight.grad  # the prelude's FFN, (d_ff, H)
    return 0.0 if grad is None else grad.norm().item()


def looped_parameters(config: TransformerConfig, loop: LoopConfig) -> int:
    """Closed-form parameter count of ``LoopedTransformer(config, loop)``: the P + R + C
    layers, plus 2H^2 + H for the adapter and H + 1 for the gate."""
    H = config.d_model
    adapter = 2 * H * H + H if loop.injection == "concat" else 0
    gate = H + 1 if loop.exit_gate else 0
    return count_parameters(config) + adapter + gate


def looped_flops_per_token(
    config: TransformerConfig,
    loop: LoopConfig,
    seq_len: int,
    n_iterations: int | None = None,
) -> int:
    """Forward FLOPs per token at r iterations: the P + R r + C applied layers and the
    head, plus 4H^2 per iteration for the adapter."""
    r = (
        loop.n_iterations
        if n_iterations is None
        else check_int("n_iterations", n_iterations)
    )
    unrolled = replace(config, n_layers=loop.depth(r))
    adapter = 2 * 2 * config.d_model**2 * r if loop.injection == "concat" else 0
    return sum(forward_flops_per_token(unrolled, seq_len).values()) + adapter


RECURSIVE_INITS: tuple[str, ...] = ("stepwise", "average", "lower")


@torch.no_grad()
def recursive_from_unshared(
    model: SharedTransformer, n_unique: int, init: str
) -> SharedTransformer:
    """An unshared N-layer model made recursive: M blocks looped N/M times ('cycle'),
    each initialised as Bae et al. (2025) compare (chapter 5d)."""
    check_instance("model", model, SharedTransformer, "a sharedlib SharedTransformer")
    config = model.config
    if config.strategy != "none" or type(model) is not SharedTransformer:
        raise ValueError(
            "recursive_from_unshared needs an unshared SharedTransformer "
            f"(strategy 'none'), got {type(model).__name__} {config.strategy!r}"
        )
    check_choice("init", init, RECURSIVE_INITS)
    N = config.n_layers
    M = check_int("n_unique", n_unique, 1, N)
    if N % M:
        raise ValueError(f"n_unique={M} must divide n_layers={N}")
    loops = N // M
    recursive = SharedTransformer(replace(config, strategy="cycle", n_unique=M))
    recursive.load_state_dict(
        {
            k: v
            for k, v in model.state_dict().items()
            if not k.startswith(("attention", "ffn"))
        },
        strict=False,
    )
    for stack, blocks in (
        (model.attention, recursive.attention),
        (model.ffn, recursive.ffn),
    ):
        for j, block in enumerate(blocks):
            if init == "lower":  # the first M layers
                sources = [stack[j]]
            elif init == "stepwise":  # every (N/M)-th layer: 0, N/M, 2N/M, ...
                sources = [stack[j * loops]]
            else:  # the mean of the layers tied to block j: j, j + M, j + 2M, ...
                sources = [stack[j + m * M] for m in range(loops)]
            for name, p in block.named_parameters():
                p.copy_(
                    torch.stack(
                        [dict(s.named_parameters())[name] for s in sources]
                    ).mean(0)
                )
    return recursive


@torch.no_grad()
def relax_recursive(
    unshared: SharedTransformer, recursive: SharedTransformer, rank: int
) -> RelaxedSharedTransformer:
    """``recursive`` (from ``recursive_from_unshared``) plus per-layer rank-r deltas
    fitted by SVD to what each unshared layer differs from its block (Bae et al.)."""
    check_instance("unshared", unshared, SharedTransformer, "a SharedTransformer")
    check_instance("recursive", recursive, SharedTransformer, "a SharedTransformer")
    if unshared.config.strategy != "none" or len(unshared.attention) != len(
        recursive.attention_map
    ):
        raise ValueError(
            "unshared must be the unshared model that recursive was made from: "
            f"strategy 'none' with {len(recursive.attention_map)} layers"
        )
    relaxed = RelaxedSharedTransformer(recursive.config, rank)
    relaxed.load_state_dict(recursive.state_dict(), strict=False)  # deltas stay 0
    for stack, blocks, deltas, block_map in (
        (unshared.attention, relaxed.attention, relaxed.attention_deltas, "attention"),
        (unshared.ffn, relaxed.ffn, relaxed.ffn_deltas, "ffn"),
    ):
        for layer, block in enumerate(recursive.config.block_map(block_map)):
            tied = dict(blocks[block].named_parameters())
            for name, w in dict(stack[layer].named_parameters()).items():
                key = name.replace(".", "__")
                if key in deltas[layer]:  # a weight matrix: its delta fits the rest
                    fit_delta(deltas[layer][key], w - tied[name])
    return relaxed
