"""Every ``TransformerConfig`` field is strictly typed: a wrong value raises a ``ValueError`` naming it (chapter 5)."""

import dataclasses
import math

import numpy as np
import pytest

import sharedlib as sl

POSITIVE_INT = [True, False, 2.0, "4", None, 0, -1, math.nan]
BOOL = ["no", "False", 1, 0, None, np.True_]
CHOICE = ["random", None, 1, ["pre"]]

# For each field: the base config it is tested in, and values that must be refused.
BAD_VALUES = {
    "d_model": ({}, POSITIVE_INT),
    "n_heads": ({}, POSITIVE_INT),
    "d_ff": ({}, POSITIVE_INT),
    "n_layers": ({}, POSITIVE_INT),
    "strategy": ({}, CHOICE),
    "n_unique": (dict(strategy="cycle", n_layers=6), [True, 2.0, "2", None, 0, -1, 7]),
    "inner_group_num": (dict(strategy="groups", n_unique=2), POSITIVE_INT),
    "vocab_size": ({}, POSITIVE_INT),
    "max_len": ({}, POSITIVE_INT),
    "n_token_types": ({}, [True, 1.0, "2", None, -1]),
    "embedding_size": ({}, [True, 8.0, "8", 0, -1]),
    "embedding_norm": ({}, BOOL),
    "norm": ({}, CHOICE),
    "activation": ({}, CHOICE),
    "position": ({}, CHOICE),
    "layer_norm_eps": ({}, [math.nan, math.inf, -math.inf, 0, -1e-5, "1e-5", None, True]),
    "dropout": ({}, [math.nan, math.inf, -0.1, 1.0, 1, "0.1", None, True]),
    "causal": ({}, BOOL),
    "lm_head": ({}, BOOL),
}
CASES = [(field, base, value) for field, (base, values) in BAD_VALUES.items() for value in values]


def test_every_field_is_covered():
    assert set(BAD_VALUES) == {f.name for f in dataclasses.fields(sl.TransformerConfig)}


@pytest.mark.parametrize(("field", "base", "value"), CASES, ids=[f"{f}={v!r}" for f, _, v in CASES])
def test_wrong_values_raise_value_errors_naming_the_field(field, base, value):
    with pytest.raises(ValueError) as error:
        sl.TransformerConfig(**(base | {field: value}))
    message = str(error.value)
    assert message.startswith(f"{field} must be"), message
    assert repr(value) in message, message  # the offending value is shown


def test_causal_string_no_longer_builds_a_causal_model():
    # Before strict typing, causal="no" was truthy and built a causal model.
    with pytest.raises(ValueError, match=r"causal must be True or False \(a bool, not str\)"):
        sl.TransformerConfig(causal="no")


def test_error_messages_say_what_is_allowed():
    cases = {
        "d_model": (True, "a positive integer"),
        "n_token_types": (-1, "non-negative integer"),
        "layer_norm_eps": (math.nan, "finite real number > 0"),
        "dropout": (1.0, "finite real number in [0, 1)"),
        "norm": ("sandwich", "one of ('pre', 'post', 'none')"),
        "lm_head": (1, "True or False"),
    }
    for field, (value, allowed) in cases.items():
        with pytest.raises(ValueError, match=f"{field} must be") as error:
            sl.TransformerConfig(**{field: value})
        assert allowed in str(error.value), str(error.value)


def test_accepted_values_and_normalisation():
    config = sl.TransformerConfig(d_model=np.int64(64), n_heads=np.int32(4), layer_norm_eps=1, dropout=0)
    assert type(config.d_model) is int and type(config.n_heads) is int  # numpy integers become int
    assert config == sl.TransformerConfig(d_model=64, n_heads=4, layer_norm_eps=1.0, dropout=0.0)
    assert sl.TransformerConfig(dropout=np.float32(0.25), layer_norm_eps=np.float64(1e-12)).dropout == 0.25
    assert sl.TransformerConfig(strategy="groups", n_layers=7, n_unique=3).block_map() == [0, 0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: sl.layer_to_block("cycle", 6, True), "n_unique must be an integer"),
        (lambda: sl.layer_to_block("cycle", True, 1), "n_layers must be a positive integer"),
        (lambda: sl.layer_to_block("groups", 6, 2, inner_group_num=True), "inner_group_num"),
        (lambda: sl.layer_to_block(["all"], 6), "strategy must be one of"),
        (lambda: sl.layer_to_block("all", 6, sublayer="mlp"), "sublayer must be one of"),
    ],
)
def test_layer_to_block_is_as_strict(call, message):
    with pytest.raises(ValueError, match=message):
        call()
