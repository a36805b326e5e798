"""Concurrent writers of one file, in real processes: no writer dies, no reader sees half a file, no run is lost
(``runtime.atomic_write``, ``runtime.file_lock``, ``suite.merge_results``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from sharedlib import runtime
from sharedlib.experiments import hops, suite

ROOT = Path(__file__).resolve().parents[1]
TINY = replace(suite.PROFILES["ci"], name="ci", strategies=("none", "all"), max_grid_extensions=0)  # as in test_suite

WRITER = """
import json, sys
from sharedlib.runtime import atomic_write
path, name, times = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(times):
    data = {"writer": name, "i": i, "payload": [name * 50] * 2000}  # ~200 kB: a write takes many syscalls
    atomic_write(path, lambda file: json.dump(data, file))
"""

COUNTER = """
import sys
from pathlib import Path
from sharedlib.runtime import file_lock
path, times = Path(sys.argv[1]), int(sys.argv[2])
for _ in range(times):
    with file_lock(path):
        value = int(path.read_text()) if path.exists() else 0
        path.write_text(str(value + 1))  # a plain read-modify-write: only the lock keeps it whole
"""

HOLDER = """
import sys, time
from sharedlib.runtime import file_lock
with file_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""

# A run_experiments command whose runs take 0.1 s each: what matters here is how they reach the file.
RUNNER = """
import sys
from dataclasses import replace
from pathlib import Path
from sharedlib.experiments import suite
from test_concurrent_writes import fake_execute

suite.execute_run = fake_execute
suite.window_baselines = lambda profile: {"unigram": 1.0}
tiny = replace(suite.PROFILES["ci"], name="ci", strategies=("none", "all"), max_grid_extensions=0)
suite.run_experiments(tiny, sys.argv[2].split(","), Path(sys.argv[1]), command=sys.argv[2])
"""


def fake_execute(spec: suite.RunSpec, trained: dict | None = None) -> dict:
    """A valid record of ``spec`` after 0.1 s (the smallest lr wins the sweep), instead of training."""
    time.sleep(0.1)
    loss = 1.0 + spec.seed / 10 + spec.train.lr
    return {"experiment": spec.experiment, "label": spec.label, "strategy": spec.model.strategy, "seed": spec.seed,
            "data": "fake", "parameters": 1, "flops_per_token": 1, "steps": spec.train.steps, "tokens": 1,
            "lr": spec.train.lr, "train_loss": loss, "val_loss": loss, "curve": [[spec.train.steps, loss, loss]],
            "model_config": {}, "train_config": {}, "kind": spec.kind, "status": "ok", "wall_seconds": 0.1}


def _spawn(code: str, *args: object) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _finish(processes: list[subprocess.Popen], timeout: float = 240) -> None:
    for process in processes:
        _, err = process.communicate(timeout=timeout)
        assert process.returncode == 0, err[-3000:]


def _read_until_done(path: Path, processes: list[subprocess.Popen], load) -> int:
    """Read ``path`` with ``load`` until every process ends; returns the number of complete reads."""
    reads = 0
    while any(p.poll() is None for p in processes):
        try:
            load(path)
        except FileNotFoundError:
            continue  # before the first write
        reads += 1
        time.sleep(0.002)
    return reads


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_concurrent_atomic_writes_never_fail_or_show_half_a_file(tmp_path):
    path = tmp_path / "shared.json"
    writers = [_spawn(WRITER, path, name, 40) for name in "abc"]
    reads = _read_until_done(path, writers, lambda p: json.loads(p.read_text()))  # raises on half a file
    _finish(writers)
    data = json.loads(path.read_text())
    assert data["i"] == 39 and data["writer"] in "abc" and reads > 0
    assert _leftovers(tmp_path) == []  # no temporary file and no lock file left behind


def test_the_lock_serialises_read_modify_write_across_processes(tmp_path):
    path = tmp_path / "counter.txt"
    _finish([_spawn(COUNTER, path, 50) for _ in range(3)])
    assert path.read_text() == "150" and _leftovers(tmp_path) == []


def test_a_held_lock_times_out_with_a_message_naming_the_file(tmp_path):
    path = tmp_path / "busy.json"
    holder = _spawn(HOLDER, path, 30)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(TimeoutError, match=r"\.busy\.json\.lock"):
            with runtime.file_lock(path, timeout=0.3):
                pass
    finally:
        holder.kill()
        holder.communicate()
    with runtime.file_lock(path, timeout=5):  # a killed holder's lock is free again
        pass


def test_file_lock_is_reentrant_and_atomic_write_inside_it_does_not_deadlock(tmp_path):
    path = tmp_path / "a.json"
    with runtime.file_lock(path), runtime.file_lock(path):
        runtime.atomic_write(path, lambda file: file.write("{}"))
        assert runtime.lock_path(path).exists()
    assert path.read_text() == "{}" and _leftovers(tmp_path) == []


