"""Execute the book's notebooks with papermill: one command for CI sizes, full sizes and any device.

    python scripts/run_notebooks.py                       # CI profile on CPU/auto: rewrites notebooks/ in place
    python scripts/run_notebooks.py --profile full --device cuda --output-dir out/full
    python scripts/run_notebooks.py 04_counting_parameters --profile smoke --output-dir /tmp/smoke

A notebook runs in memory; its output file is replaced (atomically) only when the run succeeded, so a failed
run leaves the file as it was. After a failure the other notebooks still run; the exit status is 1.
Writing into notebooks/ (the committed outputs) is allowed only with the ci profile and device auto, the
settings nbval compares against, and also refreshes each notebook's Colab install cell from `_config.yml`
strips run-specific metadata and stores figures as palette PNGs, so the committed notebooks stay small and
diffable.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import re
import sys
import time
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
INSTALL_TAG = "colab-install"
INSTALL_TEMPLATE = """\
# Colab / fresh environment: install sharedlib only if it is missing; torch and friends are left as they are.
import importlib.util
import os
import subprocess
import sys

if importlib.util.find_spec("sharedlib") is None:
    source = os.environ.get("SHAREDLIB_SOURCE", "sharedlib @ git+{url}@{branch}")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", source], check=True)"""
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
# The names sharedlib.runtime.resolve_device accepts (kept here so that the script starts without torch).
DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
IN_PLACE = {"profile": "ci", "device": "auto"}  # the only settings allowed to rewrite the committed outputs
PALETTE_COLOURS = 256  # committed figures: 8-bit palette PNGs, a quarter of the size, the same look


def install_cell_source(config_file: Path = ROOT / "_config.yml") -> str:
    """The Colab install cell, built from the repository URL and branch configured in ``_config.yml``."""
    repository = yaml.safe_load(config_file.read_text(encoding="utf-8"))["repository"]
    return INSTALL_TEMPLATE.format(url=repository["url"].rstrip("/") + ".git", branch=repository["branch"])


def notebook_paths(names: list[str] | None = None) -> list[Path]:
    """The chapters' notebooks, or those named (stem or file name); ``ValueError`` for an unknown name."""
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    if names:
        elsewhere = [n for n in names if Path(n).parent != Path(".") and Path(n).resolve().parent != NOTEBOOKS]
        if elsewhere:  # a file outside notebooks/ would otherwise run the book's chapter of the same name
            raise ValueError(f"this script runs the book's chapters in {NOTEBOOKS}; {elsewhere} lie elsewhere: "
                             "name chapters by stem (e.g. 04_counting_parameters), or run other notebooks with "
                             "papermill")
        wanted = {Path(n).stem for n in names}
        unknown = sorted(wanted - {p.stem for p in paths})
        if unknown:
            raise ValueError(f"unknown notebooks {unknown}; notebooks must be among {[p.stem for p in paths]}")
        paths = [p for p in paths if p.stem in wanted]
    return paths


def load_profiles() -> dict:
    """``notebooks/profiles.yml``: per profile, per notebook, the parameters that override the defaults."""
    return yaml.safe_load((NOTEBOOKS / "profiles.yml").read_text(encoding="utf-8"))


def profile_parameters(profile: str, notebook: str, device: str) -> dict:
    """Parameters to inject: the profile's overrides, plus ``device`` unless it is the default "auto"."""
    profiles = load_profiles()
    if profile not in profiles:
        raise ValueError(f"profile must be one of {sorted(profiles)}, got {profile!r}")
    parameters = dict((profiles[profile] or {}).get(notebook, {}))
    if device != "auto":
        parameters["device"] = device
    return parameters


def refresh_install_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Set the notebook's Colab install cell (in memory) from ``_config.yml``."""
    for cell in nb.cells:
        if INSTALL_TAG in cell.metadata.get("tags", []):
            cell.source = install_cell_source()
    return nb


