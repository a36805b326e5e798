"""The architecture diagrams: drawn from the library's maps and counts, readable, and strict about their input."""

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.colors import to_rgb
from matplotlib.patches import FancyArrowPatch
from matplotlib.text import Text

from sharedlib.book import diagrams
from sharedlib.book.diagrams import (
    DEFAULT_STRATEGIES,
    draw_factorised_embedding,
    draw_one_module_many_uses,
    draw_relaxed_sharing,
    draw_universal_transformer_step,
    draw_unrolled_stacks,
    halting_weights,
)
from sharedlib.book.plots import MIN_FONT_SIZE
from sharedlib.config import TransformerConfig
from sharedlib.layers import Embeddings
from sharedlib.models import SharedTransformer
from sharedlib.relaxed import RelaxedSharedTransformer
from sharedlib.sharing import NEEDS_N_UNIQUE, layer_to_block, n_parameter_sets

DRAWINGS = {
    "stacks": lambda: draw_unrolled_stacks(6, 3),
    "stacks-12": lambda: draw_unrolled_stacks(12, 4, ("all", "cycle", "groups")),
    "embedding": lambda: draw_factorised_embedding(30000, 128, 768),
    "universal": draw_universal_transformer_step,
    "relaxed": lambda: draw_relaxed_sharing(6, 8),
    "uses": lambda: draw_one_module_many_uses(2),
    "uses-8": lambda: draw_one_module_many_uses(8),
}


@pytest.fixture(params=list(DRAWINGS))
def figure(request):
    fig = DRAWINGS[request.param]()
    yield fig
    plt.close(fig)


