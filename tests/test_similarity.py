"""Chapter 5c's similarity measures: linear CKA against the HSIC definition and its known properties (and a wrong,
uncentred CKA caught by them), hidden states from hooks, losses after k iterations, weight similarity, figures."""

import math

import matplotlib.pyplot as plt
import pytest
import torch

import sharedlib as sl
from sharedlib import similarity as sim
from sharedlib.book import plots, similarity_plots


def hsic_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """CKA by the definition of Kornblith et al. (2019): HSIC of the n x n linear kernels with explicit centering
    matrices H = I - 11^T / n, normalised."""
    x, y = x.double(), y.double()
    n = x.shape[0]
    h = torch.eye(n, dtype=torch.float64) - torch.ones(n, n, dtype=torch.float64) / n
    k, l_ = x @ x.T, y @ y.T

    def hsic(a, b):
        return torch.trace(a @ h @ b @ h) / (n - 1) ** 2

    return (hsic(k, l_) / torch.sqrt(hsic(k, k) * hsic(l_, l_))).item()


def uncentred_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """A plausible wrong implementation: the feature-space formula without centering the columns."""
    x, y = x.double(), y.double()
    return ((y.T @ x).square().sum() / ((x.T @ x).norm() * (y.T @ y).norm())).item()


def random_orthogonal(d: int, g: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))  # (d, d) Haar-distributed


def cka_problems(cka, trials: int = 8) -> list[str]:
    """The checks a linear CKA must pass; returns the failures (empty for a correct implementation)."""
    problems = []
    for trial in range(trials):
        g = torch.Generator().manual_seed(trial)
        n, p, q = 40 + 10 * trial, 3 + trial % 4, 2 + trial % 5
        x = torch.randn(n, p, generator=g, dtype=torch.float64) + 2.0  # non-zero column means
        y = x @ torch.randn(p, q, generator=g, dtype=torch.float64) + torch.randn(n, q, generator=g,
                                                                                   dtype=torch.float64) - 1.0
        if abs(cka(x, y) - hsic_cka(x, y)) > 1e-9:
            problems.append(f"trial {trial}: differs from the HSIC definition")
        if abs(cka(x, x) - 1) > 1e-9:
            problems.append(f"trial {trial}: CKA(x, x) != 1")
        rotated = x @ random_orthogonal(p, g)
        if abs(cka(rotated, y) - cka(x, y)) > 1e-9:
            problems.append(f"trial {trial}: not invariant to an orthogonal transform")
        if abs(cka(3.7 * x, y) - cka(x, y)) > 1e-9:
            problems.append(f"trial {trial}: not invariant to isotropic scaling")
        if abs(cka(x + 5.0, y) - cka(x, y)) > 1e-9:
            problems.append(f"trial {trial}: not invariant to a shift of every example")
    g = torch.Generator().manual_seed(99)
    a = torch.randn(4000, 5, generator=g, dtype=torch.float64) + 3.0
    b = torch.randn(4000, 6, generator=g, dtype=torch.float64) - 2.0
    if cka(a, b) > 0.02:
        problems.append(f"independent features give CKA {cka(a, b):.3f}, expected near 0")
    return problems


def test_linear_cka_matches_hsic_definition_and_its_properties():
    assert cka_problems(sim.linear_cka) == []


def test_a_cka_without_centering_fails_the_checks():
    problems = cka_problems(uncentred_cka)
    assert any("HSIC definition" in p for p in problems)
    assert any("independent features" in p for p in problems)


