"""Writing a recorded result is deliberate: a benchmark script never replaces a committed file with a smaller run
by accident, checks its output before any work, and a checkpoint is replaced only by one that reads back.

Every test works on a copy of the recorded files in a temporary ``notebooks/results`` (``recorded.results_dirs``
points there), never on the real one.
"""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from copy_task import copy_batch, copy_config

import sharedlib as sl
from sharedlib.experiments import recorded
from sharedlib.train import CheckpointError, TrainConfig, train

train_module = importlib.import_module("sharedlib.train")  # sl.train is the function

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "notebooks" / "results"


@pytest.fixture
def results(tmp_path, monkeypatch) -> Path:
    """A copy of the committed recorded files, where ``write_recorded`` writes by default."""
    folder = tmp_path / "results"
    shutil.copytree(RESULTS, folder)
    monkeypatch.setattr(recorded, "results_dirs", lambda: [folder])
    return folder


def _run(monkeypatch, module, argv: list[str]) -> None:
    """``module.main()`` as the command line ``argv`` would run it."""
    monkeypatch.setattr(sys, "argv", [f"{module.__name__}.py", *argv])
    module.main()


def _no_work(*args, **kwargs):
    pytest.fail("the benchmark started although its output is refused")


# ------------------------------------------------------------------------------------------- benchmark_decoding
def test_a_toy_decoding_run_does_not_replace_the_recorded_file(results, monkeypatch, capsys):
    import benchmark_decoding

    path = results / "decoding.cpu.json"
    before = path.read_bytes()
    monkeypatch.setattr(benchmark_decoding, "measure", _no_work)
    with pytest.raises(SystemExit):
        _run(monkeypatch, benchmark_decoding, ["--repeats", "2", "--sizes", "small", "--batches", "1"])
    assert path.read_bytes() == before
    message = capsys.readouterr().err
    assert str(path) in message and "holds 4 runs (repeats 25" in message and "the new result has 1" in message
    assert "--force" in message and "--output" in message


def fake_measure(d_model: int, n_layers: int, batch: int, args) -> dict:
    return {"d_model": d_model, "n_layers": n_layers, "batch": batch, "prompt": args.prompt,
            "new_tokens": args.new_tokens, "repeats": args.repeats}


def test_force_or_another_output_writes_the_toy_run(results, monkeypatch, tmp_path):
    import benchmark_decoding

    monkeypatch.setattr(benchmark_decoding, "measure", fake_measure)
    toy = ["--repeats", "2", "--sizes", "small", "--batches", "1"]
    elsewhere = tmp_path / "try" / "decoding.json"
    _run(monkeypatch, benchmark_decoding, [*toy, "--output", str(elsewhere)])
    assert len(json.loads(elsewhere.read_text())["runs"]) == 1
    _run(monkeypatch, benchmark_decoding, [*toy, "--force"])
    assert len(json.loads((results / "decoding.cpu.json").read_text())["runs"]) == 1


def test_a_run_as_large_as_the_recorded_one_replaces_it(results, monkeypatch):
    import benchmark_decoding

    monkeypatch.setattr(benchmark_decoding, "measure", fake_measure)
    _run(monkeypatch, benchmark_decoding, ["--repeats", "30", "--new-tokens", "8"])
    data = json.loads((results / "decoding.cpu.json").read_text())
    assert [r["repeats"] for r in data["runs"]] == [30] * 4 and "--repeats 30" in data["provenance"]["command"]


@pytest.mark.parametrize("where", ["directory", "under a file"])
def test_an_output_that_cannot_be_written_is_refused_before_any_work(tmp_path, monkeypatch, capsys, where):
    import benchmark_decoding

    monkeypatch.setattr(benchmark_decoding, "measure", _no_work)
    (tmp_path / "a_file").write_text("")
    output = tmp_path if where == "directory" else tmp_path / "a_file" / "decoding.json"
    with pytest.raises(SystemExit):
        _run(monkeypatch, benchmark_decoding, ["--repeats", "2", "--output", str(output)])
    assert ("is a directory" if where == "directory" else "is a file, not a directory") in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- benchmark_encoders
