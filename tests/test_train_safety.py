"""The trainer never loses or corrupts work, and resume is honest (chapter 6)."""

import importlib
import math
import os
from dataclasses import replace

import pytest
import torch
from copy_task import copy_batch, copy_config

import sharedlib as sl
from sharedlib.train import CheckpointError, NonFiniteLossError, TrainConfig, train

train_module = importlib.import_module("sharedlib.train")  # sl.train is the function

CONFIG = TrainConfig(steps=10, eval_every=5, warmup=2, eval_batches=1)


def tiny_model(seed=0, width=32, dropout=0.0):
    torch.manual_seed(seed)
    return sl.SharedTransformer(replace(copy_config(width), dropout=dropout))


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_unchanged(model, before):
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)


def interrupt_after(n_train_batches):
    """A batch function that raises KeyboardInterrupt when asked for training batch n + 1."""
    calls = {"n": 0}

    def get_batch(split, generator):
        calls["n"] += split == "train"
        if calls["n"] > n_train_batches:
            raise KeyboardInterrupt
        return copy_batch(split, generator)

    return get_batch


@pytest.fixture(scope="module")
def step_5_bytes(tmp_path_factory):
    """The bytes of a checkpoint written at step 5 of ``CONFIG`` by a run interrupted at step 7."""
    path = tmp_path_factory.mktemp("step5") / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_model(), sl.next_token_loss, interrupt_after(7), CONFIG, checkpoint=path)
    return path.read_bytes()


@pytest.fixture
def checkpoint(tmp_path, step_5_bytes):
    """A fresh copy of the step-5 checkpoint at ``tmp_path / "ckpt.pt"``."""
    path = tmp_path / "ckpt.pt"
    path.write_bytes(step_5_bytes)
    return path


@pytest.mark.parametrize(
    "field, value",
    [
        ("lr", math.inf), ("lr", math.nan), ("lr", 0.0), ("lr", "3e-3"), ("steps", 10.0), ("steps", True),
        ("steps", 0), ("warmup", -1), ("eval_every", False), ("eval_batches", 0), ("seed", -1), ("seed", 1.5),
        ("min_lr_ratio", 1.5), ("weight_decay", -0.1), ("grad_clip", math.nan), ("grad_clip", math.inf),
        ("device", "gpu"), ("device", "cuda:x"), ("device", None), ("amp", "yes"), ("progress", 1),
    ],
)
def test_train_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"^{field} must"):
        TrainConfig(**{field: value})


def test_train_config_accepts_valid_values():
    config = TrainConfig(steps=5, lr=1, warmup=0, min_lr_ratio=0, grad_clip=0, device="cuda:1", seed=0)
    assert config.steps == 5 and config.device == "cuda:1"


def test_non_finite_training_loss_stops_and_keeps_the_last_good_checkpoint(checkpoint):
    path = checkpoint
    good_bytes = path.read_bytes()
    calls = {"n": 0}

    def overflowing(model, batch):  # a model that overflows from its 7th training step on
        calls["n"] += model.training
        loss = sl.next_token_loss(model, batch)
        return loss * math.inf if calls["n"] >= 2 else loss

    model = tiny_model(seed=1)
    with pytest.raises(NonFiniteLossError, match=r"training loss is (inf|nan) at step 7.*ckpt.pt \(step 5\) was kept"):
        train(model, overflowing, copy_batch, CONFIG, checkpoint=path)
    assert path.read_bytes() == good_bytes and not list(path.parent.glob(".ckpt.pt.*"))
    saved = torch.load(path, weights_only=True)
    assert all(torch.isfinite(t).all() for t in saved["model"].values())
    history = train(tiny_model(seed=2), sl.next_token_loss, copy_batch, CONFIG, checkpoint=path)
    assert len(history.train_loss) == CONFIG.steps and all(math.isfinite(x) for x in history.train_loss)


def test_huge_learning_rate_diverges_with_a_clear_error_and_saves_nothing(tmp_path):
    path = tmp_path / "ckpt.pt"
    config = replace(CONFIG, lr=1e30, warmup=1, eval_every=1)
    with pytest.raises(NonFiniteLossError, match=r"at step \d+.*no checkpoint had been written yet"):
        train(tiny_model(), sl.next_token_loss, copy_batch, config, checkpoint=path)
    assert not path.exists() and not list(path.parent.glob(".ckpt.pt.*"))


@pytest.mark.parametrize("grad_clip", [0.0, 1.0])
def test_non_finite_gradient_stops_before_the_optimizer_step(grad_clip):
    model = tiny_model()
    before = snapshot(model)
    model.embeddings.tokens.weight.register_hook(lambda grad: grad * math.nan)  # finite loss, NaN gradient
    with pytest.raises(NonFiniteLossError, match=r"gradient norm is nan at step 1; .*no checkpoint was requested"):
        train(model, sl.next_token_loss, copy_batch, replace(CONFIG, grad_clip=grad_clip))
    assert_unchanged(model, before)


def test_non_finite_validation_loss_is_not_saved(checkpoint):
    path = checkpoint
    good_bytes = path.read_bytes()

    def bad_validation(model, batch):
        loss = sl.next_token_loss(model, batch)
        return loss if model.training else loss * math.nan

    with pytest.raises(NonFiniteLossError, match=r"validation loss is nan at step 10; .*before the checkpoint save"):
        train(tiny_model(), bad_validation, copy_batch, CONFIG, checkpoint=path)
    assert path.read_bytes() == good_bytes


