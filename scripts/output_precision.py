"""Compare a notebook's outputs at the precision they mean, not bit for bit (used by nbval and run_notebooks).

Text and integers must be equal. A decimal number matches when the two values differ by at most
``RELATIVE_TOLERANCE`` of the larger, or by one unit in the last digit shown (``0.81`` vs ``0.80`` after
rounding at a boundary): another CPU, instruction set, Python or torch moves deterministic arithmetic in the
last bits (about 1e-7 relative, measured in the portability pass of ``make test``), far below both. Outputs of
live training are chaotic and are not compared at all: their cells carry the ``nbval-ignore-output`` tag and
assert their claims with margins instead.
"""

from __future__ import annotations

import math
import re

RELATIVE_TOLERANCE = 1e-4  # 4 significant digits: 1,000x the drift of deterministic arithmetic across CPUs
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|\b(?:nan|inf)\b")


def _is_integer(token: str) -> bool:
    return token.lstrip("+-").isdigit()


def _last_digit_unit(token: str) -> float:
    """The value of one unit in the last digit written: ``0.81`` -> 0.01, ``1.5e-03`` -> 1e-04."""
    mantissa, _, exponent = token.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (int(exponent or 0) - decimals)


def numbers_match(reference: str, actual: str, rel: float = RELATIVE_TOLERANCE) -> bool:
    """Two number tokens agree: integers exactly, decimals within ``rel`` or one unit in the last place shown."""
    if _is_integer(reference) and _is_integer(actual):
        return int(reference) == int(actual)
    a, b = float(reference), float(actual)
    if math.isnan(a) or math.isnan(b) or math.isinf(a) or math.isinf(b):
        return False  # nan never matches; inf only as identical text (handled by the caller)
    unit = min(_last_digit_unit(reference), _last_digit_unit(actual))  # the finer: "1.0" vs "1.03" differ
    return abs(a - b) <= max(rel * max(abs(a), abs(b)), unit * (1 + 1e-9))


def first_difference(reference: str, actual: str, rel: float = RELATIVE_TOLERANCE) -> str | None:
    """``None`` when the outputs agree at their precision, otherwise a one-line description of the first difference."""
    if reference == actual:
        return None
    ref_text, new_text = NUMBER.split(reference), NUMBER.split(actual)
    ref_numbers, new_numbers = NUMBER.findall(reference), NUMBER.findall(actual)
    if ref_text != new_text or len(ref_numbers) != len(new_numbers):
        for i, (r, n) in enumerate(zip(ref_text, new_text, strict=False)):
            if r != n:
                return f"text differs after {i} numbers: {r[:60]!r} vs {n[:60]!r}"
        return f"text differs: {len(ref_numbers)} numbers vs {len(new_numbers)}"
    for i, (r, n) in enumerate(zip(ref_numbers, new_numbers, strict=True)):
        if r != n and not numbers_match(r, n, rel):
            return f"number {i + 1} differs beyond its precision: {r} vs {n} (relative tolerance {rel:g})"
    return None


class PrecisionText(str):
    """A ``str`` whose equality is ``first_difference(...) is None``: what nbval compares, once sanitized."""

    __hash__ = str.__hash__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, str):
            return NotImplemented
        return first_difference(str(self), str(other)) is None

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal
