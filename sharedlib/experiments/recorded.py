"""Recorded results (``notebooks/results/<name>.<profile>.json``), found wherever
sharedlib is installed (chapter 6b).

A checkout or editable install reads them beside the package, in ``notebooks/results``;
a wheel (``pip install sharedlib @ git+...``, as on Colab) carries them as package data
in ``sharedlib/recorded_results``.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..runtime import atomic_write, file_lock, unwritable_reason
from ..validation import check_choice

__all__ = [
    "append_run",
    "check_output",
    "check_resumable",
    "load_recorded",
    "provenance",
    "read_validated",
    "recorded_file",
    "recorded_path",
    "replacement_problem",
    "results_dirs",
    "run_list_problems",
    "write_recorded",
    "write_validated",
]

# best first: recorded on an accelerator, then on 2 CPU cores
PROFILE_PREFERENCE: tuple[str, ...] = ("gpu", "cpu")
# the settings a refusal names, when present
_SHOWN = ("size", "batch", "seq", "prompt", "new_tokens", "repeats")


def results_dirs() -> list[Path]:
    """Where recorded results are looked for, in order: the checkout's
    ``notebooks/results``, then package data."""
    # sharedlib/, this module being sharedlib/experiments/recorded.py
    package = Path(__file__).resolve().parents[1]
    return [package.parent / "notebooks" / "results", package / "recorded_results"]


def _check_name(name: str) -> None:
    """Refuse anything but a recorded result's bare name (no folder, no leading dot)."""
    if (
        not isinstance(name, str)
        or not name
        or "/" in name
        or "\\" in name
        or name.startswith(".")
    ):
        raise ValueError(
            "name must be a recorded result's bare name such as 'decoding', "
            f"got {name!r}"
        )


def recorded_path(name: str, profile: str | None = None) -> Path:
    """The file of the best available profile of ``name`` (or of ``profile``);
    ``FileNotFoundError`` if none."""
    if profile is not None and profile not in PROFILE_PREFERENCE:
        raise ValueError(
            f"profile must be one of {PROFILE_PREFERENCE} or None (best available), "
            f"got {profile!r}"
        )
    _check_name(name)
    tried = []
    for candidate in (profile,) if profile else PROFILE_PREFERENCE:
        for folder in results_dirs():
            path = folder / f"{name}.{candidate}.json"
            if path.is_file():
                return path
            tried.append(str(path))
    available = sorted(
        {
            p.name
            for folder in results_dirs()
            if folder.is_dir()
            for p in folder.glob("*.*.json")
        }
    )
    raise FileNotFoundError(
        f"no recorded result {name!r}; looked for {tried}; available: {available}"
    )


def load_recorded(name: str, profile: str | None = None) -> dict[str, Any]:
    """The parsed JSON of a recorded result, with ``"profile"`` and ``"path"`` added
    (chapter 6b)."""
    path = recorded_path(name, profile)
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or "provenance" not in data or "runs" not in data:
        raise ValueError(
            f"{path} is not a recorded result: expected a JSON object with "
            "'provenance' and 'runs'"
        )
    return {**data, "profile": path.name.split(".")[-2], "path": str(path)}


def provenance(command: str, device: str, wall_seconds: float) -> dict[str, Any]:
    """Who made a recorded file: command, commit (``+dirty`` when the tree had changes),
    date, machine, versions."""
    root = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "unknown"

    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {
        "command": command,
        "commit": commit + ("+dirty" if dirty and dirty != "unknown" else ""),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M UTC"
        ),
        "device": device,
        "machine": (
            f"{platform.machine()}, {_cpu_name()}, {os.cpu_count()} logical CPUs"
        ),
        # 1, 5, 15 min: other work on the machine
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "wall_seconds": round(wall_seconds, 1),
    }


def recorded_file(name: str, profile: str) -> Path:
    """Where ``write_recorded`` puts ``name`` at ``profile`` by default: the checkout's
    ``notebooks/results``."""
    check_choice("profile", profile, PROFILE_PREFERENCE)
    _check_name(name)
    return results_dirs()[0] / f"{name}.{profile}.json"


def check_output(path: str | Path) -> Path:
    """Raise before any work if ``path`` cannot be written: a directory, under a file,
    or in a read-only folder."""
    path = Path(path)
    reason = unwritable_reason(path)
    if reason is None:
        return path
    if path.is_dir():
        raise ValueError(
            f"output {path} is a directory; name a .json file in it instead"
        )
    raise (PermissionError if "not writable" in reason else ValueError)(
        f"output {reason}"
    )


def _settings(run: Mapping[str, Any]) -> dict[str, Any]:
    """A run's plain settings (numbers and strings): what was measured, how often."""
    return {k: v for k, v in run.items() if isinstance(v, (str, int, float, bool))}


