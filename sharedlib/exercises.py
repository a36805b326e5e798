"""Checkers for the exercises: specific feedback on the first input that fails (every chapter).

A wrong answer raises ``AssertionError`` with the input that shows it; a wrong call of a checker (not a
function, an unknown strategy, no trials) raises ``ValueError`` naming the argument.
"""

from __future__ import annotations

import math
import numbers
import random
from collections.abc import Callable
from typing import Any

from .background import PUBLISHED_MODELS, doubling_time_months
from .config import TransformerConfig
from .counting import count_parameters
from .sharing import NEEDS_N_UNIQUE, STRATEGIES, layer_to_block


def _require_callable(name: str, fn: object) -> None:
    if not callable(fn):
        raise ValueError(f"{name} must be a function you wrote, got {type(fn).__name__} {fn!r}")


def _require_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _require_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _call(fn: Callable[..., Any], description: str, *args: Any) -> Any:
    """``fn(*args)``; if the student's function raises, an ``AssertionError`` that names the input instead."""
    try:
        return fn(*args)
    except Exception as error:
        raise AssertionError(f"your function raised {type(error).__name__}: {error} for {description}") from error


def _as_list(value: object) -> list | None:
    """``list(value)`` for any iterable answer (list, tuple, range, array); None for anything else."""
    try:
        return list(value)  # type: ignore[call-overload]
    except TypeError:
        return None


def random_config(rng: random.Random, strategy: str) -> TransformerConfig:
    """A small random valid config of ``strategy`` (used by checkers and property tests)."""
    if not isinstance(rng, random.Random):
        raise ValueError(f"rng must be a random.Random, got {type(rng).__name__}")
    _require_choice("strategy", strategy, STRATEGIES)
    n_heads = rng.choice([1, 2, 4, 8])
    n_layers = rng.randint(1, 12)
    n_unique = None
    if strategy in NEEDS_N_UNIQUE:
        divisors = [m for m in range(1, n_layers + 1) if n_layers % m == 0]
        n_unique = rng.choice(divisors if strategy == "sequence" else range(1, n_layers + 1))
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


def check_count_function(fn: Callable[[TransformerConfig], int], strategy: str, trials: int = 200) -> str:
    """Compare a student's ``fn(config) -> int`` with the closed form on random configs of ``strategy``."""
    _require_callable("fn", fn)
    _require_choice("strategy", strategy, STRATEGIES)
    _require_count("trials", trials)
    rng = random.Random(f"{strategy}-{trials}")
    for _ in range(trials):
        config = random_config(rng, strategy)
        expected, got = count_parameters(config), _call(fn, f"config {config}", config)
        if got != expected:
            raise AssertionError(f"for {config} expected {expected:,} parameters, got {got!r}")
    return f"correct: your count matches the closed form on {trials} random {strategy!r} configs"


def check_layer_map(fn: Callable[[int, int], list[int]], strategy: str, max_layers: int | None = None) -> str:
    """Compare a student's ``fn(n_layers, n_unique) -> list[int]`` with ``layer_to_block`` for all small N, M.

    ``max_layers`` defaults to 12, and to 24 for "groups": Hugging Face's float formula first parts from the
    integer ``i * G // N`` at N=18, G=14, so a checker that stops earlier could not tell them apart.
    """
    _require_callable("fn", fn)
    _require_choice("strategy", strategy, NEEDS_N_UNIQUE)
    if max_layers is None:
        max_layers = 24 if strategy == "groups" else 12
    _require_count("max_layers", max_layers)
    cases = 0
    for n_layers in range(1, max_layers + 1):
        for n_unique in range(1, n_layers + 1):
            if strategy == "sequence" and n_layers % n_unique:
                continue
            expected = layer_to_block(strategy, n_layers, n_unique)
            got = _call(fn, f"N={n_layers}, M={n_unique}", n_layers, n_unique)
            if _as_list(got) != expected:
                hint = " (Hugging Face computes int(i / (N / G)) in floating point)" if strategy == "groups" else ""
                raise AssertionError(
                    f"{strategy}: for N={n_layers}, M={n_unique} expected {expected}, got {got!r}{hint}"
                )
            cases += 1
    return f"correct: your {strategy!r} map agrees with the published definition on {cases} (N, M) pairs"


