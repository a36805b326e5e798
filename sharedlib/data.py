"""Data that needs no download (chapter 6, *Applications*).

Algorithmic tasks made on the fly, and real English text that ships with ``sharedlib``:
the language-reference topics of CPython 3.11.7 (``pydoc_data.topics``), frozen as
package data so that every Python, every machine and the recorded runs see the same
bytes.

Every batch is a causal language-modelling pair ``(inputs, targets)`` of shape (B, T);
targets are ``IGNORE`` where no prediction is scored.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from .validation import check_int, check_real

__all__ = [
    "ANSWER_BITS",
    "BOS",
    "BUILTIN_CORPUS",
    "BUILTIN_CORPUS_BYTES",
    "BUILTIN_CORPUS_SHA256",
    "BUILTIN_CORPUS_SOURCE",
    "FIRST_SYMBOL",
    "IGNORE",
    "PAD",
    "POINTER_OFFSET",
    "ROOT_OFFSET",
    "SEP",
    "TASKS",
    "TextCorpus",
    "algorithmic_batch",
    "algorithmic_vocab_size",
    "builtin_corpus_bytes",
    "chain_vocab_size",
    "load_text_corpus",
    "pointer_chain_batch",
]


IGNORE = -100  # targets with this value are not scored (torch's cross_entropy default)
TASKS: tuple[str, ...] = ("copy", "reverse", "sort", "addition")
# special tokens of the algorithmic tasks; symbols start at FIRST_SYMBOL
PAD, BOS, SEP = 0, 1, 2
FIRST_SYMBOL = 3
# The built-in corpus: CPython 3.11.7's pydoc_data.topics, values joined by blank lines
# in key order (PSF licence). Recorded runs name it by SOURCE; its bytes are pinned by
# checksum, so a changed file is refused, not trained on.
BUILTIN_CORPUS = "texts/python_reference.txt.gz"
BUILTIN_CORPUS_SOURCE = "pydoc_data.topics (CPython)"
BUILTIN_CORPUS_BYTES = 466_273
BUILTIN_CORPUS_SHA256 = (
    "71f2ff5d99bdc1f9c48c5c2353ad138201c5ca1c377e0226857ef8fa89b8bcee"
)


def algorithmic_vocab_size(n_symbols: int) -> int:
    """Vocabulary of an algorithmic task: the special tokens plus ``n_symbols`` symbols
    (digits for addition)."""
    return FIRST_SYMBOL + n_symbols


def algorithmic_batch(
    task: str, batch_size: int, length: int, n_symbols: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``BOS x SEP f(x)`` sequences for ``task``; only the answer f(x) is scored.
    Shapes (B, 2L+1)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if length < 1 or n_symbols < 2 or batch_size < 1:
        raise ValueError(
            "need length >= 1, n_symbols >= 2, batch_size >= 1; "
            f"got {length}, {n_symbols}, {batch_size}"
        )
    if task == "addition":
        return _addition_batch(batch_size, length, n_symbols, generator)
    x = torch.randint(0, n_symbols, (batch_size, length), generator=generator)  # (B, L)
    answer = {"copy": x, "reverse": x.flip(1), "sort": x.sort(dim=1).values}[task]
    return _pack(x, answer)


def _addition_batch(
    batch_size: int, length: int, base: int, generator: torch.Generator
) -> tuple[torch.Tensor, ...]:
    """Two ``length``-digit numbers in base ``base``, least significant digit first;
    the answer has length+1."""
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
    """Lay out ``BOS question SEP answer``; shift by one for next-token prediction."""
    B = question.shape[0]

    def symbols(t: torch.Tensor) -> torch.Tensor:
        return torch.where(t < 0, torch.full_like(t, SEP), t + FIRST_SYMBOL)

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
    """A byte-level corpus split deterministically: the first ``1 - val_fraction``
    for training."""

    train: torch.Tensor  # (N_train,) uint8 bytes as int64
    val: torch.Tensor  # (N_val,)
    source: str  # where the text came from

    vocab_size: int = 256

    def batch(
        self, split: str, batch_size: int, seq_len: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, ...]:
        """Random ``split`` windows: inputs and next-byte targets, each (B, seq_len)."""
        data = {"train": self.train, "val": self.val}.get(split)
        if data is None:
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        if len(data) <= seq_len:
            raise ValueError(
                f"the {split} split has {len(data)} bytes, "
                f"fewer than seq_len + 1 = {seq_len + 1}"
            )
        starts = torch.randint(
            0, len(data) - seq_len, (batch_size,), generator=generator
        )
        # (B, T + 1)
        windows = torch.stack([data[s : s + seq_len + 1] for s in starts.tolist()])
        return windows[:, :-1], windows[:, 1:]


def builtin_corpus_bytes() -> bytes:
    """The shipped corpus, checked against its pinned length and SHA-256
    (``ValueError`` if it was altered)."""
    raw = gzip.decompress(
        resources.files("sharedlib").joinpath(BUILTIN_CORPUS).read_bytes()
    )
    digest = hashlib.sha256(raw).hexdigest()
    if len(raw) != BUILTIN_CORPUS_BYTES or digest != BUILTIN_CORPUS_SHA256:
        raise ValueError(
            f"sharedlib/{BUILTIN_CORPUS} is not the pinned corpus: "
            f"{len(raw)} bytes, sha256 {digest}; "
            f"expected {BUILTIN_CORPUS_BYTES} bytes, sha256 {BUILTIN_CORPUS_SHA256} "
            "(reinstall sharedlib)"
        )
    return raw


def load_text_corpus(
    path: str | Path | None = None, val_fraction: float = 0.1
) -> TextCorpus:
    """The shipped language-reference text (the same bytes on every Python), or a UTF-8
    file at ``path``."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    if path is None:
        raw, source = builtin_corpus_bytes(), BUILTIN_CORPUS_SOURCE
    else:
        raw, source = Path(path).read_text(encoding="utf-8").encode("utf-8"), str(path)
    data = torch.tensor(list(raw), dtype=torch.long)  # (N,) one token per byte
    cut = int(len(data) * (1 - val_fraction))
    return TextCorpus(train=data[:cut], val=data[cut:], source=source)


