"""Training a block that is used N times: its gradient is the sum of N contributions,
measured per use, logged during training, and LAMB's layer-wise trust ratio (chapter 5c,
*Why can one block stand in for many?*)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from .models import SharedTransformer
from .train import Batch, NonFiniteLossError, TrainConfig, train
from .validation import check_instance, check_int, check_real

__all__ = [
    "GradientLog",
    "Lamb",
    "block_parameters",
    "gradient_coherence",
    "lr_warmup_grid",
    "optimizer_steps",
    "per_use_gradients",
    "trust_ratio",
    "trust_ratios",
    "unrolled_copy",
]

LossFn = Callable[[nn.Module, Batch], torch.Tensor]


def block_parameters(model: SharedTransformer) -> dict[str, list[nn.Parameter]]:
    """Parameters by unique block: "embeddings", "block b" (attention b and FFN b) for
    b = 0 .. M-1, "final norm" and, with a factorised LM head, "lm projection". Needs
    the attention and FFN maps to agree (not "attention" or "ffn" sharing)."""
    check_instance("model", model, SharedTransformer, "a SharedTransformer")
    if model.attention_map != model.ffn_map:
        raise ValueError(
            "model must share attention and FFN alike (not 'attention' or 'ffn'), "
            f"got {model.config.strategy!r}"
        )
    groups = {"embeddings": list(model.embeddings.parameters())}
    for b, (attention, ffn) in enumerate(zip(model.attention, model.ffn, strict=True)):
        groups[f"block {b}"] = [*attention.parameters(), *ffn.parameters()]
    if model.final_norm is not None:
        groups["final norm"] = list(model.final_norm.parameters())
    if model.lm_projection is not None:
        groups["lm projection"] = list(model.lm_projection.parameters())
    return groups


class GradientLog:
    """Gradient norm of each parameter group at every backward pass, before any clipping
    (chapter 5c).

    A post-accumulate hook on every parameter fires once per backward, after autograd
    has summed the contributions of all uses of that parameter; a backward pass is
    complete when every tracked parameter has fired, so every tracked parameter must
    receive a gradient in every backward. Call ``close()`` to detach.
    """

    def __init__(self, groups: Mapping[str, Sequence[nn.Parameter]]) -> None:
        if not groups or any(len(params) == 0 for params in groups.values()):
            raise ValueError(
                "groups must map each name to a non-empty list of parameters"
            )
        # one value per backward pass
        self.norms: dict[str, list[float]] = {name: [] for name in groups}
        self._group_of: dict[int, str] = {}
        for name, params in groups.items():
            for p in params:
                if id(p) in self._group_of:
                    raise ValueError(
                        "a parameter is in two groups: "
                        f"{self._group_of[id(p)]!r} and {name!r}"
                    )
                self._group_of[id(p)] = name
        self._pending: dict[str, float] = {}
        self._fired: set[int] = set()
        self._handles = [
            p.register_post_accumulate_grad_hook(self._record)
            for ps in groups.values()
            for p in ps
        ]

    def _record(self, p: torch.Tensor) -> None:
        if id(p) in self._fired:
            raise RuntimeError(
                "a parameter's gradient arrived twice before every tracked parameter "
                "had one"
            )
        self._fired.add(id(p))
        name = self._group_of[id(p)]
        self._pending[name] = (
            self._pending.get(name, 0.0) + p.grad.detach().float().square().sum().item()
        )
        if len(self._fired) == len(self._group_of):
            for group in self.norms:
                self.norms[group].append(math.sqrt(self._pending.get(group, 0.0)))
            self._pending, self._fired = {}, set()

    def total(self) -> list[float]:
        """The global gradient norm at every backward pass (what ``clip_grad_norm_``
        compares with its limit)."""
        return [
            math.sqrt(sum(values[i] ** 2 for values in self.norms.values()))
            for i in range(len(self))
        ]

    def __len__(self) -> int:
        return len(next(iter(self.norms.values())))

    def close(self) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles = []


def unrolled_copy(model: SharedTransformer) -> SharedTransformer:
    """An unshared model (strategy "none") whose layer i holds copies of the blocks
    layer i of ``model`` uses: the same function, one parameter set per use (chapter
    5c)."""
    check_instance("model", model, SharedTransformer, "a SharedTransformer")
    depth = len(model.attention_map)
    config = replace(
        model.config, strategy="none", n_unique=None, n_layers=depth, inner_group_num=1
    )
    # the copy's random init is overwritten: leave torch's RNG untouched
    with torch.random.fork_rng(devices=[]):
        copy = SharedTransformer(config).to(next(model.parameters()).device)
    state = {
        k: v
        for k, v in model.state_dict().items()
        if not k.startswith(("attention.", "ffn."))
    }
    for i, (a, f) in enumerate(zip(model.attention_map, model.ffn_map, strict=True)):
        state |= {
            f"attention.{i}.{k}": v for k, v in model.attention[a].state_dict().items()
        }
        state |= {f"ffn.{i}.{k}": v for k, v in model.ffn[f].state_dict().items()}
    copy.load_state_dict(state)
    return copy.train(model.training)


@dataclass(frozen=True)
class UseGradients:
    """Per sublayer set ("attention b", "ffn b"): the gradient of each use (from an
    unrolled copy) and the shared parameters' own gradient, all flattened; and the two
    models' losses on the batch."""

    # name -> [ (P,) gradient of use 1, ... ] in layer order
    per_use: dict[str, list[torch.Tensor]]
    shared: dict[str, torch.Tensor]  # name -> (P,) gradient of the shared parameters
    loss: float  # the shared model's loss
    unrolled_loss: float  # the unrolled copy's: the same function, so the same value


