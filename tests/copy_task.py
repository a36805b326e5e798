"""The tiny learnable task shared by the trainer and experiment tests: copy 4 symbols out of 4."""

import sharedlib as sl
from sharedlib import data


def copy_config(width: int = 32) -> sl.TransformerConfig:
    """A small fully shared causal LM sized for the copy task."""
    return sl.TransformerConfig(
        d_model=width,
        n_heads=4,
        d_ff=2 * width,
        n_layers=2,
        strategy="all",
        causal=True,
        lm_head=True,
        vocab_size=data.algorithmic_vocab_size(4),
        max_len=16,
    )


def copy_batch(split, generator):
    """32 copy questions of length 4 (the same distribution for both splits)."""
    return data.algorithmic_batch("copy", 32, 4, 4, generator)
