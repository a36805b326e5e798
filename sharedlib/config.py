"""The one configuration every model and count in the book is built from (chapters 4 and 5)."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from .sharing import STRATEGIES, layer_to_block, validate_sharing

NORM_PLACEMENTS: tuple[str, ...] = ("pre", "post", "none")
ACTIVATIONS: tuple[str, ...] = ("gelu", "gelu_tanh", "relu")
POSITIONS: tuple[str, ...] = (
    "learned",
    "rotary",
    "none",
)  # position schemes (chapter 5b, *Iterations and length*)
INT_FIELDS: tuple[str, ...] = (
    "d_model",
    "n_heads",
    "d_ff",
    "n_layers",
    "inner_group_num",
    "vocab_size",
    "max_len",
)
BOOL_FIELDS: tuple[str, ...] = ("embedding_norm", "causal", "lm_head")


def _as_int(name: str, value: object, minimum: int) -> int:
    """``value`` as an ``int`` >= ``minimum``; bools, floats and strings raise ``ValueError`` naming ``name``."""
    kind = "positive" if minimum == 1 else "non-negative"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(
            f"{name} must be a {kind} integer (an int, not a bool, float or string), got {value!r}"
        )
    if value < minimum:
        raise ValueError(f"{name} must be a {kind} integer, got {value!r}")
    return int(value)


def _check_real(name: str, value: object, allowed: str) -> float:
    """``value`` as a finite ``float``; bools, strings, None, NaN and infinities raise ``ValueError``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
    ):
        raise ValueError(
            f"{name} must be a finite real number {allowed}, got {value!r}"
        )
    return float(value)


@dataclass(frozen=True)
class TransformerConfig:
    """Shape and sharing of an encoder; invalid values raise ``ValueError`` naming the field."""

    d_model: int = 512  # H: width of the residual stream
    n_heads: int = 8  # attention heads; must divide d_model
    d_ff: int = 2048  # hidden width of the feed-forward network
    n_layers: int = (
        6  # N: layers applied in the forward pass (ALBERT: num_hidden_layers)
    )
    strategy: str = "none"  # sharing strategy, one of sharedlib.STRATEGIES (chapter 3)
    n_unique: int | None = (
        None  # M: parameter sets for sequence / cycle / cycle-rev / groups
    )
    inner_group_num: int = (
        1  # ALBERT: blocks run inside each group (strategy "groups" only)
    )
    vocab_size: int = 30000  # V: token vocabulary
    max_len: int = 512  # P: the longest sequence accepted (and the rows of the learned position table)
    position: str = "learned"  # "learned" table (BERT, GPT-2), "rotary" on Q and K (RoPE), "none" (causal only)
    n_token_types: int = 0  # segment embeddings (BERT and ALBERT use 2, GPT none)
    embedding_size: int | None = (
        None  # E: factorised embedding V*E + E*H (ALBERT); None: no projection
    )
    embedding_norm: bool = True  # LayerNorm on the summed embeddings (BERT, ALBERT)
    norm: str = "pre"  # residual LayerNorm: "pre" (GPT-2), "post" (BERT, ALBERT), "none" (the source)
    activation: str = "gelu"  # FFN non-linearity, one of ACTIVATIONS
    layer_norm_eps: float = 1e-5  # epsilon of every LayerNorm (ALBERT uses 1e-12)
    dropout: float = 0.0  # dropout on attention weights and residual branches
    causal: bool = False  # mask future positions (language modelling)
    lm_head: bool = False  # logits over the vocabulary, tied to the token embedding

    def __post_init__(self) -> None:
        # Types first, field by field: ints are integers (numpy ints become int), bools are bools, floats finite.
        for name in INT_FIELDS:
            object.__setattr__(self, name, _as_int(name, getattr(self, name), 1))
        object.__setattr__(
            self, "n_token_types", _as_int("n_token_types", self.n_token_types, 0)
        )
        for name in ("n_unique", "embedding_size"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _as_int(name, getattr(self, name), 1))
        for name in BOOL_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ValueError(
                    f"{name} must be True or False (a bool, not {type(value).__name__}), got {value!r}"
                )
        for name, allowed in (
            ("strategy", STRATEGIES),
            ("norm", NORM_PLACEMENTS),
            ("activation", ACTIVATIONS),
            ("position", POSITIONS),
        ):
            value = getattr(self, name)
            if not isinstance(value, str) or value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if not 0.0 <= _check_real("dropout", self.dropout, "in [0, 1)") < 1.0:
            raise ValueError(
                f"dropout must be a finite real number in [0, 1), got {self.dropout!r}"
            )
        if _check_real("layer_norm_eps", self.layer_norm_eps, "> 0") <= 0:
            raise ValueError(
                f"layer_norm_eps must be a finite real number > 0, got {self.layer_norm_eps!r}"
            )
        # Then the relations between fields.
        if self.d_model % self.n_heads:
            divisors = [h for h in range(1, self.d_model + 1) if self.d_model % h == 0]
            raise ValueError(
                f"n_heads={self.n_heads} must divide d_model={self.d_model}; "
                f"allowed n_heads: {divisors[:12]}{' ...' if len(divisors) > 12 else ''}"
            )
        if self.position == "rotary" and self.head_dim % 2:
            raise ValueError(
                f"position='rotary' rotates pairs of features: the head width d_model/n_heads must be even, got "
                f"{self.d_model}/{self.n_heads} = {self.head_dim}"
            )
        if self.position == "none" and not self.causal:
            raise ValueError(
                "position='none' needs causal=True: without a causal mask attention is blind to order, so a model "
                "with no position signal cannot tell 'ab' from 'ba'; use 'learned' or 'rotary'"
            )
        validate_sharing(
            self.strategy, self.n_layers, self.n_unique, self.inner_group_num
        )

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.d_model // self.n_heads

    @property
    def embedding_dim(self) -> int:
        """E, the width of the token embedding table (H when not factorised)."""
        return self.embedding_size if self.embedding_size is not None else self.d_model

    @property
    def depth(self) -> int:
        """Blocks applied per forward pass (N, times K for ALBERT groups)."""
        return self.n_layers * self.inner_group_num

    def block_map(self, sublayer: str = "attention") -> list[int]:
        """The layer -> parameter-set map of this config (see ``layer_to_block``)."""
        return layer_to_block(
            self.strategy,
            self.n_layers,
            self.n_unique,
            sublayer=sublayer,
            inner_group_num=self.inner_group_num,
        )
