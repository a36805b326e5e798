"""Recorded results load from any directory and from a wheel; their statistics claim only what they show (6b)."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sharedlib.bench import paired_ratio_interval, ratio_sentence
from sharedlib.experiments.recorded import load_recorded, recorded_path

ROOT = Path(__file__).resolve().parents[1]
RECORDED = sorted(p.name for p in (ROOT / "notebooks" / "results").glob("*.*.json"))
LOAD_ALL = ("from sharedlib.experiments.recorded import load_recorded; "
            "print(sorted(load_recorded(n)['profile'] for n in {names}))")


def names() -> list[str]:
    return sorted({name.split(".")[0] for name in RECORDED})


def test_every_recorded_file_has_provenance_and_runs():
    assert {"decoding.cpu.json", "benchmark_encoders.cpu.json"} <= set(RECORDED)
    for name in names():
        data = load_recorded(name)
        assert set(data["provenance"]) >= {"command", "commit", "date", "device", "torch", "python", "threads",
                                           "wall_seconds"}
        assert data["runs"] and Path(data["path"]).parent == ROOT / "notebooks" / "results"


def test_loads_from_another_working_directory(tmp_path):
    code = LOAD_ALL.format(names=names())
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(sorted(load_recorded(n)["profile"] for n in names()))


def test_unknown_names_and_profiles_give_clear_errors():
    with pytest.raises(FileNotFoundError, match=r"no recorded result 'no_such_run'; looked for .*no_such_run\.gpu"):
        load_recorded("no_such_run")
    with pytest.raises(ValueError, match="profile must be one of"):
        recorded_path("decoding", profile="tpu")
    with pytest.raises(ValueError, match="bare name"):
        recorded_path("../decoding")


def test_wheel_carries_the_results_and_the_corpus_and_loads_them_without_a_checkout(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, source / part)
    shutil.copytree(ROOT / "sharedlib", source / "sharedlib", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "notebooks" / "results", source / "notebooks" / "results")
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "-w", str(wheels), "--no-deps",
                    "--no-build-isolation", "-q"], check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = wheels.glob("sharedlib-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packed = {Path(n).name for n in archive.namelist() if n.startswith("sharedlib/recorded_results/")}
        archive.extractall(tmp_path / "site")
    assert set(RECORDED) <= packed
    code = (LOAD_ALL.format(names=names()) + "; import sharedlib.data as d; d.load_text_corpus()"
            "; import sharedlib.experiments.recorded as r; print(r.recorded_path('decoding'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin",
                              **{k: v for k, v in os.environ.items() if k == "SYSTEMROOT"}})
    assert "recorded_results" in out.stdout.splitlines()[-1]  # package data, not the checkout


def test_paired_interval_and_its_sentence():
    faster = paired_ratio_interval([0.5, 0.52, 0.49, 0.51, 0.5], [1.0, 1.01, 0.99, 1.02, 1.0])
    assert faster.high < 1 and faster.median == pytest.approx(0.5, abs=0.01)
    assert ratio_sentence(faster, "the shared model", "the unshared one", "decoded").startswith(
        "the shared model decoded 2.00 times faster")
    noisy = paired_ratio_interval([0.8, 1.3, 0.9, 1.2, 1.0, 1.1], [1.0] * 6)
    assert noisy.low < 1 < noisy.high
    assert ratio_sentence(noisy, "a", "b").startswith("no evidence of a difference")
    slower = paired_ratio_interval([2.0, 2.1, 1.9], [1.0, 1.0, 1.0])
    assert "took 2.00 times as long" in ratio_sentence(slower, "a", "b")
    with pytest.raises(ValueError, match="paired timings of equal length"):
        paired_ratio_interval([1.0, 2.0], [1.0])


def test_recorded_decoding_intervals_are_recomputable_from_the_raw_times():
    for run in load_recorded("decoding")["runs"]:
        raw = run["seconds_per_token"]
        interval = paired_ratio_interval(raw["all"], raw["none"])
        assert run["shared_over_unshared"]["median"] == pytest.approx(interval.median)
        assert run["kv_cache_bytes"]["none"] == run["kv_cache_bytes"]["all"] == (
            2 * run["n_layers"] * run["batch"] * (run["prompt"] + run["new_tokens"]) * run["d_model"] * 4)
    json.dumps(run)  # plain JSON values only