def test_linear_cka_is_not_invariant_to_an_anisotropic_rescaling():
    """CKA is invariant to orthogonal maps and isotropic scaling only (unlike CCA): a check that can fail."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 4, generator=g, dtype=torch.float64)
    y = x @ torch.randn(4, 4, generator=g, dtype=torch.float64)
    stretched = x * torch.tensor([10.0, 1.0, 1.0, 0.1], dtype=torch.float64)
    assert abs(sim.linear_cka(stretched, y) - sim.linear_cka(x, y)) > 0.01


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (torch.zeros(5), torch.zeros(5, 2), "x must be a 2-D tensor"),
        (torch.zeros(5, 2), [[1.0]], "y must be a 2-D tensor"),
        (torch.randn(5, 2), torch.randn(4, 2), "same number"),
        (torch.ones(5, 2), torch.randn(5, 2), "constant"),
    ],
)
def test_linear_cka_refuses_bad_input(x, y, message):
    with pytest.raises(ValueError, match=message):
        sim.linear_cka(x, y)


def small_lm(strategy: str, n_layers: int = 3, seed: int = 0) -> sl.SharedTransformer:
    torch.manual_seed(seed)
    config = sl.TransformerConfig(d_model=16, n_heads=2, d_ff=32, n_layers=n_layers, strategy=strategy,
                                  vocab_size=30, max_len=12, causal=True, lm_head=True)
    return sl.SharedTransformer(config).eval()


@pytest.mark.parametrize("strategy", ["none", "all"])
def test_hidden_states_are_the_embeddings_then_every_layer(strategy):
    model = small_lm(strategy)
    ids = torch.randint(0, 30, (2, 12), generator=torch.Generator().manual_seed(1))
    states = sim.hidden_states(model, ids)
    assert len(states) == model.config.n_layers + 1
    with torch.no_grad():
        assert torch.allclose(states[0], model.embeddings(ids))
        assert torch.allclose(model.final_norm(states[-1]), model(ids), atol=1e-6)
        x = model.embeddings(ids)
        for k, (a, f) in enumerate(zip(model.attention_map, model.ffn_map, strict=True), start=1):
            x = model.ffn[f](model.attention[a](x))  # the layer loop written out: an independent reference
            assert torch.allclose(states[k], x, atol=1e-6)


def test_hidden_states_follow_n_iterations_and_leave_no_hooks():
    model = small_lm("all")
    ids = torch.randint(0, 30, (2, 12), generator=torch.Generator().manual_seed(2))
    states = sim.hidden_states(model, ids, n_iterations=7)
    assert len(states) == 8
    with torch.no_grad():
        assert torch.allclose(model.final_norm(states[-1]), model(ids, n_iterations=7), atol=1e-6)
    assert not any(m._forward_hooks for m in model.modules())
    with pytest.raises(ValueError, match="SharedTransformer"):
        sim.hidden_states(torch.nn.Linear(2, 2), ids)


def test_state_losses_equal_the_loss_after_k_iterations():
    model = small_lm("all")
    windows = torch.randint(0, 30, (3, 13), generator=torch.Generator().manual_seed(3))
    states = sim.hidden_states(model, windows[:, :-1], n_iterations=5)
    from_states = sim.state_losses(model, states[1:], windows[:, 1:])
    direct = sim.loss_by_iterations(model, windows, range(1, 6))
    assert len(from_states) == 5
    assert max(abs(a - b) for a, b in zip(from_states, direct, strict=True)) < 1e-5
    with torch.no_grad():
        assert abs(direct[2] - sl.next_token_loss(model, (windows[:, :-1], windows[:, 1:])).item()) < 1e-5  # N = 3
    with pytest.raises(ValueError, match="strategy 'all'"):
        sim.loss_by_iterations(small_lm("none"), windows, [1])
    with pytest.raises(ValueError, match="targets must have shape"):
        sim.state_losses(model, states, windows)


def test_cka_matrix_and_relative_updates():
    g = torch.Generator().manual_seed(4)
    states = [torch.randn(2, 5, 3, generator=g) for _ in range(3)]
    matrix = sim.cka_matrix(states)
    assert matrix.shape == (3, 3) and torch.equal(matrix, matrix.T)
    assert torch.allclose(matrix.diagonal(), torch.ones(3, dtype=torch.float64))
    assert abs(matrix[0, 2].item() - hsic_cka(states[0].reshape(-1, 3), states[2].reshape(-1, 3))) < 1e-9
    h = [torch.ones(2, 2), 2 * torch.ones(2, 2), torch.tensor([[2.0, 2.0], [2.0, 5.0]])]
    assert sim.relative_updates(h) == pytest.approx([1.0, 3.0 / 4.0])  # ||1|| / ||1||, then 3 / sqrt(16)
    with pytest.raises(ValueError, match="at least two"):
        sim.relative_updates(h[:1])


def test_weight_similarity_of_shared_unshared_and_random_layers():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert sim.weight_similarity(a, a) == pytest.approx((1.0, 0.0))
    assert sim.weight_similarity(a, b) == pytest.approx((0.0, math.sqrt(2)))  # orthogonal: ||a - b||^2 = 2 ||a||^2
    assert sim.weight_similarity(a, -a) == pytest.approx((-1.0, 2.0))
    shared = sim.consecutive_weight_similarity(small_lm("all", n_layers=4))
    assert all(pair == pytest.approx((1.0, 0.0)) for pairs in shared.values() for pair in pairs)
    fresh = sim.consecutive_weight_similarity(small_lm("none", n_layers=4))  # independent N(0, 0.02) draws
    for pairs in fresh.values():
        assert len(pairs) == 3
        for cosine, distance in pairs:
            assert abs(cosine) < 0.3 and abs(distance - math.sqrt(2)) < 0.3
    with pytest.raises(ValueError, match="name must be one of"):
        sim.sublayer_weight(small_lm("none"), 0, "ffn.middle")
    with pytest.raises(ValueError, match=r"layer must be an integer in 0\.\.2"):
        sim.sublayer_weight(small_lm("none"), 3, "ffn.up")


def test_sublayer_weight_follows_the_sharing_map():
    model = small_lm("none", n_layers=3)
    assert torch.equal(sim.sublayer_weight(model, 1, "ffn.down"), model.ffn[1].inner.down.weight)
    shared = small_lm("all", n_layers=3)
    assert torch.equal(sim.sublayer_weight(shared, 2, "attention.out"), shared.attention[0].inner.out.weight)


FIGURES = {
    "cka": lambda: similarity_plots.plot_cka({"a": torch.eye(7), "b": torch.ones(7, 7) * 0.5},
                                             {"unshared": [0.9, 0.95], "shared": [0.8, 0.99]}, "t"),
    "cka_large": lambda: similarity_plots.plot_cka({"a": torch.eye(13)}, {"a": [0.5] * 12}, "t"),
    "iterations": lambda: similarity_plots.plot_iterations({"shared": [0.5, 0.3, 0.2], "unshared": [0.4, 0.3]},
                                                           [3.0, 2.8, 2.9], 2, reference_loss=2.7, title="t"),
    "gradient_norms": lambda: similarity_plots.plot_gradient_norms(
        {"shared block": [1.0, 0.5, 0.4, 0.3], "unshared, mean layer": [0.2, 0.1, 0.1, 0.1]},
        "t", smooth=2),
}


@pytest.mark.parametrize("name", FIGURES)
def test_chapter_5c_figures_are_readable(name):
    with plt.rc_context():
        plots.use_book_style()
        fig = FIGURES[name]()
        fig.canvas.draw()
        small = [t.get_text() for t in fig.findobj(plt.Text)
                 if t.get_visible() and t.get_text().strip() and t.get_fontsize() < plots.MIN_FONT_SIZE]
        plt.close(fig)
    assert small == []


def test_gradient_norm_figure_refuses_a_bad_window():
    with pytest.raises(ValueError, match="smooth must be a positive integer"):
        similarity_plots.plot_gradient_norms({"a": [1.0]}, smooth=0)
    with pytest.raises(ValueError, match="points must be an integer >= 2"):
        similarity_plots.plot_gradient_norms({"a": [1.0]}, points=1)
