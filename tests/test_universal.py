"""The Universal Transformer with ACT (chapter 5b): halting weights, frozen states, ponder gradient, parity."""

import pytest
import torch

from sharedlib.config import TransformerConfig
from sharedlib.data import chain_vocab_size, pointer_chain_batch
from sharedlib.evidence import rank_correlation
from sharedlib.models import SharedTransformer
from sharedlib.universal import (
    UniversalTransformer,
    act_loss,
    act_weights,
    halting_step,
    timestep_signal,
)

VOCAB = 12


def config(n_layers: int = 6, **overrides) -> TransformerConfig:
    fields = dict(d_model=16, n_heads=2, d_ff=32, n_layers=n_layers, strategy="all", vocab_size=VOCAB, max_len=10,
                  lm_head=True)
    return TransformerConfig(**{**fields, **overrides})


def inputs(batch: int = 3, length: int = 7, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def model(seed: int = 0, **kwargs) -> UniversalTransformer:
    torch.manual_seed(seed)
    ut = UniversalTransformer(config(kwargs.pop("n_layers", 6), **kwargs.pop("config", {})), **kwargs)
    with torch.no_grad():  # spread the halting probabilities so that positions halt at different steps
        ut.halting.weight.normal_(0, 0.5)
        ut.halting.bias.fill_(-0.5)
    return ut.double()


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_halting_weights_sum_to_one_and_steps_are_integers_in_range(norm):
    ut = model(config={"norm": norm})
    _, record = ut(inputs())
    assert torch.allclose(record.weights.sum(0), torch.ones(3, 7, dtype=torch.float64), atol=1e-12)
    assert record.steps.dtype == torch.long
    assert 1 <= record.steps.min() and record.steps.max() <= ut.n_iterations
    assert len(set(record.steps.flatten().tolist())) > 1, "the test needs positions that halt at different steps"
    assert (record.weights >= 0).all()
    # The weight of the halting step is the remainder; weights after it are zero.
    n = torch.arange(record.weights.shape[0])[:, None, None] + 1  # (S, 1, 1) step numbers
    assert (record.weights[n > record.steps] == 0).all()
    at_halt = record.weights.gather(0, (record.steps - 1)[None])[0]
    assert torch.equal(at_halt, record.remainders)


def test_act_weights_follow_graves_rule_on_a_worked_example():
    p = torch.tensor([[0.3], [0.5], [0.4], [0.9]])  # (S=4, 1): 0.3 + 0.5 < 0.99 <= 0.3 + 0.5 + 0.4
    weights, steps, remainders = act_weights(p, threshold=0.99)
    assert steps.item() == 3 and remainders.item() == pytest.approx(0.2)
    assert weights.flatten().tolist() == pytest.approx([0.3, 0.5, 0.2, 0.0])
    weights, steps, remainders = act_weights(torch.tensor([[0.995], [0.1]]))  # halts at once: N = 1, R = 1
    assert steps.item() == 1 and remainders.item() == 1.0
    weights, steps, _ = act_weights(torch.full((3, 1), 0.1))  # never reaches the threshold: forced at S
    assert steps.item() == 3 and weights.flatten().tolist() == pytest.approx([0.1, 0.1, 0.8])


def test_halted_positions_keep_their_state_and_a_longer_run_does_not_change_them():
    short = model(n_layers=4)
    _, a = short(inputs(), return_states=True)
    for n in range(a.states.shape[0]):  # the state after step n equals the state at the halting step
        done = a.steps <= n  # (B, T) halted at a step before n+1
        at_halt = a.states.gather(0, (a.steps - 1)[None, ..., None].expand(1, *a.states.shape[1:]))[0]
        assert torch.equal(a.states[n][done], at_halt[done])
    assert (a.steps < 4).any() and (a.steps == 4).any()
    # The same weights run with 3 more steps allowed: positions that halted by themselves are unaffected.
    hidden_short, _ = short(inputs())
    hidden_long, b = short(inputs(), n_iterations=7)
    free = a.steps < 4
    assert torch.equal(b.steps[free], a.steps[free])
    assert torch.allclose(hidden_long[free], hidden_short[free], atol=1e-12, rtol=0)
    assert (b.steps[~free] >= 4).all()  # forced to stop at 4 before, free to go on now


def _frozen(record) -> bool:
    at_halt = record.states.gather(0, (record.steps - 1)[None, ..., None].expand(1, *record.states.shape[1:]))[0]
    return all(torch.equal(record.states[n][record.steps <= n], at_halt[record.steps <= n])
               for n in range(record.states.shape[0]))


def test_the_frozen_state_check_fails_when_halted_states_keep_changing():
    ut = model(n_layers=4)
    _, record = ut(inputs(), return_states=True)
    assert _frozen(record)
    record.states[-1] = record.states[-1] + 1e-3  # a model that kept updating halted positions at the last step
    assert not _frozen(record)


def test_ponder_cost_gradient_matches_finite_differences_through_the_halting_bias():
    ut = model()
    x = inputs()
    _, record = ut(x)
    (grad,) = torch.autograd.grad(record.ponder_cost, ut.halting.bias)
    # Analytic: rho = mean(N + R) and R = 1 - sum_{n<N} p_n, so d rho / d b = -mean sum_{n<N} p_n (1 - p_n).
    n = torch.arange(record.probabilities.shape[0])[:, None, None] + 1
    p = record.probabilities.detach()
    analytic = -((p * (1 - p)) * (n < record.steps)).sum(0).mean()
    assert grad.item() == pytest.approx(analytic.item(), rel=1e-9)
    h = 1e-6
    with torch.no_grad():
        costs = []
        for sign in (1, -1):
            ut.halting.bias += sign * h
            _, shifted = ut(x)
            assert torch.equal(shifted.steps, record.steps), "no halting decision may flip"
            costs.append(shifted.ponder_cost.item())
            ut.halting.bias -= sign * h
    assert grad.item() == pytest.approx((costs[0] - costs[1]) / (2 * h), rel=1e-5)


def _ponder_gradient(rule) -> torch.Tensor:
    """d rho / d p for random probabilities p (S, B, T) under a halting rule p -> (weights, steps, remainders)."""
    p = torch.rand(5, 4, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 0.45
    p.requires_grad_(True)
    _, steps, remainders = rule(p)
    (grad,) = torch.autograd.grad((steps + remainders).mean(), p)
    return grad, steps


def _detached_rule(p):
    """A wrong implementation: the cumulative sum starts from a detached first probability."""
    weights, steps, _ = act_weights(p)
    before = torch.arange(p.shape[0])[:, None, None] + 1 < steps
    return weights, steps, 1 - (torch.cat([p[:1].detach(), p[1:]]) * before).sum(0)


@pytest.mark.parametrize("rule, right", [(act_weights, True), (_detached_rule, False)])
def test_ponder_gradient_is_minus_one_on_the_remainders_inputs(rule, right):
    grad, steps = _ponder_gradient(rule)
    n = torch.arange(grad.shape[0])[:, None, None] + 1
    expected = torch.where(n < steps, -1.0, 0.0).double() / steps.numel()  # -1 for every p_n with n < N, per mean
    assert (n < steps).any() and (n >= steps).any()
    assert torch.allclose(grad, expected) == right


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_fixed_steps_without_timestep_signal_equal_shared_transformer(norm):
    cfg = config(n_layers=5, norm=norm)
    torch.manual_seed(0)
    reference = SharedTransformer(cfg)
    ut = UniversalTransformer(cfg, act=False, timestep="none")
    ut.base.load_state_dict(reference.state_dict())
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[0, 5:] = False
    hidden, record = ut(inputs(), attention_mask=mask)
    assert (hidden - reference(inputs(), attention_mask=mask)).abs().max() < 1e-6
    assert (record.steps == 5).all() and record.ponder_cost.item() == 6.0  # N = M, R = 1
    # The timestep signal is what differs: switched on, the outputs move.
    ut.timestep = "sinusoidal"
    assert (ut(inputs(), attention_mask=mask)[0] - hidden).abs().max() > 1e-3


def test_timestep_signal_is_sinusoidal_and_different_per_step():
    p1, p2 = timestep_signal(1, 8), timestep_signal(2, 8)
    assert p1.shape == (8,) and torch.allclose(p1[0::2] ** 2 + p1[1::2] ** 2, torch.ones(4))
    assert p1[0].item() == pytest.approx(torch.sin(torch.tensor(1.0)).item())
    assert not torch.allclose(p1, p2)
    assert timestep_signal(3, 7).shape == (7,)


def test_act_loss_adds_the_weighted_ponder_cost():
    ut = model()
    x = inputs()
    batch = (x, x)
    difference = act_loss(ut, batch, 0.5) - act_loss(ut, batch, 0.0)
    assert difference.item() == pytest.approx(0.5 * ut(x)[1].ponder_cost.item())
    with pytest.raises(ValueError, match="ponder_weight"):
        act_loss(ut, batch, -1.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"config": config(strategy="none")}, "strategy"),
        ({"n_iterations": 3}, "n_iterations"),
        ({"n_iterations": 0}, "n_iterations"),
        ({"act": 1}, "act"),
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": 1.5}, "threshold"),
        ({"timestep": "learned"}, "timestep"),
        ({"halting_bias": float("nan")}, "halting_bias"),
        ({"config": "big"}, "config"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_them(kwargs, match):
    kwargs = {"config": config(), **kwargs}
    with pytest.raises(ValueError, match=match):
        UniversalTransformer(**kwargs)


def test_bad_call_arguments():
    ut = UniversalTransformer(config())
    with pytest.raises(ValueError, match="n_iterations"):
        ut(inputs(), n_iterations=0)
    with pytest.raises(ValueError, match="input_ids"):
        ut(inputs().float())
    with pytest.raises(ValueError, match="threshold"):
        act_weights(torch.rand(3, 2), threshold=2)
    with pytest.raises(ValueError, match="hidden states must be"):
        ut.encode(torch.zeros(2, 3, 5))


def test_halting_step_weights_after_halting_are_zero():
    p = torch.tensor([0.5, 0.5])
    weight, cumulative, halt = halting_step(p, torch.tensor([0.7, 1.0]), torch.tensor([True, False]), 0.99, False)
    assert weight.tolist() == pytest.approx([0.3, 0.0]) and halt.tolist() == [True, False]
    assert cumulative.tolist() == pytest.approx([1.0, 1.0])


def test_pointer_chain_targets_are_the_roots_bits_and_depths_count_hops():
    x, y, depth = pointer_chain_batch(64, 12, 3, 0.25, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == depth.shape == (64, 12)
    assert x.min() >= 2 and x.max() < chain_vocab_size(3)
    for b in range(64):  # follow each pointer chain by hand
        for t in range(12):
            hops, s = 0, t
            while x[b, s] >= 4:
                s -= int(x[b, s]) - 3
                hops += 1
            assert int(y[b, t]) == int(x[b, s]) - 2 and int(depth[b, t]) == hops
    assert depth.max() >= 4
    with pytest.raises(ValueError, match="root_probability"):
        pointer_chain_batch(2, 4, 2, 0.0, torch.Generator())
    with pytest.raises(ValueError, match="max_offset"):
        pointer_chain_batch(2, 4, 0, 0.5, torch.Generator())


def test_rank_correlation_matches_hand_computed_values():
    assert rank_correlation(torch.tensor([1, 2, 3, 4]), torch.tensor([10, 20, 30, 40])) == pytest.approx(1.0)
    assert rank_correlation(torch.tensor([1, 2, 3, 4]), torch.tensor([4, 3, 2, 1])) == pytest.approx(-1.0)
    # Ties: x ranks (1.5, 1.5, 3, 4), y ranks (1, 2, 3, 4): Pearson of the ranks is 0.9486833.
    assert rank_correlation(torch.tensor([1, 1, 2, 3]), torch.tensor([1, 2, 3, 4])) == pytest.approx(0.9486833, 1e-6)
    assert rank_correlation(torch.tensor([1.0, 5.0, 2.0]), torch.tensor([1.0, 100.0, 3.0])) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        rank_correlation(torch.ones(3), torch.arange(3))
