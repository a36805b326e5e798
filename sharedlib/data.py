"""Data that needs no download (chapter 6, *Applications*): algorithmic tasks made on the fly, and real
English text that ships with ``sharedlib``: the language-reference topics of CPython 3.11.7 (``pydoc_data.topics``),
frozen as package data so that every Python, every machine and the recorded runs see the same bytes.

Every batch is a causal language-modelling pair ``(inputs, targets)`` of shape (B, T); targets are
``IGNORE`` where no prediction is scored.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

IGNORE = -100  # targets with this value are not scored (torch's cross_entropy default)
TASKS: tuple[str, ...] = ("copy", "reverse", "sort", "addition")
PAD, BOS, SEP = (
    0,
    1,
    2,
)  # special tokens of the algorithmic tasks; symbols start at FIRST_SYMBOL
FIRST_SYMBOL = 3
# The built-in corpus: CPython 3.11.7's pydoc_data.topics, values joined by blank lines in key order (PSF licence).
# Recorded runs name it by SOURCE; its bytes are pinned by checksum, so a changed file is refused, not trained on.
BUILTIN_CORPUS = "texts/python_reference.txt.gz"
BUILTIN_CORPUS_SOURCE = "pydoc_data.topics (CPython)"
BUILTIN_CORPUS_BYTES = 466_273
BUILTIN_CORPUS_SHA256 = (
    "71f2ff5d99bdc1f9c48c5c2353ad138201c5ca1c377e0226857ef8fa89b8bcee"
)


def algorithmic_vocab_size(n_symbols: int) -> int:
    """Vocabulary of an algorithmic task: the special tokens plus ``n_symbols`` symbols (digits for addition)."""
    return FIRST_SYMBOL + n_symbols


def algorithmic_batch(
    task: str, batch_size: int, length: int, n_symbols: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``BOS x SEP f(x)`` sequences for ``task``; only the answer f(x) is scored. Shapes (B, 2L+1)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if length < 1 or n_symbols < 2 or batch_size < 1:
        raise ValueError(
            f"need length >= 1, n_symbols >= 2, batch_size >= 1; got {length}, {n_symbols}, {batch_size}"
        )
    if task == "addition":
        return _addition_batch(batch_size, length, n_symbols, generator)
    x = torch.randint(0, n_symbols, (batch_size, length), generator=generator)  # (B, L)
    answer = {"copy": x, "reverse": x.flip(1), "sort": x.sort(dim=1).values}[task]
    return _pack(x, answer)


def _addition_batch(
    batch_size: int, length: int, base: int, generator: torch.Generator
) -> tuple[torch.Tensor, ...]:
    """Two ``length``-digit numbers in base ``base``, least significant digit first; the answer has length+1."""
    half = max(length // 2, 1)
    a = torch.randint(0, base, (batch_size, half), generator=generator)
    b = torch.randint(0, base, (batch_size, half), generator=generator)
    digits, carry = [], torch.zeros(batch_size, dtype=torch.long)
    for i in range(half):
        total = a[:, i] + b[:, i] + carry
        digits.append(total % base)
        carry = total // base
    answer = torch.stack([*digits, carry], dim=1)  # (B, half + 1)
    return _pack(torch.cat([a, torch.full((batch_size, 1), -1), b], dim=1), answer)


def _pack(
    question: torch.Tensor, answer: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lay out ``BOS question SEP answer`` and shift by one for next-token prediction."""
    B = question.shape[0]
    symbols = lambda t: torch.where(t < 0, torch.full_like(t, SEP), t + FIRST_SYMBOL)  # noqa: E731
    seq = torch.cat(
        [
            torch.full((B, 1), BOS),
            symbols(question),
            torch.full((B, 1), SEP),
            symbols(answer),
        ],
        dim=1,
    )
    inputs, targets = seq[:, :-1].clone(), seq[:, 1:].clone()  # (B, T)
    targets[:, : question.shape[1] + 1] = IGNORE  # score only the answer
    return inputs, targets


@dataclass(frozen=True)
class TextCorpus:
    """A byte-level corpus split deterministically: the first ``1 - val_fraction`` for training."""

    train: torch.Tensor  # (N_train,) uint8 bytes as int64
    val: torch.Tensor  # (N_val,)
    source: str  # where the text came from

    vocab_size: int = 256

    def batch(
        self, split: str, batch_size: int, seq_len: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, ...]:
        """Random windows of ``split``: inputs and next-byte targets, each (B, seq_len)."""
        data = {"train": self.train, "val": self.val}.get(split)
        if data is None:
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        if len(data) <= seq_len:
            raise ValueError(
                f"the {split} split has {len(data)} bytes, fewer than seq_len + 1 = {seq_len + 1}"
            )
        starts = torch.randint(
            0, len(data) - seq_len, (batch_size,), generator=generator
        )
        windows = torch.stack(
            [data[s : s + seq_len + 1] for s in starts.tolist()]
        )  # (B, T + 1)
        return windows[:, :-1], windows[:, 1:]


def builtin_corpus_bytes() -> bytes:
    """The shipped corpus, checked against its pinned length and SHA-256 (``ValueError`` if it was altered)."""
    raw = gzip.decompress(
        resources.files("sharedlib").joinpath(BUILTIN_CORPUS).read_bytes()
    )
    digest = hashlib.sha256(raw).hexdigest()
    if len(raw) != BUILTIN_CORPUS_BYTES or digest != BUILTIN_CORPUS_SHA256:
        raise ValueError(
            f"sharedlib/{BUILTIN_CORPUS} is not the pinned corpus: {len(raw)} bytes, sha256 {digest}; "
            f"expected {BUILTIN_CORPUS_BYTES} bytes, sha256 {BUILTIN_CORPUS_SHA256} (reinstall sharedlib)"
        )
    return raw


def load_text_corpus(
    path: str | Path | None = None, val_fraction: float = 0.1
) -> TextCorpus:
    """The shipped language-reference text (the same bytes on every Python), or a UTF-8 file at ``path``."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    if path is None:
        raw, source = builtin_corpus_bytes(), BUILTIN_CORPUS_SOURCE
    else:
        raw, source = Path(path).read_text(encoding="utf-8").encode("utf-8"), str(path)
    data = torch.tensor(list(raw), dtype=torch.long)  # (N,) one token per byte
    cut = int(len(data) * (1 - val_fraction))
    return TextCorpus(train=data[:cut], val=data[cut:], source=source)
