"""Nothing silently wrong, no hangs, clear errors: NaN answers, student functions that never return, shared
sub-modules, settings a conversion cannot carry, unwritable outputs and misused arguments."""

import importlib
import json
import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from copy_task import copy_batch, copy_config
from torch import nn

import sharedlib as sl
from sharedlib import decoding
from sharedlib.book import exercises
from sharedlib.book.background import PUBLISHED_MODELS, doubling_time_months
from sharedlib.experiments import suite
from sharedlib.relaxed import relaxed_parameters
from sharedlib.similarity import linear_cka
from sharedlib.train import TrainConfig, train
from sharedlib.universal import act_weights

train_module = importlib.import_module("sharedlib.train")  # sl.train is the function

ROOT = Path(__file__).resolve().parents[1]
NAN, INF = float("nan"), float("inf")


# --- NaN and infinite answers are wrong answers (case 4) ------------------------------------------------------


@pytest.mark.parametrize("bad", [NAN, INF], ids=["nan", "inf"])
def test_kv_cache_checker_reports_non_finite_logits_as_wrong(bad):
    def poisoned(model, token, cache):
        logits, _ = decoding.decode_step(model, token, cache)  # appends to the cache as it should
        return logits * bad

    with pytest.raises(AssertionError, match=r"logits differ from decode_step's by up to (nan|inf)"):
        exercises.check_kv_cache_step(poisoned, steps=1)


def _count(config):
    return sl.count_parameters(config)


NON_FINITE_ANSWERS = {  # every checker, fed a NaN (or a tensor of NaN) where a number is expected
    "count": lambda: exercises.check_count_function(lambda c: NAN, "all", trials=2),
    "layer_map": lambda: exercises.check_layer_map(lambda n, m: [NAN] * n, "cycle", max_layers=2),
    "delta": lambda: exercises.check_delta_count(lambda c, r: NAN, trials=2),
    "flops": lambda: exercises.check_flops_per_token(lambda c, t: INF, trials=2),
    "activations": lambda: exercises.check_activation_memory(lambda c: NAN, trials=2),
    "doubling": lambda: exercises.check_doubling_time(NAN, since=2019),
    "doubling-inf": lambda: exercises.check_doubling_time(INF, since=2019),
    "cka": lambda: exercises.check_linear_cka(lambda x, y: NAN, trials=1),
    "cka-tensor": lambda: exercises.check_linear_cka(lambda x, y: torch.tensor(NAN), trials=1),
    "gradient": lambda: exercises.check_shared_gradient(lambda w, x, n: torch.full_like(w, NAN)),
    "halting": lambda: exercises.check_halting_rule(
        lambda p, t: tuple(torch.full(v.shape, NAN, dtype=torch.float64) for v in act_weights(p, t)), trials=1
    ),
}


@pytest.mark.parametrize("call", NON_FINITE_ANSWERS.values(), ids=NON_FINITE_ANSWERS.keys())
def test_every_checker_reports_non_finite_answers_as_wrong(call):
    with pytest.raises(AssertionError):
        call()


def test_the_doubling_time_checker_says_a_non_finite_answer_is_not_a_number():
    with pytest.raises(AssertionError, match="not a finite number"):
        exercises.check_doubling_time(NAN, since=2019)


def test_a_non_finite_training_step_count_is_refused():
    with pytest.raises(ValueError, match="value must be a finite real number"):
        exercises.check_training_step_flops(NAN, sl.TransformerConfig(d_model=8, n_heads=2, n_layers=2), 1, 4)


def test_linear_cka_checker_still_accepts_the_reference():
    assert exercises.check_linear_cka(linear_cka, trials=2).startswith("correct")


# --- a student's function that never returns (case 10) -------------------------------------------------------


