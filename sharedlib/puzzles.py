"""Sudoku puzzles with unique solutions, split so that no solution grid of the test set
is ever seen in training (chapter 5e, *Recursive reasoning*).

A grid of side n = box_rows x box_cols is a flat list of n^2 digits 1..n, row by row; a
puzzle shows some of them and 0 (blank) elsewhere. Every puzzle made here has exactly
one solution, checked by a solver that counts solutions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from .validation import check_int

__all__ = [
    "SudokuSplit",
    "count_solutions",
    "make_puzzle",
    "propagation_rounds",
    "random_grid",
    "sudoku_split",
]


def _peers(box_rows: int, box_cols: int) -> list[set[int]]:
    """For every cell, the other cells of its row, column and box."""
    n = box_rows * box_cols
    peers = []
    for cell in range(n * n):
        r, c = divmod(cell, n)
        br, bc = r - r % box_rows, c - c % box_cols
        same = {r * n + k for k in range(n)} | {k * n + c for k in range(n)}
        same |= {
            (br + i) * n + bc + j for i in range(box_rows) for j in range(box_cols)
        }
        peers.append(same - {cell})
    return peers


def count_solutions(
    puzzle: list[int], box_rows: int, box_cols: int, limit: int = 2
) -> int:
    """Solutions of ``puzzle`` (0 = blank), counted up to ``limit`` by backtracking on
    the cell with the fewest candidates."""
    n = box_rows * box_cols
    peers = _peers(box_rows, box_cols)
    cells = list(puzzle)
    for cell, digit in enumerate(cells):  # a given digit that repeats: no solution
        if digit and any(cells[p] == digit for p in peers[cell]):
            return 0

    def solve() -> int:
        blanks = [i for i, d in enumerate(cells) if d == 0]
        if not blanks:
            return 1
        options = {
            i: set(range(1, n + 1)) - {cells[p] for p in peers[i]} for i in blanks
        }
        cell = min(blanks, key=lambda i: len(options[i]))
        found = 0
        for digit in sorted(options[cell]):
            cells[cell] = digit
            found += solve()
            cells[cell] = 0
            if found >= limit:
                break
        return found

    return solve()


def propagation_rounds(puzzle: list[int], box_rows: int, box_cols: int) -> int | None:
    """Rounds of "fill every blank that has one candidate left" needed to solve
    ``puzzle``, all such blanks at once per round; None if the rounds stall."""
    n = box_rows * box_cols
    peers = _peers(box_rows, box_cols)
    cells, rounds = list(puzzle), 0
    while 0 in cells:
        forced = {}
        for i, digit in enumerate(cells):
            options = set(range(1, n + 1)) - {cells[p] for p in peers[i]}
            if digit == 0 and len(options) == 1:
                forced[i] = options.pop()
        if not forced:
            return None
        for i, digit in forced.items():
            cells[i] = digit
        rounds += 1
    return rounds


def random_grid(box_rows: int, box_cols: int, rng: random.Random) -> list[int]:
    """A uniformly shuffled complete grid: randomised backtracking from an empty one."""
    n = box_rows * box_cols
    peers = _peers(box_rows, box_cols)
    cells = [0] * (n * n)

    def fill(i: int) -> bool:
        if i == n * n:
            return True
        digits = list(range(1, n + 1))
        rng.shuffle(digits)
        for digit in digits:
            if all(cells[p] != digit for p in peers[i]):
                cells[i] = digit
                if fill(i + 1):
                    return True
        cells[i] = 0
        return False

    fill(0)
    return cells


def make_puzzle(
    grid: list[int], box_rows: int, box_cols: int, blanks: int, rng: random.Random
) -> list[int] | None:
    """``grid`` with ``blanks`` cells hidden, chosen at random but keeping the solution
    unique; None if no such set was found in a few tries."""
    n2 = len(grid)
    blanks = check_int("blanks", blanks, 1, n2 - 1)
    for _ in range(20):
        puzzle = list(grid)
        for cell in rng.sample(range(n2), blanks):
            puzzle[cell] = 0
        if count_solutions(puzzle, box_rows, box_cols) == 1:
            return puzzle
    return None


@dataclass(frozen=True)
class SudokuSplit:
    """Puzzles and solutions (N, n^2) for training and testing; no test solution grid
    appears in training."""

    train_puzzles: torch.Tensor
    train_solutions: torch.Tensor
    test_puzzles: torch.Tensor
    test_solutions: torch.Tensor
    box_rows: int
    box_cols: int

    @property
    def side(self) -> int:
        return self.box_rows * self.box_cols


def sudoku_split(
    box_rows: int,
    box_cols: int,
    n_train_grids: int,
    n_test_grids: int,
    puzzles_per_grid: int,
    blanks: int,
    seed: int,
) -> SudokuSplit:
    """Distinct random solution grids, the first ``n_train_grids`` for training and the
    rest for testing, each with ``puzzles_per_grid`` unique-solution puzzles."""
    for name, value in (("box_rows", box_rows), ("box_cols", box_cols)):
        check_int(name, value, 1, 3)
    n_train_grids = check_int("n_train_grids", n_train_grids)
    n_test_grids = check_int("n_test_grids", n_test_grids)
    puzzles_per_grid = check_int("puzzles_per_grid", puzzles_per_grid)
    rng = random.Random(seed)
    grids: list[list[int]] = []
    seen: set[tuple[int, ...]] = set()
    tries = 0
    while len(grids) < n_train_grids + n_test_grids:
        tries += 1
        if tries > 100 * (n_train_grids + n_test_grids):
            raise ValueError(
                f"could not find {n_train_grids + n_test_grids} distinct grids of side "
                f"{box_rows * box_cols}: ask for fewer"
            )
        grid = random_grid(box_rows, box_cols, rng)
        if tuple(grid) not in seen:
            seen.add(tuple(grid))
            grids.append(grid)

    def puzzles(chosen: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        shown, solved = [], []
        for grid in chosen:
            for _ in range(puzzles_per_grid):
                puzzle = make_puzzle(grid, box_rows, box_cols, blanks, rng)
                if puzzle is not None:
                    shown.append(puzzle)
                    solved.append(grid)
        if not shown:
            raise ValueError(f"no puzzle with {blanks} blanks has a unique solution")
        return torch.tensor(shown), torch.tensor(solved)

    train = puzzles(grids[:n_train_grids])
    test = puzzles(grids[n_train_grids:])
    return SudokuSplit(*train, *test, box_rows, box_cols)
