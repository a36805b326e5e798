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
import shlex
import sys
from pathlib import Path

import torch

from sharedlib.experiments import why
from sharedlib.experiments.recorded import check_output


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=tuple(why.PROFILES), default="cpu")
    parser.add_argument("--output-dir", default="notebooks/results", type=Path)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (recorded); default 2")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    try:  # before any work
        check_output(args.output_dir / f"{why.WHY_RESULTS_NAME}.{args.profile}.json")
    except (ValueError, OSError) as error:
        parser.error(str(error))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    command = shlex.join(
        [".venv/bin/python", "scripts/record_why_one_block.py", *(sys.argv[1:] if argv is None else argv)])
    path = why.run_why(args.profile, args.output_dir, command, log=lambda line: print(line, flush=True))
    data = why.load_why(path)
    print(f"{path}: {len(data['runs'])} seeds, {data['provenance']['wall_seconds']:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
