"""Looped (recurrent-depth) language models, chapter 5d: the map, the reductions to the
book's shared stacks, truncated backpropagation, counts and FLOPs against measurement,
depth sampling, loop caches against full recomputation, exits, and pretrained-to-looped
initialisations."""

import math
import statistics
from dataclasses import replace

import pytest
import torch

from sharedlib import decoding
from sharedlib.config import TransformerConfig
from sharedlib.looped import (
    LoopConfig,
    LoopedTransformer,
    exit_decode,
    exit_probabilities,
    gated_loss,
    injection_spectral_norm,
    loop_map,
    looped_flops_per_token,
    looped_parameters,
    prelude_gradient_norm,
    random_depth_loss,
    recursive_from_unshared,
    sample_iterations,
)
from sharedlib.measure import count_forward_flops
from sharedlib.models import SharedTransformer, next_token_loss, windows_loss
from sharedlib.sharing import layer_to_block


def config_for(loop: LoopConfig, **kw) -> TransformerConfig:
    base = dict(d_model=32, n_heads=4, d_ff=64, vocab_size=50, max_len=24, causal=True, lm_head=True)
    base.update(kw)
    return TransformerConfig(n_layers=loop.unique_layers, **base)


def model_for(loop: LoopConfig, seed: int = 0, **kw) -> LoopedTransformer:
    torch.manual_seed(seed)
    return LoopedTransformer(config_for(loop, **kw), loop).eval()


def ids(batch=2, length=12, seed=1):
    return torch.randint(0, 50, (batch, length), generator=torch.Generator().manual_seed(seed))


def test_the_map_is_prelude_then_the_core_cycled_then_coda():
    loop = LoopConfig(n_prelude=1, n_core=2, n_coda=1, n_iterations=3)
    assert loop_map(loop) == [0, 1, 2, 1, 2, 1, 2, 3]
    assert loop_map(loop, 1) == [0, 1, 2, 3]
    # the core is Takase and Kiyono's cycle over its R blocks
    assert loop_map(replace(loop, n_prelude=0, n_coda=0), 3) == layer_to_block("cycle", 6, 2)
    assert len(loop_map(loop, 5)) == loop.depth(5) == 1 + 2 * 5 + 1


@pytest.mark.parametrize("n_core", [1, 2])
def test_without_prelude_coda_or_injection_the_loop_is_the_books_shared_stack(n_core):
    r = 3
    loop = LoopConfig(n_prelude=0, n_core=n_core, n_coda=0, n_iterations=r, injection="none")
    looped = model_for(loop)
    strategy = dict(strategy="all") if n_core == 1 else dict(strategy="cycle", n_unique=n_core)
    shared = SharedTransformer(replace(looped.config, n_layers=n_core * r, **strategy)).eval()
    shared.load_state_dict(looped.state_dict())  # same names: embeddings, blocks, final norm
    x = ids()
    torch.testing.assert_close(looped.logits(looped(x)), shared.logits(shared(x)), rtol=0, atol=1e-6)
    # and the injection changes the function: "add" is not the plain stack
    add = LoopedTransformer(looped.config, replace(loop, injection="add")).eval()
    add.load_state_dict(looped.state_dict())
    assert (add.logits(add(x)) - shared.logits(shared(x))).abs().max() > 1e-3


def test_truncated_backprop_gives_no_gradient_through_early_iterations():
    x = ids()

    def embedding_grad(loop):  # of the prelude (the token table is also the tied head)
        model = model_for(loop).train()
        model.logits(model(x)).sum().backward()
        grad = model.ffn[0].inner.up.weight.grad
        return 0.0 if grad is None else grad.abs().sum().item()

    base = LoopConfig(n_prelude=1, n_core=1, n_coda=1, n_iterations=4, injection="none")
    # without injection the input enters only s_0 = e: the first iteration alone links it
    assert embedding_grad(base) > 0  # all four iterations backpropagated
    assert embedding_grad(replace(base, backprop_iterations=4)) > 0
    assert embedding_grad(replace(base, backprop_iterations=3)) == 0.0
    # with injection e re-enters every iteration, so the last one still reaches it
    assert embedding_grad(replace(base, injection="add", backprop_iterations=1)) > 0
    assert embedding_grad(replace(base, injection="concat", backprop_iterations=1)) > 0


