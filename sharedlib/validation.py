"""The input checks of every public entry point, in one place.

The book's rule: bad input gets a ``ValueError`` naming the argument and the values it
accepts.

Each check returns the value in its plain Python type (``int``, ``float``, ``str``), so
NumPy scalars and tensors of one element pass through as numbers.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = [
    "INDEX_DTYPES",
    "check_callable",
    "check_choice",
    "check_instance",
    "check_int",
    "check_real",
    "check_token_ids",
]

INDEX_DTYPES: tuple[torch.dtype, ...] = (torch.int64, torch.int32)  # nn.Embedding's


def _is_integer(value: object) -> bool:
    """True for Python and NumPy ints, False for ``bool`` (a flag is not a count)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(
    name: str, value: object, minimum: int = 1, maximum: int | None = None
) -> int:
    """``value`` as an ``int`` in ``minimum..maximum`` (no upper bound if ``None``)."""
    if (
        not _is_integer(value)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        if maximum is not None:
            kind = f"an integer in {minimum}..{maximum}"
        else:
            kind = {1: "a positive integer", 0: "a non-negative integer"}.get(
                minimum, f"an integer >= {minimum}"
            )
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return int(value)


def check_real(
    name: str,
    value: object,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    open_minimum: bool = False,
) -> float:
    """``value`` as a finite ``float`` in [minimum, maximum]; ``open_minimum`` excludes
    the minimum itself (e.g. a learning rate > 0)."""
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    ok = number and math.isfinite(value)
    if ok and minimum is not None:
        ok = value > minimum if open_minimum else value >= minimum
    if ok and maximum is not None:
        ok = value <= maximum
    if not ok:
        low = "" if minimum is None else ("(" if open_minimum else "[") + f"{minimum:g}"
        high = "" if maximum is None else f"{maximum:g}]"
        if low and high:
            allowed = f" in {low}, {high}"
        elif low:
            allowed = f" {'>' if open_minimum else '>='} {minimum:g}"
        elif high:
            allowed = f" <= {maximum:g}"
        else:
            allowed = ""
        raise ValueError(f"{name} must be a finite real number{allowed}, got {value!r}")
    return float(value)


def check_choice(name: str, value: object, allowed: Iterable[str]) -> str:
    """``value`` if it is one of the strings ``allowed``."""
    allowed = tuple(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def check_callable(
    name: str, value: object, what: str = "a function"
) -> Callable[..., Any]:
    """``value`` if it can be called."""
    if not callable(value):
        raise ValueError(f"{name} must be {what}, got {type(value).__name__} {value!r}")
    return value


def check_instance(name: str, value: object, kind: type, what: str) -> Any:
    """``value`` if an instance of ``kind`` (described to the reader as ``what``)."""
    if not isinstance(value, kind):
        raise ValueError(f"{name} must be {what}, got {type(value).__name__}")
    return value


def check_token_ids(
    name: str, ids: object, limit: int, limit_name: str = "vocab_size"
) -> None:
    """Refuse all but a (batch, sequence) integer tensor with values in 0..limit-1."""
    if (
        not isinstance(ids, torch.Tensor)
        or ids.dim() != 2
        or ids.dtype not in INDEX_DTYPES
    ):
        got = (
            f"{ids.dtype} {tuple(ids.shape)}"
            if isinstance(ids, torch.Tensor)
            else type(ids).__name__
        )
        hint = (
            " (convert with .long())"
            if isinstance(ids, torch.Tensor) and ids.dim() == 2
            else ""
        )
        raise ValueError(
            f"{name} must be a (batch, sequence) tensor of dtype "
            "torch.int64 or torch.int32, "
            f"got {got}{hint}"
        )
    if ids.numel():
        # one reduction and one device sync; nn.Embedding would raise a bare IndexError
        low, high = torch.stack(torch.aminmax(ids)).tolist()
        if low < 0 or high >= limit:
            bad = low if low < 0 else high
            raise ValueError(
                f"{name} must be in 0..{limit_name}-1 = 0..{limit - 1}, found {bad}"
            )
