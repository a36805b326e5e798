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
        (2, 1, 5, "gelu_new", 32, 4, 16),  # G does not divide N: layers -> groups 0 0 0 1 1
        (3, 1, 7, "gelu", 24, 2, 8),  # 0 0 0 1 1 2 2
        (3, 2, 7, "relu", 16, 2, 16),
        (14, 1, 18, "gelu_new", 16, 2, 8),  # layer 9 -> group 6 by HF's float formula (i * G // N would say 7)
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


def test_from_albert_accepts_groups_that_do_not_divide_the_layers():
    config = transformers.AlbertConfig(
        vocab_size=10,
        embedding_size=8,
        hidden_size=8,
        num_hidden_layers=5,
        num_attention_heads=2,
        intermediate_size=16,
        num_hidden_groups=2,
    )
    model = sl.from_albert(transformers.AlbertModel(config))
    assert model.attention_map == [0, 0, 0, 1, 1] and len(model.attention) == 2
    assert sl.count_parameters(model.config) == sl.count_module_parameters(model)


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


def _encoder(n_layers=4, **overrides):
    """A 4-layer PyTorch encoder whose layer 3 is built with ``overrides`` (the others with the defaults)."""
    base = dict(d_model=16, nhead=2, dim_feedforward=32, dropout=0.0, batch_first=True)
    layers = [nn.TransformerEncoderLayer(**(base | (overrides if i == 3 else {}))) for i in range(n_layers)]
    encoder = nn.TransformerEncoder(layers[0], n_layers, enable_nested_tensor=False)
    encoder.layers = nn.ModuleList(layers)
    return encoder


@pytest.mark.parametrize(
    ("overrides", "attribute"),
    [
        (dict(norm_first=True), "norm_first"),
        (dict(activation="gelu"), "activation"),
        (dict(layer_norm_eps=1e-6), "layer_norm_eps"),
        (dict(nhead=4), "n_heads"),
        (dict(dim_feedforward=48), "d_ff"),
        (dict(dropout=0.1), "dropout"),
        (dict(batch_first=False), "batch_first"),
    ],
)
def test_from_torch_encoder_names_the_layer_that_differs(overrides, attribute):
    with pytest.raises(ValueError, match=f"layer 3 differs from layer 0 in {attribute}"):
        sl.from_torch_encoder(_encoder(**overrides))


def test_from_torch_encoder_rejects_other_layer_differences():
    with pytest.raises(ValueError, match="layer 3 was built with bias=False"):
        sl.from_torch_encoder(_encoder(bias=False))
    wide = _encoder()
    wide.layers[3] = nn.TransformerEncoderLayer(32, 2, 32, dropout=0.0, batch_first=True)
    with pytest.raises(ValueError, match="layer 3 differs from layer 0 in d_model: 32 != 16"):
        sl.from_torch_encoder(wide)
    eps = _encoder()
    eps.layers[3].norm2.eps = 1e-3
    with pytest.raises(ValueError, match=r"layer 3: norm1.eps 1e-05 != norm2.eps 0.001"):
        sl.from_torch_encoder(eps)
    with pytest.raises(ValueError, match=r"encoder must be an nn\.TransformerEncoder"):
        sl.from_torch_encoder(nn.Linear(2, 2))
    pre = _encoder(n_layers=2)
    for layer in pre.layers:
        layer.norm_first = True
    pre.norm = nn.LayerNorm(16, eps=1e-6)
    with pytest.raises(ValueError, match="final norm's eps"):
        sl.from_torch_encoder(pre)


def test_from_torch_encoder_converts_a_sequence_first_encoder():
    # batch_first only changes the input layout, not the weights: encode takes (B, T, H), so transpose.
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=False)
    encoder = nn.TransformerEncoder(layer, 3, enable_nested_tensor=False).eval()
    model = sl.from_torch_encoder(encoder).eval()
    x = torch.randn(7, 2, 16)  # (T, B, H), as the encoder reads it
    with torch.no_grad():
        expected = encoder(x)  # (T, B, H)
        got = model.encode(x.transpose(0, 1)).transpose(0, 1)  # (B, T, H) -> (T, B, H)
        wrong = model.encode(x)  # fed sequence first: a different computation, no error can catch it
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert (wrong - expected).abs().max() > 0.1


def test_strategy_for_map_finds_groups_that_do_not_divide():
    assert sl.strategy_for_map([0, 0, 0, 1, 1]) == ("groups", 2)
    assert sl.strategy_for_map([0, 0, 1, 1]) == ("sequence", 2)  # the same map: sequence is named first


def test_encode_checks_the_feature_size():
    model = sl.SharedTransformer(sl.TransformerConfig(d_model=16, n_heads=2, d_ff=8, n_layers=1, vocab_size=5))
    with pytest.raises(ValueError, match=r"\(batch, sequence, 16\)"):
        model.encode(torch.zeros(2, 3, 15))


def test_unsupported_activation_names_the_allowed_ones():
    layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True, activation=nn.SiLU())
    with pytest.raises(ValueError, match="activation must be relu, gelu"):
        sl.from_torch_encoder(nn.TransformerEncoder(layer, 1, enable_nested_tensor=False))
