"""Checkers for the exercises: specific feedback on the first input that fails (every
chapter).

A wrong answer raises ``AssertionError`` with the input that shows it (NaN and infinite
answers are wrong answers, never close to anything); a wrong call of a checker (not a
function, an unknown strategy, no trials) raises ``ValueError`` naming the argument.
Every call of the student's function runs in a helper thread and must return within
``timeout`` seconds (``TIMEOUT_S`` by default), or the checker fails saying so instead
of waiting.
"""

from __future__ import annotations

import math
import numbers
import random
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from ..config import TransformerConfig
from ..counting import (
    activation_values_per_token,
    count_parameters,
    forward_flops_per_token,
)
from ..decoding import decode_step, prefill
from ..looped import LoopConfig, LoopedTransformer, prelude_gradient_norm
from ..measure import count_module_parameters
from ..models import SharedTransformer
from ..puzzles import propagation_rounds, random_grid
from ..reasoning import ReasonerConfig, TinyRecursiveReasoner
from ..relaxed import delta_parameters, relaxed_parameters
from ..sharing import NEEDS_N_UNIQUE, STRATEGIES, layer_to_block, n_parameter_sets
from ..similarity import linear_cka
from ..universal import act_weights
from ..validation import (
    check_callable,
    check_choice,
    check_instance,
    check_int,
    check_real,
)
from .background import PUBLISHED_MODELS, doubling_time_months

__all__ = [
    "TIMEOUT_S",
    "check_activation_memory",
    "check_attention_mask",
    "check_break_even_rank",
    "check_count_function",
    "check_delta_count",
    "check_doubling_time",
    "check_embedding_saving",
    "check_flops_per_token",
    "check_halting_rule",
    "check_kl_exit",
    "check_kv_cache_step",
    "check_layer_map",
    "check_linear_cka",
    "check_loop_cache_bytes",
    "check_prelude_gradient",
    "check_propagation_rounds",
    "check_recursion_passes",
    "check_shared_gradient",
    "check_shared_stack",
    "check_tensor_layout",
    "check_training_step_flops",
    "random_config",
    "shared_weight_gradient",
]

# seconds one call of a student's function may take before the checker gives up on it
TIMEOUT_S = 10.0


def _check_fn_and_timeout(fn: object, timeout: object) -> None:
    """The two arguments every checker of a student's function takes."""
    check_callable("fn", fn, "a function you wrote")
    check_real("timeout", timeout, 0, open_minimum=True)


