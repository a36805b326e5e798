"""Mixture-of-Recursions (chapter 5b): gathered recursions equal a dense masked reference, routing, FLOPs."""

import itertools

import pytest
import torch

from sharedlib.config import TransformerConfig
from sharedlib.measure import count_forward_flops
from sharedlib.recursions import (
    MixtureOfRecursions,
    default_capacities,
    routed_loss,
    tokens_per_recursion,
)

VOCAB = 12


def config(n_layers: int = 4, **overrides) -> TransformerConfig:
    fields = dict(d_model=16, n_heads=2, d_ff=32, n_layers=n_layers, strategy="all", vocab_size=VOCAB,
                  max_len=12, lm_head=True)
    return TransformerConfig(**{**fields, **overrides})


def inputs(batch: int = 3, length: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def model(seed: int = 0, capacities=None, **overrides) -> MixtureOfRecursions:
    torch.manual_seed(seed)
    mor = MixtureOfRecursions(config(**overrides), capacities)
    with torch.no_grad():  # spread the router scores so that the choice is not a near-tie
        for router in mor.routers:
            router.weight.normal_(0, 1.0)
    return mor.double()


def dense_reference(mor: MixtureOfRecursions, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same recursions written densely: the block runs on every token with attention masked to the chosen
    ones, and only the chosen tokens are updated. Returns hidden states and recursion counts."""
    h = mor.base.embeddings(input_ids, None)  # (B, T, H)
    B, T, _ = h.shape
    active = torch.ones(B, T, dtype=torch.bool)
    depths = torch.zeros(B, T, dtype=torch.long)
    for r, capacity in enumerate(mor.capacities):
        k = max(1, int(capacity * T))
        g = mor.alpha * torch.sigmoid(mor.routers[r](h)).squeeze(-1)  # (B, T)
        score = torch.where(active, g, torch.full_like(g, -1.0))  # inactive tokens cannot be chosen
        chosen = torch.zeros_like(active).scatter(1, score.topk(k, dim=1).indices, True)
        out = mor.block(h, key_mask=chosen)  # (B, T, H) keys: the chosen tokens only
        h = torch.where(chosen[..., None], h + g[..., None] * out, h)
        depths += chosen.long()
        active = chosen
    return (mor.base.final_norm(h) if mor.base.final_norm is not None else h), depths


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_gathered_recursions_equal_the_dense_masked_reference(norm):
    mor = model(norm=norm)
    x = inputs()
    hidden, routing = mor(x)
    expected, depths = dense_reference(mor, x)
    assert torch.allclose(hidden, expected, atol=1e-10)
    assert torch.equal(routing.depths, depths)
    assert len(set(depths.flatten().tolist())) == len(mor.capacities), "every depth 1..R should occur"


def test_routing_is_hierarchical_and_takes_k_tokens_per_recursion():
    mor = model(capacities=(1.0, 0.7, 0.5, 0.2))
    x = inputs(length=10)
    _, routing = mor(x)
    assert [s.shape[1] for s in routing.selected] == tokens_per_recursion(mor.capacities, 10) == [10, 7, 5, 2]
    for earlier, later in itertools.pairwise(routing.selected):
        for b in range(x.shape[0]):
            assert set(later[b].tolist()) <= set(earlier[b].tolist())
    for s in routing.selected:
        assert torch.equal(s, s.sort(dim=1).values)  # tokens keep their order
    counted = torch.zeros_like(routing.depths)
    for s in routing.selected:
        counted.scatter_add_(1, s, torch.ones_like(s))
    assert torch.equal(counted, routing.depths)
    assert all(((g > 0) & (g < mor.alpha)).all() for g in routing.gates)


def test_a_token_left_out_of_a_recursion_keeps_its_state():
    """Tokens the second router leaves out end where a one-recursion model with the same weights leaves them."""
    two = model(capacities=(1.0, 0.5), n_layers=2)
    one = MixtureOfRecursions(config(n_layers=1), (1.0,)).double()
    one.base.load_state_dict(two.base.state_dict())
    one.routers[0].load_state_dict(two.routers[0].state_dict())
    x = inputs(batch=2, length=8)
    with torch.no_grad():
        h2, routing = two(x)
        h1, _ = one(x)
    left_out = routing.depths == 1  # (B, T)
    assert left_out.sum() == 2 * 4
    assert torch.allclose(h2[left_out], h1[left_out], atol=1e-12)
    assert not torch.allclose(h2[~left_out], h1[~left_out], atol=1e-3)


def test_routers_and_block_receive_gradients():
    mor = model()
    loss = routed_loss(mor, (inputs(), inputs(seed=1)))
    loss.backward()
    for r, router in enumerate(mor.routers):
        assert router.weight.grad is not None and router.weight.grad.abs().sum() > 0, r
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in mor.base.ffn.parameters())


def test_counted_flops_fall_with_the_tokens_each_recursion_keeps():
    cfg = config(n_layers=4, d_model=32, n_heads=4, d_ff=64, max_len=16)
    torch.manual_seed(0)
    routed = MixtureOfRecursions(cfg)
    everyone = MixtureOfRecursions(cfg, capacities=(1.0,) * 4)
    x = inputs(batch=2, length=16)
    H, F, T = cfg.d_model, cfg.d_ff, 16

    def block_flops(k: int) -> int:  # per sequence: projections and FFN on k tokens, scores over k keys
        return k * (2 * 4 * H * H + 2 * 2 * H * F) + 2 * 2 * k * k * H

    def predicted(capacities, candidates_first: int) -> int:
        total, candidates = 0, candidates_first
        for k in tokens_per_recursion(capacities, T):
            total += block_flops(k) + 2 * H * candidates  # the block on k tokens, the router on the candidates
            candidates = k
        return total + 2 * T * H * VOCAB  # plus the tied output layer

    with torch.no_grad():
        counted_routed = count_forward_flops(lambda: routed.logits(routed(x)[0]))
        counted_everyone = count_forward_flops(lambda: everyone.logits(everyone(x)[0]))
    assert counted_routed == 2 * predicted(routed.capacities, T)  # 2 sequences
    assert counted_everyone == 2 * predicted(everyone.capacities, T)
    assert counted_routed < 0.7 * counted_everyone


def test_default_capacities_and_bad_input():
    assert default_capacities(4) == (1.0, 0.75, 0.5, 0.25)
    assert tokens_per_recursion((1.0, 0.05), 10) == [10, 1]  # at least one token
    for bad in [(0.5, 1.0), (), (1.0, 0.0), "1", (1.0, 1.5), (True,)]:
        with pytest.raises(ValueError, match="capacities"):
            MixtureOfRecursions(config(n_layers=max(1, len(bad)) if isinstance(bad, tuple) else 1), bad)
    with pytest.raises(ValueError, match="one value per recursion"):
        MixtureOfRecursions(config(n_layers=4), (1.0, 0.5))
    with pytest.raises(ValueError, match="strategy"):
        MixtureOfRecursions(config(strategy="none"))
    with pytest.raises(ValueError, match="position"):
        MixtureOfRecursions(config(position="rotary"))
    with pytest.raises(ValueError, match="alpha"):
        MixtureOfRecursions(config(), alpha=0)
    with pytest.raises(ValueError, match="n_iterations"):
        default_capacities(0)


def test_the_dense_reference_catches_a_wrong_update():
    """The reference is a real check: an update rule that skips the gate differs from it."""
    mor = model()
    x = inputs()
    expected, _ = dense_reference(mor, x)
    mor.alpha = 0.5  # a different gate scale: the outputs must move
    hidden, _ = mor(x)
    assert not torch.allclose(hidden, expected, atol=1e-6)
