"""Run the recorded experiments of chapters 6 and 8 at a profile; resumable, one atomic append per finished run.

    .venv/bin/python scripts/run_experiments.py --profile cpu                  # the recorded evidence (2 cores)
    .venv/bin/python scripts/run_experiments.py --profile ci --output-dir /tmp/try --experiments equal-depth
    .venv/bin/python scripts/run_experiments.py --profile cpu --dry-run        # what would run, and how much
    .venv/bin/python scripts/run_experiments.py --profile cpu --suite hops --workers 2   # chapter 6

Writes ``<output-dir>/experiments.<profile>.json`` (see ``sharedlib.experiments.suite``), or with ``--suite hops``
the iterations-and-hops experiment's ``hops.<profile>.json`` (``sharedlib.experiments.hops``).
Re-running the same command after an interruption skips the finished runs; a file written by other sharedlib code
is refused without --allow-mixed. Two commands may write one file at once: each append re-reads it under a lock
and keeps the other's runs (and skips those the other finished). An output that cannot be written is refused
before any work.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections import Counter
from pathlib import Path

import torch

from sharedlib.experiments import hops, suite
from sharedlib.experiments.recorded import check_output


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", required=True, choices=tuple(suite.PROFILES))
    parser.add_argument("--suite", choices=("experiments", "hops"), default="experiments",
                        help="experiments: chapters 6 and 8 (default); hops: iterations and pointer hops (chapter 6)")
    parser.add_argument("--workers", type=int, default=1,
                        help="hops only: runs trained at once, one thread each (default 1)")
    parser.add_argument("--experiments", nargs="+", choices=suite.EXPERIMENTS, default=None,
                        help="default: all (lr-sweep is added whenever another experiment needs it)")
    parser.add_argument("--output-dir", default="notebooks/results", type=Path)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (recorded); default 2")
    parser.add_argument("--allow-mixed", action="store_true",
                        help="add runs to a file written by other sharedlib code (each run records its commit)")
    parser.add_argument("--dry-run", action="store_true", help="list the distinct runs and steps, run nothing")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    if args.suite == "hops" and args.experiments:
        parser.error("--experiments applies to --suite experiments only")
    if args.suite == "experiments" and args.workers != 1:
        parser.error("--workers applies to --suite hops only (the language-model suite trains one run at a time)")
    name = hops.HOPS_RESULTS_NAME if args.suite == "hops" else suite.SUITE_RESULTS_NAME
    try:  # before any work: hours of training must not end in a file that cannot be written
        if not args.dry_run:
            check_output(args.output_dir / f"{name}.{args.profile}.json")
    except (ValueError, OSError) as error:
        parser.error(str(error))
    return args


def dry_run(args: argparse.Namespace) -> None:
    """Distinct runs per experiment and training steps by (kind, depth): the inputs of a time estimate."""
    names = suite.ordered_experiments(args.experiments)
    specs = suite.plan_all(args.profile, names)
    steps = Counter()
    for spec in specs:
        steps[(spec.kind, spec.model.n_layers, spec.rank if spec.kind == "relaxed" else None)] += (
            0 if spec.kind == "svd" else spec.train.steps
        )
    print(f"profile {args.profile}: {len(specs)} distinct runs in {names}")
    for name in names:
        print(f"  {name}: {len(suite.plan_all(args.profile, [name]))} runs")
    for (kind, depth, rank), n in sorted(steps.items(), key=str):
        print(f"  {kind} N={depth}{'' if rank is None else f' r={rank}'}: {n} training steps")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dry_run and args.suite == "hops":
        p = hops.get_hops_profile(args.profile)
        print(f"profile {args.profile}: hops experiment, {p}")
        return 0
    if args.dry_run:
        dry_run(args)
        return 0
    torch.set_num_threads(args.threads)
    command = shlex.join([".venv/bin/python", "scripts/run_experiments.py", *(sys.argv[1:] if argv is None else argv)])
    log = lambda line: print(line, flush=True)  # noqa: E731
    if args.suite == "hops":
        path = hops.run_hops(args.profile, args.output_dir, command, args.allow_mixed, log, args.workers)
    else:
        path = suite.run_experiments(args.profile, args.experiments, args.output_dir, command, args.allow_mixed,
                                     log=log)
    data = suite.load_results(path)
    print(f"{path}: {len(data['runs'])} runs, {data['provenance']['wall_seconds']:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