def _is_integer(value: object) -> bool:
    """True for Python and NumPy integers (``numbers.Integral``), False for ``bool``
    (for answers: a wrong integer fails as a wrong answer, not as a bad call)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _call(
    fn: Callable[..., Any], description: str, *args: Any, timeout: float = TIMEOUT_S
) -> Any:
    """``fn(*args)`` in a helper thread (torch's grad and inference modes carried over);
    ``AssertionError`` naming the input if it raises or does not return within
    ``timeout`` seconds (a thread works on every platform)."""
    # the modes are thread-local: the helper thread starts with the defaults
    inference, grad = torch.is_inference_mode_enabled(), torch.is_grad_enabled()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            if inference:
                with torch.inference_mode():
                    outcome["value"] = fn(*args)
            else:
                with torch.set_grad_enabled(grad):
                    outcome["value"] = fn(*args)
        except BaseException as error:  # handed to the caller's thread below
            outcome["error"] = error

    worker = threading.Thread(target=run, name="sharedlib-checker", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise AssertionError(
            f"your function did not return within {timeout:g} s for {description}: "
            "an endless loop, or far more work than the exercise needs? (it may still "
            "be running in the background; restart the kernel to stop it, or pass a "
            "larger timeout= to the checker)"
        )
    error = outcome.get("error")
    if error is None:
        return outcome["value"]
    if not isinstance(error, Exception):  # KeyboardInterrupt, SystemExit: not wrong
        raise error
    raise AssertionError(
        f"your function raised {type(error).__name__}: {error} for {description}"
    ) from error


def _as_list(value: object) -> list | None:
    """``list(value)`` for any iterable answer (list, tuple, range, array); None for
    anything else."""
    try:
        return list(value)  # type: ignore[call-overload]
    except TypeError:
        return None


def random_config(rng: random.Random, strategy: str) -> TransformerConfig:
    """A small random valid config of ``strategy`` (used by checkers and property
    tests)."""
    check_instance("rng", rng, random.Random, "a random.Random")
    check_choice("strategy", strategy, STRATEGIES)
    n_heads = rng.choice([1, 2, 4, 8])
    n_layers = rng.randint(1, 12)
    n_unique = None
    if strategy in NEEDS_N_UNIQUE:
        divisors = [m for m in range(1, n_layers + 1) if n_layers % m == 0]
        n_unique = rng.choice(
            divisors if strategy == "sequence" else range(1, n_layers + 1)
        )
    return TransformerConfig(
        d_model=n_heads * rng.randint(1, 16),
        n_heads=n_heads,
        d_ff=rng.randint(1, 96),
        n_layers=n_layers,
        strategy=strategy,
        n_unique=n_unique,
        inner_group_num=rng.randint(1, 3) if strategy == "groups" else 1,
        vocab_size=rng.randint(1, 300),
        max_len=rng.randint(1, 64),
        n_token_types=rng.randint(0, 3),
        embedding_size=rng.choice([None, rng.randint(1, 32)]),
        embedding_norm=rng.random() < 0.5,
        norm=rng.choice(["pre", "post", "none"]),
        lm_head=rng.random() < 0.5,
    )


def check_count_function(
    fn: Callable[[TransformerConfig], int],
    strategy: str,
    trials: int = 200,
    *,
    timeout: float = TIMEOUT_S,
) -> str:
    """Compare a student's ``fn(config) -> int`` with the closed form on random configs
    of ``strategy``."""
    _check_fn_and_timeout(fn, timeout)
    check_choice("strategy", strategy, STRATEGIES)
    check_int("trials", trials)
    rng = random.Random(f"{strategy}-{trials}")
    for _ in range(trials):
        config = random_config(rng, strategy)
        expected, got = (
            count_parameters(config),
            _call(fn, f"config {config}", config, timeout=timeout),
        )
        if got != expected:
            raise AssertionError(
                f"for {config} expected {expected:,} parameters, got {got!r}"
            )
    return (
        f"correct: your count matches the closed form on {trials} random "
        f"{strategy!r} configs"
    )


def check_layer_map(
    fn: Callable[[int, int], list[int]],
    strategy: str,
    max_layers: int | None = None,
    *,
    timeout: float = TIMEOUT_S,
) -> str:
    """Compare a student's ``fn(n_layers, n_unique) -> list[int]`` with
    ``layer_to_block`` for all small N, M.

    ``max_layers`` defaults to 12, and to 24 for "groups", where Hugging Face's float
    formula and its integer versions part only at larger N (chapter 7's exercise finds
    where).
    """
    _check_fn_and_timeout(fn, timeout)
    check_choice("strategy", strategy, NEEDS_N_UNIQUE)
    if max_layers is None:
        max_layers = 24 if strategy == "groups" else 12
    check_int("max_layers", max_layers)
    cases = 0
    for n_layers in range(1, max_layers + 1):
        for n_unique in range(1, n_layers + 1):
            if strategy == "sequence" and n_layers % n_unique:
                continue
            expected = layer_to_block(strategy, n_layers, n_unique)
            got = _call(
                fn, f"N={n_layers}, M={n_unique}", n_layers, n_unique, timeout=timeout
            )
            if _as_list(got) != expected:
                hint = (
                    " (Hugging Face computes int(i / (N / G)) in floating point)"
                    if strategy == "groups"
                    else ""
                )
                raise AssertionError(
                    f"{strategy}: for N={n_layers}, M={n_unique} expected {expected}, "
                    f"got {got!r}{hint}"
                )
            cases += 1
    return (
        f"correct: your {strategy!r} map agrees with the published definition on "
        f"{cases} (N, M) pairs"
    )


def check_embedding_saving(
    value: int, vocab_size: int = 30000, d_model: int = 768, embedding_size: int = 128
) -> str:
    """Check the parameters saved by factorising the token table V*H into
    V*E + E*H + H."""
    for name, size in (
        ("vocab_size", vocab_size),
        ("d_model", d_model),
        ("embedding_size", embedding_size),
    ):
        check_int(name, size)
    if not _is_integer(value):
        raise ValueError(
            f"value must be an integer number of parameters, got {value!r}"
        )
    value = int(value)  # a NumPy integer answers as well as a Python one
    untied = vocab_size * d_model  # the token table of an unfactorised model
    # table + projection
    factorised = vocab_size * embedding_size + embedding_size * d_model + d_model
    expected = untied - factorised
    if value != expected:
        V, H, E = vocab_size, d_model, embedding_size
        known = {  # common slips, recognised by the value they produce
            untied - V * E: (
                "you left out the E -> H projection that maps the small table up to H"
            ),
            untied - V * E - E * H: (
                "the E -> H projection is an nn.Linear: count its bias too"
            ),
            untied - factorised + H - E: "the projection's bias has H entries, not E",
            factorised: (
                "that is the size of the factorised tables; the question asks what "
                "they save"
            ),
        }
        hint = known.get(value, "too large" if value > expected else "too small")
        raise AssertionError(
            f"for V={V}, H={H}, E={E} your saving {value!r} is not right: {hint} "
            "(count only the token tables; position embeddings are not factorised)"
        )
    share = expected / (vocab_size * d_model)
    return f"correct: factorising saves {expected:,} parameters ({share:.1%} of V*H)"


def check_tensor_layout(answer: tuple[str, str, str]) -> str:
    """Check the meaning of each axis of ``torch.rand(10, 32, 512)`` fed to
    ``nn.MultiheadAttention`` (chapter 5)."""
    expected = ("sequence", "batch", "features")
    if isinstance(answer, str) or not hasattr(answer, "__len__") or len(answer) != 3:
        raise ValueError(
            f"answer must be three axis names, each one of {sorted(expected)}, "
            f"got {answer!r}"
        )
    names = tuple(str(a).lower() for a in answer)
    unknown = [name for name in names if name not in expected]
    if unknown:
        raise ValueError(
            f"answer must use the axis names {sorted(expected)}, got {unknown}"
        )
    for axis, (size, want, got) in enumerate(
        zip((10, 32, 512), expected, names, strict=True)
    ):
        if got != want:
            raise AssertionError(
                f"axis {axis} (size {size}) is not {got!r}: look up what "
                "nn.MultiheadAttention expects when batch_first is left at its default"
            )
    return "correct: 10 positions, a batch of 32, 512 features per token"


def check_doubling_time(value: float, since: int, tolerance_months: float = 0.5) -> str:
    """Check the doubling time (months) of the largest published model per year, from
    ``since`` on (chapter 1)."""
    years = sorted({m.year for m in PUBLISHED_MODELS})
    if not _is_integer(since) or since > years[-2]:
        raise ValueError(
            f"since must be a year <= {years[-2]} (two years of models are needed), "
            f"got {since!r}"
        )
    # a value that is not finite is a wrong answer (AssertionError below), not a bad
    # call
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"value must be a number of months, got {value!r}")
    check_real("tolerance_months", tolerance_months, 0, open_minimum=True)
    models = tuple(m for m in PUBLISHED_MODELS if m.year >= since)
    expected = doubling_time_months(models)
    if not abs(value - expected) <= tolerance_months:
        frontier = sorted({m.year for m in models})
        if not math.isfinite(value):
            hint = (
                "it is not a finite number: check for a division by a zero slope or a "
                "log of zero"
            )
        elif abs(value - doubling_time_months(PUBLISHED_MODELS)) <= tolerance_months:
            hint = (
                "that is the trend over every year in the list; keep only the models "
                "from `since` on"
            )
        elif abs(12 * value - expected) <= tolerance_months:
            hint = "that is in years; the question asks for months"
        else:
            slower = (
                "too slow (too many months)"
                if value > expected
                else "too fast (too few months)"
            )
            hint = (
                f"{slower}; fit one point per year, log2 of that year's largest model, "
                "then take 12 / slope"
            )
        raise AssertionError(
            f"from {since} on (years {frontier}) your doubling time of {value!r} "
            f"months is off by more than {tolerance_months} months: {hint}"
        )
    return f"correct: {expected:.1f} months per doubling since {since}"


def check_delta_count(
    fn: Callable[[TransformerConfig, int], int],
    trials: int = 100,
    *,
    timeout: float = TIMEOUT_S,
) -> str:
    """Compare a student's ``fn(config, rank) -> int`` (parameters the per-layer deltas
    add), chapter 8."""
    _check_fn_and_timeout(fn, timeout)
    check_int("trials", trials)
    rng = random.Random(f"delta-{trials}")
    for _ in range(trials):
        config, rank = random_config(rng, "all"), rng.randint(1, 8)
        expected = delta_parameters(config, rank)
        got = _call(
            fn, f"rank {rank} and config {config}", config, rank, timeout=timeout
        )
        if got != expected:
            raise AssertionError(
                f"for rank {rank}, d_model={config.d_model}, d_ff={config.d_ff}, "
                f"depth={config.depth} expected {expected:,} delta parameters, "
                f"got {got!r} (each weight matrix of shape (out, in) adds "
                "rank*(out+in))"
            )
    return (
        f"correct: your delta count matches the closed form on {trials} random configs"
    )


def _close(got: float, expected: float, rel: float) -> bool:
    return abs(got - expected) <= rel * abs(expected)


def _flops_parts(parts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in parts.items() if v)


def check_flops_per_token(
    fn: Callable[[TransformerConfig, int], int],
    trials: int = 200,
    *,
    timeout: float = TIMEOUT_S,
) -> str:
    """Compare a student's ``fn(config, seq_len)`` (forward FLOPs per token) with the
    closed form, chapter 4."""
    _check_fn_and_timeout(fn, timeout)
    check_int("trials", trials)
    rng = random.Random(f"flops-{trials}")
    for _ in range(trials):
        config = random_config(rng, rng.choice(STRATEGIES))
        seq_len = rng.randint(1, 512)
        parts = forward_flops_per_token(config, seq_len)
        expected = sum(parts.values())
        got = _call(
            fn,
            f"seq_len {seq_len} and config {config}",
            config,
            seq_len,
            timeout=timeout,
        )
        if got != expected:
            sets = n_parameter_sets(
                config.strategy,
                config.n_layers,
                config.n_unique,
                inner_group_num=config.inner_group_num,
            )
            per_layer = (
                sum(
                    parts[k]
                    for k in ("attention_projections", "attention_scores", "ffn")
                )
                // config.depth
            )
            if (
                config.depth != sets
                and got == expected - (config.depth - sets) * per_layer
            ):
                hint = (
                    f"you counted {sets} unique blocks; every one of the "
                    f"{config.depth} applied layers computes"
                )
            else:
                hint = (
                    "a multiply-add is 2 FLOPs; per applied layer 8H^2 (projections) "
                    "+ 4TH (scores) + 4H*d_ff (FFN)"
                )
            raise AssertionError(
                f"for {config} at T={seq_len} expected {expected:,} FLOPs per token "
                f"({_flops_parts(parts)}), got {got!r}; {hint}"
            )
    return (
        f"correct: your FLOPs per token match the closed form on {trials} random "
        "configs of every strategy"
    )


def check_training_step_flops(
    value: float, config: TransformerConfig, batch_size: int, seq_len: int
) -> str:
    """Check the FLOPs of one training step (forward and backward) of ``batch_size``
    sequences, chapter 6b."""
    check_real("value", value)
    check_instance("config", config, TransformerConfig, "a sharedlib TransformerConfig")
    check_int("batch_size", batch_size)
    check_int("seq_len", seq_len)
    forward = (
        batch_size * seq_len * sum(forward_flops_per_token(config, seq_len).values())
    )
    expected = 3 * forward
    if not _close(value, expected, 1e-3):
        if _close(value, forward, 1e-3):
            hint = (
                "that is the forward pass alone; the backward pass costs two more "
                "(gradients of inputs and weights)"
            )
        elif _close(value, 2 * forward, 1e-3):
            hint = (
                "the backward pass costs twice the forward: one matmul for the input "
                "gradient, one for the weight's"
            )
        elif value < expected:
            hint = (
                "too small; count every applied layer for every token of the batch "
                "(depth counts, sharing does not)"
            )
        else:
            hint = (
                "too large; is the config you pass the one you counted for (lm_head, "
                "embedding_size)? Each matrix multiplication counts once forward and "
                "twice backward"
            )
        raise AssertionError(
            f"for B={batch_size}, T={seq_len}, depth {config.depth}, "
            f"H={config.d_model}, d_ff={config.d_ff} your {value!r} FLOPs per step is "
            f"not right: {hint}"
        )
    return (
        f"correct: {expected:.4g} FLOPs per training step (3 x {forward:.4g} forward)"
    )


def check_break_even_rank(value: int, config: TransformerConfig) -> str:
    """Check the smallest rank r at which shared block + per-layer rank-r deltas has as
    many parameters as the unshared model of the same depth (``config`` has strategy
    "all"), chapter 4."""
    check_instance("config", config, TransformerConfig, "a sharedlib TransformerConfig")
    if config.strategy != "all":
        raise ValueError(
            "config.strategy must be 'all' (the shared base of the relaxed model), "
            f"got {config.strategy!r}"
        )
    if not _is_integer(value):
        raise ValueError(f"value must be an integer rank, got {value!r}")
    value = int(value)  # a NumPy integer answers as well as a Python one
    unshared = count_parameters(replace(config, strategy="none", n_unique=None))
    rank = (
        1  # searched, not solved, so that the check shares no algebra with the student
    )
    while relaxed_parameters(config, rank) < unshared:
        rank += 1
    if value != rank:
        shape = f"for depth {config.depth}, H={config.d_model}, d_ff={config.d_ff}"
        if value < 1:
            raise AssertionError(f"{shape} a rank is at least 1, got {value!r}")
        at = relaxed_parameters(config, value)
        if value < rank:
            raise AssertionError(
                f"{shape} at r={value} the relaxed model has {at:,} parameters, still "
                f"fewer than the unshared model's {unshared:,}: r is too small (each "
                "weight matrix (out, in) gets r*(out + in) per layer)"
            )
        raise AssertionError(
            f"{shape} r={value} is not the smallest: r={value - 1} already gives "
            f"{relaxed_parameters(config, value - 1):,} >= {unshared:,} parameters; "
            "round up, not further"
        )
    return (
        f"correct: from rank {rank} on, the relaxed model is no smaller than the "
        f"unshared one ({unshared:,})"
    )


def check_activation_memory(
    fn: Callable[[TransformerConfig], int],
    trials: int = 200,
    *,
    timeout: float = TIMEOUT_S,
) -> str:
    """Compare a student's ``fn(config)`` (values per token kept for backward) with the
    closed form, chapter 5b."""
    _check_fn_and_timeout(fn, timeout)
    check_int("trials", trials)
    rng = random.Random(f"activations-{trials}")
    for _ in range(trials):
        config = random_config(rng, rng.choice(STRATEGIES))
        expected, got = (
            activation_values_per_token(config),
            _call(fn, f"config {config}", config, timeout=timeout),
        )
        if got != expected:
            per_layer = expected // config.depth
            sets = n_parameter_sets(
                config.strategy,
                config.n_layers,
                config.n_unique,
                inner_group_num=config.inner_group_num,
            )
            if got == per_layer * sets and sets != config.depth:
                hint = (
                    f"you counted {sets} unique blocks: a looped block keeps its "
                    f"activations once per application, {config.depth} here"
                )
            elif config.strategy == "groups" and got == per_layer * config.n_layers:
                hint = (
                    "each ALBERT group holds inner_group_num layers: depth is "
                    "n_layers * inner_group_num"
                )
            elif config.norm == "none" or config.activation == "relu":
                hint = (
                    f"norm={config.norm!r}, activation={config.activation!r}: a model "
                    "without LayerNorms keeps no LayerNorm values, and ReLU's backward "
                    "needs only its output"
                )
            else:
                hint = (
                    "per applied layer, list what each LayerNorm, linear layer, "
                    "attention kernel and FFN keep"
                )
            raise AssertionError(
                f"for {config} (depth {config.depth}) expected {expected:,} values per "
                f"token ({per_layer:,} per applied layer), got {got!r}; {hint}"
            )
    return (
        f"correct: your activation count matches the closed form on {trials} random "
        "configs of every strategy"
    )


def check_halting_rule(
    fn: Callable[..., tuple], trials: int = 60, *, timeout: float = TIMEOUT_S
) -> str:
    """Compare a student's ``fn(p, threshold) -> (weights, steps, remainders)`` with
    ``act_weights``, chapter 5b."""
    _check_fn_and_timeout(fn, timeout)
    check_int("trials", trials)
    names = ("weights (S, B, T)", "steps N (B, T)", "remainders R (B, T)")
    for trial in range(trials):
        g = torch.Generator().manual_seed(trial)
        steps, batch, length = 1 + trial % 6, 2, 3
        # halts early, runs long, hits the step limit
        scale = (1.0, 0.2, 0.02)[trial % 3]
        p = (
            torch.rand(steps, batch, length, generator=g, dtype=torch.float64) * scale
        ).requires_grad_()
        if trial % 4 == 1:
            p.data[0, 0, 0] = 0.995  # halts at the first step
        threshold = (0.99, 0.5, 0.9)[trial % 3]
        # 0.25 + 0.25 lands exactly on 0.5: the rule halts at >=, not only at >
        if trial % 6 == 4:
            p.data[:2, 0, 0], threshold = 0.25, 0.5
        expected = act_weights(p, threshold)
        got = _call(
            fn,
            f"p of shape {tuple(p.shape)}, threshold {threshold}",
            p,
            threshold,
            timeout=timeout,
        )
        if not isinstance(got, tuple | list) or len(got) != 3:
            raise AssertionError(
                "return (weights, steps, remainders), a tuple of three tensors; "
                f"got {type(got).__name__}"
            )
        for name, want, have in zip(names, expected, got, strict=True):
            have_t = torch.as_tensor(have)
            if have_t.shape != want.shape:
                raise AssertionError(
                    f"{name}: expected shape {tuple(want.shape)}, "
                    f"got {tuple(have_t.shape)}"
                )
            bad = ~torch.isclose(
                have_t.detach().to(torch.float64),
                want.detach().to(torch.float64),
                atol=1e-9,
            )
            if bad.any():
                index = tuple(int(i) for i in bad.nonzero()[0])
                column = (slice(None), *index[-2:])
                raise AssertionError(
                    f"{name} at {index}, threshold {threshold}, for probabilities "
                    f"{[round(v, 4) for v in p[column].tolist()]}: "
                    f"expected {want[index].item():.6g}, "
                    f"got {have_t[index].item():.6g}; a position halts at the first n "
                    "where p_1 + ... + p_n >= threshold (or at the last step) and "
                    "takes R = 1 - (p_1 + ... + p_{N-1}) there, weight 0 after"
                )
        direction = torch.randn(p.shape, generator=g, dtype=torch.float64)
        (want_grad,) = torch.autograd.grad(
            (expected[0] * direction).sum() + expected[2].sum(), p
        )
        if not (isinstance(got[0], torch.Tensor) and got[0].requires_grad):
            raise AssertionError(
                "your weights carry no gradient: build them from p with differentiable "
                "operations"
            )
        (have_grad,) = torch.autograd.grad(
            (got[0] * direction).sum() + got[2].sum(), p, allow_unused=True
        )
        if have_grad is None or not torch.allclose(have_grad, want_grad, atol=1e-9):
            raise AssertionError(
                f"for p of shape {tuple(p.shape)}, threshold {threshold}, the values "
                "agree but the gradient with respect to p does not: R = 1 - sum of the "
                "earlier p must stay a function of p (no .item(), no detach)"
            )
    return (
        "correct: weights, steps, remainders and their gradients match act_weights on "
        f"{trials} random cases"
    )


def check_attention_mask(
    fn: Callable[[Any, str], Any], trials: int = 50, *, timeout: float = TIMEOUT_S
) -> str:
    """Compare a student's ``fn(mask, convention)`` that returns the book's key mask
    (bool, True = real token) from PyTorch's ``src_key_padding_mask`` ("padding") or an
    additive float mask ("additive"), chapter 5."""
    _check_fn_and_timeout(fn, timeout)
    check_int("trials", trials)
    for trial in range(trials):
        g = torch.Generator().manual_seed(trial)
        batch, length = 1 + trial % 3, 1 + trial % 7
        keep = torch.rand(batch, length, generator=g) < 0.7  # (B, T) True = real token
        keep[:, 0] = True
        masked_value = (float("-inf"), -10000.0, torch.finfo(torch.float32).min)[
            trial % 3
        ]
        cases = {
            "padding": ~keep,  # nn.TransformerEncoder: True = padding
            # (B, T): 0 = keep, very negative = masked
            "additive": torch.where(keep, 0.0, masked_value),
        }
        for convention, mask in cases.items():
            got = _call(
                fn,
                f"the {convention} mask {mask.tolist()}",
                mask.clone(),
                convention,
                timeout=timeout,
            )
            if (
                not isinstance(got, torch.Tensor)
                or got.dtype != torch.bool
                or got.shape != keep.shape
            ):
                described = (
                    f"{got.dtype} {tuple(got.shape)}"
                    if isinstance(got, torch.Tensor)
                    else type(got).__name__
                )
                raise AssertionError(
                    f"for the {convention} mask {mask.tolist()} expected a bool tensor "
                    f"of shape {tuple(keep.shape)}, got {described}"
                )
            if not torch.equal(got, keep):
                hint = (
                    "True marks padding there: invert it"
                    if convention == "padding"
                    else "0 means keep and a large negative number (or -inf) means "
                    "masked: compare with 0"
                )
                raise AssertionError(
                    f"for the {convention} mask {mask.tolist()} expected "
                    f"{keep.tolist()} (True = real token), got {got.tolist()}; {hint}"
                )
    return (
        "correct: both conventions convert to the book's key mask on "
        f"{trials} random masks"
    )


def _small_causal_lm(strategy: str, n_unique: int | None) -> Any:
    config = TransformerConfig(
        d_model=16,
        n_heads=2,
        d_ff=32,
        n_layers=4,
        strategy=strategy,
        n_unique=n_unique,
        vocab_size=20,
        max_len=16,
        causal=True,
        lm_head=True,
    )
    torch.manual_seed(0)
    return SharedTransformer(config).eval()


def check_kv_cache_step(
    fn: Callable[..., Any], steps: int = 4, *, timeout: float = TIMEOUT_S
) -> str:
    """Compare a student's ``fn(model, token, cache) -> logits (B, V)`` with
    ``decode_step``, chapter 6b."""
    _check_fn_and_timeout(fn, timeout)
    check_int("steps", steps, 1, 8)  # the prompt of 4 and the steps fit max_len=16
    for strategy, n_unique in (("none", None), ("all", None), ("cycle-rev", 3)):
        model = _small_causal_lm(strategy, n_unique)
        ids = torch.randint(
            0, 20, (2, 4 + steps), generator=torch.Generator().manual_seed(1)
        )
        _, ours = prefill(model, ids[:, :4])
        _, theirs = prefill(model, ids[:, :4])
        for t in range(4, 4 + steps):
            want, ours = decode_step(model, ids[:, t], ours)
            where = (
                f"strategy {strategy!r} (layers use blocks "
                f"{[a for a, _ in ours.schedule]}), token at position {t}"
            )
            with torch.inference_mode():
                got = _call(fn, where, model, ids[:, t], theirs, timeout=timeout)
            got = got[0] if isinstance(got, tuple) else got
            if not isinstance(got, torch.Tensor) or got.shape != want.shape:
                described = (
                    tuple(got.shape)
                    if isinstance(got, torch.Tensor)
                    else type(got).__name__
                )
                raise AssertionError(
                    f"{where}: expected logits of shape {tuple(want.shape)} (B, V), "
                    f"got {described}"
                )
            if theirs.length != t + 1:
                raise AssertionError(
                    f"{where}: the cache should hold {t + 1} positions after the step, "
                    f"it holds {theirs.length}; append the new K, V of every applied "
                    "layer"
                )
            error = (got.float() - want).abs().max().item()
            # NaN or infinite logits are wrong too (NaN > 1e-4 is False)
            if not error <= 1e-4:
                raise AssertionError(
                    f"{where}: logits differ from decode_step's by up to {error:.3g}; "
                    "check the three steps: embed the token at position cache.length "
                    "(read before the layers append), give each applied layer its own "
                    "cache entry even where layers share a block, and finish as the "
                    "forward pass does (the final LayerNorm of a pre-norm model, then "
                    "model.logits)"
                )
    return (
        f"correct: your step matches decode_step for {steps} tokens with unshared, "
        "shared and cycle-rev models"
    )


def check_shared_stack(
    fn: Callable[[int, int], Any], *, timeout: float = TIMEOUT_S
) -> str:
    """Check a student's ``fn(width, depth)``: a module that applies one
    ``nn.Linear(width, width)`` ``depth`` times with ReLU between, so that it holds one
    layer's parameters and sums the gradients of every use (chapter 2)."""
    _check_fn_and_timeout(fn, timeout)
    for width, depth in ((3, 1), (4, 3), (8, 5)):
        module = _call(
            fn, f"width={width}, depth={depth}", width, depth, timeout=timeout
        )
        if not isinstance(module, nn.Module):
            raise AssertionError(
                f"for width={width}, depth={depth} expected an nn.Module, "
                f"got {type(module).__name__}"
            )
        expected, got = width * width + width, count_module_parameters(module)
        if got != expected:
            raise AssertionError(
                f"for width={width}, depth={depth} expected {expected} parameters "
                f"(one nn.Linear({width}, {width})), got {got}: parameters() lists a "
                f"shared tensor once, so {got} means {got / expected:g} layers' worth; "
                "use one Linear object, not copies"
            )
        linear = next((m for m in module.modules() if isinstance(m, nn.Linear)), None)
        if linear is None:
            raise AssertionError(
                f"for width={width}, depth={depth} your module holds no nn.Linear"
            )
        copies = [nn.Linear(width, width) for _ in range(depth)]
        for copy in copies:
            copy.load_state_dict(linear.state_dict())
        x = torch.randn(5, width, generator=torch.Generator().manual_seed(depth))
        reference = x
        for i, copy in enumerate(copies):
            reference = copy(reference if i == 0 else torch.relu(reference))  # (5, W)
        module.zero_grad()
        out = _call(module, f"an input of shape (5, {width})", x, timeout=timeout)
        if (
            not isinstance(out, torch.Tensor)
            or out.shape != reference.shape
            or not torch.allclose(out, reference)
        ):
            raise AssertionError(
                f"for width={width}, depth={depth}: the output differs from applying "
                f"the Linear {depth} times with ReLU between (none after the last)"
            )
        out.sum().backward()
        reference.sum().backward()
        summed = sum(copy.weight.grad for copy in copies)
        if linear.weight.grad is None or not torch.allclose(
            linear.weight.grad, summed, atol=1e-6
        ):
            raise AssertionError(
                f"for width={width}, depth={depth}: the weight's gradient is not the "
                f"sum of its {depth} uses' gradients: is the Linear detached or "
                "replaced in forward?"
            )
    return (
        "correct: one Linear's parameters, the right output, and gradients summed over "
        "every use"
    )


