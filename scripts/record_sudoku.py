"""Record chapter 5e's Sudoku experiment; resumable, one locked atomic append per finished run.

    .venv/bin/python scripts/record_sudoku.py                        # profile cpu: one core, about two hours
    .venv/bin/python scripts/record_sudoku.py --profile cpu-long                     # 3x the steps, two arms
    .venv/bin/python scripts/record_sudoku.py --profile ci --output-dir /tmp/try

Writes ``<output-dir>/sudoku.cpu.json`` (``sudoku_long.cpu.json`` with cpu-long; see ``sharedlib.experiments.sudoku``):
a learning-rate sweep at seed 0 for every arm, then the other seeds at each arm's chosen rate. Re-running the same
command after an interruption skips the runs already recorded; a file of other settings or other sharedlib code is
refused, and an output that cannot be written is refused before any work.
"""

from __future__ import annotations

import argparse
import sys

import torch
from recording_cli import command_line, parse_recording_args, recording_parser

from sharedlib.experiments import sudoku


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = recording_parser(__doc__, sudoku.SUDOKU_PROFILES, threads=1)
    parser.add_argument("--allow-mixed", action="store_true",
                        help="add runs to a file written by other sharedlib code (each run records its code hash)")
    args = parser.parse_args(argv)
    profile = sudoku.get_sudoku_profile(args.profile)  # the file is named by the profile
    return parse_recording_args(parser, argv, profile.results_name, file_profile=profile.name)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    path = sudoku.run_sudoku(args.profile, args.output_dir, command_line("record_sudoku.py", argv),
                             log=lambda line: print(line, flush=True), allow_mixed=args.allow_mixed)
    data = sudoku.load_sudoku(path)
    print(f"{path}: {len(data['runs'])} runs, {data['provenance']['wall_seconds']:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
