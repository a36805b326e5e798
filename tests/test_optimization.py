"""Chapter 5c's optimisation tools: gradient logs against .grad, the unrolled copy and per-use gradients against
the shared gradient, LAMB against a hand computation (which AdamW fails), and the learning-rate grid."""

import math

import pytest
import torch

import sharedlib as sl
from sharedlib import optimization as opt
from sharedlib.train import TrainConfig, train


def small_lm(strategy: str, n_layers: int = 3, seed: int = 0, **extra) -> sl.SharedTransformer:
    torch.manual_seed(seed)
    config = sl.TransformerConfig(d_model=16, n_heads=2, d_ff=32, n_layers=n_layers, strategy=strategy,
                                  vocab_size=30, max_len=12, causal=True, lm_head=True, **extra)
    return sl.SharedTransformer(config)


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 30, (3, 13), generator=g)
    return ids[:, :-1], ids[:, 1:]


@pytest.mark.parametrize("strategy", ["none", "all"])
def test_block_parameters_cover_every_parameter_once(strategy):
    model = small_lm(strategy)
    groups = opt.block_parameters(model)
    listed = [id(p) for ps in groups.values() for p in ps]
    assert len(listed) == len(set(listed)) and set(listed) == {id(p) for p in model.parameters()}
    assert sum(name.startswith("block") for name in groups) == (3 if strategy == "none" else 1)


def test_block_parameters_refuses_partial_sharing_and_other_modules():
    with pytest.raises(ValueError, match="share attention and FFN alike"):
        opt.block_parameters(small_lm("attention"))
    with pytest.raises(ValueError, match="SharedTransformer"):
        opt.block_parameters(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("strategy", ["none", "all"])
def test_gradient_log_records_the_norms_of_grad_once_per_backward(strategy):
    model = small_lm(strategy)
    groups = opt.block_parameters(model)
    log = opt.GradientLog(groups)
    expected = []
    for seed in (1, 2):
        model.zero_grad(set_to_none=True)
        sl.next_token_loss(model, batch(seed)).backward()
        expected.append({name: math.sqrt(sum(p.grad.square().sum().item() for p in ps)) for name, ps in groups.items()})
        total = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()]).item()
        assert log.total()[-1] == pytest.approx(total, rel=1e-5)
    log.close()
    assert len(log) == 2
    for i, want in enumerate(expected):
        assert {name: values[i] for name, values in log.norms.items()} == pytest.approx(want, rel=1e-5)
    sl.next_token_loss(model, batch(3)).backward()  # after close: nothing recorded
    assert len(log) == 2


def test_gradient_log_sees_the_raw_norm_during_training():
    model = small_lm("all")
    log = opt.GradientLog(opt.block_parameters(model))

    def get_batch(split, g):
        ids = torch.randint(0, 30, (4, 13), generator=g)
        return ids[:, :-1], ids[:, 1:]

    train(model, sl.next_token_loss, get_batch, TrainConfig(steps=5, warmup=1, eval_every=5, eval_batches=1,
                                                            grad_clip=1e-3, device="cpu"))
    log.close()
    assert len(log) == 5  # one record per step; evaluation runs without gradients
    assert all(t > 1e-3 for t in log.total())  # recorded before clipping to 1e-3


def test_gradient_log_refuses_bad_groups():
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="two groups"):
        opt.GradientLog({"x": [a, b], "y": [a]})
    with pytest.raises(ValueError, match="non-empty"):
        opt.GradientLog({"x": []})


@pytest.mark.parametrize(("strategy", "extra"), [("all", {}), ("cycle-rev", {"n_unique": 2}), ("attention", {}),
                                                 ("groups", {"n_unique": 1, "inner_group_num": 2}), ("none", {})])
def test_unrolled_copy_computes_the_same_function_with_a_parameter_set_per_use(strategy, extra):
    model = small_lm(strategy, n_layers=4, **extra).eval()
    unrolled = opt.unrolled_copy(model)
    depth = model.config.depth
    assert unrolled.config.strategy == "none" and unrolled.config.n_layers == depth
    assert len(unrolled.attention) == len(unrolled.ffn) == depth
    inputs, _ = batch()
    with torch.no_grad():
        assert torch.allclose(unrolled(inputs), model(inputs), atol=1e-6)
    assert not unrolled.training
    state = torch.get_rng_state()
    opt.unrolled_copy(model)
    assert torch.equal(torch.get_rng_state(), state)  # building the copy draws nothing from torch's RNG
    unrolled.attention[0].inner.qkv.weight.data.add_(1.0)  # copies, not the same tensors
    assert not torch.equal(unrolled.attention[0].inner.qkv.weight, model.attention[0].inner.qkv.weight)