def check_linear_cka(
    fn: Callable[[Any, Any], float], trials: int = 30, *, timeout: float = TIMEOUT_S
) -> str:
    """Compare a student's ``fn(x, y)`` (linear CKA of (n, p) and (n, q) features) with
    ``similarity.linear_cka`` on random features with non-zero means, different widths
    and related pairs, chapter 5c."""
    _check_fn_and_timeout(fn, timeout)
    check_int("trials", trials)
    for trial in range(trials):
        g = torch.Generator().manual_seed(trial)
        n, p, q = 20 + 7 * trial, 2 + trial % 5, 3 + trial % 4
        x = torch.randn(n, p, generator=g, dtype=torch.float64) + 3 * torch.randn(
            p, generator=g, dtype=torch.float64
        )
        mix = torch.randn(p, q, generator=g, dtype=torch.float64)
        noise = torch.randn(n, q, generator=g, dtype=torch.float64)
        y = x @ mix + (trial % 3) * noise + 5.0  # related, shifted
        expected = linear_cka(x, y)
        got = _call(
            fn,
            f"x of shape {tuple(x.shape)} and y of shape {tuple(y.shape)}",
            x.clone(),
            y.clone(),
            timeout=timeout,
        )
        try:
            got = float(got)
        except (TypeError, ValueError) as error:
            raise AssertionError(
                f"expected a number (a float or a 0-d tensor), got {type(got).__name__}"
            ) from error
        if not math.isfinite(got) or abs(got - expected) > 1e-6:
            xc, yc = x - x.mean(0), y - y.mean(0)
            uncentred = (y.T @ x).square().sum() / ((x.T @ x).norm() * (y.T @ y).norm())
            cross = (yc.T @ xc).norm()
            root = cross / ((xc.T @ xc).norm() * (yc.T @ yc).norm()).sqrt()
            if abs(got - uncentred.item()) < 1e-6:
                hint = (
                    "you did not centre the features: subtract each column's mean over "
                    "the examples first"
                )
            elif abs(got - root.item()) < 1e-6:
                hint = (
                    "that is the square root of CKA: the numerator is ||Y^T X||_F "
                    "squared, the denominator is not"
                )
            else:
                hint = (
                    "CKA = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) on column-centred "
                    "x and y"
                )
            raise AssertionError(
                f"for x of shape {tuple(x.shape)} (column means up to "
                f"{x.mean(0).abs().max().item():.2f}) and y of shape {tuple(y.shape)} "
                f"expected CKA {expected:.6f}, got {got:.6f}; {hint}"
            )
    return (
        "correct: your linear CKA matches similarity.linear_cka on "
        f"{trials} random pairs of features"
    )


