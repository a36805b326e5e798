"""The Universal Transformer with ACT (chapter 5b, *Looping done properly*).

One shared block is applied recurrently (Dehghani et al., 2019). Before every
application a sinusoidal *timestep* signal tells the block which step it is taking, and
each position decides for itself when to stop, with the halting rule of Adaptive
Computation Time (Graves, 2016): a halting probability per position per step, a
remainder at the halting step, an output that is the halting-weighted mean of the
states, and a ponder cost N + R added to the loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .config import TransformerConfig
from .models import SharedTransformer, init_weights, scored_cross_entropy
from .validation import check_choice, check_instance, check_int, check_real

__all__ = [
    "TIMESTEP_SIGNALS",
    "Halting",
    "UniversalTransformer",
    "act_loss",
    "act_weights",
    "halting_step",
    "timestep_signal",
]


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
    """ACT's halting weights (S, B, T), steps N (B, T) and remainders R (B, T) for
    probabilities ``p`` (S, B, T).

    The step S is the last allowed one: positions still running there halt with their
    remainder.
    """
    if not isinstance(p, torch.Tensor) or p.dim() < 1 or p.shape[0] < 1:
        raise ValueError(
            "p must be a tensor of halting probabilities (steps, ...), "
            f"got {type(p).__name__}"
        )
    check_real("threshold", threshold, 0, 1, open_minimum=True)
    cumulative = torch.zeros_like(p[0])  # sum_{k<n} p_k
    running = torch.ones_like(p[0], dtype=torch.bool)
    steps = torch.zeros_like(p[0], dtype=torch.long)
    remainders = torch.zeros_like(p[0])
    weights = []
    for n in range(p.shape[0]):
        # N counts the steps taken while running, the halting one included
        steps = steps + running.long()
        weight, new_cumulative, halt = halting_step(
            p[n], cumulative, running, threshold, last=n == p.shape[0] - 1
        )
        # R(t): the weight of the halting step
        remainders = torch.where(halt, weight, remainders)
        cumulative, running = new_cumulative, running & ~halt
        weights.append(weight)
    return torch.stack(weights), steps, remainders


@dataclass
class Halting:
    """What ACT decided for each position: ``weights`` and ``probabilities`` are
    (S, B, T), S = steps the batch ran."""

    # (B, T) int64: N(t), the block applications position t received, 1..n_iterations
    steps: torch.Tensor
    # (S, B, T): halting weights w_n(t); they sum to 1 over n for every position
    weights: torch.Tensor
    probabilities: torch.Tensor  # (S, B, T): p_n(t) while running, 0 after halting
    remainders: torch.Tensor  # (B, T): R(t) = 1 - sum_{n<N(t)} p_n(t)
    # (): mean of N(t) + R(t) over real positions; gradient flows through R only
    ponder_cost: torch.Tensor
    # (S, B, T, H) the state after each step (with return_states=True)
    states: torch.Tensor | None = None


class UniversalTransformer(nn.Module):
    """A shared block applied up to ``config.n_layers`` times, each position halting by
    ACT (chapter 5b).

    ``config.strategy`` must be "all": the model holds a ``SharedTransformer(config)``
    (``self.base``) for its embeddings, its one attention and FFN block, its final
    LayerNorm and its tied output layer, so a fixed-step run without a timestep signal
    is exactly that model. ``config.n_layers`` is the largest number of steps;
    ``n_iterations`` may repeat it for readability. ``timestep`` is "sinusoidal" (the
    default) or "none".
    """

    def __init__(
        self,
        config: TransformerConfig,
        n_iterations: int | None = None,
        act: bool = True,
        threshold: float = 0.99,
        timestep: str = "sinusoidal",
        halting_bias: float = 1.0,
    ) -> None:
        super().__init__()
        check_instance("config", config, TransformerConfig, "a TransformerConfig")
        if config.strategy != "all":
            raise ValueError(
                "config.strategy must be 'all' (one shared block), "
                f"got {config.strategy!r}"
            )
        if (
            n_iterations is not None
            and check_int("n_iterations", n_iterations) != config.n_layers
        ):
            raise ValueError(
                f"n_iterations={n_iterations} differs from config.n_layers="
                f"{config.n_layers}: the config's depth is the largest number of "
                "steps; build the config with n_layers=n_iterations"
            )
        if not isinstance(act, bool):
            raise ValueError(f"act must be True or False, got {act!r}")
        check_choice("timestep", timestep, TIMESTEP_SIGNALS)
        check_real("halting_bias", halting_bias)
        self.config = config
        self.n_iterations = config.n_layers  # the most steps a position may take
        self.act = act
        self.threshold = check_real("threshold", threshold, 0, 1, open_minimum=True)
        self.timestep = timestep
        # embeddings, the shared block, final norm, tied output layer
        self.base = SharedTransformer(config)
        # p = sigmoid(w . h + b), one unit shared by every step
        self.halting = nn.Linear(config.d_model, 1)
        init_weights(self.halting)
        # b = 1: p ~ 0.73, about two steps at first
        nn.init.constant_(self.halting.bias, float(halting_bias))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        n_iterations: int | None = None,
        return_states: bool = False,
    ) -> tuple[torch.Tensor, Halting]:
        """Hidden states (B, T, H) and the ``Halting`` record; ``n_iterations``
        overrides the most steps a position may take."""
        # (B, T) or None
        key_mask = self.base.check_inputs(input_ids, attention_mask, token_type_ids)
        return self.encode(
            self.base.embeddings(input_ids, token_type_ids),
            key_mask,
            n_iterations,
            return_states,
        )

    def encode(
        self,
        x: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        n_iterations: int | None = None,
        return_states: bool = False,
    ) -> tuple[torch.Tensor, Halting]:
        """Apply the shared block to embedded inputs (B, T, H) until every position
        halts or has taken ``n_iterations`` steps (chapter 5b)."""
        self.base.check_hidden(x, key_mask, None, 0)
        M = self.n_iterations if n_iterations is None else n_iterations
        M = check_int("n_iterations", M)
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
        """Vocabulary logits (B, T, V) through the tied token embedding
        (as ``SharedTransformer.logits``)."""
        return self.base.logits(hidden)

    def _normed(self, x: torch.Tensor) -> torch.Tensor:
        """The final LayerNorm of a pre-norm model (post-norm states are normalised
        already)."""
        return self.base.final_norm(x) if self.base.final_norm is not None else x


def act_loss(
    model: UniversalTransformer, batch: tuple[torch.Tensor, ...], ponder_weight: float
) -> torch.Tensor:
    """Cross-entropy of the scored targets (not ``IGNORE``) plus ``ponder_weight`` (tau)
    times the ponder cost."""
    check_real("ponder_weight", ponder_weight, 0)
    inputs, targets = batch[0], batch[1]
    hidden, record = model(inputs)  # (B, T, H)
    task = scored_cross_entropy(model.logits(hidden), targets)
    return task + ponder_weight * record.ponder_cost  # L = L_task + tau * rho
