"""Chapter 5c's recorded measurements (``sharedlib.experiments.why``): the runner writes a valid, resumable file,
and each statistic agrees with an independent computation on one case (issue 23, item 8)."""

import itertools
import json
import math

import pytest
import record_why_one_block as script
import torch

from sharedlib.experiments import suite, why
from sharedlib.models import SharedTransformer
from sharedlib.optimization import unrolled_copy

PROFILE = why.PROFILES["ci"]


@pytest.fixture(scope="module")
def seed0():
    """Seed 0 at the ci size, with its trained models (one training for the module's tests)."""
    torch.set_num_threads(1)
    lrs, _ = why.chosen_rates(PROFILE)
    return why.execute_seed(PROFILE, 0, lrs, keep_models=True), lrs


def report_windows():
    spec = why.run_spec(PROFILE, "none", 0, 1e-3)
    return suite.validation_windows(suite.corpus_for(spec), spec)[1]


def cross_entropy(model, windows, n_iterations=None):
    with torch.no_grad():
        logits = model.logits(model(windows[:, :-1], n_iterations=n_iterations))  # (W, T, V)
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten()).item()


def hsic_cka(x, y):
    """CKA by its definition: HSIC of the (n, n) linear kernels with explicit centering matrices."""
    x, y = x.double(), y.double()
    n = x.shape[0]
    h = torch.eye(n, dtype=torch.float64) - torch.full((n, n), 1 / n, dtype=torch.float64)

    def hsic(a, b):
        return torch.trace(a @ h @ b @ h)

    kx, ky = x @ x.T, y @ y.T
    return (hsic(kx, ky) / (hsic(kx, kx) * hsic(ky, ky)).sqrt()).item()


# --- the runner ---------------------------------------------------------------------------------------------


