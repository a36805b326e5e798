"""Sharing strategies as pure layer -> parameter-set maps (chapter 3, *The algorithm*).

Every model, count and figure in the book asks this module which parameter set layer
``i`` uses. Definitions follow Lan et al. 2020 (ALBERT) and Takase & Kiyono 2021
(sequence, cycle, cycle-rev).
"""

from __future__ import annotations

from .validation import check_choice, check_int

__all__ = [
    "NEEDS_N_UNIQUE",
    "STRATEGIES",
    "SUBLAYERS",
    "layer_to_block",
    "n_parameter_sets",
    "validate_sharing",
]

STRATEGIES: tuple[str, ...] = (
    "none",  # every layer owns its attention and FFN (the vanilla Transformer)
    # one attention + FFN block reused by every layer (ALBERT, Universal Transformer)
    "all",
    "attention",  # one attention sublayer shared by all layers; FFNs stay per layer
    "ffn",  # one FFN sublayer shared by all layers; attention stays per layer
    "sequence",  # M blocks, each used by N/M consecutive layers: 0 0 1 1 2 2
    "cycle",  # M blocks used in turn: 0 1 2 0 1 2
    "cycle-rev",  # cycle, then the last round in reverse: 0 1 2 2 1 0
    # ALBERT's num_hidden_groups: layer i uses group int(i / (N / G)), each K blocks
    "groups",
)
SUBLAYERS: tuple[str, ...] = ("attention", "ffn")
NEEDS_N_UNIQUE: tuple[str, ...] = ("sequence", "cycle", "cycle-rev", "groups")


def validate_sharing(
    strategy: str, n_layers: int, n_unique: int | None = None, inner_group_num: int = 1
) -> None:
    """Raise ``ValueError`` naming the field when a strategy does not fit the depth
    (chapter 3)."""
    check_choice("strategy", strategy, STRATEGIES)
    check_int("n_layers", n_layers)
    check_int("inner_group_num", inner_group_num)
    if inner_group_num != 1 and strategy != "groups":
        raise ValueError(
            "inner_group_num applies to strategy 'groups' only, "
            f"got strategy {strategy!r}"
        )
    if strategy not in NEEDS_N_UNIQUE:
        if n_unique is not None:
            raise ValueError(
                f"n_unique is fixed by strategy {strategy!r}; leave it None "
                f"(it is needed only by {NEEDS_N_UNIQUE})"
            )
        return
    check_int("n_unique", n_unique, 1, n_layers)
    # "groups" accepts any G <= N, as Hugging Face's AlbertModel does; "sequence" is
    # defined for M dividing N.
    if strategy == "sequence" and n_layers % n_unique:
        allowed = [m for m in range(1, n_layers + 1) if n_layers % m == 0]
        raise ValueError(
            f"n_layers={n_layers} must be divisible by n_unique={n_unique} for "
            f"strategy {strategy!r}; allowed n_unique: {allowed}"
        )


def layer_to_block(
    strategy: str,
    n_layers: int,
    n_unique: int | None = None,
    *,
    sublayer: str = "attention",
    inner_group_num: int = 1,
) -> list[int]:
    """For each applied layer, the index of the parameter set it uses (chapter 3).

    ``sublayer`` matters only for the partial strategies "attention" and "ffn". For
    "groups" each of the ``n_layers`` layers runs its group's ``inner_group_num``
    blocks, so the list is longer; layer i uses group
    ``int(i / (n_layers / n_unique))``, Hugging Face's float expression, so the maps
    agree bit for bit (the integer ``i * G // N`` differs from it, e.g. at N=18, G=14,
    i=9).
    """
    validate_sharing(strategy, n_layers, n_unique, inner_group_num)
    check_choice("sublayer", sublayer, SUBLAYERS)
    layers = range(n_layers)
    if strategy == "none":
        return list(layers)
    if strategy == "all":
        return [0] * n_layers
    if strategy in ("attention", "ffn"):
        return [0] * n_layers if sublayer == strategy else list(layers)
    assert n_unique is not None  # validated above
    if strategy == "sequence":
        return [i // (n_layers // n_unique) for i in layers]
    if strategy == "cycle":
        return [i % n_unique for i in layers]
    if strategy == "cycle-rev":
        n_cycled = n_unique * (-(-n_layers // n_unique) - 1)  # M * (ceil(N/M) - 1)
        return [
            i % n_unique if i < n_cycled else n_unique - 1 - i % n_unique
            for i in layers
        ]
    # "groups": AlbertTransformer.forward computes
    # group_idx = int(i / (num_hidden_layers / num_hidden_groups))
    groups = [int(i / (n_layers / n_unique)) for i in layers]
    return [g * inner_group_num + k for g in groups for k in range(inner_group_num)]


def n_parameter_sets(
    strategy: str,
    n_layers: int,
    n_unique: int | None = None,
    *,
    sublayer: str = "attention",
    inner_group_num: int = 1,
) -> int:
    """How many distinct parameter sets of ``sublayer`` the strategy keeps
    (chapter 3)."""
    return len(
        set(
            layer_to_block(
                strategy,
                n_layers,
                n_unique,
                sublayer=sublayer,
                inner_group_num=inner_group_num,
            )
        )
    )
