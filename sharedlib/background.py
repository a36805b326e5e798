"""Published model sizes and the older kinds of weight sharing (chapter 1, *Background*)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class PublishedModel:
    """One model's parameter count as its paper reports it."""

    name: str
    year: int  # year of first public release (arXiv or report), not of the venue
    parameters: float  # as reported
    cite: str  # key in book/references.bib
    shares_layers: bool  # cross-layer parameter sharing


# Each count is the one the cited paper states for that model.
PUBLISHED_MODELS: tuple[PublishedModel, ...] = (
    PublishedModel("Transformer (big)", 2017, 213e6, "vaswani2017attention", False),
    PublishedModel("BERT-base", 2018, 110e6, "devlin2019bert", False),
    PublishedModel("BERT-large", 2018, 340e6, "devlin2019bert", False),
    PublishedModel("GPT-2", 2019, 1542e6, "radford2019language", False),
    PublishedModel("Megatron-LM", 2019, 8.3e9, "shoeybi2019megatron", False),
    PublishedModel("T5-11B", 2019, 11e9, "raffel2020t5", False),
    PublishedModel("ALBERT-base", 2019, 12e6, "lan2020albert", True),
    PublishedModel("ALBERT-xxlarge", 2019, 235e6, "lan2020albert", True),
    PublishedModel("GPT-3", 2020, 175e9, "brown2020language", False),
    PublishedModel("Gopher", 2021, 280e9, "rae2021gopher", False),
    PublishedModel("PaLM", 2022, 540e9, "chowdhery2023palm", False),
    PublishedModel("Llama 2 70B", 2023, 70e9, "touvron2023llama2", False),
    PublishedModel("Llama 3.1 405B", 2024, 405e9, "grattafiori2024llama3", False),
    PublishedModel("MobileLLM-LS-125M", 2024, 125e6, "liu2024mobilellm", True),
)


def largest_by_year(models: tuple[PublishedModel, ...] = PUBLISHED_MODELS) -> dict[int, PublishedModel]:
    """The largest reported model of each year."""
    best: dict[int, PublishedModel] = {}
    for m in models:
        if m.year not in best or m.parameters > best[m.year].parameters:
            best[m.year] = m
    return dict(sorted(best.items()))


def doubling_time_months(models: tuple[PublishedModel, ...] = PUBLISHED_MODELS) -> float:
    """Months per doubling of the largest model, from a least-squares line through log2(size) by year."""
    frontier = largest_by_year(models)
    xs, ys = list(frontier), [math.log2(m.parameters) for m in frontier.values()]
    if len(xs) < 2:
        raise ValueError("doubling_time_months needs models from at least two different years")
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return 12 / slope


def conv_as_dense(conv: nn.Conv1d, length: int) -> torch.Tensor:
    """The dense (C_out*L_out, C_in*L) matrix that a 1-D convolution applies: one kernel, copied at every position."""
    if conv.groups != 1 or conv.dilation != (1,) or conv.stride != (1,):
        raise ValueError("conv_as_dense supports groups=1, stride=1, dilation=1 only")
    c_out, c_in, k = conv.weight.shape
    pad = conv.padding[0] if isinstance(conv.padding, tuple) else 0
    l_out = length + 2 * pad - k + 1
    dense = torch.zeros(c_out, l_out, c_in, length)
    for t in range(l_out):
        for j in range(k):
            s = t + j - pad  # input position read by kernel tap j at output position t
            if 0 <= s < length:
                dense[:, t, :, s] = conv.weight[:, :, j]
    return dense.reshape(c_out * l_out, c_in * length)
