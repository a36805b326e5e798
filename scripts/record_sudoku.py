"""Record chapter 5e's Sudoku experiment; resumable, one locked atomic append per finished run.

    .venv/bin/python scripts/record_sudoku.py                        # profile cpu: one core, about two hours
    .venv/bin/python scripts/record_sudoku.py --profile ci --output-dir /tmp/try

Writes ``<output-dir>/sudoku.<profile>.json`` (see ``sharedlib.experiments.sudoku``): a learning-rate sweep at seed 0
for every arm, then the other seeds at each arm's chosen rate. Re-running the same command after an interruption skips
the runs already recorded; a file of other settings or other sharedlib code is refused, and an output that cannot be
written is refused before any work.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch

from sharedlib.experiments import sudoku
from sharedlib.experiments.recorded import check_output


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=tuple(sudoku.SUDOKU_PROFILES), default="cpu")
    parser.add_argument("--output-dir", default="notebooks/results", type=Path)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: small models)")
    parser.add_argument("--allow-mixed", action="store_true",
                        help="add runs to a file written by other sharedlib code (each run records its code hash)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    try:  # before any work
        check_output(args.output_dir / f"{sudoku.SUDOKU_RESULTS_NAME}.{args.profile}.json")
    except (ValueError, OSError) as error:
        parser.error(str(error))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    command = shlex.join([".venv/bin/python", "scripts/record_sudoku.py", *(sys.argv[1:] if argv is None else argv)])
    path = sudoku.run_sudoku(
        args.profile, args.output_dir, command, log=lambda line: print(line, flush=True), allow_mixed=args.allow_mixed
    )
    data = sudoku.load_sudoku(path)
    print(f"{path}: {len(data['runs'])} runs, {data['provenance']['wall_seconds']:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