def strip_run_metadata(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop papermill timings, widget state and editor metadata (in memory), which change on every run."""
    for key in ("papermill", "widgets", "jupytext"):
        nb.metadata.pop(key, None)
    nb.metadata["kernelspec"] = KERNELSPEC
    for cell in nb.cells:
        for key in ("papermill", "execution"):
            cell.metadata.pop(key, None)
    return nb


def palette_png(png: bytes, colours: int = PALETTE_COLOURS) -> bytes:
    """``png`` re-encoded with a palette of ``colours`` (transparency kept); the original if that is not smaller."""
    from PIL import Image

    image = Image.open(io.BytesIO(png))
    out = io.BytesIO()
    image.convert("RGBA").quantize(colors=colours, method=Image.Quantize.FASTOCTREE).save(out, "PNG", optimize=True)
    return out.getvalue() if out.tell() < len(png) else png


def compress_figures(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Re-encode every PNG output of ``nb`` (in memory) with ``palette_png``."""
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" in data:
                data["image/png"] = base64.b64encode(palette_png(base64.b64decode(data["image/png"]))).decode()
    return nb


def is_notebooks_dir(directory: Path) -> bool:
    """Whether ``directory`` is ``notebooks/`` however it is spelled (relative, symlink, ``..``)."""
    if directory.resolve() == NOTEBOOKS.resolve():
        return True
    return directory.is_dir() and NOTEBOOKS.is_dir() and os.path.samefile(directory, NOTEBOOKS)


def execute_notebook(nb: nbformat.NotebookNode, parameters: dict) -> nbformat.NotebookNode:
    """Run one notebook with papermill in memory (cwd ``notebooks/``); raises if a cell fails, writes nothing."""
    import papermill

    return papermill.execute_notebook(
        nb,
        None,
        parameters=parameters or None,
        cwd=str(NOTEBOOKS),
        progress_bar=False,
        kernel_name="python3",
    )


def write_atomically(nb: nbformat.NotebookNode, target: Path) -> None:
    """Write ``nb`` over ``target`` with ``sharedlib.runtime.atomic_write``: a temporary file beside it, renamed in
    one step under an inter-process lock, so a failed or concurrent run never leaves half a notebook (LF line ends
    on every platform)."""
    from sharedlib.runtime import atomic_write  # here, so that the script starts without importing torch

    def write(file: io.BufferedWriter) -> None:
        text = io.StringIO()
        nbformat.write(nb, text)
        file.write(text.getvalue().encode("utf-8"))

    atomic_write(target, write, binary=True)


# What nbval never compares (its defaults, kept here so that --compare applies the same rules to a GPU run).
NOT_COMPARED = {"image/png", "image/jpeg", "application/vnd.jupyter.widget-view+json"}
IGNORE_TAGS = {"nbval-ignore-output", "nbval-skip"}


def comparable_outputs(cell: nbformat.NotebookNode) -> list[tuple[str, str]]:
    """A code cell's outputs as (kind, text) pairs, streams joined, as nbval compares them."""
    pairs: list[tuple[str, str]] = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            if pairs and pairs[-1][0] == output.name:
                pairs[-1] = (output.name, pairs[-1][1] + output.text)
            else:
                pairs.append((output.name, output.text))
        for kind, value in output.get("data", {}).items():
            if kind not in NOT_COMPARED:
                pairs.append((kind, value if isinstance(value, str) else str(value)))
    return pairs


def compare_with_committed(executed: nbformat.NotebookNode, committed: nbformat.NotebookNode) -> list[str]:
    """Differences beyond the outputs' precision (``output_precision``), cell by cell; live-training cells skipped."""
    from output_precision import first_difference

    cells = [(a, b) for a, b in zip(executed.cells, committed.cells, strict=True) if b.cell_type == "code"]
    problems = []
    for number, (new, old) in enumerate(cells):
        if IGNORE_TAGS & set(old.metadata.get("tags", [])) or INSTALL_TAG in old.metadata.get("tags", []):
            continue
        ours, theirs = comparable_outputs(new), comparable_outputs(old)
        if [k for k, _ in ours] != [k for k, _ in theirs]:
            problems.append(f"cell {number}: outputs {[k for k, _ in ours]} vs committed {[k for k, _ in theirs]}")
            continue
        for (kind, text), (_, reference) in zip(ours, theirs, strict=True):
            difference = first_difference(reference, text)
            if difference:
                problems.append(f"cell {number} ({kind}): {difference}")
    return problems


def run_one(path: Path, output: Path, parameters: dict, in_place: bool) -> float:
    """Execute ``path`` and write it to ``output`` only if every cell ran; returns the wall time in seconds."""
    start = time.perf_counter()
    nb = nbformat.read(path, as_version=4)
    if in_place:
        refresh_install_cell(nb)
    executed = execute_notebook(nb, parameters)
    if in_place:
        strip_run_metadata(executed)
        compress_figures(executed)
    else:
        executed.metadata.papermill.update(input_path=str(path), output_path=str(output))
    write_atomically(executed, output)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="notebook stems to run (default: all)")
    parser.add_argument("--profile", default="ci", help="ci, smoke or full (see notebooks/profiles.yml)")
    parser.add_argument("--device", default="auto", help="auto, cpu, mps, cuda or cuda:N")
    parser.add_argument("--output-dir", type=Path, default=NOTEBOOKS, help="where executed notebooks go")
    parser.add_argument("--compare", action="store_true",
                        help="compare each executed notebook with the committed one at the outputs' precision, as "
                             "nbval does (ci profile only; e.g. --device cuda on a GPU runner)")
    args = parser.parse_args(argv)
    profiles = load_profiles()
    if args.profile not in profiles:
        parser.error(f"--profile must be one of {sorted(profiles)}, got {args.profile!r}")
    if not DEVICE.fullmatch(args.device):
        parser.error(f"--device must be auto, cpu, mps, cuda or cuda:N, got {args.device!r}")
    try:
        paths = notebook_paths(args.notebooks)
    except ValueError as error:
        parser.error(str(error))
    if args.output_dir.exists() and not args.output_dir.is_dir():
        parser.error(f"--output-dir {args.output_dir} exists and is not a directory")
    in_place = is_notebooks_dir(args.output_dir)
    if in_place and {"profile": args.profile, "device": args.device} != IN_PLACE:
        parser.error(
            f"--profile {args.profile} --device {args.device} would overwrite the committed notebooks with "
            f"outputs that nbval does not expect; notebooks/ is rewritten only with --profile ci --device auto. "
            f"Use --output-dir DIR for other settings."
        )
    if args.compare and (args.profile != IN_PLACE["profile"] or in_place):
        parser.error(f"--compare needs --profile {IN_PLACE['profile']} (the committed outputs' sizes) and an "
                     f"--output-dir other than notebooks/, got --profile {args.profile}")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    failed, mismatched = [], []
    for path in paths:
        output = args.output_dir / path.name
        settings = f"{args.profile}, device={args.device}"
        try:
            seconds = run_one(path, output, profile_parameters(args.profile, path.stem, args.device), in_place)
        except Exception as error:  # report, keep the old file, go on with the other notebooks
            failed.append(path.stem)
            print(f"{path.stem}: FAILED ({settings}); {output} left unchanged\n{error}", file=sys.stderr)
            continue
        print(f"{path.stem}: {seconds:.1f} s ({settings}) -> {output}", file=sys.stderr)
        if args.compare:
            problems = compare_with_committed(nbformat.read(output, as_version=4), nbformat.read(path, as_version=4))
            for problem in problems:
                print(f"{path.stem}: {problem}", file=sys.stderr)
            if problems:
                mismatched.append(path.stem)
    if mismatched:
        print(f"outputs beyond their precision: {', '.join(mismatched)}", file=sys.stderr)
    if failed:
        print(f"failed: {', '.join(failed)} (their output files were not touched)", file=sys.stderr)
        return 1
    return 1 if mismatched else 0


if __name__ == "__main__":
    raise SystemExit(main())