def shared_weight_gradient(weight: Any, x: Any, n_uses: int) -> Any:
    """The reference answer of chapter 5c's exercise: dL/dW for L = ||W^n x||^2 / 2, by
    autograd."""
    w = weight.detach().clone().requires_grad_()
    h = x.detach()
    for _ in range(n_uses):
        h = w @ h  # (d,)
    (grad,) = torch.autograd.grad(0.5 * h.square().sum(), w)
    return grad


def check_shared_gradient(
    fn: Callable[[Any, Any, int], Any], *, timeout: float = TIMEOUT_S
) -> str:
    """Check a student's ``fn(weight, x, n_uses)``: the gradient of L = ||W^n x||^2 / 2
    with respect to the one matrix W used n times, (d, d), compared with autograd
    (chapter 5c)."""
    _check_fn_and_timeout(fn, timeout)
    for d, n_uses in ((3, 1), (4, 2), (5, 3), (6, 5)):
        g = torch.Generator().manual_seed(10 * d + n_uses)
        weight = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
        x = torch.randn(d, generator=g, dtype=torch.float64)
        expected = shared_weight_gradient(weight, x, n_uses)
        got = _call(
            fn,
            f"a ({d}, {d}) weight used n_uses={n_uses} times",
            weight.clone(),
            x.clone(),
            n_uses,
            timeout=timeout,
        )
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != (d, d):
            described = (
                tuple(got.shape)
                if isinstance(got, torch.Tensor)
                else type(got).__name__
            )
            raise AssertionError(
                f"for d={d}, n_uses={n_uses} expected a ({d}, {d}) tensor, "
                f"got {described}"
            )
        if torch.allclose(got.double(), expected, rtol=1e-6, atol=1e-9):
            continue
        states = [x]
        for _ in range(n_uses):
            states.append(weight @ states[-1])  # h_0 .. h_n
        upstream = states[-1]  # dL/dh_n
        # the contribution of the last use alone
        last_use = torch.outer(upstream, states[-2])
        if n_uses > 1 and torch.allclose(got.double(), last_use, atol=1e-9):
            hint = (
                "that is the last use's contribution only: add the contributions of "
                "all n uses"
            )
        elif n_uses > 1 and torch.allclose(got.double(), n_uses * last_use, atol=1e-9):
            hint = (
                "n times the last use's contribution: each use sees a different input "
                "and upstream gradient"
            )
        else:
            hint = (
                "sum over uses k = 1 .. n of (W^T)^(n-k) h_n outer h_(k-1), "
                "with h_k = W^k x"
            )
        raise AssertionError(
            f"for d={d}, n_uses={n_uses} the gradient differs from autograd's by up to "
            f"{(got.double() - expected).abs().max().item():.3g}; {hint}"
        )
    return (
        "correct: your gradient of a weight used n times matches autograd for "
        "n = 1, 2, 3 and 5"
    )