def test_truncation_changes_the_core_gradient_but_not_the_forward():
    x = ids()
    loop = LoopConfig(n_prelude=1, n_core=1, n_coda=1, n_iterations=4, injection="add")
    grads, outputs = [], []
    for k in (None, 1):
        model = model_for(replace(loop, backprop_iterations=k)).train()
        out = model.logits(model(x))
        out.sum().backward()
        outputs.append(out.detach())
        grads.append(model.ffn[1].inner.up.weight.grad.clone())
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)
    assert (grads[0] - grads[1]).abs().max() > 1e-6


@pytest.mark.parametrize(
    "loop",
    [
        LoopConfig(),
        LoopConfig(n_prelude=2, n_core=2, n_coda=0, injection="add"),
        LoopConfig(n_prelude=0, n_core=1, n_coda=2, injection="none", exit_gate=True),
        LoopConfig(injection_bound=0.9, exit_gate=True),
    ],
)
def test_parameter_count_is_exact(loop):
    model = model_for(loop)
    assert looped_parameters(model.config, loop) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("injection", ["concat", "add", "none"])
@pytest.mark.parametrize("r", [1, 3])
def test_flops_per_token_match_the_counted_matmuls(injection, r):
    loop = LoopConfig(n_prelude=1, n_core=2, n_coda=1, n_iterations=r, injection=injection)
    model = model_for(loop)
    x = ids(batch=2, length=12)
    measured = count_forward_flops(lambda: model.logits(model(x)))
    assert looped_flops_per_token(model.config, loop, 12) * x.numel() == measured
    # the count grows with r: a wrong depth is caught
    assert looped_flops_per_token(model.config, loop, 12, r + 1) * x.numel() != measured


def test_random_depth_has_the_stated_mean_and_is_capped():
    loop = LoopConfig(n_iterations=8, sampling="lognormal-poisson", max_iterations=10_000)
    g = torch.Generator().manual_seed(0)
    draws = [sample_iterations(loop, g) for _ in range(20_000)]
    mean, se = statistics.mean(draws), statistics.stdev(draws) / math.sqrt(len(draws))
    assert abs(mean - 8) < 4 * se  # Geiping et al.'s own parametrisation would give 9
    assert min(draws) >= 1 and statistics.stdev(draws) > 2
    capped = replace(loop, max_iterations=9)
    assert max(sample_iterations(capped, g) for _ in range(2_000)) == 9
    assert sample_iterations(LoopConfig(n_iterations=5)) == 5


def test_random_depth_loss_trains_at_sampled_depths_and_evaluates_at_r():
    loop = LoopConfig(n_iterations=3, sampling="lognormal-poisson", max_iterations=6)
    model = model_for(loop)
    x = ids()
    batch = (x[:, :-1], x[:, 1:])
    fixed = random_depth_loss(model.eval(), batch)
    torch.manual_seed(0)
    losses = {round(random_depth_loss(model.train(), batch).item(), 6) for _ in range(12)}
    assert len(losses) > 1  # depths differ between steps
    assert torch.isfinite(fixed)


def test_an_exact_loop_cache_decodes_like_the_full_forward_and_a_shared_slot_does_not():
    loop = LoopConfig(n_prelude=1, n_core=2, n_coda=1, n_iterations=3)
    model = model_for(loop)
    x = ids(length=12)
    full = model.logits(model(x))

    def decoded(slots):
        return decoding.decode_teacher_forced(model, x, 5, slots=slots)

    exact, cache = decoded(None)
    torch.testing.assert_close(exact, full, rtol=0, atol=1e-5)
    assert len(cache.layers) == loop.depth() == model.cache_depth(None)
    assert decoded(3)[0].sub(full).abs().max() < 1e-5  # r slots: one per iteration
    shared, cache = decoded(1)
    assert len(cache.layers) == 1 + 2 * 1 + 1
    assert shared.sub(full).abs().max() > 1e-5  # earlier tokens seen at their last iteration
    assert shared[:, :5].sub(full[:, :5]).abs().max() < 1e-5  # the prompt itself is exact