def test_checkers_give_up_on_a_function_that_never_returns():
    release = threading.Event()
    try:
        started = time.perf_counter()
        with pytest.raises(AssertionError, match=r"did not return within 0\.3 s for config"):
            exercises.check_count_function(lambda config: release.wait(), "all", trials=3, timeout=0.3)
        assert time.perf_counter() - started < 5
    finally:
        release.set()  # let the abandoned thread finish


def test_the_time_limit_is_per_call_with_a_default_of_ten_seconds():
    assert exercises.TIMEOUT_S == 10.0
    assert exercises.check_count_function(_count, "all", trials=5, timeout=2).startswith("correct")


@pytest.mark.parametrize("timeout", [0, -1.0, NAN, INF, True, "10"])
def test_a_bad_timeout_is_refused(timeout):
    with pytest.raises(ValueError, match="timeout must be a finite real number > 0"):
        exercises.check_count_function(_count, "all", trials=1, timeout=timeout)


def test_errors_of_the_student_function_are_still_reported_and_interrupts_pass_through():
    with pytest.raises(AssertionError, match="your function raised ZeroDivisionError"):
        exercises.check_count_function(lambda config: 1 / 0, "all", trials=1)

    def interrupted(config):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        exercises.check_count_function(interrupted, "all", trials=1)


def test_inference_mode_reaches_the_student_function():
    """The checker runs the function in a thread, and torch's inference mode is thread-local: a step that appends
    to the cache's inference tensors itself (no decorator) must still run in the caller's inference mode."""
    def my_step(model, token, cache):
        x = model.embeddings(token[:, None], start=cache.length)  # (B, 1, H)
        for (a, f), layer_cache in zip(cache.schedule, cache.layers, strict=True):
            x = model.ffn[f](model.attention[a](x, cache=layer_cache))
        if model.final_norm is not None:
            x = model.final_norm(x)
        return model.logits(x)[:, -1]  # (B, V)

    assert exercises.check_kv_cache_step(my_step, steps=2).startswith("correct")


# --- NumPy integers and bools (case 12) ----------------------------------------------------------------------


def test_checkers_accept_numpy_integers():
    saving = 30000 * 768 - (30000 * 128 + 128 * 768 + 768)
    assert exercises.check_embedding_saving(np.int64(saving)).startswith("correct")
    config = sl.TransformerConfig(d_model=64, n_heads=4, d_ff=256, n_layers=6, strategy="all")
    unshared = sl.count_parameters(replace(config, strategy="none"))
    rank = next(r for r in range(1, 10_000) if relaxed_parameters(config, r) >= unshared)
    assert exercises.check_break_even_rank(np.int64(rank), config).startswith("correct")
    months = doubling_time_months(tuple(m for m in PUBLISHED_MODELS if m.year >= 2019))
    assert exercises.check_doubling_time(np.float64(months), since=np.int64(2019)).startswith("correct")
    assert exercises.check_count_function(_count, "all", trials=np.int64(3)).startswith("correct")


def test_checkers_still_refuse_bools_as_integers():
    with pytest.raises(ValueError, match="value must be an integer number of parameters, got True"):
        exercises.check_embedding_saving(True)
    with pytest.raises(ValueError, match="trials must be a positive integer, got True"):
        exercises.check_count_function(_count, "all", trials=True)


# --- decoding arguments (case 12) ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lm():
    torch.manual_seed(0)
    config = sl.TransformerConfig(d_model=16, n_heads=2, d_ff=32, n_layers=2, strategy="all", vocab_size=20,
                                  max_len=16, causal=True, lm_head=True)
    return sl.SharedTransformer(config).eval()


@pytest.mark.parametrize("call", [decoding.generate, decoding.prefill], ids=["generate", "prefill"])
def test_an_empty_prompt_is_a_value_error(lm, call):
    args = (3,) if call is decoding.generate else ()
    with pytest.raises(ValueError, match=r"at least one token per sequence, got shape \(2, 0\)"):
        call(lm, torch.zeros(2, 0, dtype=torch.long), *args)


