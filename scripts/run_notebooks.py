"""Execute the book's notebooks with papermill: one command for CI sizes, full sizes and any device.

    python scripts/run_notebooks.py                       # CI profile on CPU/auto: rewrites notebooks/ in place
    python scripts/run_notebooks.py --profile full --device cuda --output-dir out/full
    python scripts/run_notebooks.py 04_counting_parameters --profile smoke --output-dir /tmp/smoke

Writing into notebooks/ also refreshes each notebook's Colab install cell from `_config.yml` and strips
run-specific metadata, so the committed notebooks stay small and diffable.
"""

from __future__ import annotations

import argparse
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


def install_cell_source(config_file: Path = ROOT / "_config.yml") -> str:
    """The Colab install cell, built from the repository URL and branch configured in ``_config.yml``."""
    repository = yaml.safe_load(config_file.read_text())["repository"]
    return INSTALL_TEMPLATE.format(url=repository["url"].rstrip("/") + ".git", branch=repository["branch"])


def notebook_paths(names: list[str] | None = None) -> list[Path]:
    """The chapters' notebooks, or those named (stem or file name)."""
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    if names:
        wanted = {Path(n).stem for n in names}
        paths = [p for p in paths if p.stem in wanted]
        if len(paths) != len(wanted):
            raise SystemExit(f"unknown notebooks: {sorted(wanted - {p.stem for p in paths})}")
    return paths


def profile_parameters(profile: str, notebook: str, device: str) -> dict:
    """Parameters to inject: the profile's overrides, plus ``device`` unless it is the default "auto"."""
    profiles = yaml.safe_load((NOTEBOOKS / "profiles.yml").read_text())
    if profile not in profiles:
        raise SystemExit(f"profile must be one of {sorted(profiles)}, got {profile!r}")
    parameters = dict((profiles[profile] or {}).get(notebook, {}))
    if device != "auto":
        parameters["device"] = device
    return parameters


def refresh_install_cell(path: Path) -> None:
    """Rewrite the notebook's Colab install cell from ``_config.yml``."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if INSTALL_TAG in cell.metadata.get("tags", []):
            cell.source = install_cell_source()
    nbformat.write(nb, path)


KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def strip_run_metadata(path: Path) -> None:
    """Drop papermill timings, widget state and editor metadata, which change on every run; name the kernel."""
    nb = nbformat.read(path, as_version=4)
    for key in ("papermill", "widgets", "jupytext"):
        nb.metadata.pop(key, None)
    nb.metadata["kernelspec"] = KERNELSPEC
    for cell in nb.cells:
        for key in ("papermill", "execution"):
            cell.metadata.pop(key, None)
    nbformat.write(nb, path)


def execute(path: Path, output: Path, parameters: dict) -> float:
    """Run one notebook with papermill; returns its wall time in seconds."""
    import papermill

    start = time.perf_counter()
    papermill.execute_notebook(
        str(path),
        str(output),
        parameters=parameters or None,
        cwd=str(NOTEBOOKS),
        progress_bar=False,
        kernel_name="python3",
    )
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="notebook stems to run (default: all)")
    parser.add_argument("--profile", default="ci", help="ci, smoke or full (see notebooks/profiles.yml)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--output-dir", type=Path, default=NOTEBOOKS, help="where executed notebooks go")
    args = parser.parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    in_place = args.output_dir.resolve() == NOTEBOOKS.resolve()
    for path in notebook_paths(args.notebooks):
        if in_place:
            refresh_install_cell(path)
        output = args.output_dir / path.name
        seconds = execute(path, output, profile_parameters(args.profile, path.stem, args.device))
        if in_place:
            strip_run_metadata(output)
        print(f"{path.stem}: {seconds:.1f} s ({args.profile}, device={args.device}) -> {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
