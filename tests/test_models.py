"""The encoder: sharing in PyTorch terms, masks, errors, test-time depth (chapters 2 and 5)."""

import io

import pytest
import torch

import sharedlib as sl


def small(**kwargs):
    base = dict(d_model=32, n_heads=4, d_ff=64, n_layers=6, vocab_size=50, max_len=16)
    return sl.TransformerConfig(**(base | kwargs))


def test_shared_model_reuses_one_block_and_grads_add_up():
    torch.manual_seed(0)
    model = sl.SharedTransformer(small(strategy="all"))
    assert len(model.attention) == len(model.ffn) == 1
    ids = torch.randint(0, 50, (2, 8))
    model(ids).sum().backward()
    assert model.attention[0].inner.qkv.weight.grad is not None


def test_state_dict_keeps_one_tensor_per_unique_block():
    model = sl.SharedTransformer(small(strategy="cycle", n_unique=2))
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert sum(v.numel() for v in state.values()) == sl.count_parameters(model.config)
    clone = sl.SharedTransformer(model.config)
    clone.load_state_dict(state)
    ids = torch.randint(0, 50, (2, 8))
    torch.testing.assert_close(clone(ids), model(ids))


def test_padding_mask_matches_unpadded_run():
    torch.manual_seed(0)
    model = sl.SharedTransformer(small()).eval()
    ids = torch.randint(0, 50, (1, 6))
    padded = torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    mask = torch.tensor([[1] * 6 + [0] * 3])
    torch.testing.assert_close(model(padded, attention_mask=mask)[:, :6], model(ids), atol=1e-5, rtol=1e-5)


def test_causal_model_ignores_the_future():
    torch.manual_seed(0)
    model = sl.SharedTransformer(small(causal=True, lm_head=True)).eval()
    ids = torch.randint(0, 50, (1, 8))
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1) % 50
    torch.testing.assert_close(model(ids)[:, :-1], model(changed)[:, :-1])
    assert model.logits(model(ids)).shape == (1, 8, 50)


def test_test_time_depth_only_for_fully_shared():
    model = sl.SharedTransformer(small(strategy="all"))
    ids = torch.randint(0, 50, (1, 4))
    assert model(ids, n_iterations=9).shape == (1, 4, 32)
    with pytest.raises(ValueError, match="strategy 'all'"):
        sl.SharedTransformer(small())(ids, n_iterations=3)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m(torch.zeros(1, 17, dtype=torch.long)), "exceeds max_len=16"),
        (lambda m: m(torch.zeros(2, 4)), "input_ids must be a .batch, sequence. tensor of dtype torch.int64"),
        (lambda m: m(torch.zeros(2, 4, dtype=torch.uint8)), "torch.int64 or torch.int32, got torch.uint8"),
        (lambda m: m(torch.zeros(2, 4, dtype=torch.long), n_iterations=True), "n_iterations"),
        (lambda m: m(torch.zeros(2, 4, dtype=torch.long), attention_mask=torch.ones(2, 5)), "shape of input_ids"),
        (lambda m: m.logits(torch.zeros(1, 1, 32)), "lm_head=True"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call(sl.SharedTransformer(small()))


TYPES_RANGE = r"token_type_ids must be in 0..n_token_types-1 = 0..1, found "


def typed(**kwargs):
    return sl.SharedTransformer(small(n_token_types=2, **kwargs)).eval()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(input_ids=torch.tensor([[1, 50, 2]])), r"input_ids must be in 0..vocab_size-1 = 0..49, found 50"),
        (dict(input_ids=torch.tensor([[1, -1, 2]])), r"input_ids must be in 0..vocab_size-1 = 0..49, found -1"),
        (dict(token_type_ids=torch.tensor([[0, 2, 1]])), TYPES_RANGE + "2$"),
        (dict(token_type_ids=torch.tensor([[0, -3, 1]])), TYPES_RANGE + "-3"),
        (dict(token_type_ids=torch.tensor([[0.0, 1.0, 1.0]])), "token_type_ids must be a .batch, sequence. tensor"),
        (dict(token_type_ids=torch.tensor([[0, 1]])), "token_type_ids must have the shape of input_ids"),
    ],
)
def test_out_of_range_ids_raise_value_errors(kwargs, message):
    inputs = dict(input_ids=torch.tensor([[1, 2, 3]])) | kwargs
    with pytest.raises(ValueError, match=message):
        typed()(**inputs)