@pytest.mark.parametrize(("strategy", "extra"), [("all", {}), ("cycle-rev", {"n_unique": 2})])
def test_per_use_gradients_sum_to_the_shared_gradient(strategy, extra):
    model = small_lm(strategy, n_layers=4, **extra)
    uses = opt.per_use_gradients(model, sl.next_token_loss, batch())
    assert uses.loss == pytest.approx(uses.unrolled_loss, abs=1e-6)
    counts = {}
    for kind, mapping in (("attention", model.attention_map), ("ffn", model.ffn_map)):
        for block in mapping:
            counts[f"{kind} {block}"] = counts.get(f"{kind} {block}", 0) + 1
    assert {name: len(g) for name, g in uses.per_use.items()} == counts
    for name, per_use in uses.per_use.items():
        summed = torch.stack(per_use).sum(0)
        assert torch.allclose(summed, uses.shared[name], rtol=1e-4, atol=1e-7), name
        mean = summed / len(per_use)  # a wrong rule (averaging the uses) is told apart
        assert not torch.allclose(mean, uses.shared[name], rtol=1e-2, atol=1e-7)
        assert not torch.allclose(per_use[0], per_use[-1], rtol=1e-2, atol=1e-7)  # the uses really differ
    assert all(p.grad is None for p in model.parameters())  # measured without touching .grad


def test_per_use_gradients_match_autograd_per_copy_with_ordinary_backward():
    """The unrolled copy's per-layer gradients by .backward() equal what per_use_gradients reports."""
    model = small_lm("all", n_layers=3)
    uses = opt.per_use_gradients(model, sl.next_token_loss, batch())
    unrolled = opt.unrolled_copy(model)
    sl.next_token_loss(unrolled, batch()).backward()
    for layer in range(3):
        flat = torch.cat([p.grad.flatten() for p in unrolled.ffn[layer].parameters()])
        assert torch.allclose(flat, uses.per_use["ffn 0"][layer], atol=1e-7)


def test_gradient_coherence_on_known_cases():
    g = torch.tensor([1.0, 2.0, 3.0])
    assert opt.gradient_coherence([g, g, g]) == pytest.approx((1.0, 1.0))
    eye = torch.eye(4)
    assert opt.gradient_coherence(list(eye)) == pytest.approx((0.5, 0.0))  # 1 / sqrt(4), orthogonal
    assert opt.gradient_coherence([g, -g]) == pytest.approx((0.0, -1.0))
    with pytest.raises(ValueError, match="at least two"):
        opt.gradient_coherence([g])


def test_trust_ratio():
    assert opt.trust_ratio(torch.tensor([3.0, 4.0]), torch.tensor([0.0, 0.5])) == pytest.approx(10.0)
    assert opt.trust_ratio(torch.zeros(3), torch.ones(3)) == 1.0
    assert opt.trust_ratio(torch.ones(3), torch.zeros(3)) == 1.0


def lamb_by_hand(w, grads, lr, betas, eps, decay):
    """LAMB (You et al., 2020, Algorithm 2) with plain Python floats, one tensor, step after step."""
    w = list(w)
    m, v = [0.0] * len(w), [0.0] * len(w)
    ratios = []
    for t, g in enumerate(grads, start=1):
        m = [betas[0] * mi + (1 - betas[0]) * gi for mi, gi in zip(m, g, strict=True)]
        v = [betas[1] * vi + (1 - betas[1]) * gi * gi for vi, gi in zip(v, g, strict=True)]
        m_hat = [mi / (1 - betas[0] ** t) for mi in m]
        v_hat = [vi / (1 - betas[1] ** t) for vi in v]
        u = [mh / (math.sqrt(vh) + eps) + decay * wi for mh, vh, wi in zip(m_hat, v_hat, w, strict=True)]
        ratio = math.sqrt(sum(x * x for x in w)) / math.sqrt(sum(x * x for x in u))
        w = [wi - lr * ratio * ui for wi, ui in zip(w, u, strict=True)]
        ratios.append(ratio)
    return w, ratios


def run_optimizer(make, w, grads):
    p = torch.nn.Parameter(torch.tensor(w, dtype=torch.float64))
    optimizer = make([p])
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        optimizer.step()
    return p.detach().tolist(), optimizer


W0 = [0.5, -1.0, 2.0, 0.25]
GRADS = [[0.1, -0.3, 0.0, 2.0], [0.2, 0.1, -0.05, 1.0], [-0.4, 0.2, 0.3, 0.5]]
SETTINGS = {"lr": 0.1, "betas": (0.9, 0.999), "eps": 1e-6, "weight_decay": 0.01}