@pytest.mark.parametrize("dtype", [torch.int8, torch.int16, torch.uint8, torch.float32, torch.bool], ids=str)
def test_token_ids_of_other_dtypes_are_refused_naming_the_allowed(lm, dtype):
    ids = torch.zeros(2, 3, dtype=dtype)
    pattern = rf"ids must be a \(batch, sequence\) tensor of dtype torch.int64 or torch.int32, got {dtype}"
    with pytest.raises(ValueError, match=pattern):
        decoding.generate(lm, ids, 2)
    with pytest.raises(ValueError, match=pattern):
        decoding.prefill(lm, ids)
    _, cache = decoding.prefill(lm, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=rf"token must be .* got {dtype}"):
        decoding.decode_step(lm, torch.zeros(2, dtype=dtype), cache)


def test_int32_ids_still_decode(lm):
    ids = torch.randint(0, 20, (2, 3))
    assert torch.equal(decoding.generate(lm, ids.int(), 3), decoding.generate(lm, ids, 3))


@pytest.mark.parametrize("value", [True, False, 2.0])
def test_n_iterations_must_be_a_count(lm, value):
    with pytest.raises(ValueError, match="n_iterations must be a positive integer"):
        decoding.prefill(lm, torch.zeros(1, 3, dtype=torch.long), n_iterations=value)


def test_n_iterations_accepts_numpy_integers(lm):
    ids = torch.zeros(1, 3, dtype=torch.long)
    expected, _ = decoding.prefill(lm, ids, n_iterations=3)
    got, cache = decoding.prefill(lm, ids, n_iterations=np.int64(3))
    assert torch.equal(got, expected) and len(cache.layers) == 3
    assert decoding.generate(lm, ids, np.int64(2)).shape == (1, 5)


# --- devices (case 12) ---------------------------------------------------------------------------------------


@pytest.fixture
def no_accelerator(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_cuda_is_a_value_error_naming_the_allowed(no_accelerator, device):
    with pytest.raises(ValueError, match=r"CUDA is not available on this machine .*allowed here: \['auto', 'cpu'\]"):
        sl.resolve_device(device)


def test_mps_without_mps_is_a_value_error(no_accelerator):
    with pytest.raises(ValueError, match=r"MPS \(Apple GPU\) is not available.*allowed here: \['auto', 'cpu'\]"):
        sl.resolve_device("mps")


def test_a_missing_cuda_index_is_a_value_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert sl.resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ValueError, match=r"has 1 CUDA device\(s\); allowed here: \['auto', 'cpu', 'cuda', 'cuda:0'"):
        sl.resolve_device("cuda:1")


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "cuda:", "CPU", None, 0])
def test_unknown_device_names_are_value_errors(device):
    with pytest.raises(ValueError, match=r"device must be one of \('auto', 'cpu', 'cuda', 'mps'\) or 'cuda:N'"):
        sl.resolve_device(device)


def test_training_on_cuda_without_cuda_fails_before_the_first_step(no_accelerator):
    def no_batches(split, generator):
        raise AssertionError("a batch was drawn")

    model = sl.SharedTransformer(copy_config(16))
    with pytest.raises(ValueError, match="CUDA is not available"):
        train(model, sl.next_token_loss, no_batches, TrainConfig(steps=2, device="cuda"))


# --- conversions (cases 6, 9, 12) ----------------------------------------------------------------------------


