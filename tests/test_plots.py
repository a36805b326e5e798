"""Every figure of the book is readable: no text under MIN_FONT_SIZE, drawn at 2x resolution."""

import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure

import sharedlib as sl
from sharedlib.book import plots
from sharedlib.book.background import PUBLISHED_MODELS, WidthTiming
from sharedlib.experiments.live import Summary


def small_texts(fig: Figure, minimum: float = plots.MIN_FONT_SIZE) -> list[str]:
    """Every visible, non-empty text of ``fig`` (titles, labels, ticks, legends, annotations) under ``minimum`` pt."""
    fig.canvas.draw()  # tick labels exist only once drawn
    found = []
    for text in fig.findobj(plt.Text):
        if text.get_visible() and text.get_text().strip() and text.get_fontsize() < minimum:
            found.append(f"{text.get_text()!r} at {text.get_fontsize()} pt")
    return found


CONFIG = sl.TransformerConfig(d_model=32, n_heads=4, d_ff=64, n_layers=4, vocab_size=100, max_len=16)
FIGURES = {
    "parameter_breakdown": lambda: plots.plot_parameter_breakdown({"none": CONFIG}, "t"),
    "depth_curves": lambda: plots.plot_depth_curves({"a": [1.0, 2.0], "b": [1.0, 1.5]}, "rms", "t"),
    "layer_maps": lambda: plots.plot_layer_maps(6, 2),
    "seconds": lambda: plots.plot_seconds({"a": 1.0, "b": 2.0}, "t"),
    "accuracy_vs_iterations": lambda: plots.plot_accuracy_vs_iterations({"r": {1: 0.5, 4: 1.0}}, 4, "t"),
    "model_sizes": lambda: plots.plot_model_sizes(PUBLISHED_MODELS, "t", fit_since=2017),
    "loss_by_model": lambda: plots.plot_loss_by_model(
        {"none": Summary("none", 100, (2.0, 2.1)), "all": Summary("all", 40, (2.2, 2.3))}, "t"
    ),
    "throughput_by_width": lambda: plots.plot_throughput_by_width(
        {w: WidthTiming(w, 1000 * w, 1, [0.01, 0.012]) for w in (32, 64)}, "t"
    ),
    "steps_by_difficulty": lambda: plots.plot_steps_by_difficulty(
        [0, 1, 2], [2.0, 2.5, 3.0], [0.1, 0.1, 0.2], [[1, 2, 3], [2, 2, 4]], [[0, 1, 2], [1, 0, 2]], 8, title="t"
    ),
    "time_spread": lambda: plots.plot_time_spread({"g": {"a": [1.0, 1.1, 1.2], "b": [2.0, 2.1, 2.2]}}, "t"),
    "lr_sweep": lambda: plots.plot_lr_sweep({"none": {1e-3: 2.0, 2e-3: 1.8, 4e-3: None}, "all": {1e-3: 2.1}},
                                            {"none": 2e-3}, "t"),
    "paired_differences": lambda: plots.plot_paired_differences(
        [("all", 0.1, 0.05, 0.15, 5), ("cycle", 0.0, -0.02, 0.02, 5)], "none", "t"
    ),
    "loss_curves": lambda: plots.plot_loss_curves(
        {"none": {"steps": [1, 2], "flops": [10, 20], "val": [3.0, 2.0], "seeds": [5]}}, {}, ("a", "b"),
        {"trigram": 2.5},
    ),
    "train_val": lambda: plots.plot_train_val(
        {"none": {"steps": [1, 2], "train": [3.0, 1.0], "val": [3.1, 2.0], "seeds": [5]}}, "t"
    ),
}


@pytest.fixture(autouse=True)
def book_style():
    with plt.rc_context():
        plots.use_book_style()
        yield
    plt.close("all")


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_every_text_is_at_least_the_minimum_size(name):
    assert small_texts(FIGURES[name]()) == []


def test_every_plot_function_is_covered():
    public = {name.removeprefix("plot_") for name in dir(plots) if name.startswith("plot_")}
    assert public == set(FIGURES)


def test_the_check_catches_small_text():
    fig, ax = plt.subplots()
    ax.set_title("readable")
    ax.text(0.5, 0.5, "too small", fontsize=7)
    assert small_texts(fig) == ["'too small' at 7.0 pt"]


def test_book_style_draws_at_twice_the_page_resolution():
    assert plt.rcParams["savefig.dpi"] == 2 * plt.rcParams["figure.dpi"]
    assert plt.rcParams["font.size"] >= plots.MIN_FONT_SIZE
