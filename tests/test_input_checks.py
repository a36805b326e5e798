"""``sharedlib.validation``, the one set of input checks: each refuses what it should, naming the argument and
what it accepts, and passes NumPy scalars through as plain Python numbers."""

import math

import numpy as np
import pytest
import torch

from sharedlib.validation import check_callable, check_choice, check_instance, check_int, check_real, check_token_ids


@pytest.mark.parametrize("value", [True, 1.0, "2", None, 0, -3, math.nan])
def test_check_int_refuses_non_counts(value):
    with pytest.raises(ValueError, match=r"^steps must be a positive integer, got "):
        check_int("steps", value)


def test_check_int_ranges_and_numpy():
    assert check_int("n", np.int64(3)) == 3 and type(check_int("n", np.int64(3))) is int
    assert check_int("layer", 0, 0, 2) == 0
    with pytest.raises(ValueError, match=r"layer must be an integer in 0\.\.2, got 3"):
        check_int("layer", 3, 0, 2)
    with pytest.raises(ValueError, match="must be a non-negative integer"):
        check_int("start", -1, 0)
    with pytest.raises(ValueError, match="must be an integer >= 2"):
        check_int("points", 1, 2)


@pytest.mark.parametrize("value", [math.nan, math.inf, True, "0.1", None])
def test_check_real_refuses_non_finite_and_non_numbers(value):
    with pytest.raises(ValueError, match="lr must be a finite real number"):
        check_real("lr", value)


def test_check_real_bounds():
    assert check_real("p", np.float32(0.5), 0, 1) == 0.5
    assert check_real("p", 1, 0, 1) == 1.0
    with pytest.raises(ValueError, match=r"threshold must be a finite real number in \(0, 1\], got 0"):
        check_real("threshold", 0, 0, 1, open_minimum=True)
    with pytest.raises(ValueError, match=r"in \[0, 1\], got 1.5"):
        check_real("p", 1.5, 0, 1)
    with pytest.raises(ValueError, match="> 0"):
        check_real("temperature", 0.0, 0, open_minimum=True)


def test_choice_callable_and_instance():
    assert check_choice("norm", "pre", ("pre", "post")) == "pre"
    with pytest.raises(ValueError, match=r"norm must be one of \('pre', 'post'\), got 'mid'"):
        check_choice("norm", "mid", ("pre", "post"))
    with pytest.raises(ValueError, match="loss_fn must be a function, got int"):
        check_callable("loss_fn", 3)
    with pytest.raises(ValueError, match=r"model must be an nn\.Module, got str"):
        check_instance("model", "gpt", torch.nn.Module, "an nn.Module")


def test_check_token_ids():
    check_token_ids("ids", torch.tensor([[0, 4]]), 5)
    with pytest.raises(ValueError, match=r"ids must be in 0\.\.vocab_size-1 = 0\.\.4, found 5"):
        check_token_ids("ids", torch.tensor([[0, 5]]), 5)
    with pytest.raises(ValueError, match=r"found -1"):
        check_token_ids("ids", torch.tensor([[-1, 2]]), 5)
    with pytest.raises(ValueError, match=r"convert with \.long\(\)"):
        check_token_ids("ids", torch.zeros(1, 2), 5)
    with pytest.raises(ValueError, match=r"\(batch, sequence\)"):
        check_token_ids("ids", torch.zeros(3, dtype=torch.long), 5)
