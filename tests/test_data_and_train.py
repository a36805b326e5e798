"""Offline data and the model-agnostic trainer (chapter 6)."""

import hashlib
import json
import sys
import types
from pathlib import Path

import pytest
import torch
from copy_task import copy_batch, copy_config

import sharedlib as sl
from sharedlib import data
from sharedlib.train import TrainConfig, lr_factor, train


def answers(inputs, targets):
    return [t[t != data.IGNORE] - data.FIRST_SYMBOL for t in targets]


@pytest.mark.parametrize("task", ["copy", "reverse", "sort"])
def test_algorithmic_tasks_score_only_the_correct_answer(task):
    g = torch.Generator().manual_seed(0)
    inputs, targets = data.algorithmic_batch(task, 4, 7, 5, g)
    assert inputs.shape == targets.shape == (4, 15)
    for row, answer in zip(inputs, answers(inputs, targets), strict=True):
        question = row[1:8] - data.FIRST_SYMBOL
        expected = {"copy": question, "reverse": question.flip(0), "sort": question.sort().values}[task]
        assert torch.equal(answer, expected)


def test_addition_is_correct_in_any_base():
    g = torch.Generator().manual_seed(1)
    for base in (2, 10):
        inputs, targets = data.algorithmic_batch("addition", 8, 8, base, g)
        for row, answer in zip(inputs, answers(inputs, targets), strict=True):
            digits = row[1:] - data.FIRST_SYMBOL
            a, b = digits[:4], digits[5:9]
            value = lambda ds, base=base: sum(int(d) * base**i for i, d in enumerate(ds))  # noqa: E731
            assert value(answer) == value(a) + value(b)


def test_bad_task_arguments():
    g = torch.Generator()
    with pytest.raises(ValueError, match="task must be one of"):
        data.algorithmic_batch("divide", 2, 4, 5, g)
    with pytest.raises(ValueError, match="n_symbols >= 2"):
        data.algorithmic_batch("copy", 2, 4, 1, g)


def test_builtin_corpus_is_real_text_and_split_deterministically():
    corpus = data.load_text_corpus()
    again = data.load_text_corpus()
    assert torch.equal(corpus.val, again.val) and len(corpus.train) > 9 * len(corpus.val) * 0.99
    text = bytes(corpus.train[:2000].tolist()).decode("utf-8", errors="ignore")
    assert "the" in text.split()
    x, y = corpus.batch("train", 3, 32, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (3, 32) and torch.equal(x[:, 1:], y[:, :-1])


RECORDED = Path(__file__).resolve().parents[1] / "notebooks" / "results" / "experiments.cpu.json"


def test_builtin_corpus_is_pinned_and_matches_the_recorded_runs():
    raw = data.builtin_corpus_bytes()
    assert len(raw) == 466_273 and hashlib.sha256(raw).hexdigest().startswith("71f2ff5d99bdc1f9")
    corpus = data.load_text_corpus(val_fraction=0.15)
    assert (len(corpus.train), len(corpus.val)) == (396_332, 69_941)
    runs = json.loads(RECORDED.read_text())["runs"]
    text_runs = [r for r in runs if r["data"] == corpus.source]
    assert text_runs and {r["split"]["val_split_tokens"] for r in text_runs} == {len(corpus.val)}


def test_builtin_corpus_does_not_come_from_the_running_python(monkeypatch):
    """Each CPython ships other pydoc topics (3.13: 511,947 bytes); swapping them must not change the corpus."""
    before = data.load_text_corpus(val_fraction=0.15)
    fake = types.ModuleType("pydoc_data.topics")
    fake.topics = {"a": "another Python's reference text " * 1000}
    monkeypatch.setitem(sys.modules, "pydoc_data.topics", fake)
    after = data.load_text_corpus(val_fraction=0.15)
    assert torch.equal(before.train, after.train) and torch.equal(before.val, after.val)


def test_an_altered_corpus_file_is_refused(monkeypatch):
    real = data.builtin_corpus_bytes()
    monkeypatch.setattr(data.gzip, "decompress", lambda _: real[:-1] + b"!")
    with pytest.raises(ValueError, match="not the pinned corpus"):
        data.load_text_corpus()


def test_corpus_from_a_local_file(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text("hello shared layers " * 50, encoding="utf-8")
    corpus = data.load_text_corpus(path, val_fraction=0.2)
    assert corpus.source == str(path) and len(corpus.val) == len(path.read_bytes()) - int(len(path.read_bytes()) * 0.8)
    with pytest.raises(ValueError, match="split must be"):
        corpus.batch("test", 1, 8, torch.Generator())
    with pytest.raises(ValueError, match="fewer than seq_len"):
        corpus.batch("val", 1, 10_000, torch.Generator())


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    config = TrainConfig(steps=100, warmup=10, min_lr_ratio=0.1)
    assert lr_factor(0, config) == pytest.approx(0.1) and lr_factor(9, config) == pytest.approx(1.0)
    assert lr_factor(100, config) == pytest.approx(0.1) and lr_factor(55, config) == pytest.approx(0.55)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        TrainConfig(steps=0)


def tiny_copy_setup(seed=0, width=32):
    torch.manual_seed(seed)
    return sl.SharedTransformer(copy_config(width)), copy_batch


def test_trainer_learns_the_copy_task():
    model, get_batch = tiny_copy_setup(width=64)
    history = train(model, sl.next_token_loss, get_batch, TrainConfig(steps=300, eval_every=300, lr=3e-3))
    assert history.train_loss[0] > 1.5 and history.val_loss[-1] < 0.05  # from chance (ln 7) to solved
    assert len(history.steps) == len(history.lr) == 300


def test_resumed_training_equals_uninterrupted_training(tmp_path):
    config = TrainConfig(steps=30, eval_every=10, warmup=5)
    model, get_batch = tiny_copy_setup()
    reference = train(model, sl.next_token_loss, get_batch, config)
    expected = {k: v.clone() for k, v in model.state_dict().items()}

    calls = {"n": 0}

    def interrupted(split, generator):
        calls["n"] += split == "train"
        if calls["n"] > 25:
            raise KeyboardInterrupt
        return get_batch(split, generator)

    checkpoint = tmp_path / "ckpt.pt"
    model, _ = tiny_copy_setup()
    with pytest.raises(KeyboardInterrupt):
        train(model, sl.next_token_loss, interrupted, config, checkpoint=checkpoint)
    assert checkpoint.exists() and not (tmp_path / "ckpt.pt.tmp").exists()
    model, _ = tiny_copy_setup(seed=99)  # different init: everything must come from the checkpoint
    resumed = train(model, sl.next_token_loss, get_batch, config, checkpoint=checkpoint)
    assert resumed.train_loss == reference.train_loss and resumed.val_loss == reference.val_loss  # exactly
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key])


def test_progress_bar_runs():
    model, get_batch = tiny_copy_setup()
    history = train(model, sl.next_token_loss, get_batch, TrainConfig(steps=3, eval_every=3, progress=True))
    assert history.eval_steps == [3]