def check_embedding_saving(value: int, vocab_size: int = 30000, d_model: int = 768, embedding_size: int = 128) -> str:
    """Check the parameters saved by factorising the token table V*H into V*E + E*H + H."""
    for name, size in (("vocab_size", vocab_size), ("d_model", d_model), ("embedding_size", embedding_size)):
        _require_count(name, size)
    untied = vocab_size * d_model  # the token table of an unfactorised model
    factorised = vocab_size * embedding_size + embedding_size * d_model + d_model  # table + projection
    expected = untied - factorised
    if value != expected:
        raise AssertionError(
            f"for V={vocab_size}, H={d_model}, E={embedding_size} the token tables shrink by {expected:,}, "
            f"got {value!r} (count V*H against V*E + E*H + H; leave position embeddings out)"
        )
    return f"correct: factorising saves {expected:,} parameters ({expected / (vocab_size * d_model):.1%} of V*H)"


def check_tensor_layout(answer: tuple[str, str, str]) -> str:
    """Check the meaning of each axis of ``torch.rand(10, 32, 512)`` fed to ``nn.MultiheadAttention`` (chapter 5)."""
    expected = ("sequence", "batch", "features")
    if isinstance(answer, str) or not hasattr(answer, "__len__") or len(answer) != 3:
        raise ValueError(f"answer must be three axis names, e.g. ('batch', 'sequence', 'features'), got {answer!r}")
    names = tuple(str(a).lower() for a in answer)
    for axis, (size, want, got) in enumerate(zip((10, 32, 512), expected, names, strict=True)):
        if got != want:
            raise AssertionError(
                f"axis {axis} (size {size}) is {want!r}, you said {got!r}: without batch_first=True, "
                "nn.MultiheadAttention reads (sequence, batch, features)"
            )
    return "correct: 10 positions, a batch of 32, 512 features per token"


def check_doubling_time(value: float, since: int, tolerance_months: float = 0.5) -> str:
    """Check the doubling time (months) of the largest published model per year, from ``since`` on (chapter 1)."""
    years = sorted({m.year for m in PUBLISHED_MODELS})
    if isinstance(since, bool) or not isinstance(since, int) or since > years[-2]:
        raise ValueError(f"since must be a year <= {years[-2]} (two years of models are needed), got {since!r}")
    for name, number in (("value", value), ("tolerance_months", tolerance_months)):
        if isinstance(number, bool) or not isinstance(number, numbers.Real):
            raise ValueError(f"{name} must be a number of months, got {number!r}")
    if not (math.isfinite(tolerance_months) and tolerance_months > 0):
        raise ValueError(f"tolerance_months must be a positive number, got {tolerance_months!r}")
    models = tuple(m for m in PUBLISHED_MODELS if m.year >= since)
    expected = doubling_time_months(models)
    if not abs(value - expected) <= tolerance_months:
        frontier = sorted({m.year for m in models})
        raise AssertionError(
            f"from {since} on (years {frontier}) the largest model doubles every {expected:.1f} months, got {value!r}; "
            "fit a line to log2(largest parameters of each year) against the year, then take 12 / slope"
        )
    return f"correct: {expected:.1f} months per doubling since {since}"


def check_delta_count(fn: Callable[[TransformerConfig, int], int], trials: int = 100) -> str:
    """Compare a student's ``fn(config, rank) -> int`` (parameters the per-layer deltas add), chapter 8."""
    from .relaxed import delta_parameters

    _require_callable("fn", fn)
    _require_count("trials", trials)
    rng = random.Random(f"delta-{trials}")
    for _ in range(trials):
        config, rank = random_config(rng, "all"), rng.randint(1, 8)
        expected, got = delta_parameters(config, rank), _call(fn, f"rank {rank} and config {config}", config, rank)
        if got != expected:
            raise AssertionError(
                f"for rank {rank}, d_model={config.d_model}, d_ff={config.d_ff}, depth={config.depth} expected "
                f"{expected:,} delta parameters, got {got!r} (each weight matrix of shape (out, in) adds rank*(out+in))"
            )
    return f"correct: your delta count matches the closed form on {trials} random configs"
