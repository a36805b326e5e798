"""The pointer-chain experiment (chapter 6): exact hop counts, fixed disjoint test sets, paired runs, FLOPs at the
depth used, a runner that records and resumes."""

import json
from dataclasses import replace

import pytest
import torch

from sharedlib.counting import forward_flops_per_token
from sharedlib.data import IGNORE, POINTER_OFFSET, ROOT_OFFSET, chain_vocab_size
from sharedlib.experiments import hops as hp
from sharedlib.experiments import suite
from sharedlib.models import SharedTransformer


def brute_force(row):
    """(root bit, hops) of every position of one sequence, following each pointer by hand."""
    out = []
    for t in range(len(row)):
        at, hops = t, 0
        while row[at] >= POINTER_OFFSET:
            at -= row[at] - (POINTER_OFFSET - 1)
            assert at >= 0
            hops += 1
        out.append((row[at] - ROOT_OFFSET, hops))
    return out


@pytest.mark.parametrize(("length", "max_offset", "max_hops"), [(24, 4, 3), (40, 8, 10), (9, 3, 1)])
def test_hop_counts_and_targets_are_exact_and_bounded(length, max_offset, max_hops):
    g = torch.Generator().manual_seed(length)
    inputs, targets, hops = hp.hop_batch(60, length, max_offset, max_hops, g)
    assert inputs.shape == targets.shape == hops.shape == (60, length)
    assert inputs.min() >= ROOT_OFFSET and inputs.max() < chain_vocab_size(max_offset)
    assert (inputs[:, 0] < POINTER_OFFSET).all()  # position 0 is a root
    for i in range(60):
        assert brute_force(inputs[i].tolist()) == list(zip(targets[i].tolist(), hops[i].tolist(), strict=True))
    assert hops.max() == max_hops  # the bound is met, and reached
    assert set(hops.flatten().tolist()) == set(range(max_hops + 1))
    bits, counted = hp.count_hops(inputs)
    assert torch.equal(bits, targets) and torch.equal(counted, hops)


def test_min_hops_leaves_the_shallow_positions_unscored():
    full = hp.hop_batch(20, 30, 6, 8, torch.Generator().manual_seed(3))
    deep = hp.hop_batch(20, 30, 6, 8, torch.Generator().manual_seed(3), min_hops=5)
    assert torch.equal(full[0], deep[0]) and torch.equal(full[2], deep[2])
    assert torch.equal(deep[1], torch.where(full[2] < 5, IGNORE, full[1]))


def test_the_guesses_follow_pointers_then_take_the_nearest_root():
    inputs = torch.tensor([[ROOT_OFFSET + 1, ROOT_OFFSET + 0, POINTER_OFFSET + 1, POINTER_OFFSET]])  # 1 0 ^2 ^1
    assert hp.nearest_root_bits(inputs).tolist() == [[1, 0, 0, 0]]
    assert hp.ancestor_guess(inputs, 1).tolist() == [[1, 0, 1, 0]]  # position 3's parent is 2: nearest root 0
    assert hp.ancestor_guess(inputs, 2).tolist() == [[1, 0, 1, 1]]  # exact once the pointers run out
    assert torch.equal(hp.ancestor_guess(inputs, 9), hp.count_hops(inputs)[0])


def test_test_sets_are_fixed_and_their_seeds_apart_from_training():
    p = hp.get_hops_profile("ci")
    for name, max_hops, min_hops in p.test_hops:
        first, again = hp.hop_test_set(p, name), hp.hop_test_set(p, name)
        assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
        assert first[2].max() == max_hops and (first[1][first[2] < min_hops] == IGNORE).all()
    assert [h for _, h, _ in p.test_hops] == [p.train_hops, 2 * p.train_hops]
    for profile in hp.HOPS_PROFILES.values():
        seeds = hp.data_seeds(profile)
        assert not set(seeds["train"]) & set(seeds["select"])
        assert not set(seeds["train"]) & set(seeds["test"]) and not set(seeds["select"]) & set(seeds["test"])
        hp.check_seeds(profile)
    with pytest.raises(ValueError, match="share generator seeds"):
        hp.check_seeds(replace(p, seeds=hp.TEST_SEED + 10))
    # the selection batches are not the test sets
    assert not torch.equal(hp.selection_set(p)[0][0][:1], hp.hop_test_set(p, "trained")[0][:1])


