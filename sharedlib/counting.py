"""Closed-form parameter, FLOP and memory counts for every strategy (chapter 4,
*Counting parameters*).

The per-part functions use only ``+`` and ``*``, so they accept sympy symbols as well as
integers: the chapter prints them symbolically and checks them against ``numel()`` with
the same code. Concrete sizes are checked (integers, not negative); symbolic ones are
left alone.
"""

from __future__ import annotations

from typing import Any

from .config import TransformerConfig
from .sharing import n_parameter_sets
from .validation import check_instance, check_int

__all__ = [
    "SOURCE_STATED_COUNTS",
    "activation_values_per_token",
    "attention_parameters",
    "count_parameters",
    "embedding_parameters",
    "ffn_parameters",
    "forward_flops_per_token",
    "layer_norm_parameters",
    "layer_parameters",
    "parameter_breakdown",
    "source_parameter_formula",
    "training_memory_bytes",
]

# What the source document states for L=6, d=512, d_ff=2048 (a quotation, checked in
# chapter 4).
SOURCE_STATED_COUNTS: dict[str, int] = {"unshared": 25_080_832, "shared": 4_194_304}


def _check_size(name: str, value: Any, minimum: int = 1) -> None:
    """``check_int``, except that a sympy expression with symbols passes unchecked."""
    if not getattr(value, "free_symbols", None):
        check_int(name, value, minimum)


def _check_config(config: Any) -> None:
    check_instance("config", config, TransformerConfig, "a sharedlib.TransformerConfig")


def attention_parameters(d: Any) -> Any:
    """Q, K, V and output projections: 4*d*d weights plus 4*d biases."""
    _check_size("d", d)
    return 4 * d * d + 4 * d


def ffn_parameters(d: Any, d_ff: Any) -> Any:
    """Two linear maps d -> d_ff -> d: 2*d*d_ff weights plus d_ff + d biases."""
    _check_size("d", d)
    _check_size("d_ff", d_ff)
    return 2 * d * d_ff + d_ff + d


def layer_norm_parameters(d: Any) -> Any:
    """A LayerNorm's gain and bias."""
    _check_size("d", d)
    return 2 * d


def layer_parameters(d: Any, d_ff: Any, norms: int = 2) -> Any:
    """One Transformer layer: attention, FFN and ``norms`` LayerNorms (two in BERT and
    GPT)."""
    _check_size("norms", norms, minimum=0)
    return (
        attention_parameters(d)
        + ffn_parameters(d, d_ff)
        + norms * layer_norm_parameters(d)
    )


def embedding_parameters(config: TransformerConfig) -> int:
    """Token, position and segment tables (V+P+T)*E (P = 0 without learned positions),
    their LayerNorm, and ALBERT's E -> H projection."""
    _check_config(config)
    E, H = config.embedding_dim, config.d_model
    # rotary and none store no positions
    positions = config.max_len if config.position == "learned" else 0
    tables = (config.vocab_size + positions + config.n_token_types) * E
    norm = layer_norm_parameters(E) if config.embedding_norm else 0
    projection = E * H + H if config.embedding_size is not None else 0
    return tables + norm + projection


def parameter_breakdown(config: TransformerConfig) -> dict[str, int]:
    """Unique parameters by part; the values add up to ``count_parameters(config)``."""
    _check_config(config)
    H = config.d_model
    sublayer_norm = layer_norm_parameters(H) if config.norm != "none" else 0
    sets = {
        part: n_parameter_sets(
            config.strategy,
            config.n_layers,
            config.n_unique,
            sublayer=part,
            inner_group_num=config.inner_group_num,
        )
        for part in ("attention", "ffn")
    }
    tied_projection = H * config.embedding_dim + config.embedding_dim
    return {
        "embeddings": embedding_parameters(config),
        "attention": sets["attention"] * (attention_parameters(H) + sublayer_norm),
        "ffn": sets["ffn"] * (ffn_parameters(H, config.d_ff) + sublayer_norm),
        "final_norm": layer_norm_parameters(H) if config.norm == "pre" else 0,
        "lm_head": tied_projection
        if config.lm_head and config.embedding_size is not None
        else 0,
    }


def count_parameters(config: TransformerConfig) -> int:
    """Unique trainable parameters of ``SharedTransformer(config)``, in closed form."""
    return sum(parameter_breakdown(config).values())


def source_parameter_formula(
    n_layers: Any, d_model: Any, d_ff: Any, shared: bool
) -> Any:
    """The source document's formula 2*L*d^2 + 2*L*d*d_ff (L dropped when shared);
    chapter 4 shows it wrong."""
    for name, value in (("n_layers", n_layers), ("d_model", d_model), ("d_ff", d_ff)):
        _check_size(name, value)
    check_instance("shared", shared, bool, "True or False")
    layers = 1 if shared else n_layers
    return 2 * layers * d_model**2 + 2 * layers * d_model * d_ff


def forward_flops_per_token(config: TransformerConfig, seq_len: int) -> dict[str, int]:
    """Forward FLOPs per token by part (a multiply-add is 2 FLOPs); depth counts,
    sharing does not."""
    _check_config(config)
    _check_size("seq_len", seq_len)
    H, E, L, T = config.d_model, config.embedding_dim, config.depth, seq_len
    return {
        "embedding_projection": 2 * E * H if config.embedding_size is not None else 0,
        "attention_projections": L * 2 * 4 * H * H,
        # Q K^T and (softmax) V, each T*H multiply-adds
        "attention_scores": L * 2 * 2 * T * H,
        "ffn": L * 2 * 2 * H * config.d_ff,
        "lm_head": (2 * H * E if config.embedding_size is not None else 0)
        + 2 * E * config.vocab_size
        if config.lm_head
        else 0,
    }


def activation_values_per_token(config: TransformerConfig) -> int:
    """Values the encoder layers keep for backward, per token, with a fused attention
    kernel (chapter 4).

    Per layer: each sublayer's LayerNorm keeps its input and two statistics and the
    first linear layer its input (without LayerNorms only the latter); attention adds
    Q|K|V (3H), the head-merged output (H) and one log-sum-exp per head; the FFN adds
    its d_ff-wide tensors, both with GELU, ReLU's output alone. The chapter measures
    this; other kernels keep a little more.
    """
    _check_config(config)
    H = config.d_model
    # (LayerNorm input + stats +) linear input
    sublayer_input = H if config.norm == "none" else 2 * H + 2
    attention = sublayer_input + 3 * H + H + config.n_heads
    ffn = sublayer_input + (
        config.d_ff if config.activation == "relu" else 2 * config.d_ff
    )
    return config.depth * (attention + ffn)


def training_memory_bytes(
    config: TransformerConfig,
    batch_size: int,
    seq_len: int,
    bytes_per_value: int = 4,
    optimizer_states: int = 2,
) -> dict[str, int]:
    """Training memory by kind: weights, gradients and optimizer state scale with unique
    parameters, activations with depth and tokens (AdamW keeps ``optimizer_states=2``
    moments per parameter)."""
    for name, value, minimum in (
        ("batch_size", batch_size, 1),
        ("seq_len", seq_len, 1),
        ("bytes_per_value", bytes_per_value, 1),
        ("optimizer_states", optimizer_states, 0),  # 0: plain SGD
    ):
        _check_size(name, value, minimum)
    params = count_parameters(config)
    return {
        "parameters": params * bytes_per_value,
        "gradients": params * bytes_per_value,
        "optimizer_state": optimizer_states * params * bytes_per_value,
        "activations": batch_size
        * seq_len
        * activation_values_per_token(config)
        * bytes_per_value,
    }
