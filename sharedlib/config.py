"""The one configuration every model and count in the book is built from (chapters 4 and 5)."""

from __future__ import annotations

from dataclasses import dataclass

from .sharing import layer_to_block, validate_sharing

NORM_PLACEMENTS: tuple[str, ...] = ("pre", "post", "none")
ACTIVATIONS: tuple[str, ...] = ("gelu", "gelu_tanh", "relu")


def _require_positive(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class TransformerConfig:
    """Shape and sharing of an encoder; invalid values raise ``ValueError`` naming the field."""

    d_model: int = 512  # H: width of the residual stream
    n_heads: int = 8  # attention heads; must divide d_model
    d_ff: int = 2048  # hidden width of the feed-forward network
    n_layers: int = 6  # N: layers applied in the forward pass (ALBERT: num_hidden_layers)
    strategy: str = "none"  # sharing strategy, one of sharedlib.STRATEGIES (chapter 3)
    n_unique: int | None = None  # M: parameter sets for sequence / cycle / cycle-rev / groups
    inner_group_num: int = 1  # ALBERT: blocks run inside each group (strategy "groups" only)
    vocab_size: int = 30000  # V: token vocabulary
    max_len: int = 512  # P: learned positions, the longest sequence accepted
    n_token_types: int = 0  # segment embeddings (BERT and ALBERT use 2, GPT none)
    embedding_size: int | None = None  # E: factorised embedding V*E + E*H (ALBERT); None: no projection
    embedding_norm: bool = True  # LayerNorm on the summed embeddings (BERT, ALBERT)
    norm: str = "pre"  # residual LayerNorm: "pre" (GPT-2), "post" (BERT, ALBERT), "none" (the source)
    activation: str = "gelu"  # FFN non-linearity, one of ACTIVATIONS
    layer_norm_eps: float = 1e-5  # epsilon of every LayerNorm (ALBERT uses 1e-12)
    dropout: float = 0.0  # dropout on attention weights and residual branches
    causal: bool = False  # mask future positions (language modelling)
    lm_head: bool = False  # logits over the vocabulary, tied to the token embedding

    def __post_init__(self) -> None:
        for name in ("d_model", "n_heads", "d_ff", "n_layers", "vocab_size", "max_len"):
            _require_positive(name, getattr(self, name))
        if self.embedding_size is not None:
            _require_positive("embedding_size", self.embedding_size)
        if not isinstance(self.n_token_types, int) or self.n_token_types < 0:
            raise ValueError(f"n_token_types must be a non-negative integer, got {self.n_token_types!r}")
        if self.d_model % self.n_heads:
            divisors = [h for h in range(1, self.d_model + 1) if self.d_model % h == 0]
            raise ValueError(
                f"n_heads={self.n_heads} must divide d_model={self.d_model}; "
                f"allowed n_heads: {divisors[:12]}{' ...' if len(divisors) > 12 else ''}"
            )
        validate_sharing(self.strategy, self.n_layers, self.n_unique, self.inner_group_num)
        if self.norm not in NORM_PLACEMENTS:
            raise ValueError(f"norm must be one of {NORM_PLACEMENTS}, got {self.norm!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.layer_norm_eps <= 0:
            raise ValueError(f"layer_norm_eps must be positive, got {self.layer_norm_eps!r}")

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
            self.strategy, self.n_layers, self.n_unique, sublayer=sublayer, inner_group_num=self.inner_group_num
        )