def test_bad_arguments_raise_clear_errors():
    g = torch.Generator()
    with pytest.raises(ValueError, match="max_hops must be a positive integer"):
        hp.hop_batch(4, 8, 2, 0, g)
    with pytest.raises(ValueError, match=r"min_hops must be an integer in 0\.\.3"):
        hp.hop_batch(4, 8, 2, 3, g, min_hops=4)
    with pytest.raises(ValueError, match="length must be"):
        hp.hop_batch(4, 0, 2, 3, g)
    p = hp.get_hops_profile("ci")
    with pytest.raises(ValueError, match="profile must be one of"):
        hp.get_hops_profile("laptop")
    with pytest.raises(ValueError, match="depth must be one of"):
        hp.train_arm(p, "all", "deep", 1e-3, 0)
    with pytest.raises(ValueError, match="needs the looped strategy"):
        hp.train_arm(p, "none", "random", 1e-3, 0)
    with pytest.raises(ValueError, match="strategy must be one of"):
        hp.arm_config(p, "cycle")
    with pytest.raises(ValueError, match="name must be one of"):
        hp.hop_test_set(p, "deeper")
    with pytest.raises(ValueError, match="workers must be"):
        hp.run_hops("ci", "/nonexistent", workers=0)


def test_a_looped_arm_scored_at_k_iterations_is_the_model_run_k_times():
    torch.manual_seed(0)
    p = hp.get_hops_profile("ci")
    model = SharedTransformer(hp.arm_config(p, "all")).eval()
    inputs, targets, hops = hp.hop_test_set(p, "beyond")
    for k in (1, 3, 7):
        with torch.no_grad():
            direct = model.logits(model(inputs, n_iterations=k))  # (B, L, V)
        chunked = hp.hop_logits(model, inputs, k, chunk=5)
        assert torch.allclose(chunked, direct, atol=1e-5)
        scores = hp.score_hops(model, inputs, targets, hops, k)
        scored = targets != IGNORE
        right = direct[..., :2].argmax(-1) == targets
        assert scores["accuracy"] == pytest.approx(right[scored].float().mean().item())
        for row in scores["by_hops"]:
            at = scored & (hops == row["hops"])
            assert row["positions"] == at.sum().item()
            assert row["accuracy"] == pytest.approx(right[at].float().mean().item())
        assert scores["loss"] == pytest.approx(
            torch.nn.functional.cross_entropy(direct[scored], targets[scored]).item(), rel=1e-5)


def test_every_arm_sees_the_same_batches_and_random_depth_is_drawn(monkeypatch):
    p = hp.replace_steps(hp.get_hops_profile("ci"), 6)
    made = []  # the inputs of every batch an arm draws (selection set, then training)
    original = hp.hop_batch

    def recording(*args, **kwargs):
        batch = original(*args, **kwargs)
        made[-1].append(batch[0])
        return batch

    monkeypatch.setattr(hp, "hop_batch", recording)
    depths = {}
    for arm in p.arms():
        made.append([])
        *_, depths[arm], losses = hp.train_arm(p, *arm, 3e-3, seed=0)
        assert len(depths[arm]) == len(losses) == 6
    assert len(made[0]) == p.eval_batches + 6
    assert all(torch.equal(a, b) for other in made[1:] for a, b in zip(made[0], other, strict=True))
    assert depths[("none", "fixed")] == depths[("all", "fixed")] == [p.n_layers] * 6
    low, high = hp.random_depths(p.n_layers)
    assert all(low <= k <= high for k in depths[("all", "random")]) and len(set(depths[("all", "random")])) > 1


def test_flops_count_the_iterations_a_run_used():
    p = hp.replace_steps(hp.get_hops_profile("ci"), 8)
    record = hp.execute_arm(p, "all", "random", 3e-3, 0)
    _, _, depths, _ = hp.train_arm(p, "all", "random", 3e-3, 0)
    assert record["mean_iterations"] == pytest.approx(sum(depths) / len(depths))
    config = hp.arm_config(p, "all")
    parts = forward_flops_per_token(config, p.length)
    one_iteration = (parts["attention_projections"] + parts["attention_scores"] + parts["ffn"]) // p.n_layers
    assert record["iteration_flops_per_token"] == one_iteration
    assert record["head_flops_per_token"] == parts["lm_head"]
    expected = 3 * (record["mean_iterations"] * one_iteration + parts["lm_head"])
    assert record["flops_per_token"] == round(expected)
    assert record["train_flops"] == pytest.approx(expected * record["tokens"])
    assert record["tokens"] == p.steps * p.batch_size * p.length
    # a fixed-depth arm costs what forward_flops_per_token says of its N layers
    fixed = hp.flops_per_token(config, p.length, p.n_layers)
    assert fixed["train"] == 3 * sum(parts.values())