# ------------------------------------------------------------ chapter 5d: looped models
def _small_looped_lm(loop: LoopConfig, seed: int = 0) -> LoopedTransformer:
    torch.manual_seed(seed)
    config = TransformerConfig(
        d_model=16,
        n_heads=2,
        d_ff=32,
        n_layers=loop.unique_layers,
        vocab_size=20,
        max_len=16,
        causal=True,
        lm_head=True,
    )
    return LoopedTransformer(config, loop).eval()


def check_loop_cache_bytes(
    fn: Callable[..., Any], trials: int = 40, *, timeout: float = TIMEOUT_S
) -> str:
    """Compare a student's ``fn(loop, d_model, n_iterations, slots, batch, length,
    element_size) -> bytes`` with real decoding caches (chapter 5d)."""
    _check_fn_and_timeout(fn, timeout)
    trials = check_int("trials", trials)
    rng = random.Random(0)
    for _ in range(trials):
        loop = LoopConfig(
            n_prelude=rng.randint(0, 2),
            n_core=rng.randint(1, 3),
            n_coda=rng.randint(0, 2),
            n_iterations=rng.randint(2, 5),
        )
        r = rng.randint(1, 6)
        slots = rng.choice([None, 1, min(2, r)])
        batch, length = rng.randint(1, 3), rng.randint(1, 8)
        model = _small_looped_lm(loop)
        ids = torch.randint(0, 20, (batch, length), generator=torch.Generator())
        want = prefill(model, ids, capacity=length, n_iterations=r, slots=slots)[1]
        want_bytes = want.nbytes()
        where = (
            f"P={loop.n_prelude}, R={loop.n_core}, C={loop.n_coda}, r={r}, "
            f"slots={slots}, batch {batch}, {length} tokens, d_model 16, float32"
        )
        got = _call(fn, where, loop, 16, r, slots, batch, length, 4, timeout=timeout)
        if not isinstance(got, numbers.Real) or got != want_bytes:
            raise AssertionError(
                f"{where}: expected {want_bytes:,} bytes ({len(want.layers)} cached "
                f"layers of K and V), got {got!r}; count P + R x (slots, or r when "
                "None) + C layers, each holding K and V for every token"
            )
    return f"correct: your count matches real loop caches in {trials} settings"


