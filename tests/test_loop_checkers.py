"""Chapter 5d's exercise checkers accept a right answer and reject a wrong one."""

import pytest

from sharedlib.book import exercises


def cache_bytes(loop, d_model, r, slots, batch, length, element_size):
    sets = r if slots is None else slots
    return 2 * (loop.n_prelude + loop.n_core * sets + loop.n_coda) * batch * length * d_model * element_size


def kl_exit(log_probs, threshold):
    for i in range(1, len(log_probs)):
        kl = (log_probs[i].exp() * (log_probs[i] - log_probs[i - 1])).sum()
        if kl < threshold:
            return i + 1
    return len(log_probs)


def prelude_gets_gradient(loop):
    k = loop.n_iterations if loop.backprop_iterations is None else loop.backprop_iterations
    return loop.injection != "none" or k >= loop.n_iterations


def test_right_answers_pass():
    assert exercises.check_loop_cache_bytes(cache_bytes).startswith("correct")
    assert exercises.check_kl_exit(kl_exit).startswith("correct")
    assert exercises.check_prelude_gradient(prelude_gets_gradient).startswith("correct")


def test_wrong_answers_fail_with_the_input_that_shows_it():
    def every_iteration(loop, d_model, r, slots, batch, length, element_size):  # ignores slots
        return cache_bytes(loop, d_model, r, None, batch, length, element_size)

    with pytest.raises(AssertionError, match="slots=1"):
        exercises.check_loop_cache_bytes(every_iteration)
    with pytest.raises(AssertionError, match="expected 2 iterations"):
        exercises.check_kl_exit(lambda log_probs, threshold: len(log_probs))
    with pytest.raises(AssertionError, match="does not get a gradient"):
        exercises.check_prelude_gradient(lambda loop: True)
    with pytest.raises(ValueError):
        exercises.check_kl_exit("not a function")
