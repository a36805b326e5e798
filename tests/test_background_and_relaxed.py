"""Chapter 1's published sizes and convolution-as-sharing, and chapter 8's relaxed (per-layer LoRA) sharing."""

import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import sharedlib as sl
from sharedlib.background import PUBLISHED_MODELS, SHARING_MILESTONES, PublishedModel, doubling_time_months
from sharedlib.relaxed import RelaxedSharedTransformer, relax_unshared, relaxed_parameters

ROOT = Path(__file__).resolve().parents[1]
SMALL = sl.TransformerConfig(d_model=32, n_heads=4, d_ff=48, n_layers=4, vocab_size=40, max_len=16, causal=True,
                             lm_head=True)


def bib_keys() -> set[str]:
    return set(re.findall(r"^@\w+\{([^,]+),", (ROOT / "book/references.bib").read_text(), flags=re.M))


def test_every_published_size_cites_an_entry_of_the_bibliography():
    missing = ({m.cite for m in PUBLISHED_MODELS} | {key for *_, key in SHARING_MILESTONES}) - bib_keys()
    assert not missing


def test_doubling_time_of_a_frontier_that_doubles_every_year_is_twelve_months():
    models = tuple(PublishedModel(f"m{y}", y, 2.0 ** (y - 2000), "k", False) for y in range(2000, 2006))
    assert doubling_time_months(models) == pytest.approx(12.0)
    with pytest.raises(ValueError, match="two different years"):
        doubling_time_months(models[:1])


@pytest.mark.parametrize("strategy,n_unique", [("all", None), ("cycle", 2), ("none", None)])
@pytest.mark.parametrize("rank", [1, 3])
def test_relaxed_parameter_count_matches_numel(strategy, n_unique, rank):
    config = replace(SMALL, strategy=strategy, n_unique=n_unique)
    model = RelaxedSharedTransformer(config, rank)
    assert sl.count_module_parameters(model) == relaxed_parameters(config, rank)


def test_relaxed_model_with_zero_deltas_is_the_shared_model():
    config = replace(SMALL, strategy="all")
    relaxed = RelaxedSharedTransformer(config, rank=2)
    shared = sl.SharedTransformer(config)
    missing, unexpected = shared.load_state_dict(relaxed.state_dict(), strict=False)
    assert not missing and all("deltas" in key for key in unexpected)
    x = torch.randint(0, 40, (2, 9))
    torch.testing.assert_close(relaxed(x), shared(x), rtol=0, atol=0)


def test_deltas_receive_gradients_through_the_shared_block():
    relaxed = RelaxedSharedTransformer(replace(SMALL, strategy="all"), rank=2)
    x = torch.randint(0, 40, (2, 9))
    sl.next_token_loss(relaxed, (x, x)).backward()
    assert all(d.B.grad.abs().sum() > 0 for layer in relaxed.ffn_deltas for d in layer.values())


def _unshared_with_distinct_weights() -> sl.SharedTransformer:
    torch.manual_seed(0)
    model = sl.SharedTransformer(SMALL)
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.weight.data.normal_(0, 0.1)
    return model


def test_relaxing_an_unshared_model_at_full_rank_reproduces_it():
    model = _unshared_with_distinct_weights()
    x = torch.randint(0, 40, (2, 9))
    torch.testing.assert_close(relax_unshared(model, rank=SMALL.d_model)(x), model(x), rtol=0, atol=1e-5)


def test_svd_deltas_are_the_best_rank_r_approximation():
    model = _unshared_with_distinct_weights()
    relaxed = relax_unshared(model, rank=3)
    residual = model.ffn[1].inner.up.weight - relaxed.ffn[0].inner.up.weight
    singular = torch.linalg.svdvals(residual)
    error = torch.linalg.matrix_norm(residual - relaxed.ffn_deltas[1]["inner__up__weight"]())
    torch.testing.assert_close(error, singular[3:].square().sum().sqrt())


def test_relaxed_inputs_are_validated():
    with pytest.raises(ValueError, match="rank must be a positive integer"):
        RelaxedSharedTransformer(SMALL, rank=0)
    with pytest.raises(ValueError, match="n_iterations is not available"):
        relaxed = RelaxedSharedTransformer(replace(SMALL, strategy="all"), rank=1)
        relaxed(torch.zeros(1, 4, dtype=torch.long), n_iterations=2)
    with pytest.raises(ValueError, match="strategy 'none'"):
        relax_unshared(sl.SharedTransformer(replace(SMALL, strategy="all")), rank=2)
