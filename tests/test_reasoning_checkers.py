"""Chapter 5e's checkers: right answers pass, wrong ones fail with the input that shows it."""

import pytest

from sharedlib import puzzles
from sharedlib.book import exercises


def test_the_recursion_passes_checker_accepts_the_counts_and_refuses_near_misses():
    def right(n, t, s, depth):
        return s * t * (n + 1) * depth, (n + 1) * depth

    def every_recursion(n, t, s, depth):
        return s * t * (n + 1) * depth, t * (n + 1) * depth

    def one_step(n, t, s, depth):
        return t * (n + 1) * depth, (n + 1) * depth

    assert exercises.check_recursion_passes(right).startswith("correct")
    with pytest.raises(AssertionError, match="with gradients per improvement step"):
        exercises.check_recursion_passes(every_recursion)
    with pytest.raises(AssertionError, match="layer passes per answer"):
        exercises.check_recursion_passes(one_step)
    with pytest.raises(AssertionError, match="two integers"):
        exercises.check_recursion_passes(lambda n, t, s, depth: s * t)


def test_the_propagation_checker_accepts_the_rule_and_refuses_one_cell_per_round():
    assert exercises.check_propagation_rounds(puzzles.propagation_rounds).startswith("correct")

    def one_cell_per_round(puzzle, box_rows, box_cols):
        cells, n, rounds = list(puzzle), box_rows * box_cols, 0
        peers = puzzles._peers(box_rows, box_cols)
        while 0 in cells:
            forced = [(i, set(range(1, n + 1)) - {cells[p] for p in peers[i]}) for i, d in enumerate(cells) if d == 0]
            forced = [(i, o.pop()) for i, o in forced if len(o) == 1]
            if not forced:
                return None
            cells[forced[0][0]] = forced[0][1]
            rounds += 1
        return rounds

    with pytest.raises(AssertionError, match="all at once"):
        exercises.check_propagation_rounds(one_cell_per_round)
    with pytest.raises(AssertionError, match="expected None"):
        exercises.check_propagation_rounds(lambda p, r, c: 0)  # the empty grid comes first