def _encoder(n_layers=4, norm_first=False, share=()):
    """A PyTorch encoder of distinct layers whose sub-modules named in ``share`` are layer 0's in every layer."""
    torch.manual_seed(0)
    layers = [nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True, norm_first=norm_first)
              for _ in range(n_layers)]
    for layer in layers[1:]:
        for name in share:
            setattr(layer, name, getattr(layers[0], name))
    encoder = nn.TransformerEncoder(layers[0], n_layers, norm=nn.LayerNorm(16) if norm_first else None,
                                    enable_nested_tensor=False)
    encoder.layers = nn.ModuleList(layers)
    return encoder.eval()


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize(
    ("share", "strategy"),
    [(("self_attn", "norm1"), "attention"), (("linear1", "linear2", "norm2"), "ffn"),
     (("self_attn", "norm1", "linear1", "linear2", "norm2"), "all")],
)
def test_from_torch_encoder_maps_shared_sub_modules_to_their_strategy(norm_first, share, strategy):
    encoder = _encoder(norm_first=norm_first, share=share)
    model = sl.from_torch_encoder(encoder).eval()
    assert model.config.strategy == strategy
    held = sl.count_module_parameters(model) - sl.count_module_parameters(model.embeddings)
    assert held == sl.count_module_parameters(encoder)  # one copy of each shared tensor, as in the encoder
    x = torch.randn(2, 7, 16)
    expected = encoder(x)  # grad enabled: PyTorch's standard path
    with torch.no_grad():
        got = model.encode(x)
    torch.testing.assert_close(got, expected.detach(), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("share", "message"),
    [
        (("self_attn",), r"share norm1.weight as \[0, 1, 2, 3\] but self_attn.in_proj_weight as \[0, 0, 0, 0\]: "
                         "sharedlib shares a whole attention sublayer"),
        (("linear1",), "a whole ffn sublayer"),
        (("norm2",), "a whole ffn sublayer"),
    ],
)
def test_from_torch_encoder_refuses_part_of_a_sublayer_shared(share, message):
    with pytest.raises(ValueError, match=message):
        sl.from_torch_encoder(_encoder(share=share))


def test_from_torch_encoder_refuses_sharing_patterns_it_cannot_express():
    encoder = _encoder(share=())
    layers = list(encoder.layers)
    layers[2].self_attn, layers[2].norm1 = layers[0].self_attn, layers[0].norm1  # attention 0 1 0 2, FFN own
    with pytest.raises(ValueError, match=r"attention sublayers as \[0, 1, 0, 2\] and FFN sublayers as \[0, 1, 2, 3\]"):
        sl.from_torch_encoder(encoder)
    crossed = _encoder(share=())
    crossed.layers[1].norm2 = crossed.layers[1].norm1  # one LayerNorm in two places of the same layer
    with pytest.raises(ValueError, match=r"is the same tensor as a norm1\.weight"):
        sl.from_torch_encoder(crossed)


@pytest.fixture(scope="module")
def transformers():
    return pytest.importorskip("transformers")


def _albert_config(transformers, **overrides):
    return transformers.AlbertConfig(vocab_size=30, embedding_size=8, hidden_size=16, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=32, max_position_embeddings=16,
                                     **overrides)


def test_from_albert_refuses_an_attention_dropout_it_would_drop(transformers):
    config = _albert_config(transformers, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.1)
    with pytest.raises(ValueError, match=r"attention_probs_dropout_prob=0.1 != hidden_dropout_prob=0.0"):
        sl.from_albert(transformers.AlbertModel(config))
    config = _albert_config(transformers, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    assert sl.from_albert(transformers.AlbertModel(config)).config.dropout == 0.1


def test_from_albert_refuses_relative_positions(transformers):
    config = _albert_config(transformers, position_embedding_type="relative_key")
    with pytest.raises(ValueError, match="position_embedding_type must be 'absolute'"):
        sl.from_albert(transformers.AlbertModel(config))


def test_from_albert_refuses_other_models_by_name(transformers):
    bert = transformers.BertModel(transformers.BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1,
                                                          num_attention_heads=2, intermediate_size=32))
    for wrong in (bert, nn.Linear(2, 2), None):
        with pytest.raises(ValueError, match=r"albert must be a Hugging Face AlbertModel.* got (Bert|Linear|None)"):
            sl.from_albert(wrong)