def test_exit_decoding_without_exits_is_the_shared_slot_cache_token_by_token():
    loop = LoopConfig(n_prelude=1, n_core=1, n_coda=1, n_iterations=3)
    model = model_for(loop)
    x = ids(length=10)
    logits, counts = exit_decode(model, x, threshold=0.0)
    assert counts.eq(3).all()
    step, cache = decoding.prefill(model, x[:, :1], slots=1)
    steps = [step]
    for t in range(1, 10):
        step, cache = decoding.extend(model, x[:, t : t + 1], cache)
        steps.append(step)
    torch.testing.assert_close(logits, torch.cat(steps, 1), rtol=0, atol=1e-5)
    # a threshold no KL reaches exits at the first comparison, after two iterations
    assert exit_decode(model, x, threshold=1e9)[1].eq(2).all()
    counts = exit_decode(model, x, threshold=1e-3, max_iterations=8)[1]
    assert counts.min() >= 2 and counts.max() <= 8


def test_exit_probabilities_and_the_gated_loss():
    gates = torch.tensor([0.5, 0.5, 0.5])[:, None, None]  # (r, B, T)
    p = exit_probabilities(gates)[:, 0, 0]
    torch.testing.assert_close(p, torch.tensor([0.5, 0.25, 0.25]))
    gates = torch.rand(5, 3, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(exit_probabilities(gates).sum(0), torch.ones(3, 4))
    losses = torch.rand(5, 3, 4)
    expected = (exit_probabilities(gates) * losses).sum(0).mean()
    torch.testing.assert_close(gated_loss(losses, gates, 0.0), expected)
    # the entropy bonus lowers the loss of a spread distribution
    assert gated_loss(losses, gates, 0.1) < expected
    with pytest.raises(ValueError, match="entropy_weight"):
        gated_loss(losses, gates, -1.0)


def test_iteration_outputs_end_at_the_forward_and_carry_gates():
    loop = LoopConfig(n_iterations=3, exit_gate=True)
    model = model_for(loop)
    x = ids()
    logits, gates = model.iteration_outputs(x)
    assert logits.shape == (3, 2, 12, 50) and gates.shape == (3, 2, 12)
    torch.testing.assert_close(logits[-1], model.logits(model(x)), rtol=0, atol=1e-6)
    assert model_for(LoopConfig()).iteration_outputs(x)[1] is None


def test_the_injection_bound_holds_the_spectral_norm():
    loop = LoopConfig(n_iterations=2, injection_bound=0.9)
    free = model_for(replace(loop, injection_bound=None))
    bounded = model_for(loop)
    with torch.no_grad():
        free.state_in.weight.normal_(0, 1.0)
        bounded.state_in.parametrizations.weight.original.copy_(free.state_in.weight)
    bounded.train()
    for _ in range(30):  # the power iteration converges during training forwards
        bounded(ids())
    bounded.eval()
    assert injection_spectral_norm(free) > 5
    assert injection_spectral_norm(bounded) == pytest.approx(0.9, rel=1e-3)
    with pytest.raises(ValueError, match="injection='concat'"):
        injection_spectral_norm(model_for(LoopConfig(injection="add")))


@pytest.mark.parametrize("init", ["lower", "stepwise", "average"])
def test_recursive_initialisations_take_the_stated_layers(init):
    torch.manual_seed(0)
    unshared = SharedTransformer(replace(config_for(LoopConfig()), n_layers=6))
    recursive = recursive_from_unshared(unshared, 3, init)
    assert recursive.config.strategy == "cycle" and recursive.attention_map == [0, 1, 2, 0, 1, 2]
    sources = {"lower": [[0], [1], [2]], "stepwise": [[0], [2], [4]], "average": [[0, 3], [1, 4], [2, 5]]}[init]
    for j, layers in enumerate(sources):
        expected = torch.stack([unshared.ffn[i].inner.up.weight for i in layers]).mean(0)
        torch.testing.assert_close(recursive.ffn[j].inner.up.weight, expected)
    torch.testing.assert_close(recursive.embeddings.tokens.weight, unshared.embeddings.tokens.weight)
    with pytest.raises(ValueError, match="init"):
        recursive_from_unshared(unshared, 3, "top")
    with pytest.raises(ValueError, match="must divide"):
        recursive_from_unshared(unshared, 4, "lower")


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(n_core=0), "n_core"),
        (dict(n_prelude=-1), "n_prelude"),
        (dict(injection="gate"), "injection"),
        (dict(sampling="uniform"), "sampling"),
        (dict(sampling="lognormal-poisson", n_iterations=1), "n_iterations"),
        (dict(max_iterations=2, n_iterations=4), "max_iterations"),
        (dict(backprop_iterations=0), "backprop_iterations"),
        (dict(injection="add", injection_bound=1.0), "injection_bound"),
        (dict(sigma=0.0), "sigma"),
    ],
)
def test_bad_loop_settings_are_refused_by_name(kwargs, field):
    with pytest.raises(ValueError, match=field):
        LoopConfig(**kwargs)


