"""Chapter 1's published sizes and convolution-as-sharing, and chapter 8's relaxed (per-layer LoRA) sharing."""

import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import sharedlib as sl
from sharedlib.book.background import PUBLISHED_MODELS, SHARING_MILESTONES, PublishedModel, doubling_time_months
from sharedlib.relaxed import RelaxedSharedTransformer, relax_unshared, relaxed_parameters

ROOT = Path(__file__).resolve().parents[1]
SMALL = sl.TransformerConfig(d_model=32, n_heads=4, d_ff=48, n_layers=4, vocab_size=40, max_len=16, causal=True,
                             lm_head=True)


def bib_keys() -> set[str]:
    return set(re.findall(r"^@\w+\{([^,]+),", (ROOT / "book/references.bib").read_text(), flags=re.M))


def test_every_published_size_cites_an_entry_of_the_bibliography():
    missing = ({m.cite for m in PUBLISHED_MODELS} | {key for *_, key in SHARING_MILESTONES}) - bib_keys()
    assert not missing


def test_doubling_time_of_a_frontier_that_doubles_every_year_is_twelve_months():
    models = tuple(PublishedModel(f"m{y}", y, 2.0 ** (y - 2000), "k", False) for y in range(2000, 2006))
    assert doubling_time_months(models) == pytest.approx(12.0)
    with pytest.raises(ValueError, match="two different years"):
        doubling_time_months(models[:1])


@pytest.mark.parametrize("strategy,n_unique", [("all", None), ("cycle", 2), ("none", None)])
@pytest.mark.parametrize("rank", [1, 3])
def test_relaxed_parameter_count_matches_numel(strategy, n_unique, rank):
    config = replace(SMALL, strategy=strategy, n_unique=n_unique)
    model = RelaxedSharedTransformer(config, rank)
    assert sl.count_module_parameters(model) == relaxed_parameters(config, rank)


def test_relaxed_model_with_zero_deltas_is_the_shared_model():
    config = replace(SMALL, strategy="all")
    relaxed = RelaxedSharedTransformer(config, rank=2)
    shared = sl.SharedTransformer(config)
    missing, unexpected = shared.load_state_dict(relaxed.state_dict(), strict=False)
    assert not missing and all("deltas" in key for key in unexpected)
    x = torch.randint(0, 40, (2, 9))
    torch.testing.assert_close(relaxed(x), shared(x), rtol=0, atol=0)


def test_deltas_receive_gradients_through_the_shared_block():
    relaxed = RelaxedSharedTransformer(replace(SMALL, strategy="all"), rank=2)
    x = torch.randint(0, 40, (2, 9))
    sl.next_token_loss(relaxed, (x, x)).backward()
    assert all(d.B.grad.abs().sum() > 0 for layer in relaxed.ffn_deltas for d in layer.values())


def _unshared_with_distinct_weights() -> sl.SharedTransformer:
    torch.manual_seed(0)
    model = sl.SharedTransformer(SMALL)
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.weight.data.normal_(0, 0.1)
    return model


def test_relaxing_an_unshared_model_at_full_rank_reproduces_it():
    model = _unshared_with_distinct_weights()
    x = torch.randint(0, 40, (2, 9))
    torch.testing.assert_close(relax_unshared(model, rank=SMALL.d_model)(x), model(x), rtol=0, atol=1e-5)


def test_svd_deltas_are_the_best_rank_r_approximation():
    model = _unshared_with_distinct_weights()
    relaxed = relax_unshared(model, rank=3)
    residual = model.ffn[1].inner.up.weight - relaxed.ffn[0].inner.up.weight
    singular = torch.linalg.svdvals(residual)
    error = torch.linalg.matrix_norm(residual - relaxed.ffn_deltas[1]["inner__up__weight"]())
    torch.testing.assert_close(error, singular[3:].square().sum().sqrt())


def test_relaxed_inputs_are_validated():
    with pytest.raises(ValueError, match="rank must be a positive integer"):
        RelaxedSharedTransformer(SMALL, rank=0)
    with pytest.raises(ValueError, match="n_iterations is not available"):
        relaxed = RelaxedSharedTransformer(replace(SMALL, strategy="all"), rank=1)
        relaxed(torch.zeros(1, 4, dtype=torch.long), n_iterations=2)
    with pytest.raises(ValueError, match="strategy 'none'"):
        relax_unshared(sl.SharedTransformer(replace(SMALL, strategy="all")), rank=2)


def test_falcon_180b_is_the_largest_2023_model_and_bert_large_carries_both_reports():
    from sharedlib.book.background import largest_by_year

    assert largest_by_year()[2023].name == "Falcon-180B"
    bert_large = next(m for m in PUBLISHED_MODELS if m.name == "BERT-large")
    assert (bert_large.parameters, bert_large.other_reports) == (340e6, ((334e6, "lan2020albert"),))
    assert {key for m in PUBLISHED_MODELS for _, key in m.other_reports} <= bib_keys()


