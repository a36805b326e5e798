"""The layer -> parameter-set maps against the published definitions (chapter 3)."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sharedlib import STRATEGIES, TransformerConfig, layer_to_block, n_parameter_sets


def takase_kiyono(strategy: str, n: int, m: int) -> list[int]:
    """Takase & Kiyono (2021), Sec. 2, transcribed with 1-based layer indices i, then shifted to 0-based."""
    out = []
    for i in range(1, n + 1):
        if strategy == "sequence":
            theta = math.ceil(i / (n // m))
        elif strategy == "cycle" or i <= m * (math.ceil(n / m) - 1):
            theta = ((i - 1) % m) + 1
        else:  # cycle-rev, last round
            theta = m - ((i - 1) % m)
        out.append(theta - 1)
    return out


def authors_code(strategy: str, n: int, layers_per_set: int) -> list[int]:
    """The construction in the authors' fairseq code (takase/share_layer_params), rebuilt as an index map."""
    if strategy == "sequence":
        return [i // layers_per_set for i in range(n)]
    u = -(-n // layers_per_set)  # unique layers
    if strategy == "cycle":
        return list(range(u)) + [i % u for i in range(n - u)]
    blocks = list(range(u)) + [i % u for i in range(n - 2 * u)]  # cycle_reverse
    return blocks + [u - 1 - i % u for i in range(n - len(blocks))]


@given(st.integers(2, 48), st.data())
def test_maps_match_the_authors_code_for_the_papers_settings(n, data):
    # The paper's settings have M dividing N and N >= 2M; there the code and the paper's formula agree.
    m = data.draw(st.sampled_from([d for d in range(1, n // 2 + 1) if n % d == 0]))
    for strategy in ("sequence", "cycle", "cycle-rev"):
        assert layer_to_block(strategy, n, m) == authors_code(strategy, n, n // m), strategy


def test_where_the_paper_formula_and_the_authors_code_differ():
    # Documented in chapter 3: sharedlib follows the paper's formula.
    assert layer_to_block("cycle-rev", 7, 3) == [0, 1, 2, 0, 1, 2, 2] != authors_code("cycle-rev", 7, 3)
    assert layer_to_block("cycle-rev", 3, 3) == [2, 1, 0] != authors_code("cycle-rev", 3, 1) == [0, 1, 2]


def test_paper_figure_example():
    # Figure 1 of Takase & Kiyono: N = 6 layers, M = 3 parameter sets.
    assert layer_to_block("sequence", 6, 3) == [0, 0, 1, 1, 2, 2]
    assert layer_to_block("cycle", 6, 3) == [0, 1, 2, 0, 1, 2]
    assert layer_to_block("cycle-rev", 6, 3) == [0, 1, 2, 2, 1, 0]


@given(st.integers(1, 40), st.data())
def test_cycle_and_cycle_rev_match_paper(n, data):
    m = data.draw(st.integers(1, n))
    for strategy in ("cycle", "cycle-rev"):
        assert layer_to_block(strategy, n, m) == takase_kiyono(strategy, n, m)


@given(st.integers(1, 40), st.data())
def test_sequence_matches_paper(n, data):
    m = data.draw(st.sampled_from([d for d in range(1, n + 1) if n % d == 0]))
    assert layer_to_block("sequence", n, m) == takase_kiyono("sequence", n, m)


def hf_group_of_layer(n: int, g: int, i: int) -> int:
    """AlbertTransformer.forward (transformers/models/albert/modeling_albert.py), transcribed."""
    return int(i / (n / g))


@pytest.mark.parametrize("inner", [1, 2, 3])
def test_groups_match_hugging_face_albert_for_every_n_and_g(inner):
    # Every 1 <= G <= N <= 48, divisible or not; each group runs `inner` blocks.
    for n in range(1, 49):
        for g in range(1, n + 1):
            expected = [hf_group_of_layer(n, g, i) * inner + k for i in range(n) for k in range(inner)]
            assert layer_to_block("groups", n, g, inner_group_num=inner) == expected, (n, g)


def test_groups_use_every_group_and_follow_the_float_formula():
    for n in range(1, 49):
        for g in range(1, n + 1):
            assert sorted(set(layer_to_block("groups", n, g))) == list(range(g)), (n, g)
            assert n_parameter_sets("groups", n, g) == g
    # The float expression is not the integer floor(i * G / N): they part at N=18, G=14, layer 9.
    assert 9 * 14 // 18 == 7 and layer_to_block("groups", 18, 14)[9] == 6


def test_groups_match_the_installed_hugging_face_code():
    # Run the installed AlbertTransformer.forward itself, with each layer group replaced by a stub that records
    # its index, for every 1 <= G <= N <= 48 (its loop reads both numbers from the config at call time).
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    used: list[int] = []

    class Recorder(torch.nn.Module):
        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

        def forward(self, hidden_states, *args, **kwargs):
            used.append(self.index)
            return hidden_states

    config = transformers.AlbertConfig(
        vocab_size=4, embedding_size=4, hidden_size=4, num_attention_heads=1, intermediate_size=4,
        num_hidden_layers=1, num_hidden_groups=1, max_position_embeddings=4,
    )
    encoder = transformers.AlbertModel(config).encoder
    encoder.albert_layer_groups = torch.nn.ModuleList(Recorder(index) for index in range(48))
    for n in range(1, 49):
        for g in range(1, n + 1):
            encoder.config.num_hidden_layers, encoder.config.num_hidden_groups = n, g
            used.clear()
            encoder(torch.zeros(1, 1, 4))
            assert layer_to_block("groups", n, g) == used, (n, g)


@given(st.sampled_from(STRATEGIES), st.integers(1, 30), st.data())
def test_every_map_uses_every_set(strategy, n, data):
    m = None
    if strategy == "sequence":
        m = data.draw(st.sampled_from([d for d in range(1, n + 1) if n % d == 0]))
    elif strategy in ("cycle", "cycle-rev", "groups"):
        m = data.draw(st.integers(1, n))
    for part in ("attention", "ffn"):
        blocks = layer_to_block(strategy, n, m, sublayer=part)
        assert len(blocks) == n
        assert sorted(set(blocks)) == list(range(n_parameter_sets(strategy, n, m, sublayer=part)))


def test_partial_strategies_share_one_sublayer():
    assert layer_to_block("attention", 4, sublayer="attention") == [0, 0, 0, 0]
    assert layer_to_block("attention", 4, sublayer="ffn") == [0, 1, 2, 3]
    assert layer_to_block("ffn", 4, sublayer="ffn") == [0, 0, 0, 0]
    assert layer_to_block("all", 3) == [0, 0, 0] and layer_to_block("none", 3) == [0, 1, 2]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(strategy="random"), "strategy"),
        (dict(strategy="sequence", n_layers=6, n_unique=4), "n_layers=6 must be divisible"),
        (dict(strategy="sequence", n_layers=12, n_unique=5), "allowed n_unique: [1, 2, 3, 4, 6, 12]"),
        (dict(strategy="groups", n_layers=6, n_unique=7), "n_unique must be an integer in 1..6, got 7"),
        (dict(strategy="groups", n_layers=6, n_unique=0), "n_unique"),
        (dict(strategy="cycle", n_layers=6, n_unique=7), "n_unique"),
        (dict(strategy="cycle", n_layers=6), "n_unique"),
        (dict(strategy="all", n_unique=2), "n_unique"),
        (dict(strategy="cycle", n_unique=2, inner_group_num=2), "inner_group_num"),
        (dict(d_model=100, n_heads=8), "n_heads=8 must divide d_model=100"),
        (dict(d_model=0), "d_model"),
        (dict(n_layers=-1), "n_layers"),
        (dict(norm="sandwich"), "norm must be one of"),
        (dict(activation="swish"), "activation must be one of"),
        (dict(dropout=1.0), "dropout"),
        (dict(embedding_size=0), "embedding_size"),
    ],
)
def test_invalid_configs_name_the_field(kwargs, field):
    with pytest.raises(ValueError) as error:
        TransformerConfig(**kwargs)
    assert field in str(error.value)