def test_runner_writes_a_valid_file_resumes_and_never_overwrites_a_complete_one(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    path = why.run_why("ci", tmp_path, command="test")
    data = why.load_why(path)
    assert path.name == "why_one_block.ci.json"
    assert [r["seed"] for r in data["runs"]] == list(range(PROFILE.seeds))
    assert set(data["provenance"]) >= set(suite.PROVENANCE_FIELDS) and data["provenance"]["threads"] == 1
    assert "middle" in data["lr_source"]  # no recorded ci sweep: the grid's middle
    middle = suite.PROFILES["ci"].lrs[len(suite.PROFILES["ci"].lrs) // 2]
    assert data["lrs"] == {"none": middle, "all": middle}
    assert data["baselines"]["unigram"] > data["baselines"]["bigram"] > data["baselines"]["5-gram"]
    complete = path.read_bytes()
    assert why.run_why("ci", tmp_path, command="again") == path
    assert path.read_bytes() == complete  # a complete file is left as it is

    # an interrupted command leaves the seeds it finished; a restart adds only the missing one
    first = data["runs"][0]
    path.write_text(json.dumps({**data, "runs": [first]}))
    done = []
    real = why.execute_seed

    def counting(profile, seed, *args, **kwargs):
        done.append(seed)
        return real(profile, seed, *args, **kwargs)

    monkeypatch.setattr(why, "execute_seed", counting)
    why.run_why("ci", tmp_path, command="resume")
    resumed = why.load_why(path)
    assert done == [1]
    assert resumed["runs"][0] == first
    again, before = resumed["runs"][1], data["runs"][1]
    assert again["models"]["none"]["val_loss"] == before["models"]["none"]["val_loss"]  # deterministic
    assert resumed["provenance"]["commands"] == ["test", "resume"]

    def failing(profile, seed, *args, **kwargs):
        raise KeyboardInterrupt

    path.write_text(json.dumps({**data, "runs": [first]}))
    monkeypatch.setattr(why, "execute_seed", failing)
    with pytest.raises(KeyboardInterrupt):
        why.run_why("ci", tmp_path)
    assert [r["seed"] for r in why.load_why(path)["runs"]] == [0]  # still valid


def test_the_runner_refuses_other_settings_and_unwritable_paths(tmp_path, capsys):
    torch.set_num_threads(1)
    path = tmp_path / "why_one_block.ci.json"
    lrs, _ = why.chosen_rates("ci")
    data = {"provenance": {k: 0 for k in suite.PROVENANCE_FIELDS}, "profile": "ci",
            "profile_settings": {}, "model_settings": {}, "lrs": lrs, "baselines": {}, "runs": []}
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="other profile_settings"):
        why.run_why("ci", tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="not a directory"):
        why.run_why("ci", blocker / "sub")
    with pytest.raises(SystemExit):
        script.main(["--profile", "ci", "--output-dir", str(blocker / "sub")])
    assert "not a directory" in capsys.readouterr().err
    with pytest.raises(ValueError, match="seed recorded twice"):
        why.validate_why({**data, "runs": [{"seed": 0, "status": "ok", "models": {}, "cka": {}, "iterations": {},
                                            "weights": {}}] * 2})
    with pytest.raises(ValueError, match="not finite"):
        why.validate_why({**data, "baselines": {"bigram": math.nan}})


def test_each_seed_is_the_suites_equal_depth_run():
    lrs = {**{s: 1e-3 for s in suite.ALL_STRATEGIES}, "none": 3e-3, "all": 6e-3}
    plan = {(s.label, s.seed): s.spec_hash for s in suite.plan("ci", "equal-depth", lrs)}
    for strategy in why.STRATEGIES:
        for seed in range(PROFILE.seeds):
            assert why.run_spec(PROFILE, strategy, seed, lrs[strategy]).spec_hash == plan[(strategy, seed)]


# --- each statistic against an independent computation ------------------------------------------------------


def test_losses_and_iterations(seed0):
    record, _ = seed0
    models, windows = record["_models"]["trained"], report_windows()
    for strategy in why.STRATEGIES:
        assert record["models"][strategy]["val_loss"] == pytest.approx(cross_entropy(models[strategy], windows),
                                                                       abs=1e-5)
    n, losses = record["n_layers"], record["iterations"]["loss"]
    assert len(losses) == PROFILE.iteration_factor * n
    for k in (1, n + 1, len(losses)):  # an ordinary forward pass with k iterations
        assert losses[k - 1] == pytest.approx(cross_entropy(models["all"], windows, k), abs=1e-5)
    stats = why.seed_statistics(record)
    assert stats["loss_gap"] == pytest.approx(stats["loss_all"] - stats["loss_none"])
    assert stats["iter_more"] == pytest.approx(losses[n] - losses[n - 1])
    assert stats["iter_fewer"] == pytest.approx(losses[n - 2] - losses[n - 1])
    assert losses[int(stats["iter_best_k"]) - 1] == min(losses)
    assert set(why.STATISTICS) <= set(stats)


def test_cka_of_states_and_updates(seed0):
    record, _ = seed0
    model, probe = record["_models"]["trained"]["none"], record["_models"]["probe"]
    x = torch.randn(4, 8, 5, generator=torch.Generator().manual_seed(0))
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=torch.Generator().manual_seed(1)))
    assert why.consecutive_cka([x, x, 3 * x @ q]) == pytest.approx([1.0, 1.0])  # identical, rotated and scaled
    with torch.no_grad():  # the residual stream by hand: the embeddings, then each layer
        states = [model.embeddings(probe)]
        for layer in range(model.config.n_layers):
            states.append(model.apply_layer(layer, layer, layer, states[-1]))
    flat = [s.reshape(-1, s.shape[-1]) for s in states]
    cka = record["cka"]["none"]
    assert cka["consecutive"][1] == pytest.approx(hsic_cka(flat[1], flat[2]), abs=1e-6)
    assert cka["span"] == pytest.approx(hsic_cka(flat[1], flat[-1]), abs=1e-6)
    updates = [b - a for a, b in itertools.pairwise(flat)]
    assert cka["updates"][0] == pytest.approx(hsic_cka(updates[0], updates[1]), abs=1e-6)


