"""Parity with the implementations people use: PyTorch's encoder and Hugging Face's ALBERT (chapter 5)."""

import pytest
import torch
from torch import nn

import sharedlib as sl

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize(
    ("groups", "inner", "layers", "act", "hidden", "heads", "embed"),
    [
        (1, 1, 4, "gelu_new", 32, 4, 16),
        (2, 2, 4, "gelu", 48, 6, 8),
        (3, 1, 6, "relu", 24, 2, 24),
        (1, 3, 2, "gelu_new", 16, 1, 16),
    ],
)
def test_from_albert_matches_last_hidden_state(groups, inner, layers, act, hidden, heads, embed):
    torch.manual_seed(groups * 10 + inner)
    config = transformers.AlbertConfig(
        vocab_size=60,
        embedding_size=embed,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * hidden,
        num_hidden_groups=groups,
        inner_group_num=inner,
        max_position_embeddings=24,
        hidden_act=act,
    )
    albert = transformers.AlbertModel(config).eval()
    model = sl.from_albert(albert).eval()
    ids = torch.randint(0, 60, (3, 12))
    types = torch.randint(0, 2, (3, 12))
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[1, 7:] = 0
    with torch.no_grad():
        expected = albert(ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        got = model(ids, attention_mask=mask, token_type_ids=types)
    torch.testing.assert_close(got[mask.bool()], expected[mask.bool()], atol=1e-5, rtol=0)
    assert sl.count_parameters(model.config) == sl.count_module_parameters(model)
    assert model.config.strategy == ("groups" if groups > 1 or inner > 1 else "all")


def test_from_albert_rejects_layers_not_divisible_by_groups():
    config = transformers.AlbertConfig(
        vocab_size=10,
        embedding_size=8,
        hidden_size=8,
        num_hidden_layers=5,
        num_attention_heads=2,
        intermediate_size=16,
        num_hidden_groups=2,
    )
    with pytest.raises(ValueError, match="divisible"):
        sl.from_albert(transformers.AlbertModel(config))


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("share", [None, "all", "cycle"])
@pytest.mark.parametrize("activation", ["relu", "gelu", nn.ReLU(), nn.GELU(approximate="tanh")], ids=str)
def test_from_torch_encoder_matches(norm_first, share, activation):
    torch.manual_seed(0)
    layers = [
        nn.TransformerEncoderLayer(
            32, 4, 64, dropout=0.0, batch_first=True, norm_first=norm_first, activation=activation
        )
        for _ in range(2)
    ]
    encoder = nn.TransformerEncoder(
        layers[0], 4, norm=nn.LayerNorm(32) if norm_first else None, enable_nested_tensor=False
    )
    if share == "all":
        encoder.layers = nn.ModuleList([layers[0]] * 4)
    elif share == "cycle":
        encoder.layers = nn.ModuleList([layers[0], layers[1]] * 2)
    encoder.eval()
    model = sl.from_torch_encoder(encoder).eval()
    assert model.config.strategy == (share or "none")
    x = torch.randn(2, 9, 32)
    pad = torch.zeros(2, 9, dtype=torch.bool)
    pad[0, 6:] = True
    expected = encoder(x, src_key_padding_mask=pad)  # grad enabled: PyTorch's standard (non-fused) path
    with torch.no_grad():
        got = model.encode(x, key_mask=~pad)
        fused = encoder(x, src_key_padding_mask=pad)  # the inference fast path
    torch.testing.assert_close(got[~pad], expected[~pad].detach(), atol=1e-5, rtol=0)
    if not (isinstance(activation, nn.GELU) and activation.approximate == "tanh"):
        # PyTorch's inference fast path runs any nn.GELU as exact GELU, ignoring approximate="tanh"
        torch.testing.assert_close(got[~pad], fused[~pad], atol=1e-5, rtol=0)
    assert sl.count_module_parameters(model) - sl.count_module_parameters(
        model.embeddings
    ) == sl.count_module_parameters(encoder)


def test_unsupported_torch_encoders_raise():
    layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True, norm_first=True)
    with pytest.raises(ValueError, match="final LayerNorm"):
        sl.from_torch_encoder(nn.TransformerEncoder(layer, 2, enable_nested_tensor=False))
    a, b = (nn.TransformerEncoderLayer(8, 2, 16, batch_first=True) for _ in range(2))
    weird = nn.TransformerEncoder(a, 3, enable_nested_tensor=False)
    weird.layers = nn.ModuleList([a, b, b, a, a])
    with pytest.raises(ValueError, match="matches none"):
        sl.from_torch_encoder(weird)


def test_encode_checks_the_feature_size():
    model = sl.SharedTransformer(sl.TransformerConfig(d_model=16, n_heads=2, d_ff=8, n_layers=1, vocab_size=5))
    with pytest.raises(ValueError, match=r"\(batch, sequence, 16\)"):
        model.encode(torch.zeros(2, 3, 15))


def test_unsupported_activation_names_the_allowed_ones():
    layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True, activation=nn.SiLU())
    with pytest.raises(ValueError, match="activation must be relu, gelu"):
        sl.from_torch_encoder(nn.TransformerEncoder(layer, 1, enable_nested_tensor=False))
