"""Closed forms against real modules: a wrong formula fails here (chapter 4)."""

import random

import pytest
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import sharedlib as sl
from sharedlib.exercises import random_config


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sl.STRATEGIES), st.integers(0, 10**6))
def test_closed_form_equals_numel_for_every_strategy(strategy, seed):
    config = random_config(random.Random(seed), strategy)
    assert sl.count_parameters(config) == sl.count_module_parameters(sl.SharedTransformer(config))


def test_breakdown_matches_module_parts():
    config = sl.TransformerConfig(
        d_model=32,
        n_heads=4,
        d_ff=48,
        n_layers=6,
        strategy="cycle-rev",
        n_unique=4,
        vocab_size=50,
        max_len=16,
        embedding_size=8,
        lm_head=True,
    )
    model = sl.SharedTransformer(config)
    parts = sl.parameter_breakdown(config)
    assert parts["embeddings"] == sl.count_module_parameters(model.embeddings)
    assert parts["attention"] == sl.count_module_parameters(model.attention)
    assert parts["ffn"] == sl.count_module_parameters(model.ffn)
    assert parts["final_norm"] == sl.count_module_parameters(model.final_norm)
    assert parts["lm_head"] == sl.count_module_parameters(model.lm_projection)


@pytest.mark.parametrize(("d", "h", "f"), [(512, 8, 2048), (64, 4, 96), (768, 12, 3072)])
def test_part_formulas_against_pytorch_modules(d, h, f):
    assert sl.attention_parameters(d) == sl.count_module_parameters(nn.MultiheadAttention(d, h))
    ffn = nn.Sequential(nn.Linear(d, f), nn.ReLU(), nn.Linear(f, d))
    assert sl.ffn_parameters(d, f) == sl.count_module_parameters(ffn)
    assert sl.layer_norm_parameters(d) == sl.count_module_parameters(nn.LayerNorm(d))
    assert sl.layer_parameters(d, f) == sl.count_module_parameters(nn.TransformerEncoderLayer(d, h, f))


def test_source_formula_and_its_arithmetic():
    assert sl.source_parameter_formula(6, 512, 2048, shared=False) == 15_728_640
    assert sl.source_parameter_formula(6, 512, 2048, shared=True) == 2_621_440
    assert sl.SOURCE_STATED_COUNTS["unshared"] != sl.source_parameter_formula(6, 512, 2048, shared=False)
    d, f, L = sp.symbols("d f L", positive=True)
    missing = sp.expand(L * sl.layer_parameters(d, f, norms=0) - sl.source_parameter_formula(L, d, f, shared=False))
    assert missing == sp.expand(L * (2 * d**2 + f + 5 * d))


def test_naive_model_counts():
    shared = sl.NaiveSharedTransformer(512, 2048, 8, 6)
    assert sl.count_module_parameters(shared) == sl.layer_parameters(512, 2048, norms=0)
    assert sl.count_module_parameters(sl.unshared_naive_stack(512, 2048, 8, 6)) == 6 * sl.layer_parameters(512, 2048, 0)


@pytest.mark.parametrize("strategy", ["none", "all", "cycle"])
def test_flops_formula_equals_flop_counter_and_ignores_sharing(strategy):
    config = sl.TransformerConfig(
        d_model=32,
        n_heads=4,
        d_ff=64,
        n_layers=4,
        strategy=strategy,
        n_unique=2 if strategy == "cycle" else None,
        vocab_size=40,
        max_len=16,
        embedding_size=8,
        lm_head=True,
    )
    model = sl.SharedTransformer(config)
    ids = torch.randint(0, 40, (2, 16))
    measured = sl.count_forward_flops(lambda: model.logits(model(ids)))
    assert measured == 2 * 16 * sum(sl.forward_flops_per_token(config, 16).values())


def test_training_memory_closed_forms_match_a_real_step():
    torch.manual_seed(0)
    for strategy in ("none", "all"):
        config = sl.TransformerConfig(
            d_model=32, n_heads=4, d_ff=64, n_layers=4, strategy=strategy, vocab_size=40, max_len=16
        )
        model = sl.SharedTransformer(config)
        ids = torch.randint(0, 40, (3, 16))
        measured = sl.training_state_bytes(model, lambda m=model, x=ids: m(x).pow(2).mean())
        predicted = sl.training_memory_bytes(config, batch_size=3, seq_len=16)
        for kind in ("parameters", "gradients", "optimizer_state"):
            assert measured[kind] == predicted[kind], kind


def test_activation_estimate_per_layer():
    def per_layer(n_layers):
        config = sl.TransformerConfig(d_model=32, n_heads=4, d_ff=64, n_layers=n_layers, vocab_size=40, max_len=16)
        model = sl.SharedTransformer(config)
        ids = torch.randint(0, 40, (2, 16))
        return sl.saved_activation_bytes(model, lambda: model(ids)), config

    (small, c2), (big, c4) = per_layer(2), per_layer(4)
    measured = (big - small) / 2
    predicted = (sl.activation_values_per_token(c4) - sl.activation_values_per_token(c2)) / 2 * 2 * 16 * 4
    assert abs(measured - predicted) / predicted < 0.15