def test_weight_similarity_and_the_permutation_caveat(seed0):
    record, _ = seed0
    model, initial = record["_models"]["trained"]["none"], record["_models"]["initial"]["none"]
    a = model.attention[0].inner.qkv.weight.detach().double().flatten()
    b = model.attention[1].inner.qkv.weight.detach().double().flatten()
    raw = record["weights"]["raw"]["attention.qkv"]
    assert raw["cosine"][0] == pytest.approx((a @ b / (a.norm() * b.norm())).item(), abs=1e-9)
    assert raw["distance"][0] == pytest.approx(((a - b).norm() / a.norm()).item(), abs=1e-9)
    w0 = initial.ffn[0].inner.up.weight.detach().double()
    moved = (model.ffn[0].inner.up.weight.detach().double() - w0).norm() / w0.norm()
    assert record["weights"]["moved"]["ffn.up"][0] == pytest.approx(moved.item(), rel=1e-6)

    # a permuted copy of a layer's FFN units: the same function, raw similarity lower, aligned similarity 1
    units = why.ffn_units(model, 0)
    perm = torch.randperm(units.shape[0], generator=torch.Generator().manual_seed(0))
    copy = SharedTransformer(model.config)
    copy.load_state_dict(model.state_dict())
    inner = copy.ffn[1].inner
    with torch.no_grad():
        source = model.ffn[1].inner
        inner.up.weight.copy_(source.up.weight[perm])
        inner.up.bias.copy_(source.up.bias[perm])
        inner.down.weight.copy_(source.down.weight[:, perm])
    windows = report_windows()[:4]
    assert cross_entropy(copy, windows) == pytest.approx(cross_entropy(model, windows), abs=1e-5)
    same = why.aligned_similarity(why.ffn_units(model, 1), why.ffn_units(copy, 1))
    assert same["aligned_cosine"] == pytest.approx(1.0, abs=1e-12) and same["aligned_distance"] < 1e-12
    assert same["raw_cosine"] < 0.5
    # the recorded pair: matching beats the identity and random orders
    a, b = why.ffn_units(model, 0), why.ffn_units(model, 1)
    aligned = record["weights"]["ffn_units"]["aligned_cosine"][0]
    assert aligned == pytest.approx(why.aligned_similarity(a, b)["aligned_cosine"])
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        shuffled = b[torch.randperm(len(b), generator=g)]
        assert aligned >= (a.flatten() @ shuffled.flatten() / (a.norm() * b.norm())).item() - 1e-12
    assert aligned >= record["weights"]["ffn_units"]["raw_cosine"][0]


def test_gradient_coherence_and_first_step_norms(seed0):
    record, lrs = seed0
    shared = record["_models"]["trained"]["all"]
    spec = why.run_spec(PROFILE, "all", 0, lrs["all"])
    corpus = suite.corpus_for(spec)
    inputs, targets = corpus.batch("train", spec.batch_size, spec.seq_len,
                                   torch.Generator().manual_seed(why.PROBE_BATCH_SEED))

    def backward(model):
        model.zero_grad()
        loss = torch.nn.functional.cross_entropy(model.logits(model(inputs)).flatten(0, 1), targets.flatten())
        loss.backward()

    unrolled = unrolled_copy(shared)
    backward(unrolled)  # .grad of layer i's copy: the contribution of use i
    uses = [torch.cat([p.grad.flatten() for p in unrolled.ffn[i].parameters()]).double()
            for i in range(shared.config.n_layers)]
    backward(shared)
    total = torch.cat([p.grad.flatten() for p in shared.ffn[0].parameters()]).double()
    assert (torch.stack(uses).sum(0) - total).norm() / total.norm() < 1e-5
    ratio = (total.norm() / sum(u.norm() for u in uses)).item()
    cosines = [(u @ v / (u.norm() * v.norm())).item() for u, v in itertools.permutations(uses, 2)]
    (row,) = [r for r in record["coherence"] if r["step"] == spec.train.steps and r["sublayer"] == "ffn 0"]
    assert row["ratio"] == pytest.approx(ratio, abs=1e-5)
    assert row["mean_cosine"] == pytest.approx(sum(cosines) / len(cosines), abs=1e-5)
    first = [r for r in record["coherence"] if r["step"] == 0]
    assert all(r["sum_error"] < 1e-5 for r in first)

    # the first step's gradient norms: the shared block against a mean unshared layer
    norms = {}
    for strategy in why.STRATEGIES:
        torch.manual_seed(0)
        model = SharedTransformer(suite.profile_model_config(PROFILE.model, strategy))
        x, y = corpus.batch("train", spec.batch_size, spec.seq_len, torch.Generator().manual_seed(0))
        model.zero_grad()
        torch.nn.functional.cross_entropy(model.logits(model(x)).flatten(0, 1), y.flatten()).backward()
        norms[strategy] = [
            math.sqrt(sum(p.grad.square().sum().item() for m in (model.attention[i], model.ffn[i])
                          for p in m.parameters()))
            for i in range(len(model.attention))]
    expected = norms["all"][0] / (sum(norms["none"]) / len(norms["none"]))
    assert record["gradient_norms"]["first_step_ratio"] == pytest.approx(expected, rel=1e-4)