@pytest.mark.skipif(os.name == "nt", reason="POSIX modes")
def test_a_replaced_file_keeps_its_mode(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("{}")
    path.chmod(0o640)
    runtime.atomic_write(path, lambda file: file.write("[]"))
    assert path.read_text() == "[]" and path.stat().st_mode & 0o777 == 0o640


def test_a_failed_check_of_the_new_file_keeps_the_old_one(tmp_path):
    path = tmp_path / "checked.json"
    path.write_text('{"good": true}')

    def refuse(tmp: Path) -> None:
        assert tmp.read_text() == "not json" and tmp != path
        raise ValueError("does not read back")

    with pytest.raises(ValueError, match="does not read back"):
        runtime.atomic_write(path, lambda file: file.write("not json"), verify=refuse)
    assert path.read_text() == '{"good": true}' and _leftovers(tmp_path) == []


def test_two_run_experiments_commands_on_one_file_keep_every_run(tmp_path):
    sets = ["limited-data", "equal-depth", "relaxed-scratch"]
    runners = [_spawn(RUNNER, tmp_path, name) for name in sets]
    path = tmp_path / "experiments.ci.json"
    _read_until_done(path, runners, suite.load_results)  # always valid, never half written
    _finish(runners)
    data = suite.load_results(path)
    lrs = suite.chosen_lrs(data["runs"], TINY)
    expected = {spec.key for name in ["lr-sweep", *sets] for spec in suite.plan(TINY, name, lrs)}
    keys = [suite.run_key(r) for r in data["runs"]]
    assert set(keys) == expected and len(keys) == len(expected)  # every command's runs, each once
    assert sorted(data["provenance"]["commands"]) == sorted(sets)
    assert _leftovers(tmp_path) == []


# ------------------------------------------------------------------ appends merge with what another writer added
def _foreign(record: dict, label: str) -> dict:
    return {**record, "label": label, "sharedlib_hash": record.get("sharedlib_hash", "x")}


def test_an_append_keeps_runs_another_command_wrote_meanwhile(tmp_path, monkeypatch):
    real, calls = fake_execute, []
    monkeypatch.setattr(suite, "window_baselines", lambda profile: {"unigram": 1.0})

    def execute_then_someone_else_writes(spec, trained=None):
        record = real(spec, trained)
        path = tmp_path / "experiments.ci.json"
        if calls == [1]:  # after our first append: another command adds a run of its own
            data = suite.load_results(path)
            data["runs"].append(_foreign(data["runs"][0], "another command's run"))
            suite.write_results(path, data)
        calls.append(1)
        return record

    monkeypatch.setattr(suite, "execute_run", execute_then_someone_else_writes)
    suite.run_experiments(TINY, ["limited-data"], tmp_path, command="pytest")
    runs = suite.load_results(tmp_path / "experiments.ci.json")["runs"]
    lrs = suite.chosen_lrs(runs, TINY)
    ours = {spec.key for name in ("lr-sweep", "limited-data") for spec in suite.plan(TINY, name, lrs)}
    assert "another command's run" in [r["label"] for r in runs] and len(runs) == len(ours) + 1


def test_a_hops_append_keeps_runs_another_command_wrote_meanwhile(tmp_path, monkeypatch):
    profile = replace(hops.HOPS_PROFILES["ci"], steps=2, warmup=1, eval_every=2, test_examples=8, seeds=1)
    real, calls = hops.execute_arm, []
    path = tmp_path / "hops.ci.json"

    def execute_then_someone_else_writes(*job):
        record = real(*job)
        if calls == [1]:
            data = suite.load_results(path)
            data["runs"].append(_foreign(data["runs"][0], "another command's run"))
            suite.write_results(path, data)
        calls.append(1)
        return record

    monkeypatch.setattr(hops, "execute_arm", execute_then_someone_else_writes)
    hops.run_hops(profile, tmp_path, command="pytest")
    runs = suite.load_results(path)["runs"]
    assert "another command's run" in [r["label"] for r in runs] and len(runs) == len(profile.arms()) + 1


def test_merge_refuses_a_file_of_other_profile_settings(tmp_path):
    path = tmp_path / "experiments.ci.json"
    data = {"provenance": {}, "profile": "ci", "profile_settings": {"steps": 1}, "runs": []}

    def stamp(target: dict) -> None:
        target["provenance"] = {k: 1 if k in ("threads", "wall_seconds") else "x" for k in suite.PROVENANCE_FIELDS}

    suite.merge_results(path, data, stamp)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="another profile_settings"):
        suite.merge_results(path, {**data, "profile_settings": {"steps": 2}}, stamp)
    assert path.read_bytes() == before