@pytest.mark.parametrize(
    "change, named",
    [({"lr": 1e-3}, "lr: 0.003 -> 0.001"), ({"steps": 20}, "steps"), ({"seed": 1}, "seed"),
     ({"warmup": 3}, "warmup"), ({"eval_every": 2}, "eval_every"), ({"grad_clip": 0.5}, "grad_clip")],
)
def test_resume_with_a_different_train_config_is_refused(checkpoint, change, named):
    path = checkpoint
    model = tiny_model(seed=3)
    before = snapshot(model)
    with pytest.raises(CheckpointError, match=f"TrainConfig differs in .*{named}"):
        train(model, sl.next_token_loss, copy_batch, replace(CONFIG, **change), checkpoint=path)
    assert_unchanged(model, before)


def test_resume_may_change_device_and_progress(checkpoint):
    path = checkpoint
    history = train(tiny_model(), sl.next_token_loss, copy_batch, replace(CONFIG, device="cpu", progress=True), path)
    assert history.steps == list(range(1, CONFIG.steps + 1))


def test_resume_into_a_model_of_another_width_is_refused_before_touching_it(checkpoint):
    path = checkpoint
    model = tiny_model(width=64)
    before = snapshot(model)
    with pytest.raises(CheckpointError, match=r"another model: model.config d_ff: 64 -> 128; d_model: 32 -> 64"):
        train(model, sl.next_token_loss, copy_batch, CONFIG, checkpoint=path)
    assert_unchanged(model, before)
    model = tiny_model().double()  # same shapes and config, other dtype
    with pytest.raises(CheckpointError, match=r"torch.float32'\] -> .*torch.float64"):
        train(model, sl.next_token_loss, copy_batch, CONFIG, checkpoint=path)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_checkpoint_names_the_path_and_leaves_the_model_unchanged(checkpoint, damage):
    path = checkpoint
    data = path.read_bytes()
    path.write_bytes(os.urandom(4096) if damage == "garbage" else data[: len(data) // 2])
    model = tiny_model(seed=4)
    before = snapshot(model)
    with pytest.raises(CheckpointError, match=rf"checkpoint {path} could not be read"):
        train(model, sl.next_token_loss, copy_batch, CONFIG, checkpoint=path)
    assert_unchanged(model, before)


def test_inconsistent_optimizer_state_is_found_before_the_model_is_loaded(checkpoint):
    path = checkpoint
    state = torch.load(path, weights_only=True)
    state["optimizer"]["state"][0]["exp_avg"] = torch.zeros(3)  # wrong shape for parameter 0
    torch.save(state, path)
    model = tiny_model(seed=5)
    before = snapshot(model)
    with pytest.raises(CheckpointError, match="optimizer state that does not fit"):
        train(model, sl.next_token_loss, copy_batch, CONFIG, checkpoint=path)
    assert_unchanged(model, before)


def test_a_failure_while_applying_restores_the_model(checkpoint, monkeypatch):
    path = checkpoint
    model = tiny_model(seed=6)
    before = snapshot(model)

    def broken(self, state_dict):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(torch.optim.AdamW, "load_state_dict", broken)
    with pytest.raises(CheckpointError, match=r"simulated failure.*model left unchanged"):
        train(model, sl.next_token_loss, copy_batch, CONFIG, checkpoint=path)
    assert_unchanged(model, before)


def test_checkpoint_without_stored_config_is_refused(checkpoint):
    path = checkpoint
    state = torch.load(path, weights_only=True)
    del state["train_config"]
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"not a format-2 sharedlib\.train checkpoint"):
        train(tiny_model(), sl.next_token_loss, copy_batch, CONFIG, checkpoint=path)


def test_resume_with_dropout_equals_uninterrupted_training_exactly(tmp_path):
    config = TrainConfig(steps=12, eval_every=4, warmup=3, eval_batches=1)
    model = tiny_model(dropout=0.1)
    reference = train(model, sl.next_token_loss, copy_batch, config)
    expected = snapshot(model)

    path = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_model(dropout=0.1), sl.next_token_loss, interrupt_after(10), config, checkpoint=path)
    model = tiny_model(seed=99, dropout=0.1)  # different init and global RNG: all must come from the checkpoint
    torch.rand(1000)
    resumed = train(model, sl.next_token_loss, copy_batch, config, checkpoint=path)
    assert resumed.train_loss == reference.train_loss and resumed.val_loss == reference.val_loss
    assert_unchanged(model, expected)


def test_save_fsyncs_the_temporary_file_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.path.isdir(f"/proc/self/fd/{fd}"))),
                                                 real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", str(a))), real_replace(a, b))[1])
    path = tmp_path / "ckpt.pt"
    train(tiny_model(), sl.next_token_loss, copy_batch, replace(CONFIG, steps=5), checkpoint=path)
    assert events[0] == ("fsync", False) and events[1][0] == "replace"
    assert os.path.basename(events[1][1]).startswith(".ckpt.pt.") and events[1][1].endswith(".tmp")  # its own name


def test_a_failed_save_keeps_the_previous_checkpoint(checkpoint, monkeypatch):
    path = checkpoint
    good_bytes = path.read_bytes()

    def failing_save(state, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(train_module.torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        train(tiny_model(), sl.next_token_loss, copy_batch, CONFIG, checkpoint=path)
    assert path.read_bytes() == good_bytes and not list(path.parent.glob(".ckpt.pt.*"))