def _reference_exit(log_probs: torch.Tensor, threshold: float) -> int:
    """Iterations a token takes under the KL rule on its (r, V) log-probabilities."""
    for i in range(1, len(log_probs)):
        p = log_probs[i].exp()
        kl = (p * (log_probs[i] - log_probs[i - 1])).sum().clamp_min(0)
        if kl < threshold:
            return i + 1
    return len(log_probs)


def check_kl_exit(
    fn: Callable[..., Any], trials: int = 200, *, timeout: float = TIMEOUT_S
) -> str:
    """Compare a student's ``fn(log_probs (r, V), threshold) -> iterations`` with the KL
    rule of ``looped.exit_decode`` (chapter 5d)."""
    _check_fn_and_timeout(fn, timeout)
    trials = check_int("trials", trials)
    g = torch.Generator().manual_seed(0)
    for k in range(trials):
        r = 2 + k % 7
        # states that settle: successive outputs move less and less
        logits = torch.cumsum(
            torch.randn(r, 6, generator=g) / (1 + torch.arange(r))[:, None] ** 2, 0
        )
        log_probs = torch.log_softmax(logits, -1)
        threshold = float(10 ** -(1 + k % 4))
        want = _reference_exit(log_probs, threshold)
        where = f"r = {r} iterations, threshold {threshold:g} (trial {k})"
        got = _call(fn, where, log_probs.clone(), threshold, timeout=timeout)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if got != want:
            raise AssertionError(
                f"{where}: expected {want} iterations, got {got!r}; stop after "
                "iteration i (counting from 1) at the first i >= 2 with "
                "KL(p_i || p_{i-1}) < threshold, else after all r"
            )
    return f"correct: your rule exits where exit_decode's does in {trials} trials"


