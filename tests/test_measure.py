"""The math attention backend's extra saved activations, measured against their closed form (chapter 4)."""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

import sharedlib as sl
from sharedlib.measure import math_backend_extra_values


def _extra_bytes(config: sl.TransformerConfig, batch_size: int, seq_len: int) -> int:
    model = sl.SharedTransformer(config)
    ids = torch.randint(0, config.vocab_size, (batch_size, seq_len))
    fused = sl.saved_activation_bytes(model, lambda: model(ids))
    with sdpa_kernel([SDPBackend.MATH]):
        math = sl.saved_activation_bytes(model, lambda: model(ids))
    return math - fused


@pytest.mark.parametrize(
    ("d_model", "n_heads", "n_layers", "strategy", "batch_size", "seq_len"),
    [(64, 4, 3, "none", 2, 16), (96, 8, 2, "all", 3, 33), (64, 2, 5, "none", 1, 50), (32, 1, 2, "all", 1, 7)],
)
def test_math_backend_extra_matches_closed_form(d_model, n_heads, n_layers, strategy, batch_size, seq_len) -> None:
    config = sl.TransformerConfig(
        d_model=d_model,
        n_heads=n_heads,
        d_ff=2 * d_model,
        n_layers=n_layers,
        strategy=strategy,
        vocab_size=50,
        max_len=64,
        norm="pre",
    )
    measured = _extra_bytes(config, batch_size, seq_len)
    assert measured == 4 * math_backend_extra_values(config, batch_size, seq_len)
    # A formula that forgot the log-sum-exp the fused kernel keeps (h*T instead of h*(T-1)) would fail.
    assert measured != 4 * (
        math_backend_extra_values(config, batch_size, seq_len) + config.depth * batch_size * seq_len * n_heads
    )


def test_bad_arguments_raise() -> None:
    config = sl.TransformerConfig(d_model=32, n_heads=4, d_ff=64, n_layers=2)
    with pytest.raises(ValueError, match="batch_size"):
        math_backend_extra_values(config, 0, 8)
    with pytest.raises(ValueError, match="seq_len"):
        math_backend_extra_values(config, 2, 8.0)
    with pytest.raises(ValueError, match="dropout"):
        math_backend_extra_values(sl.TransformerConfig(d_model=32, n_heads=4, d_ff=64, dropout=0.1), 2, 8)
