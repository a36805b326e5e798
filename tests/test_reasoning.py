"""The tiny recursive reasoner of chapter 5e: gradients through the last recursion only,
state detached between improvement steps, the deep-supervision loss, halting, counts and
FLOPs."""

import pytest
import torch
import torch.nn.functional as F

from sharedlib.config import TransformerConfig
from sharedlib.measure import count_forward_flops
from sharedlib.reasoning import (
    DeepSupervision,
    PlainSolver,
    ReasonerConfig,
    TinyRecursiveReasoner,
    reasoner_flops_per_cell,
    reasoner_parameters,
    solver_loss,
)

CONFIG = TransformerConfig(d_model=16, n_heads=2, d_ff=32, n_layers=2, vocab_size=5, max_len=9)


def model(n_latent=2, n_recursions=3, n_supervision=4, seed=0):
    torch.manual_seed(seed)
    return TinyRecursiveReasoner(CONFIG, ReasonerConfig(n_latent, n_recursions, n_supervision))


def puzzles(batch=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 5, (batch, 9), generator=g), torch.randint(1, 5, (batch, 9), generator=g)


def test_gradients_flow_through_the_last_recursion_only():
    m = model(n_latent=2, n_recursions=3)
    calls = {"forward": 0, "backward": 0}
    block = m.net.ffn[0]
    block.register_forward_hook(lambda *a: calls.__setitem__("forward", calls["forward"] + 1))
    block.register_full_backward_hook(lambda *a: calls.__setitem__("backward", calls["backward"] + 1))
    x = m.embed(puzzles()[0])
    (y, z), logits, halt = m.improve(x, *m.initial_state(x))
    (logits.sum() + halt.sum()).backward()
    assert calls["forward"] == 3 * (2 + 1)  # T (n + 1) applications
    assert calls["backward"] == 2 + 1  # the last recursion's n + 1 only
    assert y.grad_fn is None and z.grad_fn is None and not y.requires_grad


def test_the_state_is_detached_between_improvement_steps():
    m = model(n_latent=2, n_recursions=3)
    backward = []
    m.net.ffn[0].register_full_backward_hook(lambda *a: backward.append(1))
    x = m.embed(puzzles()[0])
    state, _, _ = m.improve(x, *m.initial_state(x))
    _, second, _ = m.improve(x, *state)
    second.sum().backward()
    # only step 2's last recursion: without the detach, step 1's would follow
    assert len(backward) == 2 + 1


def test_deep_supervision_feeds_one_batch_and_sums_the_right_losses():
    m = model(n_supervision=3).train()
    data = puzzles()
    source = DeepSupervision(lambda split, g: data, n_supervision=3)
    g = torch.Generator()
    batch = source.get_batch("train", g)
    loss = source.loss_fn(m, batch)
    # by hand, from the same initial state
    x = m.embed(data[0])
    (y, _), logits, halt = m.improve(x, *m.initial_state(x))
    right = (logits.argmax(-1) == data[1]).all(-1).float()
    expected = (F.cross_entropy(logits.transpose(1, 2), data[1], reduction="none").mean(-1)
                + F.binary_cross_entropy_with_logits(halt, right, reduction="none")).mean()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(source.state[0], y)  # carried to the next step
    assert source.get_batch("train", g) is batch  # the same puzzles, step 2


def test_halting_takes_puzzles_out_and_brings_new_ones():
    m = model(n_supervision=4).train()
    drawn = []

    def fresh(split, g):
        drawn.append(puzzles(seed=len(drawn)))
        return drawn[-1]

    with torch.no_grad():
        m.halt_head.bias.fill_(10.0)  # every puzzle claims to be solved
    source = DeepSupervision(fresh, n_supervision=4)
    g = torch.Generator()
    source.loss_fn(m, source.get_batch("train", g))
    assert not source.active.any()
    source.get_batch("train", g)
    assert len(drawn) == 2  # all halted: a new batch at once
    with torch.no_grad():
        m.halt_head.bias.fill_(-10.0)  # none halts: N_sup steps on one batch
    source = DeepSupervision(fresh, n_supervision=4)
    for _ in range(4):
        source.loss_fn(m, source.get_batch("train", g))
    assert len(drawn) == 3
    source.get_batch("train", g)
    assert len(drawn) == 4


def test_counts_and_flops_are_exact():
    m = model().eval()
    assert reasoner_parameters(CONFIG) == sum(p.numel() for p in m.parameters())
    x = m.embed(puzzles(batch=2)[0])
    y, z = m.initial_state(x)
    counted = count_forward_flops(lambda: m.improve(x, y, z))
    per_cell = reasoner_flops_per_cell(CONFIG, m.reasoner, 9)
    assert counted == 2 * 9 * per_cell + 2 * 2 * CONFIG.d_model  # + the halting head per puzzle


def test_solve_returns_an_answer_per_improvement_step_and_bad_settings_are_refused():
    m = model(n_supervision=5).eval()
    assert m.solve(puzzles()[0]).shape == (5, 3, 9)
    with pytest.raises(ValueError, match="n_latent"):
        ReasonerConfig(n_latent=0)
    with pytest.raises(ValueError, match="causal"):
        TinyRecursiveReasoner(TransformerConfig(d_model=16, n_heads=2, causal=True), ReasonerConfig())


def test_the_plain_solver_is_one_pass_with_the_same_network_and_head():
    torch.manual_seed(0)
    plain = PlainSolver(CONFIG).eval()
    recursive = model()
    own = {n for n, _ in recursive.named_parameters()} - {"y_init", "z_init", "halt_head.weight", "halt_head.bias"}
    assert {n for n, _ in plain.named_parameters()} == own  # the network and the answer head
    puzzle, solution = puzzles()
    answers = plain.solve(puzzle, n_supervision=7)
    assert answers.shape == (1, 3, 9)
    logits = plain.answer_head(plain.net.encode(plain.net.embeddings(puzzle)))
    torch.testing.assert_close(plain(puzzle), logits)
    expected = F.cross_entropy(logits.reshape(-1, CONFIG.vocab_size), solution.reshape(-1))
    torch.testing.assert_close(solver_loss(plain, (puzzle, solution)), expected)
    with pytest.raises(ValueError, match="lm_head"):
        PlainSolver(TransformerConfig(d_model=16, n_heads=2, lm_head=True))
