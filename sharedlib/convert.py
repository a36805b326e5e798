"""Conversion from the implementations people use: PyTorch's ``nn.TransformerEncoder`` and Hugging Face's
``AlbertModel`` (chapter 5, *The code*). No downloads: convert models you built or loaded yourself.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import TransformerConfig
from .models import SharedTransformer
from .sharing import STRATEGIES, layer_to_block

_HF_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu"}


def strategy_for_map(blocks: list[int]) -> tuple[str, int | None]:
    """Name the strategy whose layer -> block map equals ``blocks`` (first-use order); ``ValueError`` if none."""
    n_layers, n_unique = len(blocks), len(set(blocks))
    for strategy in STRATEGIES:
        m = n_unique if strategy in ("sequence", "cycle", "cycle-rev") else None
        try:
            if layer_to_block(strategy, n_layers, m) == blocks:
                return strategy, m
        except ValueError:
            continue
    raise ValueError(f"layer map {blocks} matches none of the whole-block strategies {STRATEGIES}")


def from_torch_encoder(encoder: nn.TransformerEncoder, vocab_size: int = 1, max_len: int = 512) -> SharedTransformer:
    """A ``SharedTransformer`` whose ``encode`` equals ``encoder`` (layers given as the same object are shared).

    Its embeddings are new (``nn.TransformerEncoder`` has none); feed hidden states to ``encode``, batch first.
    """
    layers = list(encoder.layers)
    first = layers[0]
    unique: list[nn.Module] = []
    for layer in layers:
        if not any(layer is u for u in unique):
            unique.append(layer)
    blocks = [next(i for i, u in enumerate(unique) if u is layer) for layer in layers]
    strategy, n_unique = strategy_for_map(blocks)
    norm = "pre" if first.norm_first else "post"
    if (encoder.norm is not None) != (norm == "pre"):
        raise ValueError("supported: post-norm layers with norm=None, or norm_first layers with a final LayerNorm")
    activation = _torch_activation_name(first.activation)
    config = TransformerConfig(
        d_model=first.self_attn.embed_dim,
        n_heads=first.self_attn.num_heads,
        d_ff=first.linear1.out_features,
        n_layers=len(layers),
        strategy=strategy,
        n_unique=n_unique,
        vocab_size=vocab_size,
        max_len=max_len,
        norm=norm,
        activation=activation,
        layer_norm_eps=first.norm1.eps,
        dropout=first.dropout.p,
    )
    model = SharedTransformer(config)
    with torch.no_grad():
        for index, layer in enumerate(unique):
            _copy_torch_layer(layer, model, index)
        if model.final_norm is not None:
            _copy(model.final_norm, encoder.norm)
    return model


def from_albert(albert: Any) -> SharedTransformer:
    """A ``SharedTransformer`` equal to a Hugging Face ``AlbertModel``'s ``last_hidden_state`` (pooler dropped)."""
    c = albert.config
    if c.hidden_act not in _HF_ACTIVATIONS:
        raise ValueError(f"hidden_act must be one of {sorted(_HF_ACTIVATIONS)}, got {c.hidden_act!r}")
    grouped = c.num_hidden_groups > 1 or c.inner_group_num > 1
    config = TransformerConfig(
        d_model=c.hidden_size,
        n_heads=c.num_attention_heads,
        d_ff=c.intermediate_size,
        n_layers=c.num_hidden_layers,
        strategy="groups" if grouped else "all",
        n_unique=c.num_hidden_groups if grouped else None,
        inner_group_num=c.inner_group_num,
        vocab_size=c.vocab_size,
        max_len=c.max_position_embeddings,
        n_token_types=c.type_vocab_size,
        embedding_size=c.embedding_size,
        norm="post",
        activation=_HF_ACTIVATIONS[c.hidden_act],
        layer_norm_eps=c.layer_norm_eps,
        dropout=c.hidden_dropout_prob,
    )
    model = SharedTransformer(config)
    e, ours = albert.embeddings, model.embeddings
    with torch.no_grad():
        for dst, src in [
            (ours.tokens, e.word_embeddings),
            (ours.positions, e.position_embeddings),
            (ours.token_types, e.token_type_embeddings),
            (ours.norm, e.LayerNorm),
            (ours.projection, albert.encoder.embedding_hidden_mapping_in),
        ]:
            _copy(dst, src)
        for g, group in enumerate(albert.encoder.albert_layer_groups):
            for k, layer in enumerate(group.albert_layers):
                _copy_albert_layer(layer, model, g * c.inner_group_num + k)
    return model


def _torch_activation_name(activation: object) -> str:
    """Our name for an ``nn.TransformerEncoderLayer`` activation, given as a function or a module."""
    if activation is F.relu or isinstance(activation, nn.ReLU):
        return "relu"
    if activation is F.gelu:
        return "gelu"
    if isinstance(activation, nn.GELU):
        return "gelu_tanh" if activation.approximate == "tanh" else "gelu"
    raise ValueError(f"activation must be relu, gelu or GELU(approximate='tanh'), got {activation!r}")


def _copy(dst: nn.Module, src: nn.Module) -> None:
    """Copy weight and bias between modules of the same kind and shape."""
    dst.weight.copy_(src.weight)
    if getattr(src, "bias", None) is not None:
        dst.bias.copy_(src.bias)


def _copy_torch_layer(layer: nn.TransformerEncoderLayer, model: SharedTransformer, index: int) -> None:
    attention, ffn = model.attention[index], model.ffn[index]
    attention.inner.qkv.weight.copy_(layer.self_attn.in_proj_weight)  # Q, K, V stacked in the same order
    attention.inner.qkv.bias.copy_(layer.self_attn.in_proj_bias)
    _copy(attention.inner.out, layer.self_attn.out_proj)
    _copy(attention.norm, layer.norm1)
    _copy(ffn.inner.up, layer.linear1)
    _copy(ffn.inner.down, layer.linear2)
    _copy(ffn.norm, layer.norm2)


def _copy_albert_layer(layer: nn.Module, model: SharedTransformer, index: int) -> None:
    attention, ffn, a = model.attention[index], model.ffn[index], layer.attention
    attention.inner.qkv.weight.copy_(torch.cat([a.query.weight, a.key.weight, a.value.weight]))
    attention.inner.qkv.bias.copy_(torch.cat([a.query.bias, a.key.bias, a.value.bias]))
    _copy(attention.inner.out, a.dense)
    _copy(attention.norm, a.LayerNorm)
    _copy(ffn.inner.up, layer.ffn)
    _copy(ffn.inner.down, layer.ffn_output)
    _copy(ffn.norm, layer.full_layer_layer_norm)