def test_token_type_ids_need_segment_embeddings():
    with pytest.raises(ValueError, match="n_token_types=0"):
        sl.SharedTransformer(small())(torch.tensor([[1, 2]]), token_type_ids=torch.zeros(1, 2, dtype=torch.long))


@pytest.mark.parametrize("dtype", [torch.bool, torch.int64, torch.int32, torch.uint8, torch.int8])
def test_attention_mask_accepts_bool_and_zero_one_integers(dtype):
    torch.manual_seed(0)
    model = sl.SharedTransformer(small()).eval()
    ids = torch.randint(0, 50, (2, 5))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    expected = model(ids, attention_mask=mask)
    torch.testing.assert_close(model(ids, attention_mask=mask.to(dtype)), expected)
    torch.testing.assert_close(model(ids[:1, :3]), expected[:1, :3], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (torch.tensor([[0.0, 0.0, float("-inf")]]), r"Additive float masks .* `mask == 0`"),  # HF additive mask
        (torch.tensor([[0.0, 0.0, -10000.0]]), r"Additive float masks .* `mask == 0`"),
        (torch.tensor([[1.0, 1.0, 0.0]]), "got torch.float32"),  # even 0/1 floats: say so, convert explicitly
        (torch.tensor([[1, 2, 0]]), r"0 \(padding\) or 1 \(real token\), found 0..2"),
        (torch.tensor([[1, -1, 0]]), r"found -1..1"),
        (torch.tensor([[1, 1, 0], [0, 0, 0]]), r"no real token .* batch row\(s\) \[1\]"),
        (torch.zeros(2, 3, dtype=torch.bool), r"batch row\(s\) \[0, 1\]"),
        (torch.tensor([[1, 1]]), "must have the shape of input_ids"),
        ([[1, 1, 1]], "must have the shape of input_ids"),
    ],
)
def test_attention_mask_rejects_forms_it_would_misread(mask, message):
    ids = torch.tensor([[1, 2, 3]] * (mask.shape[0] if isinstance(mask, torch.Tensor) else 1))
    with pytest.raises(ValueError, match=message):
        sl.SharedTransformer(small())(ids, attention_mask=mask)


def test_hugging_face_additive_mask_converts_with_mask_equal_zero():
    torch.manual_seed(0)
    model = sl.SharedTransformer(small()).eval()
    ids = torch.randint(0, 50, (1, 5))
    keep = torch.tensor([[1, 1, 1, 0, 0]])
    additive = (1.0 - keep.float()) * torch.finfo(torch.float32).min  # what HF builds internally
    torch.testing.assert_close(model(ids, attention_mask=additive == 0), model(ids, attention_mask=keep))


def test_encode_rejects_masks_that_are_not_bool():
    model = sl.SharedTransformer(small())
    x = torch.zeros(1, 3, 32)
    with pytest.raises(ValueError, match="key_mask must be a bool tensor of shape"):
        model.encode(x, key_mask=torch.ones(1, 3))
    with pytest.raises(ValueError, match=r"key_mask must be a bool tensor of shape \(1, 3\)"):
        model.encode(x, key_mask=torch.ones(1, 4, dtype=torch.bool))


def test_device_auto_and_seed():
    assert sl.resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="device must be one of"):
        sl.resolve_device("tpu")
    sl.seed_everything(3)
    a = torch.rand(2)
    sl.seed_everything(3)
    assert torch.equal(a, torch.rand(2))


def test_import_has_no_heavy_side_effects():
    import subprocess
    import sys

    heavy = "('transformers', 'matplotlib.pyplot', 'ipywidgets')"
    code = f"import sys, sharedlib; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]" and out.stderr == ""