def check_prelude_gradient(
    fn: Callable[..., Any], *, timeout: float = TIMEOUT_S
) -> str:
    """Compare a student's prediction ``fn(loop) -> bool`` (does the prelude get a
    gradient?) with a backward pass, over injections and truncations (chapter 5d)."""
    _check_fn_and_timeout(fn, timeout)
    checked = 0
    for injection in ("none", "add", "concat"):
        for r in (1, 3):
            for k in sorted({None, 1, r}, key=lambda v: -1 if v is None else v):
                loop = LoopConfig(n_iterations=r, injection=injection)
                loop = replace(loop, backprop_iterations=k)
                model = _small_looped_lm(loop).train()
                ids = torch.randint(0, 20, (2, 8), generator=torch.Generator())
                want = prelude_gradient_norm(model, ids) > 0
                where = f"injection {injection!r}, r = {r}, backprop_iterations {k}"
                got = _call(fn, where, loop, timeout=timeout)
                if got is not want:
                    raise AssertionError(
                        f"{where}: the prelude {'does' if want else 'does not'} get a "
                        f"gradient, your function says {got!r}; which iterations build "
                        "a graph, and where does e enter?"
                    )
                checked += 1
    return f"correct: your prediction matches backward in all {checked} settings"


def _layer_passes_measured(
    n_latent: int, n_recursions: int, n_supervision: int, n_layers: int
) -> tuple[int, int]:
    """Forward calls of the network's layers over one answer (``solve``) and backward
    calls in one improvement step, counted with hooks on a small reasoner."""
    torch.manual_seed(0)
    config = TransformerConfig(
        d_model=8, n_heads=2, d_ff=16, n_layers=n_layers, vocab_size=5, max_len=4
    )
    reasoner = ReasonerConfig(n_latent, n_recursions, n_supervision)
    model = TinyRecursiveReasoner(config, reasoner)
    calls = {"forward": 0, "backward": 0}
    for block in model.net.ffn:  # one FFN per layer: one call per layer pass
        block.register_forward_hook(
            lambda *a: calls.__setitem__("forward", calls["forward"] + 1)
        )
        block.register_full_backward_hook(
            lambda *a: calls.__setitem__("backward", calls["backward"] + 1)
        )
    puzzle = torch.randint(0, 5, (2, 4), generator=torch.Generator().manual_seed(0))
    model.solve(puzzle)
    per_answer = calls["forward"]
    x = model.embed(puzzle)
    _, logits, _ = model.improve(x, *model.initial_state(x))
    logits.sum().backward()
    return per_answer, calls["backward"]


