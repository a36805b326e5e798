"""Recorded results (``notebooks/results/<name>.<profile>.json``), found wherever sharedlib is installed (6b).

A checkout or editable install reads them beside the package, in ``notebooks/results``; a wheel (``pip install
sharedlib @ git+...``, as on Colab) carries them as package data in ``sharedlib/recorded_results``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .runtime import atomic_write

PROFILES: tuple[str, ...] = ("gpu", "cpu")  # best first: recorded on an accelerator, then on 2 CPU cores


def results_dirs() -> list[Path]:
    """Where recorded results are looked for, in order: the checkout's ``notebooks/results``, then package data."""
    package = Path(__file__).resolve().parent
    return [package.parent / "notebooks" / "results", package / "recorded_results"]


def recorded_path(name: str, profile: str | None = None) -> Path:
    """The file of the best available profile of ``name`` (or of ``profile``); ``FileNotFoundError`` if none."""
    if profile is not None and profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES} or None (best available), got {profile!r}")
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"name must be a recorded result's bare name such as 'decoding', got {name!r}")
    tried = []
    for candidate in (profile,) if profile else PROFILES:
        for folder in results_dirs():
            path = folder / f"{name}.{candidate}.json"
            if path.is_file():
                return path
            tried.append(str(path))
    available = sorted({p.name for folder in results_dirs() if folder.is_dir() for p in folder.glob("*.*.json")})
    raise FileNotFoundError(f"no recorded result {name!r}; looked for {tried}; available: {available}")


def load_recorded(name: str, profile: str | None = None) -> dict[str, Any]:
    """The parsed JSON of a recorded result, with ``"profile"`` and ``"path"`` added (chapter 6b)."""
    path = recorded_path(name, profile)
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or "provenance" not in data or "runs" not in data:
        raise ValueError(f"{path} is not a recorded result: expected a JSON object with 'provenance' and 'runs'")
    return {**data, "profile": path.name.split(".")[-2], "path": str(path)}


def provenance(command: str, device: str, wall_seconds: float) -> dict[str, Any]:
    """Who made a recorded file: command, commit (``+dirty`` when the tree had changes), date, machine, versions."""
    import datetime
    import os
    import platform
    import subprocess

    import torch

    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "unknown"

    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {
        "command": command,
        "commit": commit + ("+dirty" if dirty and dirty != "unknown" else ""),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": device,
        "machine": f"{platform.machine()}, {_cpu_name()}, {os.cpu_count()} logical CPUs",
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],  # 1, 5, 15 min: other work on the machine
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "wall_seconds": round(wall_seconds, 1),
    }


def write_recorded(name: str, profile: str, data: dict[str, Any]) -> Path:
    """Write ``notebooks/results/<name>.<profile>.json`` atomically (a failed run never leaves half a file)."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    path = results_dirs()[0] / f"{name}.{profile}.json"
    return atomic_write(path, lambda file: file.write(json.dumps(data, indent=1) + "\n"))


def _cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else ``platform.processor()`` or 'unknown CPU'."""
    import platform

    info = Path("/proc/cpuinfo")
    for line in info.read_text().splitlines() if info.is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"
