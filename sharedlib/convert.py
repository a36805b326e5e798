"""Conversion from the implementations people use: PyTorch's ``nn.TransformerEncoder``
and Hugging Face's ``AlbertModel`` (chapter 5, *The code*). No downloads: convert models
you built or loaded yourself.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import TransformerConfig
from .models import SharedTransformer
from .sharing import NEEDS_N_UNIQUE, STRATEGIES, SUBLAYERS, layer_to_block
from .validation import check_choice, check_instance

__all__ = ["from_albert", "from_torch_encoder", "strategy_for_map"]

_HF_ACTIVATIONS = {
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu": "gelu",
    "relu": "relu",
}


def strategy_for_map(blocks: list[int]) -> tuple[str, int | None]:
    """Name the strategy whose layer -> block map equals ``blocks`` (first-use order);
    ``ValueError`` if none."""
    n_layers, n_unique = len(blocks), len(set(blocks))
    for strategy in STRATEGIES:
        m = n_unique if strategy in NEEDS_N_UNIQUE else None
        try:
            if layer_to_block(strategy, n_layers, m) == blocks:
                return strategy, m
        except ValueError:
            continue
    raise ValueError(
        f"layer map {blocks} matches none of the whole-block strategies {STRATEGIES}"
    )


def from_torch_encoder(
    encoder: nn.TransformerEncoder, vocab_size: int = 1, max_len: int = 512
) -> SharedTransformer:
    """A ``SharedTransformer`` whose ``encode`` equals ``encoder``; what the layers hold
    as the same object is shared (chapter 5).

    A layer repeated maps to a whole-block strategy; a ``self_attn`` with ``norm1`` (or
    ``linear1``, ``linear2`` and ``norm2``) given to every layer of otherwise distinct
    layers maps to strategy "attention" (or "ffn"); any other sharing raises
    ``ValueError`` rather than becoming independent copies.

    Its embeddings are new (``nn.TransformerEncoder`` has none). ``encode`` takes hidden
    states batch first, (B, T, H), whatever the encoder's ``batch_first``: the weights
    do not depend on it, but a sequence-first encoder's inputs need
    ``x.transpose(0, 1)``. Every layer must match the first in every setting.
    """
    what = "an nn.TransformerEncoder with layers"
    check_instance("encoder", encoder, nn.TransformerEncoder, what)
    if not len(encoder.layers):
        raise ValueError(f"encoder must be {what}, got one with no layers")
    layers = list(encoder.layers)
    settings = [
        _torch_layer_settings(layer, index) for index, layer in enumerate(layers)
    ]
    first = settings[0]
    for index, current in enumerate(settings[1:], start=1):
        for name, value in current.items():
            if value != first[name]:
                raise ValueError(
                    f"layer {index} differs from layer 0 in {name}: "
                    f"{value!r} != {first[name]!r}; sharedlib builds every layer from "
                    "one configuration"
                )
    attention_map, ffn_map = _torch_sublayer_maps(layers)
    strategy, n_unique = _torch_strategy(attention_map, ffn_map)
    norm = "pre" if first["norm_first"] else "post"
    if (encoder.norm is not None) != (norm == "pre"):
        raise ValueError(
            "supported: post-norm layers with norm=None, or norm_first layers with a "
            "final LayerNorm"
        )
    if encoder.norm is not None:
        final = _layer_norm_eps(encoder.norm, "the encoder's final norm")
        if final != first["layer_norm_eps"]:
            raise ValueError(
                f"the final norm's eps {final!r} differs from the layers' eps "
                f"{first['layer_norm_eps']!r}"
            )
    config = TransformerConfig(
        d_model=first["d_model"],
        n_heads=first["n_heads"],
        d_ff=first["d_ff"],
        n_layers=len(layers),
        strategy=strategy,
        n_unique=n_unique,
        vocab_size=vocab_size,
        max_len=max_len,
        norm=norm,
        activation=first["activation"],
        layer_norm_eps=first["layer_norm_eps"],
        dropout=first["dropout"],
    )
    model = SharedTransformer(config)
    # cannot happen: _torch_strategy checked
    if (model.attention_map, model.ffn_map) != (attention_map, ffn_map):
        raise RuntimeError(
            f"strategy {strategy!r} maps the layers otherwise than the encoder shares "
            "them"
        )
    with torch.no_grad():
        for index, (a, f) in enumerate(zip(attention_map, ffn_map, strict=True)):
            # the first layer that uses attention block a
            if a not in attention_map[:index]:
                _copy_torch_attention(layers[index], model.attention[a])
            if f not in ffn_map[:index]:
                _copy_torch_ffn(layers[index], model.ffn[f])
        if model.final_norm is not None:
            _copy(model.final_norm, encoder.norm)
    return model


# the parameters of each sublayer of nn.TransformerEncoderLayer
_TORCH_SUBLAYERS: dict[str, tuple[str, ...]] = {
    "attention": (
        "self_attn.in_proj_weight",
        "self_attn.in_proj_bias",
        "self_attn.out_proj.weight",
        "self_attn.out_proj.bias",
        "norm1.weight",
        "norm1.bias",
    ),
    "ffn": (
        "linear1.weight",
        "linear1.bias",
        "linear2.weight",
        "linear2.bias",
        "norm2.weight",
        "norm2.bias",
    ),
}


def _torch_sublayer_maps(layers: list[nn.Module]) -> tuple[list[int], list[int]]:
    """The layer -> block maps (first-use order) of the attention and FFN sublayers,
    from which parameter tensors the layers hold in common: a repeated layer, or a
    sub-module (``self_attn``, ``linear1``, ...) given to several layers. ``ValueError``
    where part of a sublayer is shared and part not, or one tensor serves two roles."""
    roles: dict[int, str] = {}
    maps: dict[str, list[int]] = {}
    for sublayer, names in _TORCH_SUBLAYERS.items():
        for name in names:
            tensors = [layer.get_parameter(name) for layer in layers]
            for index, tensor in enumerate(tensors):
                role = roles.setdefault(id(tensor), name)
                if role != name:
                    raise ValueError(
                        f"layer {index}'s {name} is the same tensor as a {role}; "
                        "sharedlib ties parameters only between layers, in the same "
                        "place"
                    )
            firsts = [
                next(j for j in range(i + 1) if tensors[j] is tensors[i])
                for i in range(len(tensors))
            ]
            blocks = [sorted(set(firsts)).index(first) for first in firsts]
            previous = maps.setdefault(sublayer, blocks)
            if blocks != previous:
                first = _TORCH_SUBLAYERS[sublayer][0]
                raise ValueError(
                    f"the layers share {name} as {blocks} but {first} as {previous}: "
                    f"sharedlib shares a whole {sublayer} sublayer (projections and "
                    "its LayerNorm) or none of it"
                )
    return maps["attention"], maps["ffn"]


def _torch_strategy(
    attention_map: list[int], ffn_map: list[int]
) -> tuple[str, int | None]:
    """The strategy (and n_unique) whose attention and FFN maps are these;
    ``ValueError`` naming them if none."""
    n_layers = len(attention_map)
    if attention_map == ffn_map:
        return strategy_for_map(attention_map)
    one, own = [0] * n_layers, list(range(n_layers))
    if attention_map == one and ffn_map == own:
        return "attention", None
    if ffn_map == one and attention_map == own:
        return "ffn", None
    whole = ", ".join(s for s in STRATEGIES if s not in SUBLAYERS)
    raise ValueError(
        f"the layers share attention sublayers as {attention_map} and FFN sublayers as "
        f"{ffn_map}; supported: the same map for both (whole layers, strategies "
        f"{whole}), or one sublayer shared by every layer and the other by none "
        "(strategies 'attention', 'ffn')"
    )


def _torch_layer_settings(layer: nn.Module, index: int) -> dict[str, object]:
    """The settings of ``nn.TransformerEncoderLayer`` ``layer`` that
    ``TransformerConfig`` holds once for all layers."""
    kind = nn.TransformerEncoderLayer
    check_instance(f"layer {index}", layer, kind, "an nn.TransformerEncoderLayer")
    attention = layer.self_attn
    if attention.in_proj_weight is None:
        raise ValueError(
            f"layer {index}'s self_attn has separate q/k/v weights "
            "(kdim or vdim != d_model); unsupported"
        )
    if attention.in_proj_bias is None or layer.linear1.bias is None:
        raise ValueError(
            f"layer {index} was built with bias=False; sharedlib's layers always have "
            "biases"
        )
    eps = _layer_norm_eps(layer.norm1, f"layer {index} norm1")
    if _layer_norm_eps(layer.norm2, f"layer {index} norm2") != eps:
        raise ValueError(
            f"layer {index}: norm1.eps {eps!r} != norm2.eps {layer.norm2.eps!r}; "
            "sharedlib uses one eps"
        )
    dropout = layer.dropout.p
    others = {
        "self_attn.dropout": attention.dropout,
        "dropout1": layer.dropout1.p,
        "dropout2": layer.dropout2.p,
    }
    for name, p in others.items():
        if p != dropout:
            raise ValueError(
                f"layer {index}: {name}={p!r} != dropout={dropout!r}; sharedlib uses "
                "one dropout rate"
            )
    return {
        "d_model": attention.embed_dim,
        "n_heads": attention.num_heads,
        "d_ff": layer.linear1.out_features,
        "norm_first": layer.norm_first,
        "activation": _torch_activation_name(layer.activation),
        "layer_norm_eps": eps,
        "dropout": dropout,
        "batch_first": attention.batch_first,
    }


def _layer_norm_eps(norm: nn.Module, where: str) -> float:
    """The eps of a LayerNorm with gain and bias (the only kind sharedlib builds)."""
    if not isinstance(norm, nn.LayerNorm) or norm.weight is None or norm.bias is None:
        raise ValueError(
            f"{where} must be an nn.LayerNorm with elementwise_affine=True and "
            f"bias=True, got {norm!r}"
        )
    return norm.eps


def from_albert(albert: Any) -> SharedTransformer:
    """A ``SharedTransformer`` equal to a Hugging Face ``AlbertModel``'s
    ``last_hidden_state``, pooler dropped (chapter 5).

    A model with a head (``AlbertForMaskedLM``, ``AlbertForSequenceClassification``,
    ...) converts its ``.albert``; the head is not converted. Settings sharedlib cannot
    reproduce raise ``ValueError`` naming them.
    """
    albert = _albert_model(albert)
    c = albert.config
    check_choice("hidden_act", c.hidden_act, sorted(_HF_ACTIVATIONS))
    if c.attention_probs_dropout_prob != c.hidden_dropout_prob:
        raise ValueError(
            f"attention_probs_dropout_prob={c.attention_probs_dropout_prob!r} != "
            f"hidden_dropout_prob={c.hidden_dropout_prob!r}: sharedlib uses one "
            "dropout rate for both; set them equal before converting"
        )
    position_type = getattr(c, "position_embedding_type", "absolute")
    if position_type != "absolute":
        raise ValueError(
            "position_embedding_type must be 'absolute' (learned positions), "
            f"got {position_type!r}"
        )
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


def _albert_model(albert: object) -> Any:
    """``albert`` if it is a Hugging Face ``AlbertModel``, its ``.albert`` if that is
    one; else ``ValueError``."""
    # transformers is optional and heavy: imported only when converting
    try:
        from transformers import AlbertModel
    except ImportError as error:  # without transformers there is no AlbertModel
        raise ValueError(
            "albert must be a Hugging Face AlbertModel (transformers is not "
            f"installed), got {type(albert).__name__}"
        ) from error
    for candidate in (albert, getattr(albert, "albert", None)):
        if isinstance(candidate, AlbertModel):
            return candidate
    raise ValueError(
        "albert must be a Hugging Face AlbertModel, or a model that holds one as "
        ".albert (AlbertForMaskedLM, AlbertForPreTraining, "
        f"AlbertForSequenceClassification, ...), got {type(albert).__name__}"
    )


def _torch_activation_name(activation: object) -> str:
    """Our name for an ``nn.TransformerEncoderLayer`` activation, given as a function or
    a module."""
    if activation is F.relu or isinstance(activation, nn.ReLU):
        return "relu"
    if activation is F.gelu:
        return "gelu"
    if isinstance(activation, nn.GELU):
        return "gelu_tanh" if activation.approximate == "tanh" else "gelu"
    raise ValueError(
        f"activation must be relu, gelu or GELU(approximate='tanh'), got {activation!r}"
    )


def _copy(dst: nn.Module, src: nn.Module) -> None:
    """Copy weight and bias between modules of the same kind and shape."""
    dst.weight.copy_(src.weight)
    if getattr(src, "bias", None) is not None:
        dst.bias.copy_(src.bias)


def _copy_torch_attention(
    layer: nn.TransformerEncoderLayer, attention: nn.Module
) -> None:
    """Copy ``layer``'s self-attention and norm1 into one of our attention blocks."""
    # Q, K, V stacked in the same order
    attention.inner.qkv.weight.copy_(layer.self_attn.in_proj_weight)
    attention.inner.qkv.bias.copy_(layer.self_attn.in_proj_bias)
    _copy(attention.inner.out, layer.self_attn.out_proj)
    _copy(attention.norm, layer.norm1)


def _copy_torch_ffn(layer: nn.TransformerEncoderLayer, ffn: nn.Module) -> None:
    """Copy ``layer``'s linear1, linear2 and norm2 into one of our FFN blocks."""
    _copy(ffn.inner.up, layer.linear1)
    _copy(ffn.inner.down, layer.linear2)
    _copy(ffn.norm, layer.norm2)


def _copy_albert_layer(layer: nn.Module, model: SharedTransformer, index: int) -> None:
    attention, ffn, a = model.attention[index], model.ffn[index], layer.attention
    attention.inner.qkv.weight.copy_(
        torch.cat([a.query.weight, a.key.weight, a.value.weight])
    )
    attention.inner.qkv.bias.copy_(torch.cat([a.query.bias, a.key.bias, a.value.bias]))
    _copy(attention.inner.out, a.dense)
    _copy(attention.norm, a.LayerNorm)
    _copy(ffn.inner.up, layer.ffn)
    _copy(ffn.inner.down, layer.ffn_output)
    _copy(ffn.norm, layer.full_layer_layer_norm)