def _flat_gradients(
    loss: torch.Tensor, modules: Sequence[nn.Module]
) -> list[torch.Tensor]:
    """The gradient of ``loss`` with respect to each module's parameters, flattened into
    one (P,) vector each."""
    params = [list(m.parameters()) for m in modules]
    # no side effect on .grad
    grads = torch.autograd.grad(loss, [p for ps in params for p in ps])
    out, start = [], 0
    for ps in params:
        flat = torch.cat([g.flatten() for g in grads[start : start + len(ps)]])  # (P,)
        out.append(flat)
        start += len(ps)
    return out


def per_use_gradients(
    model: SharedTransformer, loss_fn: LossFn, batch: Batch
) -> UseGradients:
    """Gradients of ``loss_fn(model, batch)`` for every use of every shared sublayer,
    measured on an unrolled copy with its own parameters per use, next to the shared
    model's own gradients (chapter 5c). ``.grad`` is left untouched; with dropout the
    two forward passes draw different masks, so use ``model.eval()`` then."""
    unrolled = unrolled_copy(model)
    loss = loss_fn(model, batch)
    n_attention, n_ffn = len(model.attention), len(model.ffn)
    shared = _flat_gradients(loss, [*model.attention, *model.ffn])
    unrolled_loss = loss_fn(unrolled, batch)
    uses = _flat_gradients(unrolled_loss, [*unrolled.attention, *unrolled.ffn])
    depth = len(model.attention_map)
    per_use: dict[str, list[torch.Tensor]] = {}
    for kind, mapping, offset in (
        ("attention", model.attention_map, 0),
        ("ffn", model.ffn_map, depth),
    ):
        for layer, block in enumerate(mapping):
            per_use.setdefault(f"{kind} {block}", []).append(uses[offset + layer])
    names = [f"attention {b}" for b in range(n_attention)] + [
        f"ffn {b}" for b in range(n_ffn)
    ]
    return UseGradients(
        per_use,
        dict(zip(names, shared, strict=True)),
        loss.item(),
        unrolled_loss.item(),
    )


def gradient_coherence(gradients: Sequence[torch.Tensor]) -> tuple[float, float]:
    """For the gradients of N uses: ``||sum g|| / sum ||g||`` (1 when all point the same
    way, about 1/sqrt(N) when they are orthogonal and of equal size) and their mean
    pairwise cosine similarity."""
    if len(gradients) < 2:
        raise ValueError(
            f"gradients must hold at least two tensors (uses), got {len(gradients)}"
        )
    g = torch.stack([t.detach().double().flatten() for t in gradients])  # (N, P)
    ratio = g.sum(0).norm() / g.norm(dim=1).sum()
    unit = g / g.norm(dim=1, keepdim=True)  # (N, P)
    cosines = unit @ unit.T  # (N, N)
    n = len(gradients)
    mean_cosine = (cosines.sum() - cosines.diagonal().sum()) / (n * (n - 1))
    return ratio.item(), mean_cosine.item()


