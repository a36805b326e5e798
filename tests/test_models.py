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
        (lambda m: m(torch.zeros(2, 4)), "integer tensor"),
        (lambda m: m(torch.zeros(2, 4, dtype=torch.long), attention_mask=torch.ones(2, 5)), "shape of input_ids"),
        (lambda m: m.logits(torch.zeros(1, 1, 32)), "lm_head=True"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call(sl.SharedTransformer(small()))


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
