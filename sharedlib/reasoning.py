"""A tiny recursive reasoner in the manner of TRM (Jolicoeur-Martineau, 2025): one small
network refines a latent z and an answer y in turn, improvement step after improvement
step, each step supervised (chapter 5e, *Recursive reasoning*).

One improvement step runs T latent recursions; each updates z n times from (x, y, z)
and then y once from (y, z), with the same network. The first T - 1 recursions build no
graph, so gradients flow through the last recursion only, and the state (y, z) is
detached between improvement steps (deep supervision): every step gets its own loss
and optimizer step. A halting head learns whether the current answer is right, so that
solved puzzles can stop early.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import TransformerConfig
from .counting import count_parameters, forward_flops_per_token
from .models import SharedTransformer, init_weights
from .validation import check_instance, check_int

__all__ = [
    "DeepSupervision",
    "PlainSolver",
    "ReasonerConfig",
    "TinyRecursiveReasoner",
    "check_network",
    "reasoner_flops_per_cell",
    "reasoner_parameters",
    "solver_loss",
]


@dataclass(frozen=True)
class ReasonerConfig:
    """The recursion around a small network; invalid values raise ``ValueError``
    naming the field."""

    n_latent: int = 6  # n: updates of z per update of y (TRM: 6)
    n_recursions: int = 3  # T: latent recursions per improvement step (TRM: 3)
    n_supervision: int = 16  # N_sup: improvement steps per puzzle (TRM: 16)

    def __post_init__(self) -> None:
        for name in ("n_latent", "n_recursions", "n_supervision"):
            object.__setattr__(self, name, check_int(name, getattr(self, name)))

    @property
    def net_calls(self) -> int:
        """Applications of the network per improvement step: T (n + 1)."""
        return self.n_recursions * (self.n_latent + 1)


def check_network(config: TransformerConfig) -> None:
    """``ValueError`` unless ``config`` is a bidirectional unshared stack without a
    language-model head, the network a reasoner or solver runs (chapter 5e)."""
    check_instance("config", config, TransformerConfig, "a sharedlib.TransformerConfig")
    if config.causal or config.lm_head or config.strategy != "none":
        raise ValueError(
            "the network must be a bidirectional unshared stack: causal=False, "
            f"lm_head=False, strategy 'none', got causal={config.causal}, "
            f"lm_head={config.lm_head}, strategy {config.strategy!r}"
        )


class TinyRecursiveReasoner(nn.Module):
    """TRM: embeddings, one small network applied T(n+1) times per improvement step,
    an answer head and a halting head (chapter 5e)."""

    def __init__(self, config: TransformerConfig, reasoner: ReasonerConfig) -> None:
        super().__init__()
        check_network(config)
        check_instance(
            "reasoner", reasoner, ReasonerConfig, "a sharedlib ReasonerConfig"
        )
        self.config, self.reasoner = config, reasoner
        # the network: embeddings embed x; its layers and final norm are the net
        self.net = SharedTransformer(config)
        H = config.d_model
        self.y_init = nn.Parameter(torch.zeros(H))  # y_0 at every cell
        self.z_init = nn.Parameter(torch.zeros(H))  # z_0 at every cell
        self.answer_head = nn.Linear(H, config.vocab_size)
        self.halt_head = nn.Linear(H, 1)  # logit of "the answer is right"
        for head in (self.answer_head, self.halt_head):
            init_weights(head)

    def embed(self, puzzle: torch.Tensor) -> torch.Tensor:
        """x: the embedded puzzle (B, L) -> (B, L, H)."""
        self.net.check_inputs(puzzle, None)
        return self.net.embeddings(puzzle)

    def initial_state(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(y_0, z_0), each (B, L, H)."""
        return self.y_init.expand_as(x), self.z_init.expand_as(x)

    def latent_recursion(
        self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """z <- net(x + y + z) n times, then y <- net(y + z): one recursion."""
        for _ in range(self.reasoner.n_latent):
            z = self.net.encode(x + y + z)  # (B, L, H)
        y = self.net.encode(y + z)  # (B, L, H): the answer, without the puzzle
        return y, z

    def improve(
        self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor, torch.Tensor]:
        """One improvement step: T recursions, the last with gradients. Returns the
        detached state, answer logits (B, L, V) and halting logits (B,)."""
        with torch.no_grad():
            for _ in range(self.reasoner.n_recursions - 1):
                y, z = self.latent_recursion(x, y, z)
        y, z = self.latent_recursion(x, y, z)
        logits = self.answer_head(y)  # (B, L, V)
        halt = self.halt_head(y.mean(1))[:, 0]  # (B,)
        return (y.detach(), z.detach()), logits, halt

    @torch.no_grad()
    def solve(
        self, puzzle: torch.Tensor, n_supervision: int | None = None
    ) -> torch.Tensor:
        """Answers (S, B, L) after each of ``n_supervision`` improvement steps (default
        N_sup), without halting."""
        steps = check_int(
            "n_supervision",
            self.reasoner.n_supervision if n_supervision is None else n_supervision,
        )
        x = self.embed(puzzle)
        y, z = self.initial_state(x)
        answers = []
        for _ in range(steps):
            (y, z), logits, _ = self.improve(x, y, z)
            answers.append(logits.argmax(-1))
        return torch.stack(answers)


class PlainSolver(nn.Module):
    """The non-recursive baseline: the puzzle through the network once, then the
    answer head; no latent, no loop, no halting (chapter 5e)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        check_network(config)
        self.config = config
        self.net = SharedTransformer(config)
        self.answer_head = nn.Linear(config.d_model, config.vocab_size)
        init_weights(self.answer_head)

    def forward(self, puzzle: torch.Tensor) -> torch.Tensor:
        """Answer logits (B, L, V) of the puzzle (B, L)."""
        return self.answer_head(self.net(puzzle))  # (B, L, H) -> (B, L, V)

    @torch.no_grad()
    def solve(
        self, puzzle: torch.Tensor, n_supervision: int | None = None
    ) -> torch.Tensor:
        """Answers (1, B, L): one pass, whatever ``n_supervision`` asks."""
        return self(puzzle).argmax(-1)[None]


def solver_loss(model: PlainSolver, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Cross-entropy of every cell's digit, for ``sharedlib.train`` (chapter 5e)."""
    puzzle, solution = batch[0], batch[1]
    return F.cross_entropy(model(puzzle).transpose(1, 2), solution)  # (B, V, L)


class DeepSupervision:
    """``get_batch`` and ``loss_fn`` for ``sharedlib.train``: each puzzle batch is fed
    for up to N_sup optimizer steps with its state (y, z) carried, detached, between
    them; a puzzle whose halting head says "right" leaves the loss (chapter 5e)."""

    def __init__(
        self,
        puzzles: Callable[[str, torch.Generator], tuple[torch.Tensor, torch.Tensor]],
        n_supervision: int,
    ) -> None:
        self.puzzles = puzzles
        self.n_supervision = check_int("n_supervision", n_supervision)
        self.batch: tuple[torch.Tensor, torch.Tensor] | None = None
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None
        self.active: torch.Tensor | None = None  # (B,) puzzles still being improved
        self.step = 0  # improvement steps of the current batch

    def get_batch(
        self, split: str, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A new batch after N_sup steps or once every puzzle halted, else the same."""
        if split != "train":
            return self.puzzles(split, generator)
        finished = self.active is not None and not bool(self.active.any())
        if self.batch is None or self.step >= self.n_supervision or finished:
            self.batch = self.puzzles(split, generator)
            self.state, self.active, self.step = None, None, 0
        return self.batch

    def loss_fn(
        self, model: TinyRecursiveReasoner, batch: tuple[torch.Tensor, ...]
    ) -> torch.Tensor:
        """Answer cross-entropy plus the halting head's binary cross-entropy against
        "every cell right", over the puzzles still active."""
        puzzle, solution = batch[0], batch[1]
        x = model.embed(puzzle)
        if not model.training:  # evaluation: the full N_sup steps from the start
            y, z = model.initial_state(x)
            with torch.no_grad():
                for _ in range(self.n_supervision):
                    (y, z), logits, _ = model.improve(x, y, z)
            return F.cross_entropy(logits.flatten(0, 1), solution.flatten())
        y, z = model.initial_state(x) if self.state is None else self.state
        active = (
            torch.ones(len(puzzle), dtype=torch.bool, device=puzzle.device)
            if self.active is None
            else self.active
        )
        (y, z), logits, halt = model.improve(x, y, z)
        right = (logits.argmax(-1) == solution).all(-1)  # (B,)
        per_puzzle = F.cross_entropy(
            logits.transpose(1, 2), solution, reduction="none"
        ).mean(-1)  # (B,)
        per_puzzle = per_puzzle + F.binary_cross_entropy_with_logits(
            halt, right.float(), reduction="none"
        )
        loss = (per_puzzle * active).sum() / active.sum().clamp_min(1)
        self.state, self.step = (y, z), self.step + 1
        self.active = active & ~(halt.detach() > 0)  # halted puzzles stop here
        return loss


def reasoner_parameters(config: TransformerConfig) -> int:
    """Closed-form parameter count of ``TinyRecursiveReasoner(config, ...)``: the
    network with its embeddings, y_0 and z_0, and the two heads."""
    H, V = config.d_model, config.vocab_size
    return count_parameters(config) + 2 * H + (H * V + V) + (H + 1)


def reasoner_flops_per_cell(
    config: TransformerConfig, reasoner: ReasonerConfig, n_cells: int
) -> int:
    """Forward FLOPs per cell of one improvement step: T (n + 1) passes of the network
    and the answer head (the halting head's 2H per puzzle is left out)."""
    per_pass = forward_flops_per_token(config, n_cells)
    network = per_pass["attention_projections"] + per_pass["attention_scores"]
    network += per_pass["ffn"]
    return reasoner.net_calls * network + 2 * config.d_model * config.vocab_size
