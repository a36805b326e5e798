"""Sizes that ALBERT and BERT report, next to exact counts under two counting
conventions (chapter 4).

The two conventions differ only where the embedding width E equals the hidden width H:

* ``"tf"``: the original TensorFlow ALBERT (google-research/albert, ``modeling.py``,
  ``transformer_model``) creates the E -> H projection ``embedding_hidden_mapping_in``
  only when E != H;
* ``"hf"``: Hugging Face's ``AlbertModel`` always creates it, so E = H = 768 costs an
  extra H*H + H.

BERT has no projection under either. Both released codes add a pooler (H*H + H) on top
of the encoder.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import TransformerConfig
from ..counting import count_parameters
from ..validation import check_choice, check_real

__all__ = [
    "CONVENTIONS",
    "REPORTED_SIZES",
    "count_reported",
    "hugging_face_parameters",
    "pooler_parameters",
    "reported_config",
    "reproducing_conventions",
    "size_gaps",
]

CONVENTIONS: tuple[str, ...] = ("tf", "hf")
# ALBERT's SentencePiece vocabulary (also used for BERT in ALBERT's tables)
ALBERT_VOCAB = 30_000
BERT_VOCAB = 30_522  # BERT's WordPiece vocabulary (Devlin et al.)


@dataclass(frozen=True)
class ReportedSize:
    """One model size as a paper reports it (millions), with the shape to count it."""

    source: str  # where the number is printed, e.g. "ALBERT Table 4"
    model: str  # "ALBERT-base", "BERT-large", ...
    d_model: int  # H
    n_layers: int  # L
    embedding_size: int  # E as the paper writes it (E = H: "not factorised")
    strategy: str  # sharedlib strategy: "none", "attention", "ffn" or "all"
    reported_millions: float
    family: str = "albert"  # or "bert" (BERT never has an E -> H projection)
    vocab_size: int = ALBERT_VOCAB

    @property
    def label(self) -> str:
        """A short unique row label."""
        return f"{self.model}, E={self.embedding_size}, {self.strategy} ({self.source})"


def _albert_base(
    source: str, embedding_size: int, strategy: str, reported: float
) -> ReportedSize:
    return ReportedSize(
        source, "ALBERT-base", 768, 12, embedding_size, strategy, reported
    )


# Lan et al. (2020), ALBERT, Tables 1, 3 and 4; Devlin et al. (2019), BERT, Section 3.
REPORTED_SIZES: tuple[ReportedSize, ...] = (
    ReportedSize(
        "ALBERT Table 1", "BERT-base", 768, 12, 768, "none", 108, family="bert"
    ),
    ReportedSize(
        "ALBERT Table 1", "BERT-large", 1024, 24, 1024, "none", 334, family="bert"
    ),
    ReportedSize("ALBERT Table 1", "ALBERT-base", 768, 12, 128, "all", 12),
    ReportedSize("ALBERT Table 1", "ALBERT-large", 1024, 24, 128, "all", 18),
    ReportedSize("ALBERT Table 1", "ALBERT-xlarge", 2048, 24, 128, "all", 60),
    ReportedSize("ALBERT Table 1", "ALBERT-xxlarge", 4096, 12, 128, "all", 235),
    *(
        _albert_base("ALBERT Table 3", E, "none", r)
        for E, r in ((64, 87), (128, 89), (256, 93), (768, 108))
    ),
    *(
        _albert_base("ALBERT Table 3", E, "all", r)
        for E, r in ((64, 10), (128, 12), (256, 16), (768, 31))
    ),
    *(
        _albert_base("ALBERT Table 4", E, s, r)
        for E, counts in ((768, (31, 83, 57, 108)), (128, (12, 64, 38, 89)))
        for s, r in zip(("all", "attention", "ffn", "none"), counts, strict=True)
    ),
    ReportedSize(
        "Devlin et al.",
        "BERT-base",
        768,
        12,
        768,
        "none",
        110,
        family="bert",
        vocab_size=BERT_VOCAB,
    ),
    ReportedSize(
        "Devlin et al.",
        "BERT-large",
        1024,
        24,
        1024,
        "none",
        340,
        family="bert",
        vocab_size=BERT_VOCAB,
    ),
)


def pooler_parameters(d_model: int) -> int:
    """The [CLS] pooler of BERT and ALBERT: one H x H dense layer with bias."""
    return d_model * d_model + d_model


def reported_config(size: ReportedSize, convention: str) -> TransformerConfig:
    """The ``TransformerConfig`` of ``size`` under ``convention`` ("tf" or "hf")."""
    check_choice("convention", convention, CONVENTIONS)
    H, E = size.d_model, size.embedding_size
    projected = size.family == "albert" and (E != H or convention == "hf")
    return TransformerConfig(
        d_model=H, n_heads=H // 64, d_ff=4 * H, n_layers=size.n_layers,
        strategy=size.strategy, vocab_size=size.vocab_size, max_len=512,
        n_token_types=2, embedding_size=E if projected else None, norm="post",
        activation="gelu_tanh", layer_norm_eps=1e-12,
    )  # fmt: skip


def count_reported(size: ReportedSize, convention: str, pooler: bool) -> int:
    """Exact parameters of a reported model under ``convention``, with or without the
    pooler."""
    if not isinstance(pooler, bool):
        raise ValueError(f"pooler must be True or False, got {pooler!r}")
    return count_parameters(reported_config(size, convention)) + (
        pooler_parameters(size.d_model) if pooler else 0
    )


def size_gaps(size: ReportedSize) -> dict[tuple[str, bool], float]:
    """Count minus reported size, in millions, for every (convention, pooler) pair."""
    return {
        (c, p): count_reported(size, c, p) / 1e6 - size.reported_millions
        for c in CONVENTIONS
        for p in (False, True)
    }


def reproducing_conventions(
    size: ReportedSize, tolerance_millions: float = 0.5
) -> list[tuple[str, bool]]:
    """The (convention, pooler) pairs whose exact count rounds to the reported size
    (|gap| < 0.5M)."""
    check_real("tolerance_millions", tolerance_millions, 0, open_minimum=True)
    return [
        key for key, gap in size_gaps(size).items() if abs(gap) < tolerance_millions
    ]


def hugging_face_parameters(size: ReportedSize) -> int:
    """``numel()`` of Hugging Face's ``AlbertModel`` / ``BertModel`` (with pooler) at
    this size, built on the meta device so nothing is allocated; an independent check of
    ``count_reported(size, "hf", True)``."""
    import torch
    import transformers  # optional and slow to import: only this check needs it

    if size.strategy not in ("none", "all"):
        raise ValueError(
            "Hugging Face models express strategy 'none' or 'all' only, "
            f"got {size.strategy!r}"
        )
    H = size.d_model
    shape = dict(
        vocab_size=size.vocab_size, hidden_size=H, num_hidden_layers=size.n_layers,
        num_attention_heads=H // 64, intermediate_size=4 * H,
        max_position_embeddings=512, type_vocab_size=2,
    )  # fmt: skip
    if size.family == "albert":
        groups = 1 if size.strategy == "all" else size.n_layers
        config = transformers.AlbertConfig(
            embedding_size=size.embedding_size, num_hidden_groups=groups, **shape
        )
        model_class = transformers.AlbertModel
    else:
        config, model_class = transformers.BertConfig(**shape), transformers.BertModel
    with torch.device("meta"):
        model = model_class(config)
    return sum(p.numel() for p in model.parameters())
