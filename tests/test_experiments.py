"""Experiment helpers of chapter 6: summaries, parameter matching, exact-answer accuracy."""

import pytest
from copy_task import copy_batch, copy_config

import sharedlib as sl
from sharedlib.experiments import live as ex
from sharedlib.train import TrainConfig


def test_summary_statistics():
    s = ex.Summary("x", 10, (1.0, 3.0))
    assert s.mean == 2.0 and s.std == pytest.approx(2**0.5)
    assert ex.Summary("y", 1, (1.0,)).std == 0.0


def test_matching_width_finds_the_closest_parameter_count():
    base = sl.TransformerConfig(d_model=64, n_heads=4, d_ff=256, n_layers=4, vocab_size=256, max_len=32)
    wide = ex.matching_width(base, "all", n_heads=4)
    target = sl.count_parameters(base)
    assert wide.strategy == "all" and wide.d_model % 4 == 0 and wide.d_model > 64
    for other in (wide.d_model - 4, wide.d_model + 4):
        probe = sl.TransformerConfig(**{**wide.__dict__, "d_model": other, "d_ff": 4 * other})
        assert abs(sl.count_parameters(probe) - target) >= abs(sl.count_parameters(wide) - target)


def test_compare_and_accuracy_on_a_learnable_task():
    config = copy_config(width=64)
    copy = copy_batch

    results = ex.compare_strategies({"all": config}, copy, TrainConfig(steps=300, eval_every=300), seeds=1)
    assert results["all"].parameters == sl.count_parameters(config) and len(results["all"].losses) == 1
    model, _ = ex.train_model(config, copy, TrainConfig(steps=300, eval_every=300), seed=0)
    assert ex.answer_accuracy(model, "copy", 4, 4, 128, seed=5) > 0.9
    untrained = sl.SharedTransformer(config)
    assert ex.answer_accuracy(untrained, "copy", 4, 4, 128, seed=5) < 0.1