def check_recursion_passes(
    fn: Callable[..., Any], *, timeout: float = TIMEOUT_S
) -> str:
    """Compare a student's ``fn(n_latent, n_recursions, n_supervision, n_layers) ->
    (layer passes per answer, layer passes with gradients per improvement step)``
    with hooks on a real reasoner (chapter 5e)."""
    _check_fn_and_timeout(fn, timeout)
    settings = [(1, 1, 1, 1), (2, 2, 4, 1), (6, 3, 2, 2), (3, 1, 5, 2), (1, 4, 3, 3)]
    for n, T, N, L in settings:
        want = _layer_passes_measured(n, T, N, L)
        where = f"n_latent={n}, n_recursions={T}, n_supervision={N}, n_layers={L}"
        got = _call(fn, where, n, T, N, L, timeout=timeout)
        if not (
            isinstance(got, (tuple, list))
            and len(got) == 2
            and all(_is_integer(v) for v in got)
        ):
            raise AssertionError(f"{where}: return two integers, got {got!r}")
        if tuple(got) != want:
            raise AssertionError(
                f"{where}: hooks count {want[0]} layer passes per answer and {want[1]} "
                f"with gradients per improvement step, you said {tuple(got)}; which "
                "recursions build a graph, and how many network calls is one?"
            )
    return f"correct: your counts match the hooks in all {len(settings)} settings"


def check_propagation_rounds(
    fn: Callable[..., Any], trials: int = 60, *, timeout: float = TIMEOUT_S
) -> str:
    """Compare a student's ``fn(puzzle, box_rows, box_cols) -> rounds or None`` with
    ``puzzles.propagation_rounds`` on 4x4 and 6x6 puzzles (chapter 5e)."""
    _check_fn_and_timeout(fn, timeout)
    trials = check_int("trials", trials, 2)
    rng = random.Random(0)
    cases: list[tuple[list[int], int, int]] = [([0] * 16, 2, 2)]
    while len(cases) < trials:
        rows, cols = (2, 2) if len(cases) % 2 else (2, 3)
        grid = random_grid(rows, cols, rng)
        n2 = len(grid)
        puzzle = list(grid)
        for cell in rng.sample(range(n2), rng.randint(0, n2 * 2 // 3)):
            puzzle[cell] = 0
        cases.append((puzzle, rows, cols))
    for k, (puzzle, rows, cols) in enumerate(cases):
        want = propagation_rounds(puzzle, rows, cols)
        where = f"{rows * cols}x{rows * cols} puzzle {puzzle} (trial {k})"
        got = _call(fn, where, list(puzzle), rows, cols, timeout=timeout)
        if got != want or (want is not None and not _is_integer(got)):
            raise AssertionError(
                f"{where}: expected {want!r}, got {got!r}; a round fills every blank "
                "that has exactly one candidate left, all at once, and None means a "
                "round found no such blank while blanks remain"
            )
    return f"correct: your rounds match propagation_rounds on {len(cases)} puzzles"
