"""The one configuration every model and count in the book is built from (chapters 4
and 5)."""

from __future__ import annotations

from dataclasses import dataclass

from .sharing import STRATEGIES, layer_to_block, validate_sharing
from .validation import check_choice, check_int, check_real

__all__ = ["ACTIVATIONS", "NORM_PLACEMENTS", "POSITIONS", "TransformerConfig"]

NORM_PLACEMENTS: tuple[str, ...] = ("pre", "post", "none")
ACTIVATIONS: tuple[str, ...] = ("gelu", "gelu_tanh", "relu")
# position schemes (chapter 5b, *Iterations and length*)
POSITIONS: tuple[str, ...] = ("learned", "rotary", "none")
_INT_FIELDS: dict[str, int] = {  # name -> minimum
    "d_model": 1,
    "n_heads": 1,
    "d_ff": 1,
    "n_layers": 1,
    "inner_group_num": 1,
    "vocab_size": 1,
    "max_len": 1,
    "n_token_types": 0,
}
_OPTIONAL_INT_FIELDS: tuple[str, ...] = ("n_unique", "embedding_size")  # None or >= 1
_BOOL_FIELDS: tuple[str, ...] = ("embedding_norm", "causal", "lm_head")
_CHOICE_FIELDS: dict[str, tuple[str, ...]] = {
    "strategy": STRATEGIES,
    "norm": NORM_PLACEMENTS,
    "activation": ACTIVATIONS,
    "position": POSITIONS,
}


@dataclass(frozen=True)
class TransformerConfig:
    """Shape and sharing of an encoder; invalid values raise ``ValueError`` naming the
    field."""

    d_model: int = 512  # H: width of the residual stream
    n_heads: int = 8  # attention heads; must divide d_model
    d_ff: int = 2048  # hidden width of the feed-forward network
    # N: layers applied in the forward pass (ALBERT: num_hidden_layers)
    n_layers: int = 6
    strategy: str = "none"  # sharing strategy, one of sharedlib.STRATEGIES (chapter 3)
    # M: parameter sets for sequence / cycle / cycle-rev / groups
    n_unique: int | None = None
    # ALBERT: blocks run inside each group (strategy "groups" only)
    inner_group_num: int = 1
    vocab_size: int = 30000  # V: token vocabulary
    # P: the longest sequence accepted (and the rows of the learned position table)
    max_len: int = 512
    # "learned" table (BERT, GPT-2), "rotary" on Q and K (RoPE), "none" (causal only)
    position: str = "learned"
    n_token_types: int = 0  # segment embeddings (BERT and ALBERT use 2, GPT none)
    # E: factorised embedding V*E + E*H (ALBERT); None: no projection
    embedding_size: int | None = None
    embedding_norm: bool = True  # LayerNorm on the summed embeddings (BERT, ALBERT)
    # residual LayerNorm: "pre" (GPT-2), "post" (BERT, ALBERT), "none" (the source)
    norm: str = "pre"
    activation: str = "gelu"  # FFN non-linearity, one of ACTIVATIONS
    layer_norm_eps: float = 1e-5  # epsilon of every LayerNorm (ALBERT uses 1e-12)
    dropout: float = 0.0  # dropout on attention weights and residual branches
    causal: bool = False  # mask future positions (language modelling)
    lm_head: bool = False  # logits over the vocabulary, tied to the token embedding

    def __post_init__(self) -> None:
        # Types first, field by field: ints are integers (numpy ints become int), bools
        # are bools, floats finite.
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        for name, minimum in _INT_FIELDS.items():
            put(name, check_int(name, getattr(self, name), minimum))
        for name in _OPTIONAL_INT_FIELDS:
            if getattr(self, name) is not None:
                put(name, check_int(name, getattr(self, name)))
        for name in _BOOL_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ValueError(
                    f"{name} must be True or False (a bool, not "
                    f"{type(value).__name__}), got {value!r}"
                )
        for name, allowed in _CHOICE_FIELDS.items():
            check_choice(name, getattr(self, name), allowed)
        check_real("layer_norm_eps", self.layer_norm_eps, 0.0, open_minimum=True)
        if check_real("dropout", self.dropout, 0.0, 1.0) == 1.0:
            # check_real's interval is closed; dropout=1 would drop every unit
            raise ValueError("dropout must be a finite real number in [0, 1), got 1.0")
        # Then the relations between fields.
        if self.d_model % self.n_heads:
            divisors = [h for h in range(1, self.d_model + 1) if self.d_model % h == 0]
            more = " ..." if len(divisors) > 12 else ""
            raise ValueError(
                f"n_heads={self.n_heads} must divide d_model={self.d_model}; "
                f"allowed n_heads: {divisors[:12]}{more}"
            )
        if self.position == "rotary" and self.head_dim % 2:
            raise ValueError(
                "position='rotary' rotates pairs of features: the head width "
                "d_model/n_heads must be even, got "
                f"{self.d_model}/{self.n_heads} = {self.head_dim}"
            )
        if self.position == "none" and not self.causal:
            raise ValueError(
                "position='none' needs causal=True: without a causal mask attention is "
                "blind to order, so a model with no position signal cannot tell 'ab' "
                "from 'ba'; use 'learned' or 'rotary'"
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