def test_frontier_fit_agrees_with_numpy_and_detects_a_wrong_frontier():
    import numpy as np

    from sharedlib.book.background import frontier_fit

    models = tuple(PublishedModel(f"m{i}", 2000 + i % 5, 10.0 ** (1 + (7 * i) % 11), "k", False) for i in range(15))
    best = {}
    for m in models:
        best[m.year] = max(best.get(m.year, 0), m.parameters)
    years = sorted(best)
    slope, intercept = np.polyfit(years, np.log2([best[y] for y in years]), 1)
    assert frontier_fit(models) == pytest.approx((slope, intercept))
    # a fit through every point instead of the yearly maxima gives another slope: the comparison can fail
    every = np.polyfit([m.year for m in models], np.log2([m.parameters for m in models]), 1)[0]
    assert frontier_fit(models)[0] != pytest.approx(every)


def test_albert_reported_speedup_is_slower_than_bert_large_but_less_than_the_flop_ratio():
    from sharedlib.book.background import ALBERT_REPORTED_SPEEDUP

    bert_large = sl.TransformerConfig(d_model=1024, n_heads=16, d_ff=4096, n_layers=24, vocab_size=30522,
                                      n_token_types=2, norm="post")
    xxlarge = replace(bert_large, d_model=4096, n_heads=64, d_ff=16384, n_layers=12, strategy="all",
                      vocab_size=30000, embedding_size=128)
    flop_ratio = sum(sl.forward_flops_per_token(xxlarge, 512).values()) / sum(
        sl.forward_flops_per_token(bert_large, 512).values())
    time_ratio = ALBERT_REPORTED_SPEEDUP["BERT-large"] / ALBERT_REPORTED_SPEEDUP["ALBERT-xxlarge"]
    assert 1 < time_ratio < flop_ratio / 2


@pytest.mark.parametrize("width", [32, 64, 128])
def test_counted_layer_training_flops_are_three_times_the_closed_form_forward(width):
    from sharedlib.book.background import layer_config, layer_training_step

    step = layer_training_step(width, n_tokens=64, seq_len=32, generator=torch.Generator().manual_seed(0))
    forward = 64 * sum(sl.forward_flops_per_token(layer_config(width), 32).values())
    assert sl.count_forward_flops(step) == 3 * forward


def test_throughput_by_width_restores_threads_and_rejects_bad_input():
    from sharedlib.book.background import layer_config, layer_training_step, throughput_by_width

    threads = torch.get_num_threads()
    timings = throughput_by_width([32, 64], n_tokens=32, seq_len=32, repeats=2, threads=1)
    assert torch.get_num_threads() == threads
    assert timings[32].calls >= timings[64].calls == 1 and len(timings[32].seconds) == 2
    assert all(t.gflops_per_second > 0 for t in timings.values())
    with pytest.raises(ValueError, match="width must be"):
        layer_config(96)
    with pytest.raises(ValueError, match="seq_len must be"):
        layer_training_step(32, n_tokens=50, seq_len=32, generator=torch.Generator())
    with pytest.raises(ValueError, match="widths must be"):
        throughput_by_width([32, 32])
    with pytest.raises(ValueError, match="threads must be"):
        throughput_by_width([32], threads=0)


def _contrast(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """WCAG contrast ratio of two RGB colours."""

    def luminance(c: tuple[float, ...]) -> float:
        r, g, b = (x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4 for x in c[:3])
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_layer_map_labels_contrast_with_their_cells():
    from matplotlib.colors import to_rgba

    from sharedlib.book.plots import plot_layer_maps

    fig = plot_layer_maps(20, 4, ("none", "cycle"))
    ax = fig.axes[0]
    image = ax.images[0]
    texts = [t for t in ax.texts]
    assert len(texts) == 40
    worst = min(_contrast(to_rgba(t.get_color()), image.cmap(image.norm(image.get_array()[round(t.get_position()[1]),
                                                                                         round(t.get_position()[0])])))
                for t in texts)
    assert worst >= 4.5  # WCAG AA for normal text
    assert min(t.get_fontsize() for t in texts) >= 9
    # the measure can fail: all-black or all-white labels fall below the bar on some tab20 colour
    for fixed in ((0, 0, 0), (1, 1, 1)):
        assert min(_contrast(fixed, image.cmap(image.norm(v))) for v in range(20)) < 4.5


def test_model_sizes_figure_draws_the_fitted_doubling_line():
    from sharedlib.book.background import frontier_fit
    from sharedlib.book.plots import plot_model_sizes

    recent = tuple(m for m in PUBLISHED_MODELS if m.year >= 2017)
    slope, intercept = frontier_fit(recent)
    line = plot_model_sizes(PUBLISHED_MODELS, fit_since=2017).axes[0].lines[0]
    xs, ys = line.get_data()
    assert list(ys) == pytest.approx([2 ** (slope * x + intercept) for x in xs])
    assert not plot_model_sizes(PUBLISHED_MODELS).axes[0].lines