def test_a_config_that_does_not_hold_the_unique_layers_is_refused():
    loop = LoopConfig()
    with pytest.raises(ValueError, match="n_layers = P \\+ R \\+ C = 3"):
        LoopedTransformer(replace(config_for(loop), n_layers=4), loop)
    with pytest.raises(ValueError, match="strategy 'none'"):
        LoopedTransformer(replace(config_for(loop), strategy="all"), loop)
    model = model_for(loop)
    with pytest.raises(ValueError, match="slots"):
        decoding.prefill(model, ids(), slots=9)
    with pytest.raises(ValueError, match="LoopedTransformer"):
        SharedTransformer(config_for(loop)).cache_depth(None, slots=1)


def test_relaxed_recursion_at_full_rank_restores_the_unshared_weight_matrices():
    from sharedlib.looped import relax_recursive

    torch.manual_seed(0)
    unshared = SharedTransformer(replace(config_for(LoopConfig()), n_layers=4)).eval()
    recursive = recursive_from_unshared(unshared, 2, "average").eval()
    x = ids(length=16)
    target = unshared.logits(unshared(x))
    gaps = {}
    for rank in (1, 32):  # 32 = d_model: every residual matrix is fitted exactly
        relaxed = relax_recursive(unshared, recursive, rank).eval()
        gaps[rank] = (relaxed.logits(relaxed(x)) - target).abs().max().item()
    recursive_gap = (recursive.logits(recursive(x)) - target).abs().max().item()
    # at initialisation biases and norms are equal in every layer, so only matrices differ
    assert gaps[32] < 1e-5 < recursive_gap
    assert gaps[1] > 1e-5
    with pytest.raises(ValueError, match="unshared"):
        relax_recursive(recursive, recursive, 2)


def test_teacher_forced_decoding_checks_the_prompt_length():
    model = model_for(LoopConfig(n_iterations=2))
    x = ids(length=6)
    with pytest.raises(ValueError, match=r"prompt_length must be an integer in 1\.\.6"):
        decoding.decode_teacher_forced(model, x, 0)
    logits, cache = decoding.decode_teacher_forced(model, x, 6)  # all prefilled
    torch.testing.assert_close(logits, model.logits(model(x)), rtol=0, atol=1e-5)
    assert cache.length == 6


def test_windows_loss_is_the_mean_next_token_loss_at_any_chunk_and_depth():
    model = model_for(LoopConfig(n_iterations=2))
    windows = ids(batch=5, length=9)  # (W, T+1)
    want = next_token_loss(model.eval(), (windows[:, :-1], windows[:, 1:])).item()
    assert windows_loss(model, windows, chunk=2) == pytest.approx(want, rel=1e-6)
    deeper = windows_loss(model, windows, chunk=5, n_iterations=5)
    with torch.no_grad():
        logits = model.logits(model(windows[:, :-1], n_iterations=5))  # (W, T, V)
    direct = torch.nn.functional.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten())
    assert deeper == pytest.approx(direct.item(), rel=1e-6)
    assert abs(deeper - want) > 1e-6  # n_iterations reaches the forward


def test_prelude_gradient_norm_follows_truncation_and_injection():
    cut = LoopConfig(n_iterations=3, injection="none", backprop_iterations=1)
    kept = replace(cut, injection="concat")
    x = ids(length=8)
    assert prelude_gradient_norm(model_for(cut), x) == 0.0
    assert prelude_gradient_norm(model_for(kept), x) > 0.0
    assert prelude_gradient_norm(model_for(replace(cut, backprop_iterations=None)), x) > 0.0
    with pytest.raises(ValueError, match="no prelude"):
        prelude_gradient_norm(model_for(replace(cut, n_prelude=0)), x)
