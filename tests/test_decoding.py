"""Cached decoding equals full recomputation, for every kind of sharing (chapter 6b)."""

import pytest
import torch

import sharedlib as sl
from sharedlib.decoding import KVCache, decode_step, extend, generate, prefill

SHARINGS = [
    ("none", {}),
    ("all", {}),
    ("cycle-rev", {"n_unique": 2}),
    ("groups", {"n_layers": 2, "n_unique": 2, "inner_group_num": 2}),
]


def lm(strategy="none", **kwargs):
    base = dict(d_model=32, n_heads=4, d_ff=64, n_layers=4, vocab_size=50, max_len=24, causal=True, lm_head=True)
    torch.manual_seed(0)
    return sl.SharedTransformer(sl.TransformerConfig(**(base | {"strategy": strategy} | kwargs))).eval()


def full_logits(model, ids):
    with torch.no_grad():
        return model.logits(model(ids))  # (B, T, V), every position recomputed from scratch


@pytest.mark.parametrize("position", ["learned", "rotary", "none"])
@pytest.mark.parametrize("norm", ["pre", "post", "none"])
@pytest.mark.parametrize(("strategy", "kwargs"), SHARINGS)
def test_prefill_and_steps_match_full_forward(strategy, kwargs, norm, position):
    model = lm(strategy, norm=norm, position=position, **kwargs)
    ids = torch.randint(0, 50, (3, 12), generator=torch.Generator().manual_seed(1))
    logits, cache = prefill(model, ids[:, :5])
    steps = [logits]
    for t in range(5, 12):
        step, cache = decode_step(model, ids[:, t], cache)
        steps.append(step[:, None])
    assert cache.length == 12
    assert (torch.cat(steps, dim=1) - full_logits(model, ids)).abs().max() < 1e-5


@pytest.mark.parametrize("position", ["learned", "rotary"])
def test_chunked_extension_uses_a_shifted_causal_mask(position):
    model = lm("cycle-rev", n_unique=2, position=position)
    ids = torch.randint(0, 50, (2, 10), generator=torch.Generator().manual_seed(2))
    first, cache = prefill(model, ids[:, :4])
    second, cache = extend(model, ids[:, 4:], cache)  # 6 new queries, 4 cached keys
    assert (torch.cat([first, second], dim=1) - full_logits(model, ids)).abs().max() < 1e-5


