"""Checkers for the exercises: specific feedback on the first input that fails (every chapter)."""

from __future__ import annotations

import random
from collections.abc import Callable

from .config import TransformerConfig
from .counting import count_parameters
from .sharing import NEEDS_N_UNIQUE, layer_to_block


def random_config(rng: random.Random, strategy: str) -> TransformerConfig:
    """A small random valid config of ``strategy`` (used by checkers and property tests)."""
    n_heads = rng.choice([1, 2, 4, 8])
    n_layers = rng.randint(1, 12)
    n_unique = None
    if strategy in NEEDS_N_UNIQUE:
        divisors = [m for m in range(1, n_layers + 1) if n_layers % m == 0]
        n_unique = rng.choice(divisors if strategy in ("sequence", "groups") else range(1, n_layers + 1))
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
    rng = random.Random(f"{strategy}-{trials}")
    for _ in range(trials):
        config = random_config(rng, strategy)
        expected, got = count_parameters(config), fn(config)
        if got != expected:
            raise AssertionError(f"for {config} expected {expected:,} parameters, got {got!r}")
    return f"correct: your count matches the closed form on {trials} random {strategy!r} configs"


def check_layer_map(fn: Callable[[int, int], list[int]], strategy: str, max_layers: int = 12) -> str:
    """Compare a student's ``fn(n_layers, n_unique) -> list[int]`` with ``layer_to_block`` for all small N, M."""
    cases = 0
    for n_layers in range(1, max_layers + 1):
        for n_unique in range(1, n_layers + 1):
            if strategy in ("sequence", "groups") and n_layers % n_unique:
                continue
            expected, got = layer_to_block(strategy, n_layers, n_unique), fn(n_layers, n_unique)
            if list(got) != expected:
                raise AssertionError(f"{strategy}: for N={n_layers}, M={n_unique} expected {expected}, got {got!r}")
            cases += 1
    return f"correct: your {strategy!r} map agrees with the published definition on {cases} (N, M) pairs"


def check_embedding_saving(value: int, vocab_size: int = 30000, d_model: int = 768, embedding_size: int = 128) -> str:
    """Check the parameters saved by factorising the token table V*H into V*E + E*H + H."""
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
    names = tuple(str(a).lower() for a in answer)
    for axis, (size, want, got) in enumerate(zip((10, 32, 512), expected, names, strict=True)):
        if got != want:
            raise AssertionError(
                f"axis {axis} (size {size}) is {want!r}, you said {got!r}: without batch_first=True, "
                "nn.MultiheadAttention reads (sequence, batch, features)"
            )
    return "correct: 10 positions, a batch of 32, 512 features per token"