def test_the_runner_records_validates_and_resumes(tmp_path):
    p = hp.replace_steps(hp.get_hops_profile("ci"), 6)
    path = hp.run_hops(p, tmp_path)
    assert path.name == f"{hp.HOPS_RESULTS_NAME}.ci.json"
    data = suite.load_results(path)  # the shape every recorded file of the book has
    assert len(data["runs"]) == len(p.arms()) * (len(p.lrs) + p.seeds - 1)
    assert data["data_seeds"] == hp.data_seeds(p)
    assert set(data["baselines"]["ancestor_guess"]) == {"trained", "beyond"}
    for run in data["runs"]:
        iterations = {row["iterations"] for row in run["tests"]}
        assert iterations == (set(p.test_iterations) if run["strategy"] == "all" else {p.n_layers})
        assert {row["test_set"] for row in run["tests"]} == {"trained", "beyond"}
        beyond = [r for row in run["tests"] if row["test_set"] == "beyond" for r in row["by_hops"]]
        assert {r["hops"] for r in beyond} <= set(range(p.train_hops + 1, 2 * p.train_hops + 1))
        assert run["select_loss"] == run["val_loss"] and run["mean_iterations"] >= 1
    before = path.read_text()
    hp.run_hops(p, tmp_path)  # nothing left to run: the runs are kept as they are
    assert json.loads(path.read_text())["runs"] == json.loads(before)["runs"]
    cut = {**data, "runs": data["runs"][:-2]}  # as if interrupted before the last two runs
    suite.write_results(path, cut)
    hp.run_hops(p, tmp_path)
    again = suite.load_results(path)["runs"]
    assert again[:-2] == cut["runs"] and [suite.run_key(r) for r in again] == [suite.run_key(r) for r in data["runs"]]
    data["provenance"]["sharedlib_hash"] = "0" * 16
    suite.write_results(path, data)
    with pytest.raises(ValueError, match="other sharedlib code"):
        hp.run_hops(p, tmp_path)


def test_replay_reproduces_the_first_losses(tmp_path):
    p = hp.replace_steps(hp.get_hops_profile("ci"), 6)
    data = suite.load_results(hp.run_hops(p, tmp_path))
    record = next(r for r in data["runs"] if r["depth"] == "random")
    stored = record["first_losses"][:5]
    assert not suite.replay_mismatches(hp.replay_arm(data, record, 5), stored)
    assert not suite.replay_matches(hp.replay_arm(data, {**record, "seed": 1 - record["seed"]}, 5), stored)


def test_the_lr_is_chosen_on_the_selection_loss():
    runs = [{"label": "looped", "seed": 0, "sweep": True, "status": "ok", "lr": lr, "select_loss": loss}
            for lr, loss in ((1e-3, 0.5), (3e-3, 0.2), (1e-2, 0.9))]
    runs.append({"label": "looped", "seed": 0, "sweep": True, "status": "diverged", "lr": 3e-2, "select_loss": None})
    assert hp.chosen_lr(runs, "looped") == 3e-3
    assert hp.chosen_lr(runs, "unshared") is None


def test_the_code_hash_covers_every_module_the_runner_imports():
    from package_imports import imported_modules

    assert "experiments.hops" in hp.HOPS_MODULES
    for name in hp.HOPS_MODULES:
        imported = imported_modules(suite.module_path(name)) - {"", "experiments"}  # package __init__s: no code
        assert imported <= set(hp.HOPS_MODULES), f"{name} imports {sorted(imported - set(hp.HOPS_MODULES))}"


def test_committed_results_learned_the_trained_hops():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "notebooks" / "results" / f"{hp.HOPS_RESULTS_NAME}.cpu.json"
    if not path.exists():
        pytest.skip(f"{path.name} is not recorded yet")
    data = suite.load_results(path)
    settings = data["profile_settings"]
    for run in data["runs"]:  # every finished model at its chosen rate learned the trained range
        if run["status"] == "ok" and run["lr"] == hp.chosen_lr(data["runs"], run["label"]):
            row = next(r for r in run["tests"]
                       if r["test_set"] == "trained" and r["iterations"] == settings["n_layers"])
            assert min(r["accuracy"] for r in row["by_hops"]) > 0.75, run["label"]