def trust_ratio(weight: torch.Tensor, update: torch.Tensor) -> float:
    """LAMB's layer-wise trust ratio ``||w|| / ||u||`` (You et al., 2020); 1 where
    either norm is zero."""
    # float64 stays float64, half precision is widened
    dtype = torch.promote_types(weight.dtype, torch.float32)
    w = weight.detach().to(dtype).norm().item()
    u = update.detach().to(dtype).norm().item()
    return w / u if w > 0 and u > 0 else 1.0


class Lamb(torch.optim.Optimizer):
    """LAMB (You et al., 2020, Algorithm 2): Adam's bias-corrected direction
    r = m_hat / (sqrt(v_hat) + eps) plus decoupled weight decay, u = r + lambda w, taken
    per tensor as the step ``lr * (||w|| / ||u||) * u`` (phi = identity).
    ``state[p]["trust_ratio"]`` keeps the last ratio of every tensor (chapter 5c)."""

    def __init__(
        self,
        params: Iterable[nn.Parameter] | Iterable[dict],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
    ) -> None:
        check_real("lr", lr, 0.0, open_minimum=True)
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        check_real("eps", eps, 0.0, open_minimum=True)
        check_real("weight_decay", weight_decay, 0.0)
        super().__init__(
            params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        )

    @torch.no_grad()
    def step(
        self, closure: Callable[[], torch.Tensor] | None = None
    ) -> torch.Tensor | None:
        """One LAMB step on every parameter with a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                state["m"].mul_(beta1).add_(p.grad, alpha=1 - beta1)
                state["v"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                m_hat = state["m"] / (1 - beta1**t)
                v_hat = state["v"] / (1 - beta2**t)
                update = (
                    m_hat / (v_hat.sqrt() + group["eps"]) + group["weight_decay"] * p
                )
                ratio = trust_ratio(p, update)
                state["trust_ratio"] = ratio
                p.add_(update, alpha=-group["lr"] * ratio)
        return loss


def optimizer_steps(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    get_batch: Callable[[str, torch.Generator], Batch],
    steps: int,
    seed: int,
    on_step: Callable[[int], None] | None = None,
) -> list[float]:
    """``steps`` plain optimizer steps (constant rate, no clipping) on training batches;
    the losses. ``on_step(step)`` is called after every optimizer step (step = 1 ..
    steps), e.g. to read the optimizer state."""
    check_int("steps", steps)
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    losses = []
    model.train()
    for _ in range(steps):
        batch = tuple(t.to(device) for t in get_batch("train", generator))
        loss = loss_fn(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if on_step is not None:
            on_step(len(losses))
    return losses


def trust_ratios(model: nn.Module, optimizer: Lamb) -> dict[str, float]:
    """The last trust ratio of every named parameter that ``optimizer`` has stepped."""
    return {
        name: optimizer.state[p]["trust_ratio"]
        for name, p in model.named_parameters()
        if p in optimizer.state
    }


def lr_warmup_grid(
    builders: Mapping[str, Callable[[], nn.Module]],
    loss_fn: LossFn,
    get_batch: Callable[[str, torch.Generator], Batch],
    lrs: Sequence[float],
    warmups: Sequence[int],
    train_config: TrainConfig,
) -> list[dict[str, object]]:
    """Train a fresh model of every label (``builders[label]()`` builds it) at each
    learning rate and warm-up with ``train_config``'s other settings; one row per run:
    label, lr, warmup, final validation loss (None: diverged)."""
    rows = []
    for label, build in builders.items():
        for lr in lrs:
            for warmup in warmups:
                model = build()
                settings = replace(
                    train_config, lr=lr, warmup=warmup, eval_every=train_config.steps
                )
                try:
                    val = train(model, loss_fn, get_batch, settings).val_loss[-1]
                except NonFiniteLossError:
                    val = None
                rows.append(
                    {"label": label, "lr": lr, "warmup": warmup, "val_loss": val}
                )
    return rows
