"""The command line the recording scripts share: profile, output folder, threads, and the output checked before
any work (``record_why_one_block.py``, ``record_loops.py``, ``record_sudoku.py``)."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Iterable
from pathlib import Path

from sharedlib.experiments.recorded import check_output


def recording_parser(doc: str, profiles: Iterable[str], threads: int) -> argparse.ArgumentParser:
    """--profile (default cpu), --output-dir and --threads (default ``threads``), described by ``doc``'s first line."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--profile", choices=tuple(profiles), default="cpu")
    parser.add_argument("--output-dir", default="notebooks/results", type=Path)
    parser.add_argument("--threads", type=int, default=threads, help=f"torch threads (default {threads})")
    return parser


def parse_recording_args(
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
    results_name: str,
    positive: Iterable[str] = ("threads",),
    file_profile: str | None = None,
) -> argparse.Namespace:
    """Parse; the ``positive`` options must be >= 1 and ``<output-dir>/<results_name>.<profile>.json`` writable
    (``file_profile`` in place of --profile where the file is named otherwise), else exit before any work."""
    args = parser.parse_args(argv)
    for name in positive:
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    try:
        check_output(args.output_dir / f"{results_name}.{file_profile or args.profile}.json")
    except (ValueError, OSError) as error:
        parser.error(str(error))
    return args


def command_line(script: str, argv: list[str] | None) -> str:
    """The command as the provenance records it."""
    return shlex.join([".venv/bin/python", f"scripts/{script}", *(sys.argv[1:] if argv is None else argv)])