def replacement_problem(
    path: str | Path, runs: Sequence[Mapping[str, Any]]
) -> str | None:
    """Why replacing the recorded file ``path`` by ``runs`` would lose results (None
    when it would not): fewer runs, a run of the file measured by none of ``runs``
    (settings other than ``repeats`` equal), or fewer repeats."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        old, made = [_settings(r) for r in data["runs"]], data.get("provenance", {})
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        return (
            f"{path} exists but is not a readable recorded result "
            f"({type(error).__name__}: {error}); pass --force (force=True) to replace "
            "it, or write elsewhere with --output"
        )
    new = [_settings(r) for r in runs]
    lost = []
    for run in old:
        same = [
            n
            for n in new
            if all(n[k] == v for k, v in run.items() if k in n and k != "repeats")
        ]
        if not same or max(n.get("repeats", 0) for n in same) < run.get("repeats", 0):
            lost.append(", ".join(f"{k}={v}" for k, v in run.items() if k in _SHOWN))
    if len(new) >= len(old) and not lost:
        return None

    def repeats(settings: list[dict[str, Any]]) -> str:
        return ", ".join(sorted({str(r.get("repeats", "?")) for r in settings}))

    return (
        f"{path} holds {len(old)} runs (repeats {repeats(old)}; made by "
        f"{made.get('command', '?')!r} on {made.get('date', '?')}); the new result has "
        f"{len(new)} (repeats {repeats(new)}) and would lose "
        f"{'; '.join(lost[:4]) or 'runs'}{' ...' if len(lost) > 4 else ''}. Pass "
        "--force (force=True) to replace it anyway, or write elsewhere with --output"
    )


def write_recorded(
    name: str,
    profile: str,
    data: dict[str, Any],
    force: bool = False,
    path: str | Path | None = None,
) -> Path:
    """Write ``data`` to ``path`` (default ``recorded_file(name, profile)``) atomically,
    under its lock; a file it would shrink (``replacement_problem``) is refused with
    ``FileExistsError`` unless ``force``."""
    default = recorded_file(name, profile)  # checks name and profile either way
    target = check_output(default if path is None else path)
    with file_lock(target):
        problem = None if force else replacement_problem(target, data["runs"])
        if problem:
            raise FileExistsError(problem)
        return atomic_write(
            target, lambda file: file.write(json.dumps(data, indent=1) + "\n")
        )


def _cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else ``platform.processor()``
    or 'unknown CPU'."""
    info = Path("/proc/cpuinfo")
    for line in info.read_text().splitlines() if info.is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def read_validated(path: str | Path, validate: Callable[[Any], None]) -> dict[str, Any]:
    """The JSON object in ``path``, checked by ``validate`` (``ValueError`` naming the
    problems, or the JSON error)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from error
    validate(data)
    return data


def write_validated(
    path: str | Path, data: Mapping[str, Any], validate: Callable[[Any], None]
) -> None:
    """Check ``data`` with ``validate``, then write it atomically as JSON (no NaN)."""
    validate(data)

    def dump(file: Any) -> None:
        json.dump(data, file, indent=1, allow_nan=False)
        file.write("\n")

    atomic_write(path, dump)


def append_run(
    path: str | Path,
    record: dict[str, Any],
    key: Callable[[Mapping[str, Any]], Any],
    load: Callable[[Path], dict[str, Any]],
    write: Callable[[Path, Mapping[str, Any]], None],
    fresh: Mapping[str, Any],
    command: str,
    device: str,
    seconds: float,
) -> dict[str, Any]:
    """Under ``path``'s lock: re-read it (``fresh`` if absent), add ``record`` unless a
    run with its ``key`` is there, update the provenance (this command, every run's code
    hash, wall seconds: ``seconds`` or the file's if larger) and write atomically."""
    path = Path(path)
    with file_lock(path):  # re-read: keep what another command wrote meanwhile
        data = load(path) if path.exists() else json.loads(json.dumps(fresh))
        if key(record) not in {key(r) for r in data["runs"]}:
            data["runs"].append(record)
        previous = data["provenance"]
        hashes = sorted({r["sharedlib_hash"] for r in data["runs"]})
        commands = previous.get("commands", [])
        data["provenance"] = {
            **provenance(
                command, device, max(seconds, float(previous.get("wall_seconds", 0)))
            ),
            "sharedlib_hash": hashes[0] if len(hashes) == 1 else "mixed",
            "sharedlib_hashes": hashes,
            "commands": commands + ([] if command in commands else [command]),
        }
        write(path, data)
    return data


def run_list_problems(
    data: Any, name: str, allowed: Sequence[str] | None = None
) -> list[str]:
    """What is wrong with a results file of runs keyed by (``name``, lr, seed): a
    missing top-level key, a run without those fields and a status, an unknown
    ``name`` (when ``allowed`` is given) or status, a key recorded twice."""
    if not isinstance(data, dict):
        return [f"a results file must be a JSON object, got {type(data)}"]
    problems = [
        f"{key}: missing"
        for key in ("provenance", "profile", "profile_settings", "runs")
        if key not in data
    ]
    keys = set()
    for i, run in enumerate(data.get("runs", [])):
        fields = (name, "seed", "lr", "status")
        if not isinstance(run, dict) or not all(k in run for k in fields):
            problems.append(f"runs[{i}]: not a run record with {fields}")
            continue
        if allowed is not None and run[name] not in allowed:
            problems.append(f"runs[{i}].{name}: {run[name]!r} is not one of {allowed}")
        if run["status"] not in ("ok", "diverged"):
            problems.append(f"runs[{i}].status: {run['status']!r}")
        key = (run[name], float(run["lr"]), run["seed"])
        if key in keys:
            problems.append(f"runs[{i}]: {key} recorded twice")
        keys.add(key)
    return problems


def check_resumable(
    path: str | Path,
    data: Mapping[str, Any],
    settings: Mapping[str, Any],
    code: str,
    allow_mixed: bool,
) -> None:
    """``ValueError`` unless the recorded ``data`` of ``path`` has these top-level
    ``settings`` and was written by sharedlib code ``code`` (or ``allow_mixed``)."""
    differ = [k for k, v in settings.items() if data[k] != json.loads(json.dumps(v))]
    prov = data["provenance"]
    hashes = prov.get("sharedlib_hashes") or [prov.get("sharedlib_hash")]
    if code not in hashes and not allow_mixed:
        differ.append("sharedlib code (allow_mixed adds to it)")
    if differ:
        raise ValueError(
            f"{path} was recorded with other {', '.join(differ)}; write to another "
            "output_dir"
        )
