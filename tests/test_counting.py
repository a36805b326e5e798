"""Closed forms against real modules: a wrong formula fails here (chapter 4)."""

import random

import pytest
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import sharedlib as sl
from sharedlib.book.exercises import random_config


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


@pytest.mark.parametrize("norm", ["pre", "post", "none"])
@pytest.mark.parametrize("activation", ["gelu", "gelu_tanh", "relu"])
def test_activation_count_equals_the_tensors_autograd_saves(norm, activation):
    """Two more applied layers add exactly the closed form's values, measured on saved tensors."""
    def saved(n_layers):
        config = sl.TransformerConfig(d_model=32, n_heads=4, d_ff=64, n_layers=n_layers, vocab_size=40,
                                      max_len=16, norm=norm, activation=activation)
        model = sl.SharedTransformer(config)
        ids = torch.randint(0, 40, (2, 16))
        return sl.saved_activation_bytes(model, lambda: model(ids)), config

    (small, c2), (big, c4) = saved(2), saved(4)
    predicted = (sl.activation_values_per_token(c4) - sl.activation_values_per_token(c2)) * 2 * 16 * 4
    assert big - small == predicted


CONFIG = sl.TransformerConfig(d_model=32, n_heads=4, d_ff=64, n_layers=2, vocab_size=40, max_len=16)


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: sl.attention_parameters(-3), "d must be a positive integer"),
        (lambda: sl.attention_parameters(0), "d must be"),
        (lambda: sl.attention_parameters(2.5), "d must be"),
        (lambda: sl.attention_parameters(True), "d must be"),
        (lambda: sl.attention_parameters("512"), "d must be"),
        (lambda: sl.attention_parameters(sp.Integer(-3)), "d must be"),
        (lambda: sl.ffn_parameters(8, -1), "d_ff must be"),
        (lambda: sl.ffn_parameters(-8, 16), "d must be"),
        (lambda: sl.layer_norm_parameters(-1), "d must be"),
        (lambda: sl.layer_parameters(8, 16, norms=-1), "norms must be a non-negative integer"),
        (lambda: sl.source_parameter_formula(-6, 512, 2048, shared=False), "n_layers must be"),
        (lambda: sl.source_parameter_formula(6, 512, -2048, shared=False), "d_ff must be"),
        (lambda: sl.source_parameter_formula(6, 512, 2048, shared="yes"), "shared must be True or False"),
        (lambda: sl.training_memory_bytes(CONFIG, batch_size=-1, seq_len=16), "batch_size must be"),
        (lambda: sl.training_memory_bytes(CONFIG, batch_size=2, seq_len=0), "seq_len must be"),
        (lambda: sl.training_memory_bytes(CONFIG, 2, 16, bytes_per_value=0), "bytes_per_value must be"),
        (lambda: sl.training_memory_bytes(CONFIG, 2, 16, optimizer_states=-1), "optimizer_states must be"),
        (lambda: sl.forward_flops_per_token(CONFIG, 0), "seq_len must be a positive integer"),
        (lambda: sl.forward_flops_per_token(CONFIG, 1.5), "seq_len must be"),
        (lambda: sl.count_parameters({"d_model": 32}), "config must be a sharedlib.TransformerConfig"),
    ],
)
def test_counts_refuse_impossible_sizes(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()


def test_counts_still_accept_symbols_and_zero_where_it_means_something():
    d, f = sp.symbols("d f", positive=True)
    assert sp.expand(sl.attention_parameters(d)) == 4 * d**2 + 4 * d
    assert sl.layer_parameters(d, f, norms=0) == sl.attention_parameters(d) + sl.ffn_parameters(d, f)
    assert sl.attention_parameters(sp.Integer(8)) == 4 * 64 + 32
    assert sl.training_memory_bytes(CONFIG, 1, 1, optimizer_states=0)["optimizer_state"] == 0  # plain SGD


@pytest.mark.parametrize(("n_layers", "groups", "inner"), [(5, 2, 1), (7, 3, 2), (18, 14, 1), (11, 4, 3)])
def test_counts_for_groups_that_do_not_divide_the_layers(n_layers, groups, inner):
    config = sl.TransformerConfig(
        d_model=16, n_heads=2, d_ff=24, n_layers=n_layers, strategy="groups", n_unique=groups,
        inner_group_num=inner, vocab_size=20, max_len=8,
    )
    model = sl.SharedTransformer(config)
    assert len(model.attention) == len(model.ffn) == groups * inner
    assert sl.count_parameters(config) == sl.count_module_parameters(model)
