"""Reported ALBERT/BERT sizes against exact counts under the TF and HF conventions (chapter 4)."""

from dataclasses import replace

import pytest

from sharedlib.book.albert_sizes import (
    CONVENTIONS,
    REPORTED_SIZES,
    count_reported,
    hugging_face_parameters,
    pooler_parameters,
    reported_config,
    reproducing_conventions,
    size_gaps,
)

ALBERT_BASE_768 = next(s for s in REPORTED_SIZES if s.model == "ALBERT-base" and s.embedding_size == 768)
ALBERT_BASE_128 = next(s for s in REPORTED_SIZES if s.model == "ALBERT-base" and s.embedding_size == 128)


def test_conventions_differ_only_when_e_equals_h() -> None:
    for size in REPORTED_SIZES:
        gap = count_reported(size, "hf", False) - count_reported(size, "tf", False)
        at_e_equals_h = size.family == "albert" and size.embedding_size == size.d_model
        expected = size.d_model**2 + size.d_model if at_e_equals_h else 0
        assert gap == expected, size.label
    assert reported_config(ALBERT_BASE_768, "tf").embedding_size is None
    assert reported_config(ALBERT_BASE_768, "hf").embedding_size == 768


@pytest.mark.parametrize("size", [s for s in REPORTED_SIZES if s.strategy in ("none", "all")], ids=lambda s: s.label)
def test_hf_convention_matches_hugging_face_numel(size) -> None:
    assert count_reported(size, "hf", True) == hugging_face_parameters(size)


def test_a_wrong_count_is_caught() -> None:
    # The TF convention at E = H misses HF's projection, so it must not match Hugging Face's numel.
    assert count_reported(ALBERT_BASE_768, "tf", True) != hugging_face_parameters(ALBERT_BASE_768)
    assert pooler_parameters(768) == 768 * 768 + 768


def test_reproduction_is_rounding_to_the_reported_million() -> None:
    gaps = size_gaps(ALBERT_BASE_128)
    assert set(gaps) == {(c, p) for c in CONVENTIONS for p in (False, True)}
    assert reproducing_conventions(ALBERT_BASE_128) == [k for k, g in gaps.items() if abs(g) < 0.5]
    off_by_two = replace(ALBERT_BASE_128, reported_millions=ALBERT_BASE_128.reported_millions + 2)
    assert reproducing_conventions(off_by_two) == []


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="convention"):
        reported_config(ALBERT_BASE_128, "torch")
    with pytest.raises(ValueError, match="pooler"):
        count_reported(ALBERT_BASE_128, "tf", 1)
    with pytest.raises(ValueError, match="tolerance_millions"):
        reproducing_conventions(ALBERT_BASE_128, 0)
    with pytest.raises(ValueError, match="strategy"):
        hugging_face_parameters(replace(ALBERT_BASE_128, strategy="attention"))
