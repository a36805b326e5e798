"""Record chapter 5c's measurements on several seeds at a size that learns; resumable, one atomic append per seed.

    .venv/bin/python scripts/record_why_one_block.py                       # profile cpu: 5 seeds, 2 cores
    .venv/bin/python scripts/record_why_one_block.py --profile ci --output-dir /tmp/try

Writes ``<output-dir>/why_one_block.<profile>.json`` (see ``sharedlib.experiments.why``). Re-running the same command
after an interruption skips the seeds already recorded; a complete file is left as it is (nothing is overwritten),
and a file of other settings or other sharedlib code is refused. An output that cannot be written is refused before
any work.
"""

from __future__ import annotations

import argparse
import sys

import torch
from recording_cli import command_line, parse_recording_args, recording_parser

from sharedlib.experiments import why


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = recording_parser(__doc__, why.PROFILES, threads=2)
    return parse_recording_args(parser, argv, why.WHY_RESULTS_NAME)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    command = command_line("record_why_one_block.py", argv)
    path = why.run_why(args.profile, args.output_dir, command, log=lambda line: print(line, flush=True))
    data = why.load_why(path)
    print(f"{path}: {len(data['runs'])} seeds, {data['provenance']['wall_seconds']:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
