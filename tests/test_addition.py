"""The iterations-and-length task (chapter 5b): the data are right, runs are paired, the suite records and resumes."""

import json

import pytest
import torch

from sharedlib.experiments import addition as ad
from sharedlib.experiments import suite


def bits(value, n):
    return [(value >> i) & 1 for i in range(n)]


def test_sum_bits_match_integer_addition():
    g = torch.Generator().manual_seed(0)
    inputs, targets, _ = ad.addition_batch(50, 12, g)
    assert (inputs[:, 0] == ad.START).all() and (targets[:, 0] == -100).all() and (inputs[:, -1] == 0).all()
    a, b = inputs[:, 1:-1] // 2, inputs[:, 1:-1] % 2
    for i in range(50):
        x = sum(int(v) << k for k, v in enumerate(a[i]))
        y = sum(int(v) << k for k, v in enumerate(b[i]))
        assert targets[i, 1:].tolist() == bits(x + y, 13)


def test_carry_span_counts_the_positions_a_carry_must_cross():
    def brute(a, b):
        n, spans = len(a), []
        for t in range(n + 1):  # distance back to the nearest deciding position (or the start)
            k = t - 1
            while k >= 0 and a[k] + b[k] == 1:
                k -= 1
            spans.append(t - k)
        return max(spans)

    g = torch.Generator().manual_seed(1)
    a, b = torch.randint(0, 2, (2, 40, 9), generator=g)
    assert ad.carry_span(a, b).tolist() == [brute(a[i].tolist(), b[i].tolist()) for i in range(40)]
    ones, one = torch.tensor([bits(2**8 - 1, 8)]), torch.tensor([bits(1, 8)])  # 1111 1111 + 1: carry to bit 8
    assert ad.carry_span(ones, one).item() == 8
    assert ad.carry_span(torch.zeros(1, 8, dtype=torch.long), torch.zeros(1, 8, dtype=torch.long)).item() == 1


@pytest.mark.parametrize("position", ["rotary", "none", "learned"])
def test_without_a_start_token_equal_leading_tokens_are_indistinguishable(position):
    """Rotary and no positions leave attention's values position-free: the states of [3] and [3, 3] coincide
    at every depth unless a start token comes first. Learned positions tell them apart."""
    torch.manual_seed(0)
    p = ad.get_addition_profile("ci")
    model = ad.AdditionModel(ad.arm_config(p, "none", position)).eval()
    with torch.no_grad():
        one, two = model.body(torch.tensor([[3]])), model.body(torch.tensor([[3, 3]]))
        started_one = model.body(torch.tensor([[ad.START, 3]]))
        started_two = model.body(torch.tensor([[ad.START, 3, 3]]))
    assert torch.allclose(one[0, 0], two[0, 1], atol=1e-6) == (position != "learned")
    assert not torch.allclose(started_one[0, 1], started_two[0, 2], atol=1e-4)


def test_every_arm_sees_the_same_batches_at_a_seed():
    seen = {}
    p = ad.get_addition_profile("ci")
    for arm in p.arms():
        torch.manual_seed(0)
        _, _, tokens, _ = ad.train_arm(ad.replace_steps(p, 3), *arm, 3e-3, seed=0)  # tokens: the lengths drawn
        seen[arm] = tokens
    assert len(set(seen.values())) == 1


def test_bad_arguments_raise():
    p = ad.get_addition_profile("ci")
    with pytest.raises(ValueError, match="profile must be one of"):
        ad.get_addition_profile("laptop")
    with pytest.raises(ValueError, match="depth must be one of"):
        ad.train_arm(p, "all", "rotary", "deep", 1e-3, 0)
    with pytest.raises(ValueError, match="needs the looped strategy"):
        ad.train_arm(p, "none", "rotary", "random", 1e-3, 0)
    with pytest.raises(ValueError, match="n_bits must be a positive integer"):
        ad.addition_batch(4, 0, torch.Generator())
    with pytest.raises(ValueError, match="workers must be"):
        ad.run_addition("ci", "/nonexistent", workers=0)


def test_the_suite_records_validates_and_resumes(tmp_path):
    p = ad.replace_steps(ad.get_addition_profile("ci"), 6)
    path = ad.run_addition(p, tmp_path)
    data = suite.load_results(path)  # the shape every recorded file of the book has
    assert len(data["runs"]) == len(p.arms()) * (len(p.lrs) + p.seeds - 1)
    looped = next(r for r in data["runs"] if r["strategy"] == "all")
    assert {row["iterations"] for row in looped["accuracy"]} == set(p.test_iterations)
    before = path.read_text()
    ad.run_addition(p, tmp_path)  # nothing left to run: the runs are kept as they are
    assert json.loads(path.read_text())["runs"] == json.loads(before)["runs"]


def test_the_code_hash_covers_every_module_the_suite_imports():
    from package_imports import imported_modules

    for name in ad.ADDITION_MODULES:
        imported = imported_modules(suite.module_path(name)) - {"", "experiments"}  # package __init__s: no code
        assert imported <= set(ad.ADDITION_MODULES), f"{name} imports {sorted(imported - set(ad.ADDITION_MODULES))}"


def test_replay_reproduces_a_run_and_notices_a_changed_one(tmp_path):
    p = ad.replace_steps(ad.get_addition_profile("ci"), 6)
    data = suite.load_results(ad.run_addition(p, tmp_path))
    record = data["runs"][0]
    stored = record["first_losses"][:5]
    again = ad.replay_arm(data, record, 5)
    assert not suite.replay_mismatches(again, stored)
    other = {**record, "seed": record["seed"] + 1}  # the check can fail: another seed, another rate
    assert not suite.replay_matches(ad.replay_arm(data, other, 5), stored)
    assert not suite.replay_matches(ad.replay_arm(data, {**record, "lr": record["lr"] * 1.01}, 5)[1:], stored[1:])
    with pytest.raises(ValueError, match="steps must be"):
        ad.replay_arm(data, record, 0)


def test_committed_results_validate_replay_and_learned():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "notebooks" / "results" / f"{ad.ADDITION_RESULTS_NAME}.cpu.json"
    if not path.exists():
        pytest.skip(f"{path.name} is not recorded yet")
    data = suite.load_results(path)
    record = next(r for r in data["runs"] if r["status"] == "ok" and r["device"] == "cpu")
    stored = record["first_losses"][:5]
    again = ad.replay_arm(data, record, 5)
    assert not suite.replay_mismatches(again, stored)  # to within suite.REPLAY_RTOL: another CPU rounds otherwise
    for step in range(5):  # a stored loss off by ten times the tolerance is noticed
        changed = [v * (1 + 10 * suite.REPLAY_RTOL) if i == step else v for i, v in enumerate(stored)]
        assert not suite.replay_matches(again, changed)
    trained_bits = data["profile_settings"]["train_bits"]
    depth = data["profile_settings"]["n_layers"]
    for run in data["runs"]:  # every finished model adds numbers of the trained length
        if run["status"] == "ok" and run["lr"] == ad.chosen_lr(data["runs"], run["label"]):
            at_trained = [row for row in run["accuracy"] if row["bits"] == trained_bits and row["iterations"] == depth]
            assert at_trained[0]["sequence_accuracy"] > 0.5, run["label"]
