"""The Universal Transformer with Adaptive Computation Time (chapter 5b, *Looping done properly*).

One shared block is applied recurrently (Dehghani et al., 2019). Before every application a sinusoidal
*timestep* signal tells the block which step it is taking, and each position decides for itself when to stop,
with the halting rule of Adaptive Computation Time (Graves, 2016): a halting probability per position per step,
a remainder at the halting step, an output that is the halting-weighted mean of the states, and a ponder cost
N + R added to the loss.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import TransformerConfig
from .data import IGNORE
from .models import SharedTransformer, init_weights

TIMESTEP_SIGNALS: tuple[str, ...] = ("sinusoidal", "none")


def timestep_signal(
    step: int, d_model: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """The sinusoidal signal of step ``step`` (1, 2, ...), shape (d_model,); the same
    vector at every position."""
    # (ceil(H/2),) 1 / 10000^(2j/H)
    rate = 10000.0 ** (-torch.arange(0, d_model, 2, device=device) / d_model)
    angle = step * rate  # t / 10000^(2j/H)
    # (H,) P_t[2j] = sin, P_t[2j+1] = cos
    return torch.stack([angle.sin(), angle.cos()], dim=1).flatten()[:d_model]


def halting_step(
    p: torch.Tensor,
    cumulative: torch.Tensor,
    running: torch.Tensor,
    threshold: float,
    last: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step n of ACT's halting rule for every position: returns (weight w_n, new
    cumulative, halts now).

    ``p`` (B, T) are the halting probabilities p_n, ``cumulative`` (B, T) holds the sum
    of p_k for k < n, and ``running`` (B, T) is True where the position has not halted
    before step n.
    """
    # N = n: sum_{k<=n} p_k reaches 1 - eps, or n = max
    halt = running & ((cumulative + p >= threshold) | last)
    # R = 1 - sum_{k<N} p_k, differentiable: dR/dp_k = -1 for every k < N
    remainder = 1.0 - cumulative
    # w_n: p_n, R at N, 0 after
    weight = torch.where(halt, remainder, torch.where(running, p, torch.zeros_like(p)))
    # the cumulative weight is exactly 1 once a position has halted
    return weight, cumulative + weight, halt


