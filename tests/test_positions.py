"""Position schemes (chapter 5b, *Iterations and length*): rotary matches Llama's, and sees only offsets."""

import pytest
import torch

import sharedlib as sl
from sharedlib.layers import apply_rotary


def config(position, **kwargs):
    base = dict(d_model=32, n_heads=4, d_ff=64, n_layers=2, vocab_size=20, max_len=40, causal=True, lm_head=True)
    return sl.TransformerConfig(**(base | {"position": position} | kwargs))


def test_rotary_matches_hugging_face_llama():
    llama = pytest.importorskip("transformers.models.llama.modeling_llama")
    from transformers import LlamaConfig

    head_dim, T = 16, 11
    q, k = torch.randn(2, 3, 2, T, head_dim, generator=torch.Generator().manual_seed(0))
    hf_config = LlamaConfig(hidden_size=3 * head_dim, num_attention_heads=3, rope_theta=10000.0,
                            max_position_embeddings=64)
    rope = llama.LlamaRotaryEmbedding(hf_config)
    positions = torch.arange(5, 5 + T)[None]  # (1, T): an offset start, as in cached decoding
    cos, sin = rope(q, positions)
    hf_q, hf_k = llama.apply_rotary_pos_emb(q, k, cos, sin)
    assert torch.allclose(apply_rotary(q, 5), hf_q, atol=1e-5)
    assert torch.allclose(apply_rotary(k, 5), hf_k, atol=1e-5)
    assert not torch.allclose(apply_rotary(q, 4), hf_q, atol=1e-3)  # the wrong start is caught


def test_rotary_scores_depend_only_on_the_offset():
    """q_p . k_q is the same for every p when q - p is fixed: measured, not assumed."""
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(2, 1, 1, 1, 8, generator=g)
    scores = []
    for p in (0, 3, 17, 250):
        qp = apply_rotary(q.expand(1, 1, 1, 8).contiguous(), p)
        kq = apply_rotary(k.expand(1, 1, 1, 8).contiguous(), p + 4)  # the key 4 positions later
        scores.append((qp * kq).sum().item())
    assert max(scores) - min(scores) < 1e-4
    other = (apply_rotary(q, 0) * apply_rotary(k, 5)).sum().item()  # another offset scores differently
    assert abs(other - scores[0]) > 1e-3


@pytest.mark.parametrize("position", sl.POSITIONS)
def test_counts_match_the_module_for_every_scheme(position):
    model = sl.SharedTransformer(config(position))
    assert sl.count_parameters(model.config) == sl.count_module_parameters(model)
    has_table = model.embeddings.positions is not None
    assert has_table == (position == "learned")


def test_only_learned_positions_cost_parameters():
    learned, rotary, nope = (sl.count_parameters(config(p)) for p in sl.POSITIONS)
    assert learned - rotary == 40 * 32  # P * E
    assert rotary == nope


def test_the_schemes_compute_different_functions():
    ids = torch.randint(0, 20, (2, 9), generator=torch.Generator().manual_seed(2))
    outputs = []
    for position in sl.POSITIONS:
        torch.manual_seed(0)
        outputs.append(sl.SharedTransformer(config(position)).eval()(ids))
    assert not torch.allclose(outputs[0], outputs[1]) and not torch.allclose(outputs[1], outputs[2])


def test_without_positions_a_causal_model_still_sees_order():
    """NoPE: causal attention alone distinguishes 'ab' from 'ba' (the last position's state differs)."""
    torch.manual_seed(0)
    model = sl.SharedTransformer(config("none")).eval()
    ab, ba = model(torch.tensor([[3, 7]])), model(torch.tensor([[7, 3]]))
    assert not torch.allclose(ab[0, 1], ba[0, 1], atol=1e-4)


def test_bad_position_settings_raise_clear_errors():
    with pytest.raises(ValueError, match="position must be one of"):
        config("sinusoidal")
    with pytest.raises(ValueError, match=r"head width .* must be even"):
        config("rotary", d_model=12, n_heads=4)
    with pytest.raises(ValueError, match="needs causal=True"):
        config("none", causal=False)
