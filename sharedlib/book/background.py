"""Published model sizes, older kinds of weight sharing, and matmul throughput by width
(chapter 1, *Background*)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..bench import time_interleaved
from ..config import TransformerConfig
from ..layers import FeedForward, Residual, SelfAttention
from ..measure import count_forward_flops
from ..validation import check_int

__all__ = [
    "ALBERT_REPORTED_SPEEDUP",
    "PUBLISHED_MODELS",
    "SHARING_MILESTONES",
    "PublishedModel",
    "WidthTiming",
    "doubling_time_months",
    "frontier_fit",
    "largest_by_year",
    "layer_config",
    "layer_training_step",
    "throughput_by_width",
]


@dataclass(frozen=True)
class PublishedModel:
    """One model's parameter count as its paper reports it."""

    name: str
    year: int  # year of first public release (arXiv or report), not of the venue
    parameters: float  # as reported
    cite: str  # key in book/references.bib
    shares_layers: bool  # cross-layer parameter sharing
    # (parameters, cite key) where another paper reports another size
    other_reports: tuple[tuple[float, str], ...] = ()


# Each count is the one the cited paper states for that model.
PUBLISHED_MODELS: tuple[PublishedModel, ...] = (
    PublishedModel("Transformer (big)", 2017, 213e6, "vaswani2017attention", False),
    PublishedModel("BERT-base", 2018, 110e6, "devlin2019bert", False),
    PublishedModel(
        "BERT-large", 2018, 340e6, "devlin2019bert", False, ((334e6, "lan2020albert"),)
    ),
    PublishedModel("GPT-2", 2019, 1542e6, "radford2019language", False),
    PublishedModel("Megatron-LM", 2019, 8.3e9, "shoeybi2019megatron", False),
    PublishedModel("T5-11B", 2019, 11e9, "raffel2020t5", False),
    PublishedModel("ALBERT-base", 2019, 12e6, "lan2020albert", True),
    PublishedModel("ALBERT-xxlarge", 2019, 235e6, "lan2020albert", True),
    PublishedModel("GPT-3", 2020, 175e9, "brown2020language", False),
    PublishedModel("Gopher", 2021, 280e9, "rae2021gopher", False),
    PublishedModel("PaLM", 2022, 540e9, "chowdhery2023palm", False),
    PublishedModel("Llama 2 70B", 2023, 70e9, "touvron2023llama2", False),
    # Falcon-180B: weights released September 2023
    PublishedModel("Falcon-180B", 2023, 180e9, "almazrouei2023falcon", False),
    PublishedModel("Llama 3.1 405B", 2024, 405e9, "grattafiori2024llama3", False),
    PublishedModel("MobileLLM-LS-125M", 2024, 125e6, "liu2024mobilellm", True),
)


# Where cross-layer sharing came from: (year of first release, idea, key in
# book/references.bib).
SHARING_MILESTONES: tuple[tuple[int, str, str], ...] = (
    (
        1989,
        "convolution: one kernel shared across positions",
        "lecun1989backpropagation",
    ),
    (2016, "tied input and output embeddings", "press2017using"),
    (
        2016,
        "adaptive computation time: a recurrent step repeated a learned number of "
        "times",
        "graves2016adaptive",
    ),
    (
        2018,
        "recurrent stacking: in translation, one encoder layer and one decoder layer, "
        "each applied N times",
        "dabre2019recurrent",
    ),
    (
        2018,
        "Universal Transformer: one block applied recurrently, with adaptive halting",
        "dehghani2019universal",
    ),
    (
        2019,
        "ALBERT: all layers share one block, factorised embeddings",
        "lan2020albert",
    ),
    (
        2021,
        "sequence, cycle and cycle-rev sharing of M blocks over N layers",
        "takase2021lessons",
    ),
    (
        2021,
        "Subformer: sandwich-style sharing, first and last layers kept unique",
        "reid2021subformer",
    ),
    (
        2024,
        "MobileLLM: immediate block-wise repetition in small LLMs",
        "liu2024mobilellm",
    ),
    (
        2024,
        "Relaxed Recursive Transformers: a shared block plus per-layer LoRA",
        "bae2025relaxed",
    ),
    (2025, "Mixture-of-Recursions: per-token recursion depth", "bae2025mixture"),
)


# Lan et al. (2020), Table 2, column "Speedup": training speed relative to BERT-large
# (higher is faster).
ALBERT_REPORTED_SPEEDUP: dict[str, float] = {
    "BERT-base": 4.7,
    "BERT-large": 1.0,
    "ALBERT-base": 5.6,
    "ALBERT-large": 1.7,
    "ALBERT-xlarge": 0.6,
    "ALBERT-xxlarge": 0.3,
}


