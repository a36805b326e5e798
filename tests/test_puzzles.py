"""Sudoku puzzles for chapter 5e: the solver against a known count, unique solutions,
and a train/test split that shares no solution grid."""

import random

import pytest

from sharedlib.puzzles import count_solutions, make_puzzle, propagation_rounds, random_grid, sudoku_split


def test_the_solver_counts_the_288_grids_of_4x4_sudoku():
    assert count_solutions([0] * 16, 2, 2, limit=10**6) == 288  # a known count
    grid = random_grid(2, 2, random.Random(0))
    assert count_solutions(grid, 2, 2) == 1
    broken = list(grid)
    broken[1] = broken[0]  # a repeated digit in the first row
    assert count_solutions(broken, 2, 2) == 0


def test_puzzles_have_one_solution_and_test_grids_are_never_trained_on():
    split = sudoku_split(2, 3, 40, 10, 2, blanks=16, seed=0)
    for puzzles, solutions in ((split.train_puzzles, split.train_solutions),
                               (split.test_puzzles, split.test_solutions)):
        shown = puzzles != 0
        assert (puzzles[shown] == solutions[shown]).all()  # givens agree with the grid
        assert (shown.sum(1) == 36 - 16).all()
        for p in puzzles[:10].tolist():
            assert count_solutions(p, 2, 3) == 1
    train = {tuple(g) for g in split.train_solutions.tolist()}
    test = {tuple(g) for g in split.test_solutions.tolist()}
    assert train.isdisjoint(test) and len(test) == 10


def test_bad_requests_are_refused():
    grid = random_grid(2, 2, random.Random(1))
    with pytest.raises(ValueError, match="blanks"):
        make_puzzle(grid, 2, 2, 16, random.Random(0))
    with pytest.raises(ValueError, match="distinct grids"):
        sudoku_split(2, 2, 280, 20, 1, blanks=4, seed=0)  # only 288 exist


def test_propagation_rounds_count_rounds_of_forced_cells():
    grid = random_grid(2, 2, random.Random(2))
    assert propagation_rounds(grid, 2, 2) == 0  # nothing to fill
    one = list(grid)
    one[5] = 0
    assert propagation_rounds(one, 2, 2) == 1
    assert propagation_rounds([0] * 16, 2, 2) is None  # every blank has 4 candidates
    # (0, 0) keeps candidates {1, 2} until round 1 fills (0, 1), (1, 0) and (2, 0)
    solved = [1, 2, 3, 4, 3, 4, 1, 2, 2, 1, 4, 3, 4, 3, 2, 1]
    assert count_solutions(solved, 2, 2) == 1
    chained = list(solved)
    for cell in (0, 1, 4, 8):
        chained[cell] = 0
    assert propagation_rounds(chained, 2, 2) == 2
    chained[0] = 1  # given: every blank forced at once
    assert propagation_rounds(chained, 2, 2) == 1
