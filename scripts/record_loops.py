"""Record chapter 5d's looped language models; resumable, one locked atomic append per finished run.

    .venv/bin/python scripts/record_loops.py --workers 2                 # profile cpu: 2 cores, about an hour
    .venv/bin/python scripts/record_loops.py --profile ci --output-dir /tmp/try

Writes ``<output-dir>/loops.<profile>.json`` (see ``sharedlib.experiments.loops``): a learning-rate sweep at seed 0,
then every seed at the chosen rates, the conversions and the high-rate arms. Re-running the same command after an
interruption skips the runs already recorded; a file of other settings or other sharedlib code is refused, and an
output that cannot be written is refused before any work.
"""

from __future__ import annotations

import argparse
import sys

import torch
from recording_cli import command_line, parse_recording_args, recording_parser

from sharedlib.experiments import loops


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = recording_parser(__doc__, loops.LOOPS_PROFILES, threads=2)
    parser.add_argument("--workers", type=int, default=1, help="runs trained at once, one thread each (default 1)")
    parser.add_argument("--allow-mixed", action="store_true",
                        help="add runs to a file written by other sharedlib code (each run records its code hash)")
    return parse_recording_args(parser, argv, loops.LOOPS_RESULTS_NAME, positive=("workers", "threads"))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    path = loops.run_loops(
        args.profile, args.output_dir, command_line("record_loops.py", argv), log=lambda line: print(line, flush=True),
        workers=args.workers, allow_mixed=args.allow_mixed,
    )
    data = loops.load_loops(path)
    print(f"{path}: {len(data['runs'])} runs, {data['provenance']['wall_seconds']:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