def largest_by_year(
    models: tuple[PublishedModel, ...] = PUBLISHED_MODELS,
) -> dict[int, PublishedModel]:
    """The largest reported model of each year."""
    best: dict[int, PublishedModel] = {}
    for m in models:
        if m.year not in best or m.parameters > best[m.year].parameters:
            best[m.year] = m
    return dict(sorted(best.items()))


def frontier_fit(
    models: tuple[PublishedModel, ...] = PUBLISHED_MODELS,
) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line
    log2(largest size of each year) = slope * year + intercept."""
    frontier = largest_by_year(models)
    xs, ys = list(frontier), [math.log2(m.parameters) for m in frontier.values()]
    if len(xs) < 2:
        raise ValueError(
            "doubling_time_months needs models from at least two different years"
        )
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    return slope, my - slope * mx


def doubling_time_months(
    models: tuple[PublishedModel, ...] = PUBLISHED_MODELS,
) -> float:
    """Months per doubling of the largest model, from a least-squares line through
    log2(size) by year."""
    return 12 / frontier_fit(models)[0]


def layer_config(width: int) -> TransformerConfig:
    """One post-norm layer of width H with d_ff = 4H and 64-wide heads (one head below
    H = 64), chapter 1."""
    width = check_int("width", width)
    if width >= 64 and width % 64:
        raise ValueError(f"width must be a multiple of 64 from 64 on, got {width!r}")
    return TransformerConfig(
        d_model=width,
        n_heads=max(1, width // 64),
        d_ff=4 * width,
        n_layers=1,
        norm="post",
    )


def layer_training_step(
    width: int, n_tokens: int, seq_len: int, generator: torch.Generator
) -> Callable[[], None]:
    """Forward and backward of one Transformer layer (attention + FFN) on ``n_tokens``
    tokens, on CPU (chapter 1)."""
    seq_len = check_int("seq_len", seq_len)
    if n_tokens % seq_len:
        raise ValueError(
            f"seq_len must be a divisor of n_tokens={n_tokens}, got {seq_len!r}"
        )
    config = layer_config(width)
    # seeded weights without touching the caller's global generator
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
        layer = torch.nn.Sequential(
            Residual(SelfAttention(config), config),
            Residual(FeedForward(config), config),
        )
    x = torch.randn(
        n_tokens // seq_len, seq_len, width, generator=generator, requires_grad=True
    )  # (B, T, C)

    def step() -> None:
        layer(x).sum().backward()  # input gradient too, as in any layer but the first

    return step


@dataclass(frozen=True)
class WidthTiming:
    """One width's forward+backward step: FLOPs counted by FlopCounterMode, and seconds
    per timed sample of ``calls`` steps (narrow layers run several steps per sample, so
    that every sample does similar work)."""

    width: int
    flops: int  # per step
    calls: int  # steps per timed sample
    seconds: list[float]  # per sample

    @property
    def seconds_per_step(self) -> float:
        return statistics.median(self.seconds) / self.calls

    @property
    def gflops_per_second(self) -> float:
        return self.flops / self.seconds_per_step / 1e9


def throughput_by_width(
    widths: Sequence[int],
    n_tokens: int = 128,
    seq_len: int = 128,
    repeats: int = 5,
    seed: int = 0,
    threads: int = 1,
) -> dict[int, WidthTiming]:
    """Achieved matmul GFLOP/s of a layer's training step at each width: median of
    ``repeats`` samples, the widths taking turns, on ``threads`` CPU threads (restored
    afterwards), chapter 1."""
    if not widths or len(set(widths)) != len(widths):
        raise ValueError(
            f"widths must be a non-empty sequence of distinct widths, got {widths!r}"
        )
    threads = check_int("threads", threads)
    generator = torch.Generator().manual_seed(seed)
    steps = {w: layer_training_step(w, n_tokens, seq_len, generator) for w in widths}
    # forward and backward matmuls of one step
    flops = {w: count_forward_flops(steps[w]) for w in widths}
    calls = {w: max(1, round(max(flops.values()) / flops[w])) for w in widths}

    def repeated(step: Callable[[], None], n: int) -> Callable[[], None]:
        def run() -> None:
            for _ in range(n):
                step()

        return run

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        times = time_interleaved(
            {str(w): repeated(steps[w], calls[w]) for w in widths},
            repeats=repeats,
            warmup=1,
        )
    finally:
        torch.set_num_threads(previous)
    return {w: WidthTiming(w, flops[w], calls[w], times[str(w)]) for w in widths}