def _texts(fig) -> list[Text]:
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def _luminance(rgb) -> float:
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(a, b) -> float:
    hi, lo = sorted((_luminance(to_rgb(a)), _luminance(to_rgb(b))), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def _fill_under(text: Text):
    """The fill of the topmost filled patch under the text's anchor, or the white page."""
    ax = text.axes
    point = ax.transData.transform(text.get_position())
    under = [p for p in ax.patches if not isinstance(p, FancyArrowPatch) and p.get_facecolor()[3] > 0
             and p.contains_point(point)]
    return max(under, key=lambda p: p.get_zorder()).get_facecolor() if under else "white"


def test_every_diagram_is_a_figure_with_readable_text_inside_it(figure):
    texts = _texts(figure)
    assert texts and isinstance(figure, plt.Figure)
    assert min(t.get_fontsize() for t in texts) >= MIN_FONT_SIZE
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    page = figure.bbox
    for t in texts:  # nothing is cut off at the edge of the figure...
        box = t.get_window_extent(renderer)
        assert page.x0 - 1 <= box.x0 and box.x1 <= page.x1 + 1 and page.y0 - 1 <= box.y0 and box.y1 <= page.y1 + 1, \
            t.get_text()
    boxes = [(t.get_text(), t.get_window_extent(renderer).shrunk(0.97, 0.9)) for t in texts]
    for i, (a, box_a) in enumerate(boxes):  # ...and no two labels overlap
        for b, box_b in boxes[i + 1:]:
            assert not box_a.overlaps(box_b), (a, b)


def test_every_label_contrasts_with_the_fill_under_it(figure):
    worst = min(_contrast(t.get_color(), _fill_under(t)) for t in _texts(figure))
    assert worst >= 4.5  # WCAG AA for normal text


def test_the_contrast_measure_can_fail():
    # one fixed text colour would fall below the bar on some palette colour: the labels must switch
    for fixed in ("black", "white"):
        assert min(_contrast(fixed, c) for c in diagrams.PALETTE) < 4.5


def _stack_patches(fig) -> dict[tuple[str, str], dict[int, tuple]]:
    """(strategy, sublayer) -> layer -> fill colour, read back from the drawn half-boxes."""
    found: dict[tuple[str, str], dict[int, tuple]] = {}
    for patch in fig.axes[0].patches:
        if patch.get_gid() and patch.get_gid().count("|") == 2:
            strategy, part, layer = patch.get_gid().split("|")
            found.setdefault((strategy, part), {})[int(layer)] = tuple(patch.get_facecolor())
    return found


@pytest.mark.parametrize(("n_layers", "n_unique", "strategies"),
                         [(6, 3, DEFAULT_STRATEGIES), (12, 4, ("all", "cycle", "cycle-rev", "groups", "sequence")),
                          (5, 2, ("cycle", "cycle-rev", "groups"))])
def test_stack_colours_are_the_parameter_sets_of_the_map(n_layers, n_unique, strategies):
    fig = draw_unrolled_stacks(n_layers, n_unique, strategies)
    found = _stack_patches(fig)
    plt.close(fig)
    assert {s for s, _ in found} == {"none", *strategies}
    for (strategy, part), colours in found.items():
        m = n_unique if strategy in NEEDS_N_UNIQUE else None
        assert len(set(colours.values())) == n_parameter_sets(strategy, n_layers, m, sublayer=part), (strategy, part)
        blocks = layer_to_block(strategy, n_layers, m, sublayer=part)
        # two layers share a colour exactly when the map gives them the same parameter set
        for i in range(n_layers):
            for j in range(n_layers):
                assert (colours[i] == colours[j]) == (blocks[i] == blocks[j]), (strategy, part, i, j)


def test_a_wrong_map_shows_as_wrong_colours(monkeypatch):
    # draw every strategy with the unshared map: the colour count no longer matches the strategy's sets
    monkeypatch.setattr(diagrams, "layer_to_block", lambda strategy, n, m=None, sublayer="attention": list(range(n)))
    fig = draw_unrolled_stacks(6, 3)
    found = _stack_patches(fig)
    plt.close(fig)
    assert len(set(found[("all", "attention")].values())) != n_parameter_sets("all", 6)


def test_stack_labels_say_how_many_sets_each_stack_stores():
    fig = draw_unrolled_stacks(6, 2, ("attention", "cycle"))
    texts = [t.get_text() for t in _texts(fig)]
    plt.close(fig)
    assert texts.count("sets stored:\n6 A + 6 F") == 1  # none
    assert texts.count("sets stored:\n1 A + 6 F") == 1  # attention
    assert texts.count("sets stored:\n2 A + 2 F") == 1  # cycle, M = 2


@pytest.mark.parametrize(("kwargs", "name"), [
    (dict(n_layers=0, n_unique=1), "n_layers"), (dict(n_layers=13, n_unique=1), "n_layers"),
    (dict(n_layers=True, n_unique=1), "n_layers"), (dict(n_layers=6, n_unique=7), "n_unique"),
    (dict(n_layers=6, n_unique=0), "n_unique"), (dict(n_layers=6, n_unique=3, strategies=("bogus",)), "strategies"),
    (dict(n_layers=6, n_unique=3, strategies="cycle"), "strategies"),
    (dict(n_layers=6, n_unique=4, strategies=("sequence",)), "n_layers=6 must be divisible by n_unique=4"),
])
def test_unrolled_stacks_reject_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        draw_unrolled_stacks(**kwargs)


def test_factorised_embedding_counts_match_the_modules():
    V, E, H = 1000, 16, 64
    fig = draw_factorised_embedding(V, E, H)
    text = " ".join(t.get_text() for t in _texts(fig))
    plt.close(fig)
    plain = Embeddings(TransformerConfig(d_model=H, n_heads=1, vocab_size=V))
    factorised = Embeddings(TransformerConfig(d_model=H, n_heads=1, vocab_size=V, embedding_size=E))
    measured = {"plain": plain.tokens.weight.numel(), "table": factorised.tokens.weight.numel(),
                "projection": sum(p.numel() for p in factorised.projection.parameters())}
    assert diagrams.embedding_counts(V, E, H) == measured
    for count in measured.values():
        assert f"{count:,}" in text
    total = measured["table"] + measured["projection"]
    assert f"({total / measured['plain']:.1%})" in text


def test_factorised_embedding_areas_are_to_scale():
    fig = draw_factorised_embedding(30000, 128, 768)
    area = {p.get_gid(): p.get_width() * p.get_height() for p in fig.axes[0].patches if p.get_gid()}
    plt.close(fig)
    assert area["table"] / area["plain"] == pytest.approx(128 / 768)
    assert area["projection"] / area["plain"] == pytest.approx(128 / 30000)


@pytest.mark.parametrize(("args", "name"), [((1000, 64, 64), "embedding_size"), ((1000, 0, 64), "embedding_size"),
                                            ((0, 16, 64), "vocab_size"), ((1000, 16, 1), "d_model")])
def test_factorised_embedding_rejects_bad_arguments(args, name):
    with pytest.raises(ValueError, match=name):
        draw_factorised_embedding(*args)


def test_halting_weights_follow_the_halting_rule():
    import numpy as np

    rng = np.random.default_rng(0)
    for _ in range(200):
        probabilities = rng.uniform(0, 0.6, size=rng.integers(1, 8)).tolist()
        weights = halting_weights(probabilities, 0.01)
        cumulative = np.cumsum(probabilities)
        reached = np.flatnonzero(cumulative >= 0.99)
        halt = int(reached[0]) if reached.size else len(probabilities) - 1  # forced halt at the last step
        assert len(weights) == halt + 1
        assert weights[:-1] == probabilities[:halt]
        assert sum(weights) == pytest.approx(1.0)
    assert halting_weights([0.995, 0.5]) == [1.0]  # halts at once: the remainder is everything
    with pytest.raises(ValueError, match="epsilon"):
        halting_weights([0.5], epsilon=1.0)
    with pytest.raises(ValueError, match="probabilities"):
        halting_weights([1.5])


def test_schematic_halting_agrees_with_the_library_act():
    universal = pytest.importorskip("sharedlib.universal")  # the Universal Transformer chapter's implementation
    import numpy as np

    rng = np.random.default_rng(1)
    p = rng.uniform(0, 0.6, size=(6, 3, 40))  # (S, B, T)
    weights, steps, _ = universal.act_weights(torch.tensor(p, dtype=torch.float64), threshold=0.99)
    for b in range(3):
        for t in range(40):
            mine = halting_weights(p[:, b, t].tolist(), 0.01)
            assert int(steps[b, t]) == len(mine)
            np.testing.assert_allclose(weights[: len(mine), b, t].numpy(), mine)
    for probabilities in diagrams.UT_EXAMPLE.values():  # the drawn example too
        drawn = halting_weights(probabilities)
        library, _, _ = universal.act_weights(torch.tensor(probabilities, dtype=torch.float64)[:, None])
        np.testing.assert_allclose(library[: len(drawn), 0].numpy(), drawn)
        assert float(library[len(drawn):].abs().sum()) == 0.0


def test_universal_transformer_grid_shows_the_computed_weights():
    fig = draw_universal_transformer_step()
    labels = {p.get_gid(): p for p in fig.axes[0].patches if (p.get_gid() or "").startswith("act|")}
    texts = [t.get_text() for t in _texts(fig)]
    plt.close(fig)
    for position, probabilities in diagrams.UT_EXAMPLE.items():
        weights = halting_weights(probabilities)
        assert f"R={weights[-1]:.2f}" in texts
        assert sum(1 for gid in labels if gid.startswith(f"act|{position}|")) == len(probabilities)
    with pytest.raises(ValueError, match="epsilon"):
        draw_universal_transformer_step(epsilon=0)


def test_relaxed_sharing_counts_match_the_models():
    n_layers, rank, d = 3, 2, 32
    fig = draw_relaxed_sharing(n_layers, rank, d_model=d)
    text = " ".join(t.get_text() for t in _texts(fig))
    plt.close(fig)
    config = TransformerConfig(d_model=d, n_heads=1, d_ff=4 * d, n_layers=n_layers, strategy="all", vocab_size=10,
                               max_len=4)
    shared = sum(p.numel() for p in SharedTransformer(config).parameters())
    relaxed = sum(p.numel() for p in RelaxedSharedTransformer(config, rank).parameters())
    unshared = SharedTransformer(TransformerConfig(d_model=d, n_heads=1, d_ff=4 * d, n_layers=1, vocab_size=10,
                                                   max_len=4))
    layer = sum(p.numel() for m in (unshared.attention[0], unshared.ffn[0]) for p in m.parameters())
    per_layer = (relaxed - shared) // n_layers
    assert f"add {per_layer:,} parameters" in text and f"{layer:,}" in text
    assert f"{per_layer / layer:.1%}" in text


def test_relaxed_sharing_draws_one_delta_pair_per_layer():
    fig = draw_relaxed_sharing(5, 4)
    gids = [p.get_gid() for p in fig.axes[0].patches if p.get_gid()]
    plt.close(fig)
    assert sorted(g for g in gids if g.startswith("B|")) == [f"B|{i}" for i in range(5)]
    assert gids.count("shared") == 1


@pytest.mark.parametrize(("args", "name"), [((0, 4), "n_layers"), ((12, 4), "n_layers"), ((4, 0), "rank"),
                                            ((4, 2.5), "rank")])
def test_relaxed_sharing_rejects_bad_arguments(args, name):
    with pytest.raises(ValueError, match=name):
        draw_relaxed_sharing(*args)


def test_one_module_many_uses_draws_each_use_once():
    fig = draw_one_module_many_uses(4)
    gids = [p.get_gid() for p in fig.axes[0].patches if p.get_gid()]
    backward = [p for p in fig.axes[0].patches if isinstance(p, FancyArrowPatch)
                and to_rgb(p.get_edgecolor()) == to_rgb(diagrams.BACKWARD)]
    plt.close(fig)
    assert [g for g in gids if g.startswith("use|")] == [f"use|{i}" for i in range(4)]
    assert gids.count("module") == 1 and gids.count("grad") == 1
    assert len(backward) == 4 + 1  # one gradient arrow per use, and the key's sample
    for bad in (0, 9, 2.0, True):
        with pytest.raises(ValueError, match="n_uses"):
            draw_one_module_many_uses(bad)



def test_book_extension_renders_every_diagram_and_leaves_unchanged_files_alone(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "book" / "_ext"))
    try:
        import book_diagrams
    finally:
        sys.path.pop(0)
    paths = book_diagrams.render_diagrams(tmp_path)
    assert [p.name for p in paths] == [f"{name}.png" for name in book_diagrams.DIAGRAMS]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths)
    stamps = [p.stat().st_mtime_ns for p in paths]
    assert book_diagrams.render_diagrams(tmp_path) == paths
    assert [p.stat().st_mtime_ns for p in paths] == stamps  # same drawing, same bytes: nothing rewritten
    assert not list(tmp_path.glob("*.tmp"))


def test_landing_page_describes_the_drawing_it_shows():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    page = (root / "book" / "intro.md").read_text()
    assert "```{figure} _generated/unrolled_stacks.png" in page and ":alt:" in page
    source = (root / "book" / "_ext" / "book_diagrams.py").read_text()
    assert '"unrolled_stacks": ("draw_unrolled_stacks", (6, 3))' in source  # six layers, three sets, as the text says
    words = {1 + len(DEFAULT_STRATEGIES): "Seven columns", 6: "six stacked layers"}
    assert all(phrase in page for phrase in words.values())
    assert "same six layers" in page