def act_weights(
    p: torch.Tensor, threshold: float = 0.99
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ACT's halting weights (S, B, T), steps N (B, T) and remainders R (B, T) for probabilities ``p`` (S, B, T).

    The step S is the last allowed one: positions still running there halt with their remainder.
    """
    if not isinstance(p, torch.Tensor) or p.dim() < 1 or p.shape[0] < 1:
        raise ValueError(
            f"p must be a tensor of halting probabilities (steps, ...), got {type(p).__name__}"
        )
    _check_threshold(threshold)
    cumulative = torch.zeros_like(p[0])  # sum_{k<n} p_k
    running = torch.ones_like(p[0], dtype=torch.bool)
    steps = torch.zeros_like(p[0], dtype=torch.long)
    remainders = torch.zeros_like(p[0])
    weights = []
    for n in range(p.shape[0]):
        steps = (
            steps + running.long()
        )  # N counts the steps taken while running, the halting one included
        weight, new_cumulative, halt = halting_step(
            p[n], cumulative, running, threshold, last=n == p.shape[0] - 1
        )
        remainders = torch.where(
            halt, weight, remainders
        )  # R(t): the weight of the halting step
        cumulative, running = new_cumulative, running & ~halt
        weights.append(weight)
    return torch.stack(weights), steps, remainders


@dataclass
class Halting:
    """What ACT decided for each position: ``weights`` and ``probabilities`` are (S, B, T), S = steps the batch ran."""

    steps: (
        torch.Tensor
    )  # (B, T) int64: N(t), the block applications position t received, 1..max_steps
    weights: (
        torch.Tensor
    )  # (S, B, T): halting weights w_n(t); they sum to 1 over n for every position
    probabilities: torch.Tensor  # (S, B, T): p_n(t) while running, 0 after halting
    remainders: torch.Tensor  # (B, T): R(t) = 1 - sum_{n<N(t)} p_n(t)
    ponder_cost: (
        torch.Tensor
    )  # (): mean of N(t) + R(t) over real positions; gradient flows through R only
    states: torch.Tensor | None = (
        None  # (S, B, T, H) the state after each step (with return_states=True)
    )


class UniversalTransformer(nn.Module):
    """A shared block applied up to ``config.n_layers`` times, each position halting by ACT (chapter 5b).

    ``config.strategy`` must be "all": the model holds a ``SharedTransformer(config)`` (``self.base``) for its
    embeddings, its one attention and FFN block, its final LayerNorm and its tied output layer, so a fixed-step
    run without a timestep signal is exactly that model. ``config.n_layers`` is the largest number of steps;
    ``max_steps`` may repeat it for readability. ``timestep`` is "sinusoidal" (the default) or "none".
    """

    def __init__(
        self,
        config: TransformerConfig,
        max_steps: int | None = None,
        act: bool = True,
        threshold: float = 0.99,
        timestep: str = "sinusoidal",
        halting_bias: float = 1.0,
    ) -> None:
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise ValueError(
                f"config must be a TransformerConfig, got {type(config).__name__}"
            )
        if config.strategy != "all":
            raise ValueError(
                f"config.strategy must be 'all' (one shared block), got {config.strategy!r}"
            )
        if (
            max_steps is not None
            and check_steps("max_steps", max_steps) != config.n_layers
        ):
            raise ValueError(
                f"max_steps={max_steps} differs from config.n_layers={config.n_layers}: the config's depth is the "
                "largest number of steps; build the config with n_layers=max_steps"
            )
        if not isinstance(act, bool):
            raise ValueError(f"act must be True or False, got {act!r}")
        if timestep not in TIMESTEP_SIGNALS:
            raise ValueError(
                f"timestep must be one of {TIMESTEP_SIGNALS}, got {timestep!r}"
            )
        if (
            isinstance(halting_bias, bool)
            or not isinstance(halting_bias, numbers.Real)
            or not math.isfinite(halting_bias)
        ):
            raise ValueError(
                f"halting_bias must be a finite real number, got {halting_bias!r}"
            )
        self.config = config
        self.max_steps = config.n_layers
        self.act = act
        self.threshold = _check_threshold(threshold)
        self.timestep = timestep
        self.base = SharedTransformer(
            config
        )  # embeddings, the shared block, final norm, tied output layer
        self.halting = nn.Linear(
            config.d_model, 1
        )  # p = sigmoid(w . h + b), one unit shared by every step
        init_weights(self.halting)
        nn.init.constant_(
            self.halting.bias, float(halting_bias)
        )  # b = 1: p ~ 0.73, about two steps at first

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        max_steps: int | None = None,
        return_states: bool = False,
    ) -> tuple[torch.Tensor, Halting]:
        """Hidden states (B, T, H) and the ``Halting`` record; ``max_steps`` overrides the depth bound."""
        key_mask = self.base.check_inputs(
            input_ids, attention_mask, token_type_ids
        )  # (B, T) or None
        return self.encode(
            self.base.embeddings(input_ids, token_type_ids),
            key_mask,
            max_steps,
            return_states,
        )

    def encode(
        self,
        x: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        max_steps: int | None = None,
        return_states: bool = False,
    ) -> tuple[torch.Tensor, Halting]:
        """Apply the shared block to embedded inputs (B, T, H) until every position
        halts or ``max_steps``."""
        M = self.max_steps if max_steps is None else check_steps("max_steps", max_steps)
        if x.dim() != 3 or x.shape[-1] != self.config.d_model:
            raise ValueError(
                f"x must be (batch, sequence, {self.config.d_model}) "
                f"hidden states, got {tuple(x.shape)}"
            )
        if key_mask is not None and (
            key_mask.dtype != torch.bool or key_mask.shape != x.shape[:2]
        ):
            raise ValueError(
                "key_mask must be a bool tensor of shape "
                f"{tuple(x.shape[:2])} (True = real token)"
            )
        B, T = x.shape[:2]
        state = x  # h^0: the embedded input
        output = torch.zeros_like(x)  # y = sum_n w_n h^n, accumulated step by step
        cumulative = x.new_zeros(B, T)  # sum_{k<n} p_k
        # not halted before step n
        running = torch.ones(B, T, dtype=torch.bool, device=x.device)
        steps = torch.zeros(B, T, dtype=torch.long, device=x.device)  # N(t)
        remainders = x.new_zeros(B, T)  # R(t)
        weights, probabilities, states = [], [], []
        for n in range(1, M + 1):
            new = self.step(state, n, key_mask)  # (B, T, H) h^n = block(h^{n-1} + P_n)
            # a halted position's state is copied unchanged
            state = torch.where(running[..., None], new, state)
            steps = steps + running.long()  # N(t) += 1 where the position took the step
            if self.act:
                # (B, T) p_n = sigma(w . h^n + b)
                p = torch.sigmoid(self.halting(self._normed(state))).squeeze(-1)
            else:
                # no halting: every position runs all M steps, w_M = R = 1
                p = torch.zeros_like(cumulative)
            weight, new_cumulative, halt = halting_step(
                p, cumulative, running, self.threshold, last=n == M
            )
            # R(t) = 1 - sum_{k<N} p_k, the halting weight
            remainders = torch.where(halt, weight, remainders)
            output = output + weight[..., None] * state  # (B, T, H) y += w_n h^n
            weights.append(weight)
            probabilities.append(torch.where(running, p, torch.zeros_like(p)))
            states.append(state)
            cumulative, running = new_cumulative, running & ~halt
            # every position has halted: the batch stops paying for steps
            if not running.any():
                break
        # (B, T) positions that count
        real = key_mask if key_mask is not None else torch.ones_like(running)
        # rho = mean_t N(t) + R(t)
        ponder = ((steps + remainders) * real).sum() / real.sum()
        record = Halting(
            steps=steps,
            weights=torch.stack(weights),
            probabilities=torch.stack(probabilities),
            remainders=remainders,
            ponder_cost=ponder,
            states=torch.stack(states) if return_states else None,
        )
        return self._normed(output), record

    def step(
        self, state: torch.Tensor, n: int, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Step ``n`` of the recurrence: add the timestep signal P_n, then the shared
        attention and FFN block."""
        if self.timestep == "sinusoidal":
            signal = timestep_signal(n, state.shape[-1], state.device)  # (H,)
            state = state + signal.to(state.dtype)  # (B, T, H) + (H,)
        state = self.base.attention[0](state, key_mask=key_mask)  # (B, T, H) attention
        return self.base.ffn[0](state)  # (B, T, H) the one FFN block

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits (B, T, V) through the tied token embedding (as ``SharedTransformer.logits``)."""
        return self.base.logits(hidden)

    def _normed(self, x: torch.Tensor) -> torch.Tensor:
        """The final LayerNorm of a pre-norm model (post-norm states are normalised already)."""
        return self.base.final_norm(x) if self.base.final_norm is not None else x


def scored_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of logits (B, T, V) over the targets (B, T) that are scored (not ``IGNORE``)."""
    return F.cross_entropy(
        logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE
    )


def act_loss(
    model: UniversalTransformer, batch: tuple[torch.Tensor, ...], ponder_weight: float
) -> torch.Tensor:
    """Cross-entropy of the scored targets (not ``IGNORE``) plus ``ponder_weight`` (tau) times the ponder cost."""
    _check_nonnegative("ponder_weight", ponder_weight)
    inputs, targets = batch[0], batch[1]
    hidden, record = model(inputs)  # (B, T, H)
    task = scored_cross_entropy(model.logits(hidden), targets)
    return task + ponder_weight * record.ponder_cost  # L = L_task + tau * rho


# Pointer chains: an encoder task whose per-position difficulty is the number of hops to a root.
ANSWER_BITS = 2  # tokens 0 and 1: the answer at each position (its root's bit)
ROOT_OFFSET = 2  # tokens 2 and 3: a root holding bit 0 or 1
POINTER_OFFSET = 4  # tokens 4 .. 3 + max_offset: "my parent is k positions to my left", k = 1 .. max_offset


def chain_vocab_size(max_offset: int) -> int:
    """Vocabulary of ``pointer_chain_batch``: two answer tokens, two root tokens and one token per offset."""
    return POINTER_OFFSET + check_steps("max_offset", max_offset)


def pointer_chain_batch(
    batch_size: int,
    length: int,
    max_offset: int,
    root_probability: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random forests laid out left to right: inputs (B, L), targets (B, L) and depths (B, L).

    Each position is a root holding a random bit (probability ``root_probability``; position 0 always) or points
    to a parent 1 .. ``max_offset`` positions to its left. The target at every position is its root's bit; the
    depth is the number of pointer hops to that root, so a block that moves information one hop per step needs
    depth-many steps.
    """
    check_steps("batch_size", batch_size)
    check_steps("length", length)
    check_steps("max_offset", max_offset)
    if isinstance(root_probability, bool) or not isinstance(
        root_probability, numbers.Real
    ):
        raise ValueError(
            f"root_probability must be a real number in (0, 1], got {root_probability!r}"
        )
    if not 0 < root_probability <= 1:
        raise ValueError(
            f"root_probability must be a real number in (0, 1], got {root_probability!r}"
        )
    root = (
        torch.rand(batch_size, length, generator=generator) < root_probability
    )  # (B, L)
    root[:, 0] = True  # nothing lies to the left of position 0
    bit = torch.randint(0, 2, (batch_size, length), generator=generator)  # (B, L)
    position = torch.arange(length).expand(batch_size, length)  # (B, L)
    offset = torch.randint(
        1, max_offset + 1, (batch_size, length), generator=generator
    )  # (B, L)
    offset = torch.minimum(
        offset, position.clamp(min=1)
    )  # never point before position 0
    inputs = torch.where(root, ROOT_OFFSET + bit, POINTER_OFFSET - 1 + offset)  # (B, L)
    targets = torch.zeros_like(bit)
    depth = torch.zeros_like(bit)
    for t in range(
        length
    ):  # parents lie to the left, so they are resolved before their children
        parent = (t - offset[:, t]).clamp(min=0)[:, None]  # (B, 1)
        targets[:, t] = torch.where(
            root[:, t], bit[:, t], targets.gather(1, parent)[:, 0]
        )
        depth[:, t] = torch.where(root[:, t], 0, depth.gather(1, parent)[:, 0] + 1)
    return inputs, targets, depth


def rank_correlation(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman's rank correlation of two equally long tensors (``scipy.stats.spearmanr``; chapter 5b)."""
    if (
        not isinstance(x, torch.Tensor)
        or not isinstance(y, torch.Tensor)
        or x.numel() != y.numel()
    ):
        raise ValueError("x and y must be tensors with the same number of elements")
    if x.numel() < 2:
        raise ValueError(f"need at least 2 values, got {x.numel()}")
    from scipy import stats

    a, b = (t.detach().flatten().double().cpu().numpy() for t in (x, y))
    if a.min() == a.max() or b.min() == b.max():
        raise ValueError("rank correlation is undefined when x or y is constant")
    return float(stats.spearmanr(a, b).statistic)  # ties get their average rank


def check_steps(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_threshold(threshold: object) -> float:
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, numbers.Real)
        or not 0 < threshold <= 1
    ):
        raise ValueError(
            f"threshold (1 - epsilon) must be a real number in (0, 1], got {threshold!r}"
        )
    return float(threshold)


def _check_nonnegative(name: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"{name} must be a finite real number >= 0, got {value!r}")
    return float(value)
