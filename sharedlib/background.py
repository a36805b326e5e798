"""Published model sizes and the older kinds of weight sharing (chapter 1, *Background*)."""

from __future__ import annotations

import math
from dataclasses import dataclass


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


# Where cross-layer sharing came from: (year of first release, idea, key in book/references.bib).
SHARING_MILESTONES: tuple[tuple[int, str, str], ...] = (
    (1989, "convolution: one kernel shared across positions", "lecun1989backpropagation"),
    (2016, "tied input and output embeddings", "press2017using"),
    (2016, "adaptive computation time: a recurrent step repeated a learned number of times", "graves2016adaptive"),
    (2018, "recurrent stacking: one encoder layer applied N times in translation", "dabre2019recurrent"),
    (2018, "Universal Transformer: one block applied recurrently, with adaptive halting", "dehghani2019universal"),
    (2019, "ALBERT: all layers share one block, factorised embeddings", "lan2020albert"),
    (2021, "sequence, cycle and cycle-rev sharing of M blocks over N layers", "takase2021lessons"),
    (2021, "Subformer: sandwich-style sharing, first and last layers kept unique", "reid2021subformer"),
    (2024, "MobileLLM: immediate block-wise repetition in small LLMs", "liu2024mobilellm"),
    (2024, "Relaxed Recursive Transformers: a shared block plus per-layer LoRA", "bae2025relaxed"),
    (2025, "Mixture-of-Recursions: per-token recursion depth", "bae2025mixture"),
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
