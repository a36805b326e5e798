"""The shared test setup itself: a test that changes torch's thread count does not pass it on (conftest.py)."""

import torch

THREADS = torch.get_num_threads()  # when the module is imported, before its tests run


def test_a_test_may_change_torch_threads():
    torch.set_num_threads(THREADS + 1)
    assert torch.get_num_threads() == THREADS + 1


def test_the_next_test_starts_with_the_threads_it_had():
    assert torch.get_num_threads() == THREADS
