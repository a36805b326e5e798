"""Train one arm of the pointer-chain experiment at a given size and print what it learned: a probe for sizing.

    .venv/bin/python scripts/probe_hops.py --strategy all --depth fixed --steps 1500 --lr 3e-3
    .venv/bin/python scripts/probe_hops.py --d-model 64 --layers 4 --train-hops 4 --length 32 --iterations 4 8 16

Starts from a profile of ``sharedlib.experiments.hops`` (``--profile``, default cpu), replaces the sizes given,
trains seed 0 of one arm on one thread (``--threads``) and prints the training time, the selection-set loss and
the accuracy per hop count on the trained-range and beyond test sets, beside the guesses that follow 0 and 1 pointer and
take the nearest root (``hops.ancestor_guess``). Nothing is written.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from sharedlib.experiments import hops

SIZES = {  # option -> HopsProfile field
    "d_model": int, "n_heads": int, "d_ff": int, "n_layers": int, "batch_size": int, "length": int,
    "max_offset": int, "train_hops": int, "steps": int, "warmup": int, "test_examples": int,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=tuple(hops.HOPS_PROFILES), default="cpu")
    parser.add_argument("--strategy", choices=("none", "all"), default="all")
    parser.add_argument("--depth", choices=hops.DEPTHS, default="fixed")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--iterations", type=int, nargs="+", default=None,
                        help="looped arms: iterations tested (default N, 2N, 4N)")
    aliases = {"n_heads": "heads", "n_layers": "layers", "batch_size": "batch"}
    for name, kind in SIZES.items():
        parser.add_argument(f"--{aliases.get(name, name).replace('_', '-')}", dest=name, type=kind, default=None)
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.depth == "random" and args.strategy != "all":
        parser.error("--depth random needs --strategy all")
    return args


def probe_profile(args: argparse.Namespace) -> hops.HopsProfile:
    """The named profile with the sizes given on the command line."""
    p = hops.get_hops_profile(args.profile)
    changed = {name: getattr(args, name) for name in SIZES if getattr(args, name) is not None}
    p = replace(p, **{k: v for k, v in changed.items() if k != "steps"})
    if "steps" in changed:
        p = hops.replace_steps(p, changed["steps"])
    iterations = tuple(args.iterations or (p.n_layers, 2 * p.n_layers, 4 * p.n_layers))
    return replace(p, test_iterations=iterations, eval_every=p.steps, eval_batches=min(p.eval_batches, 4), seeds=1)


def table(record: dict, baselines: dict) -> list[str]:
    """One line per (test set, iterations): accuracy per hop count, after the guesses of 0 and 1 pointers."""
    lines = []
    for name in ("trained", "beyond"):
        guesses = baselines["ancestor_guess"][name]
        lines.append(f"  {name:7} hops      " + " ".join(f"{r['hops']:5d}" for r in guesses[0]["by_hops"]))
        for row in guesses[:2]:
            accuracy = " ".join(f"{r['accuracy']:5.2f}" for r in row["by_hops"])
            lines.append(f"  {'':7} guess {row['steps']}   {accuracy}")
        for row in record["tests"]:
            if row["test_set"] == name:
                accuracy = " ".join(f"{r['accuracy']:5.2f}" for r in row["by_hops"])
                lines.append(f"  {'':7} k={row['iterations']:<3d}    {accuracy}   loss {row['loss']:.3f}")
    return lines


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    p = probe_profile(args)
    start = time.perf_counter()
    record = hops.execute_arm(p, args.strategy, args.depth, args.lr, 0)
    seconds = time.perf_counter() - start
    print(f"{record['label']}: d_model {p.d_model}, heads {p.n_heads}, d_ff {p.d_ff}, N {p.n_layers}, "
          f"batch {p.batch_size}, length {p.length}, max_offset {p.max_offset}, L {p.train_hops}, "
          f"steps {p.steps}, lr {args.lr:g}, {record['parameters']} parameters")
    if record["status"] != "ok":
        print(f"  diverged: {record['error']}")
        return
    print(f"  {seconds:.1f} s in all on {args.threads} thread(s), train loss {record['train_loss']:.3f}, "
          f"select loss {record['select_loss']:.3f}, mean iterations {record['mean_iterations']:.2f}")
    print("\n".join(table(record, hops.shortcut_baselines(p))))


if __name__ == "__main__":
    main()