@pytest.mark.parametrize(("strategy", "kwargs"), SHARINGS)
def test_greedy_generate_equals_naive_recomputing_loop(strategy, kwargs):
    model = lm(strategy, **kwargs)
    ids = torch.randint(0, 50, (2, 4), generator=torch.Generator().manual_seed(3))
    naive = ids
    for _ in range(8):
        naive = torch.cat([naive, full_logits(model, naive)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(generate(model, ids, 8), naive)


def test_sampling_is_reproducible_with_a_generator():
    model = lm("all")
    ids = torch.zeros(2, 1, dtype=torch.long)
    a = generate(model, ids, 6, greedy=False, generator=torch.Generator().manual_seed(0))
    b = generate(model, ids, 6, greedy=False, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == (2, 7)


def test_cache_bytes_grow_with_applied_depth_not_with_unique_blocks():
    B, T, d_model = 3, 9, 32
    sizes = {}
    groups = {"n_layers": 2, "n_unique": 1, "inner_group_num": 2}
    for strategy, kwargs in [("none", {}), ("all", {}), ("groups", groups)]:
        model = lm(strategy, **kwargs)
        _, cache = prefill(model, torch.zeros(B, T, dtype=torch.long), capacity=T)
        depth = len(model.attention_map)  # applied layers, counted from the model's own map
        assert cache.nbytes() == cache.allocated_bytes() == 2 * depth * B * T * d_model * 4
        sizes[strategy] = cache.nbytes()
    assert sizes["none"] == sizes["all"] == sizes["groups"]  # all three apply 4 layers
    model = lm("all")
    _, cache = prefill(model, torch.zeros(1, 4, dtype=torch.long))  # capacity defaults to max_len
    assert cache.nbytes() == 2 * 4 * 4 * d_model * 4 < cache.allocated_bytes() == 2 * 4 * 24 * d_model * 4
    _, cache = prefill(model, torch.zeros(1, 4, dtype=torch.long), n_iterations=7)  # deeper at test time
    assert len(cache.layers) == 7 and cache.nbytes() == 2 * 7 * 4 * d_model * 4


def test_crop_rewinds_the_cache():
    model = lm("all")
    ids = torch.randint(0, 50, (1, 6), generator=torch.Generator().manual_seed(4))
    _, cache = prefill(model, ids[:, :3])
    first, cache = decode_step(model, ids[:, 3], cache)
    decode_step(model, ids[:, 4], cache)
    cache.crop(3)
    again, _ = decode_step(model, ids[:, 3], cache)
    assert torch.equal(first, again)
    with pytest.raises(ValueError, match="length must be"):
        cache.crop(9)


def test_bad_inputs_raise_clear_errors():
    model = lm("all")
    with pytest.raises(ValueError, match="max_len=24"):
        generate(model, torch.zeros(1, 20, dtype=torch.long), 5)
    _, cache = prefill(model, torch.zeros(1, 23, dtype=torch.long))
    decode_step(model, torch.zeros(1, dtype=torch.long), cache)  # position 23: the last learned one
    with pytest.raises(ValueError, match="exceed max_len=24"):
        decode_step(model, torch.zeros(1, dtype=torch.long), cache)
    with pytest.raises(ValueError, match="causal language model"):
        prefill(lm("all", causal=False), torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="causal language model"):
        prefill(lm("all", lm_head=False), torch.zeros(1, 3, dtype=torch.long))
    _, cache = prefill(model, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="batch size 3, but the cache was built for 2"):
        decode_step(model, torch.zeros(3, dtype=torch.long), cache)
    with pytest.raises(ValueError, match="cache must be the KVCache"):
        decode_step(model, torch.zeros(2, dtype=torch.long), [])
    with pytest.raises(ValueError, match="another model"):
        decode_step(lm("all"), torch.zeros(2, dtype=torch.long), prefill(lm("none"), torch.zeros(2, 3).long())[1])
    with pytest.raises(ValueError, match=r"ids must be in 0\.\.vocab_size-1"):
        prefill(model, torch.full((1, 3), 50))
    with pytest.raises(ValueError, match="n_new must be a positive integer"):
        generate(model, torch.zeros(1, 3, dtype=torch.long), 0)
    with pytest.raises(ValueError, match=r"model\.eval"):
        prefill(lm("all", dropout=0.1).train(), torch.zeros(1, 3, dtype=torch.long))
    assert isinstance(cache, KVCache)


def test_decoding_reuses_the_layer_hook_so_relaxed_models_decode_exactly():
    """Decoding runs the model's own layer loop (encode -> apply_layer), so a subclass that
    overrides apply_layer (relaxed sharing's per-layer deltas) decodes like its full forward."""
    from sharedlib.relaxed import RelaxedSharedTransformer

    base = dict(d_model=32, n_heads=4, d_ff=64, n_layers=3, vocab_size=50, max_len=12, causal=True, lm_head=True)
    torch.manual_seed(0)
    model = RelaxedSharedTransformer(sl.TransformerConfig(**base, strategy="all"), rank=2).eval()
    with torch.no_grad():
        for deltas in (*model.attention_deltas, *model.ffn_deltas):
            for delta in deltas.values():
                delta.B.normal_(std=0.5)  # non-zero deltas: a model that ignored them would differ
    ids = torch.randint(0, 50, (2, 9))
    full = model.logits(model(ids))  # (B, T, V)
    logits, cache = prefill(model, ids[:, :5])
    got = [logits]
    for t in range(5, 9):
        step, cache = decode_step(model, ids[:, t], cache)
        got.append(step[:, None])
    torch.testing.assert_close(torch.cat(got, dim=1), full, rtol=1e-4, atol=1e-5)
    plain = sl.SharedTransformer(sl.TransformerConfig(**base, strategy="all")).eval()
    plain.load_state_dict(model.state_dict(), strict=False)
    assert not torch.allclose(plain.logits(plain(ids)), full, atol=1e-3)  # the deltas matter