def test_from_albert_converts_the_encoder_of_a_model_with_a_head(transformers):
    torch.manual_seed(0)
    mlm = transformers.AlbertForMaskedLM(_albert_config(transformers)).eval()
    model = sl.from_albert(mlm).eval()
    ids = torch.randint(0, 30, (2, 9))
    with torch.no_grad():
        expected = mlm.albert(ids).last_hidden_state
        torch.testing.assert_close(model(ids), expected, atol=1e-5, rtol=0)


# --- training outputs and arguments, checked before the first step (cases 11, 12) -----------------------------


def _never_called(split, generator):
    raise AssertionError("a batch was drawn: the check came too late")


def _train(checkpoint, config=None):
    model = sl.SharedTransformer(copy_config(16))
    config = config or TrainConfig(steps=2, eval_every=1, warmup=0, eval_batches=1)
    return train(model, sl.next_token_loss, _never_called, config, checkpoint=checkpoint)


def test_an_empty_checkpoint_path_is_a_value_error():
    for empty in ("", "  "):
        with pytest.raises(ValueError, match=r"checkpoint must be a file path such as 'run\.pt' or None"):
            _train(empty)


def test_a_checkpoint_that_is_a_directory_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"is a directory; pass a file path inside it"):
        _train(tmp_path)
    with pytest.raises(ValueError, match=r"is a directory"):
        _train(".")


def test_a_checkpoint_under_a_file_is_refused_before_training(tmp_path):
    (tmp_path / "notes.txt").write_text("not a folder")
    with pytest.raises(ValueError, match=r"notes.txt is a file, not a directory"):
        _train(tmp_path / "notes.txt" / "deeper" / "run.pt")