def test_a_toy_encoder_run_does_not_replace_the_recorded_file(results, monkeypatch, capsys):
    pytest.importorskip("transformers")
    import benchmark_encoders

    path = results / "benchmark_encoders.cpu.json"
    before = path.read_bytes()
    monkeypatch.setattr(benchmark_encoders, "time_interleaved", _no_work)
    with pytest.raises(SystemExit):
        _run(monkeypatch, benchmark_encoders, ["--repeats", "2", "--batch", "1", "--seq", "8", "--device", "cpu"])
    assert path.read_bytes() == before
    message = capsys.readouterr().err
    assert str(path) in message and "batch=8, seq=128, repeats=7" in message


# ------------------------------------------------------------------------------------------------ write_recorded
def test_write_recorded_refuses_to_shrink_a_file_unless_forced(results):
    path = results / "decoding.cpu.json"
    before = path.read_bytes()
    old = json.loads(before)
    smaller = {**old, "runs": [{**run, "repeats": 2} for run in old["runs"]]}
    with pytest.raises(FileExistsError, match=r"decoding\.cpu\.json holds 4 runs .*would lose size=small, batch=1"):
        recorded.write_recorded("decoding", "cpu", smaller)
    assert path.read_bytes() == before
    with pytest.raises(FileExistsError, match="the new result has 3"):
        recorded.write_recorded("decoding", "cpu", {**old, "runs": old["runs"][:3]})
    assert recorded.write_recorded("decoding", "cpu", old) == path  # as large: replaced
    recorded.write_recorded("decoding", "cpu", smaller, force=True)
    assert json.loads(path.read_text())["runs"][0]["repeats"] == 2


def test_replacement_problem_names_an_unreadable_file(tmp_path):
    path = tmp_path / "x.cpu.json"
    path.write_text("{")
    assert "not a readable recorded result" in recorded.replacement_problem(path, [])
    assert recorded.replacement_problem(tmp_path / "absent.json", []) is None


# --------------------------------------------------------------------------------------------------- checkpoints
def test_a_checkpoint_that_does_not_read_back_never_replaces_a_good_one(tmp_path, monkeypatch):
    path, real_save, saved = tmp_path / "ckpt.pt", torch.save, []

    def second_save_unresumable(state, file):  # the step-2 save is good; at step 4 a state that cannot resume
        saved.append(path.read_bytes() if path.exists() else None)
        real_save(state if len(saved) == 1 else {**state, "history": {"nonsense": 1}}, file)

    monkeypatch.setattr(train_module.torch, "save", second_save_unresumable)
    torch.manual_seed(0)
    model = sl.SharedTransformer(copy_config(32))
    config = TrainConfig(steps=4, eval_every=2, warmup=1, eval_batches=1)
    with pytest.raises(CheckpointError, match=r"new checkpoint for .*ckpt\.pt did not read back"):
        train(model, sl.next_token_loss, copy_batch, config, checkpoint=path)
    assert len(saved) == 2 and path.read_bytes() == saved[1]  # still the step-2 checkpoint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]
    assert torch.load(path, weights_only=True)["step"] == 2


# ---------------------------------------------------------------------------------------------- run_experiments
@pytest.mark.parametrize("suite_name", ["experiments", "hops"])
def test_run_experiments_refuses_an_unwritable_output_dir_before_any_work(tmp_path, monkeypatch, capsys, suite_name):
    import run_experiments

    from sharedlib.experiments import hops, suite

    monkeypatch.setattr(suite, "run_experiments", _no_work)
    monkeypatch.setattr(hops, "run_hops", _no_work)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit):
        run_experiments.main(["--profile", "ci", "--suite", suite_name, "--output-dir", str(tmp_path / "a_file")])
    assert f"{tmp_path / 'a_file'} is a file, not a directory" in capsys.readouterr().err