# Pointer chains (chapter 5b): an encoder task whose per-position difficulty is the
# number of hops to a root.
ANSWER_BITS = 2  # tokens 0 and 1: the answer at each position (its root's bit)
ROOT_OFFSET = 2  # tokens 2 and 3: a root holding bit 0 or 1
# tokens 4 .. 3 + max_offset: "my parent is k positions to my left", k = 1 .. max_offset
POINTER_OFFSET = 4


def chain_vocab_size(max_offset: int) -> int:
    """Vocabulary of ``pointer_chain_batch``: two answer tokens, two root tokens and one
    token per offset."""
    return POINTER_OFFSET + check_int("max_offset", max_offset)


def pointer_chain_batch(
    batch_size: int,
    length: int,
    max_offset: int,
    root_probability: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random forests laid out left to right: inputs, targets and depths, each (B, L).

    Each position is a root holding a random bit (probability ``root_probability``;
    position 0 always) or points to a parent 1 .. ``max_offset`` positions to its left.
    The target at every position is its root's bit; the depth is the number of pointer
    hops to that root, so a block that moves information one hop per step needs
    depth-many steps.
    """
    check_int("batch_size", batch_size)
    check_int("length", length)
    check_int("max_offset", max_offset)
    check_real("root_probability", root_probability, 0, 1, open_minimum=True)
    # (B, L)
    root = torch.rand(batch_size, length, generator=generator) < root_probability
    root[:, 0] = True  # nothing lies to the left of position 0
    bit = torch.randint(0, 2, (batch_size, length), generator=generator)  # (B, L)
    position = torch.arange(length).expand(batch_size, length)  # (B, L)
    # (B, L)
    offset = torch.randint(1, max_offset + 1, (batch_size, length), generator=generator)
    # never point before position 0
    offset = torch.minimum(offset, position.clamp(min=1))
    inputs = torch.where(root, ROOT_OFFSET + bit, POINTER_OFFSET - 1 + offset)  # (B, L)
    targets = torch.zeros_like(bit)
    depth = torch.zeros_like(bit)
    # parents lie to the left, so they are resolved before their children
    for t in range(length):
        parent = (t - offset[:, t]).clamp(min=0)[:, None]  # (B, 1)
        targets[:, t] = torch.where(
            root[:, t], bit[:, t], targets.gather(1, parent)[:, 0]
        )
        depth[:, t] = torch.where(root[:, t], 0, depth.gather(1, parent)[:, 0] + 1)
    return inputs, targets, depth