def test_a_checkpoint_in_a_read_only_directory_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(train_module.os, "access", lambda path, mode: Path(path) != tmp_path)
    with pytest.raises(ValueError, match=r"directory .* is not writable"):
        _train(tmp_path / "new" / "run.pt")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_checkpoint_in_a_really_read_only_directory_is_refused(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(ValueError, match="is not writable"):
            _train(folder / "run.pt")
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("checkpoint", [3, b"run.pt", ["run.pt"]])
def test_a_checkpoint_of_another_type_is_refused(checkpoint):
    with pytest.raises(ValueError, match="checkpoint must be None or a file path"):
        _train(checkpoint)


def test_train_names_misused_arguments():
    model, config = sl.SharedTransformer(copy_config(16)), TrainConfig(steps=1)
    cases = [
        ((None, sl.next_token_loss, copy_batch, config), "model must be a torch nn.Module"),
        ((model, "loss", copy_batch, config), "loss_fn must be a function"),
        ((model, sl.next_token_loss, None, config), "get_batch must be a function"),
        ((model, sl.next_token_loss, copy_batch, {"steps": 1}), "config must be a sharedlib TrainConfig"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            train(*args)


def test_a_writable_checkpoint_path_still_trains(tmp_path):
    model = sl.SharedTransformer(copy_config(16))
    config = TrainConfig(steps=2, eval_every=2, warmup=0, eval_batches=1)
    history = train(model, sl.next_token_loss, copy_batch, config, checkpoint=tmp_path / "new" / "run.pt")
    assert len(history.train_loss) == 2 and (tmp_path / "new" / "run.pt").is_file()


@pytest.fixture
def no_training(monkeypatch):
    def execute(*args, **kwargs):
        raise AssertionError("a run was trained: the check came too late")

    monkeypatch.setattr(suite, "execute_run", execute)


def test_run_experiments_refuses_an_output_dir_that_is_a_file_before_training(tmp_path, no_training):
    target = tmp_path / "results"
    target.write_text("a file")
    with pytest.raises(ValueError, match="is a file, not a directory"):
        suite.run_experiments("ci", ["limited-data"], target, command="pytest")


def test_run_experiments_refuses_a_results_path_that_is_a_directory_before_training(tmp_path, no_training):
    (tmp_path / "experiments.ci.json").mkdir()
    with pytest.raises(ValueError, match="is a directory"):
        suite.run_experiments("ci", ["limited-data"], tmp_path, command="pytest")


# --- results files: what validation accepts, the writer writes (case 8) -------------------------------------


def _results(**provenance):
    return {"provenance": {**dict.fromkeys(suite.PROVENANCE_FIELDS, 0), **provenance}, "runs": []}


def test_commands_must_be_a_list_of_strings():
    suite.validate_results(_results(commands=["python a", "python b"]))
    for bad in ("python scripts/run_experiments.py --profile cpu", [1, 2], {"a": 1}):
        with pytest.raises(ValueError, match=r"provenance\.commands: expected a list of command strings"):
            suite.validate_results(_results(commands=bad))


@pytest.mark.parametrize("seconds", [NAN, INF, -1.0, True, "12"])
def test_wall_seconds_must_be_a_finite_number(seconds):
    with pytest.raises(ValueError, match=r"provenance\.wall_seconds: expected a finite number >= 0"):
        suite.validate_results(_results(wall_seconds=seconds))


@pytest.fixture(scope="module")
def recorded():
    return json.loads((ROOT / "notebooks" / "results" / "experiments.cpu.json").read_text())


@pytest.mark.parametrize("field", ["train_loss", "val_loss"])
def test_a_diverged_run_with_a_nan_loss_is_refused_by_validation_as_by_the_writer(recorded, field, tmp_path):
    data = json.loads(json.dumps(recorded))
    data["runs"][0].update(status="diverged", curve=[], **{field: NAN})
    with pytest.raises(ValueError, match=rf"runs\[0\]\.{field}: nan is not finite"):
        suite.validate_results(data)
    with pytest.raises(ValueError):
        suite.write_results(tmp_path / "out.json", data)
    assert not (tmp_path / "out.json").exists()


def test_nan_anywhere_in_a_file_is_refused(recorded):
    data = json.loads(json.dumps(recorded))
    data["runs"][1]["split"]["val_fraction"] = INF
    data["baselines"]["extra"] = [1.0, NAN]
    with pytest.raises(ValueError, match=r"runs\[1\]\.split\.val_fraction: inf is not finite.*baselines.extra\[1\]"):
        suite.validate_results(data)


def test_run_experiments_refuses_a_file_with_nan_before_training(recorded, tmp_path, no_training):
    """The file is refused when read, not after a run is trained and its append fails, again on every rerun."""
    data = json.loads(json.dumps(recorded))
    data["runs"].pop()  # one run left to do
    data["runs"][0].update(status="diverged", train_loss=NAN, val_loss=None, curve=[])
    path = tmp_path / "experiments.cpu.json"
    path.write_text(json.dumps(data))  # json writes NaN as the bare token NaN, which json.loads reads back
    with pytest.raises(ValueError, match=r"runs\[0\]\.train_loss: nan is not finite"):
        suite.run_experiments("cpu", None, tmp_path, command="pytest", allow_mixed=True)


def test_run_notebooks_refuses_a_notebook_outside_the_book(tmp_path):
    import run_notebooks

    elsewhere = tmp_path / "04_counting_parameters.ipynb"
    elsewhere.write_text("{}")
    with pytest.raises(ValueError, match="lie elsewhere"):
        run_notebooks.notebook_paths([str(elsewhere)])
    assert [p.stem for p in run_notebooks.notebook_paths(["04_counting_parameters"])] == ["04_counting_parameters"]
    assert [p.stem for p in run_notebooks.notebook_paths(["notebooks/04_counting_parameters.ipynb"])] == [
        "04_counting_parameters"
    ]


def test_run_experiments_refuses_workers_for_the_language_model_suite(capsys):
    import run_experiments

    with pytest.raises(SystemExit):
        run_experiments.parse_args(["--profile", "ci", "--workers", "2", "--dry-run"])
    assert "--workers applies to --suite hops only" in capsys.readouterr().err