def test_lamb_matches_a_hand_computation_of_one_step():
    # One step by hand, written out: m_hat = g and v_hat = g^2, so r = g / (|g| + eps), u = r + lambda w.
    g, lam = GRADS[0], SETTINGS["weight_decay"]
    u = [gi / (abs(gi) + 1e-6) + lam * wi for gi, wi in zip(g, W0, strict=True)]
    ratio = math.sqrt(sum(x * x for x in W0)) / math.sqrt(sum(x * x for x in u))
    want = [wi - 0.1 * ratio * ui for wi, ui in zip(W0, u, strict=True)]
    got, optimizer = run_optimizer(lambda ps: opt.Lamb(ps, **SETTINGS), W0, GRADS[:1])
    assert got == pytest.approx(want, abs=1e-12)
    assert optimizer.state[optimizer.param_groups[0]["params"][0]]["trust_ratio"] == pytest.approx(ratio, abs=1e-12)


def test_lamb_matches_the_hand_computation_over_several_steps():
    want, ratios = lamb_by_hand(W0, GRADS, **{k: v for k, v in SETTINGS.items() if k != "weight_decay"},
                                decay=SETTINGS["weight_decay"])
    got, optimizer = run_optimizer(lambda ps: opt.Lamb(ps, **SETTINGS), W0, GRADS)
    assert got == pytest.approx(want, abs=1e-12)
    assert optimizer.state[optimizer.param_groups[0]["params"][0]]["trust_ratio"] == pytest.approx(ratios[-1])


def test_adamw_fails_the_lamb_hand_check():
    """The check can fail: AdamW with the same settings (no trust ratio) does not produce LAMB's weights."""
    want, _ = lamb_by_hand(W0, GRADS, lr=0.1, betas=(0.9, 0.999), eps=1e-6, decay=0.01)
    got, _ = run_optimizer(lambda ps: torch.optim.AdamW(ps, lr=0.1, betas=(0.9, 0.999), eps=1e-6,
                                                        weight_decay=0.01), W0, GRADS)
    assert got != pytest.approx(want, abs=1e-3)


def test_lamb_skips_parameters_without_gradient_and_runs_a_closure():
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    optimizer = opt.Lamb([a, b], lr=0.1)
    a.grad = torch.ones(3)
    loss = optimizer.step(lambda: torch.tensor(2.0))
    assert loss.item() == 2.0
    assert torch.equal(b.detach(), torch.ones(3)) and b not in optimizer.state
    assert not torch.equal(a.detach(), torch.ones(3))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"lr": 0.0}, "lr must be a finite real number > 0"), ({"betas": (1.0, 0.9)}, "betas must be"),
     ({"eps": 0.0}, "eps must be a finite real number > 0"),
     ({"weight_decay": -1.0}, "weight_decay must be a finite real number >= 0")],
)
def test_lamb_refuses_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        opt.Lamb([torch.nn.Parameter(torch.ones(2))], **kwargs)


def test_optimizer_steps_and_trust_ratios():
    model = small_lm("all")
    optimizer = opt.Lamb(model.parameters(), lr=0.01)
    seen = []

    def get_batch(split, g):
        ids = torch.randint(0, 30, (2, 13), generator=g)
        return ids[:, :-1], ids[:, 1:]

    losses = opt.optimizer_steps(model, optimizer, sl.next_token_loss, get_batch, 3, seed=0, on_step=seen.append)
    assert len(losses) == 3 and seen == [1, 2, 3]
    ratios = opt.trust_ratios(model, optimizer)
    assert set(ratios) == {name for name, _ in model.named_parameters()}
    assert all(r > 0 for r in ratios.values())
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        opt.optimizer_steps(model, optimizer, sl.next_token_loss, get_batch, 0, seed=0)


def test_lr_warmup_grid_trains_every_combination_and_reports_divergence():
    def get_batch(split, g):
        ids = torch.randint(0, 30, (2, 13), generator=g)
        return ids[:, :-1], ids[:, 1:]

    def broken():
        model = small_lm("all")
        with torch.no_grad():
            model.embeddings.tokens.weight.fill_(float("nan"))  # NaN loss: the trainer stops the run
        return model

    rows = opt.lr_warmup_grid({"shared": lambda: small_lm("all"), "broken": broken}, sl.next_token_loss, get_batch,
                              [1e-3, 1e-2], [0, 1], TrainConfig(steps=2, eval_batches=1, device="cpu"))
    assert [(r["label"], r["lr"], r["warmup"]) for r in rows] == [
        (label, lr, w) for label in ("shared", "broken") for lr in (1e-3, 1e-2) for w in (0, 1)]
    assert all(isinstance(r["val_loss"], float) for r in rows if r["label"] == "shared")
    assert all(r["val_loss"] is None for r in rows if r["label"] == "broken")
