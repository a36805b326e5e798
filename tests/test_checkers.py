"""The exercise checkers added for chapters 2, 4, 5, 5b and 6b: a right answer passes, a wrong one gets a message
that names the failing input, the expected value and a hint, and a misuse names the argument."""

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

import sharedlib as sl
from sharedlib.book import exercises
from sharedlib.decoding import decode_step
from sharedlib.relaxed import delta_parameters
from sharedlib.universal import act_weights

BASE = sl.TransformerConfig(d_model=768, n_heads=12, d_ff=3072, n_layers=12, strategy="all")


def test_flops_per_token_checker():
    assert exercises.check_flops_per_token(lambda c, t: sum(sl.forward_flops_per_token(c, t).values())).startswith(
        "correct"
    )

    def per_unique_block(config, seq_len):  # counts the blocks kept, not the layers applied
        H, F, T = config.d_model, config.d_ff, seq_len
        blocks = sl.n_parameter_sets(config.strategy, config.n_layers, config.n_unique,
                                     inner_group_num=config.inner_group_num)
        parts = sl.forward_flops_per_token(config, seq_len)
        return parts["embedding_projection"] + parts["lm_head"] + blocks * (8 * H * H + 4 * T * H + 4 * H * F)

    with pytest.raises(AssertionError, match=r"at T=\d+ expected [\d,]+ FLOPs per token .*you counted \d+ unique"):
        exercises.check_flops_per_token(per_unique_block)
    with pytest.raises(AssertionError, match=r"a multiply-add is 2 FLOPs"):
        exercises.check_flops_per_token(lambda c, t: sum(sl.forward_flops_per_token(c, t).values()) // 2)


def test_training_step_flops_checker():
    forward = 8 * 512 * sum(sl.forward_flops_per_token(BASE, 512).values())
    assert exercises.check_training_step_flops(3 * forward, BASE, 8, 512).startswith("correct")
    assert exercises.check_training_step_flops(float(3 * forward), BASE, 8, 512).startswith("correct")
    with pytest.raises(AssertionError, match=r"B=8, T=512, depth 12, .* forward pass alone"):
        exercises.check_training_step_flops(forward, BASE, 8, 512)
    with pytest.raises(AssertionError, match=r"backward pass costs twice"):
        exercises.check_training_step_flops(2 * forward, BASE, 8, 512)
    with pytest.raises(AssertionError, match=r"too small; .*sharing does not") as error:
        exercises.check_training_step_flops(3 * forward / 12, BASE, 8, 512)  # one block's worth
    assert f"{3 * forward:.4g}" not in str(error.value)  # the value is not given away
    with pytest.raises(AssertionError, match=r"too large; is the config you pass the one you counted for"):
        exercises.check_training_step_flops(30 * forward, BASE, 8, 512)


def test_training_step_is_three_forwards_when_measured():
    """The checker's 3x rule against FlopCounterMode on a real forward and backward pass."""
    config = sl.TransformerConfig(d_model=32, n_heads=4, d_ff=64, n_layers=3, strategy="all", vocab_size=50,
                                  max_len=16, lm_head=True, causal=True)
    torch.manual_seed(0)
    model = sl.SharedTransformer(config)
    ids = torch.randint(0, 50, (2, 16))
    measured = sl.count_forward_flops(lambda: model.logits(model(ids)).sum().backward())
    assert exercises.check_training_step_flops(measured, config, 2, 16).startswith("correct")


def test_break_even_rank_checker():
    unshared = sl.count_parameters(replace(BASE, strategy="none"))
    rank = math.ceil((unshared - sl.count_parameters(BASE)) / delta_parameters(BASE, 1))  # closed form
    assert exercises.check_break_even_rank(rank, BASE).startswith("correct")
    with pytest.raises(AssertionError, match=rf"at r={rank - 1} .* still fewer than .*{unshared:,}: r is too small"):
        exercises.check_break_even_rank(rank - 1, BASE)
    with pytest.raises(AssertionError, match=rf"r={rank + 1} is not the smallest: r={rank} already gives"):
        exercises.check_break_even_rank(rank + 1, BASE)
    with pytest.raises(AssertionError, match="a rank is at least 1"):
        exercises.check_break_even_rank(0, BASE)
    for wrong in (rank - 1, rank + 1, 1):  # the feedback never states the answer
        with pytest.raises(AssertionError) as error:
            exercises.check_break_even_rank(wrong, BASE)
        assert f"r={rank}" not in str(error.value) or wrong == rank + 1


def test_activation_memory_checker():
    assert exercises.check_activation_memory(sl.activation_values_per_token).startswith("correct")

    def per_unique_block(config):
        blocks = sl.n_parameter_sets(config.strategy, config.n_layers, config.n_unique,
                                     inner_group_num=config.inner_group_num)
        return blocks * (sl.activation_values_per_token(config) // config.depth)

    with pytest.raises(AssertionError, match=r"\(depth \d+\) expected [\d,]+ values .*you counted \d+ unique blocks"):
        exercises.check_activation_memory(per_unique_block)
    with pytest.raises(AssertionError, match=r"per applied layer, list what each LayerNorm"):
        exercises.check_activation_memory(lambda c: c.depth * (8 * c.d_model + 2 * c.d_ff))  # forgets the stats

    def ignores_norm_and_activation(c):  # the GELU, LayerNorm inventory for every config
        return sl.activation_values_per_token(replace(c, norm="pre", activation="gelu"))

    with pytest.raises(AssertionError, match=r"without LayerNorms keeps no LayerNorm values.*ReLU"):
        exercises.check_activation_memory(ignores_norm_and_activation)


def test_halting_rule_checker():
    assert exercises.check_halting_rule(act_weights).startswith("correct")

    def no_remainder(p, threshold):  # keeps p_N at the halting step instead of R
        weights, steps, remainders = act_weights(p, threshold)
        chosen = torch.nn.functional.one_hot(steps - 1, p.shape[0]).movedim(-1, 0).bool()  # (S, B, T)
        return torch.where(chosen, p, weights), steps, remainders

    with pytest.raises(AssertionError, match=r"weights \(S, B, T\) at \(\d+, \d+, \d+\), threshold .* expected"):
        exercises.check_halting_rule(no_remainder)

    def detached(p, threshold):
        weights, steps, remainders = act_weights(p.detach(), threshold)
        return weights.requires_grad_(), steps, remainders

    with pytest.raises(AssertionError, match=r"the values agree but the gradient"):
        exercises.check_halting_rule(detached)


def test_attention_mask_checker():
    def right(mask, convention):
        return ~mask if convention == "padding" else mask == 0

    assert exercises.check_attention_mask(right).startswith("correct")
    with pytest.raises(AssertionError, match=r"padding mask .* expected .*True marks padding there: invert it"):
        exercises.check_attention_mask(lambda mask, convention: mask.bool())
    with pytest.raises(AssertionError, match=r"additive mask .* compare with 0"):
        exercises.check_attention_mask(lambda mask, kind: ~mask.bool() if kind == "padding" else mask.bool())
    with pytest.raises(AssertionError, match=r"expected a bool tensor of shape \(1, 1\), got torch.int64"):
        exercises.check_attention_mask(lambda mask, convention: (~mask.bool()).long())


def test_kv_cache_step_checker():
    assert exercises.check_kv_cache_step(lambda model, token, cache: decode_step(model, token, cache)[0]).startswith(
        "correct"
    )

    def recompute_without_cache(model, token, cache):  # forgets the cached positions: attends to itself only
        x = model.embeddings(token[:, None], start=cache.length)
        for layer_cache, (a, f) in zip(cache.layers, cache.schedule, strict=True):
            layer_cache.length += 1
            x = model.ffn[f](model.attention[a](x))
        return model.logits(model.final_norm(x) if model.final_norm is not None else x)[:, -1]

    with pytest.raises(AssertionError, match=r"strategy 'none' .* position 4: logits differ .* its own cache entry"):
        exercises.check_kv_cache_step(recompute_without_cache)

    def does_not_append(model, token, cache):
        logits, cache = decode_step(model, token, cache)
        cache.crop(cache.length - 1)
        return logits

    with pytest.raises(AssertionError, match=r"should hold 5 positions after the step, it holds 4"):
        exercises.check_kv_cache_step(does_not_append)

    def forgets_final_norm(model, token, cache):  # the layers right, the pre-norm model's last LayerNorm left out
        final, model.final_norm = model.final_norm, None
        try:
            return decode_step(model, token, cache)[0]
        finally:
            model.final_norm = final

    with pytest.raises(AssertionError, match=r"logits differ .*final LayerNorm of a pre-norm model"):
        exercises.check_kv_cache_step(forgets_final_norm)


class SharedStack(nn.Module):
    def __init__(self, width, depth):
        super().__init__()
        self.linear, self.depth = nn.Linear(width, width), depth

    def forward(self, x):
        for i in range(self.depth):
            x = self.linear(x if i == 0 else torch.relu(x))
        return x


def test_shared_stack_checker():
    import copy

    assert exercises.check_shared_stack(SharedStack).startswith("correct")
    with pytest.raises(AssertionError, match=r"width=4, depth=3 expected 20 parameters .* got 60: .*3 layers' worth"):
        exercises.check_shared_stack(lambda w, d: nn.Sequential(*[copy.deepcopy(nn.Linear(w, w)) for _ in range(d)]))

    class Detached(SharedStack):
        def forward(self, x):
            for i in range(self.depth):
                weight = self.linear.weight if i == self.depth - 1 else self.linear.weight.detach()
                x = nn.functional.linear(x if i == 0 else torch.relu(x), weight, self.linear.bias)
            return x

    with pytest.raises(AssertionError, match=r"width=4, depth=3: the weight's gradient is not the sum of its 3 uses"):
        exercises.check_shared_stack(Detached)
    with pytest.raises(AssertionError, match=r"width=4, depth=3: the output differs"):
        exercises.check_shared_stack(lambda w, d: nn.Sequential(nn.Linear(w, w)))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: exercises.check_flops_per_token("6 * N"), "fn must be a function"),
        (lambda: exercises.check_flops_per_token(lambda c, t: 0, trials=0), "trials must be a positive"),
        (lambda: exercises.check_training_step_flops("1e12", BASE, 8, 512), "value must be a finite real number"),
        (lambda: exercises.check_training_step_flops(1e12, {"d_model": 768}, 8, 512), "config must be a sharedlib"),
        (lambda: exercises.check_training_step_flops(1e12, BASE, 0, 512), "batch_size must be a positive"),
        (lambda: exercises.check_training_step_flops(1e12, BASE, 8, 5.0), "seq_len must be a positive"),
        (lambda: exercises.check_break_even_rank(100, replace(BASE, strategy="none")), "config.strategy must be 'all'"),
        (lambda: exercises.check_break_even_rank(100.5, BASE), "value must be an integer rank"),
        (lambda: exercises.check_activation_memory(None), "fn must be a function"),
        (lambda: exercises.check_halting_rule(act_weights, trials=-1), "trials must be a positive"),
        (lambda: exercises.check_attention_mask(torch.ones(2, 3)), "fn must be a function"),
        (lambda: exercises.check_kv_cache_step(decode_step, steps=9), r"steps must be an integer in 1\.\.8, got 9"),
        (lambda: exercises.check_kv_cache_step(decode_step, steps=0), r"steps must be an integer in 1\.\.8, got 0"),
        (lambda: exercises.check_shared_stack(nn.Linear(4, 4).weight), "fn must be a function"),
    ],
)
def test_new_checkers_name_the_wrong_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_raising_student_function_is_reported_with_its_input():
    with pytest.raises(AssertionError, match=r"your function raised ZeroDivisionError: .* for seq_len \d+ and config"):
        exercises.check_flops_per_token(lambda c, t: 1 / 0)
    with pytest.raises(AssertionError, match=r"raised NotImplementedError: .* for width=3, depth=1"):
        exercises.check_shared_stack(lambda w, d: (_ for _ in ()).throw(NotImplementedError("todo")))


def test_linear_cka_checker():
    from sharedlib.similarity import linear_cka

    assert exercises.check_linear_cka(linear_cka).startswith("correct")

    def uncentred(x, y):  # forgets to centre the columns
        return ((y.T @ x).norm() ** 2 / ((x.T @ x).norm() * (y.T @ y).norm())).item()

    with pytest.raises(AssertionError, match=r"expected CKA .* you did not centre the features"):
        exercises.check_linear_cka(uncentred)

    def square_root(x, y):  # the numerator not squared
        return linear_cka(x, y) ** 0.5

    with pytest.raises(AssertionError, match=r"square root of CKA"):
        exercises.check_linear_cka(square_root)
    with pytest.raises(AssertionError, match=r"expected a number"):
        exercises.check_linear_cka(lambda x, y: "high")
    with pytest.raises(ValueError, match="fn must be a function"):
        exercises.check_linear_cka(0.5)
    with pytest.raises(ValueError, match="trials must be a positive"):
        exercises.check_linear_cka(linear_cka, trials=0)


def test_shared_gradient_checker():
    assert exercises.check_shared_gradient(exercises.shared_weight_gradient).startswith("correct")

    def last_use_only(weight, x, n_uses):  # the contribution of the last use: forgets the sum
        h = x
        for _ in range(n_uses - 1):
            h = weight @ h
        return torch.outer(weight @ h, h)

    with pytest.raises(AssertionError, match=r"n_uses=2 .* last use's contribution only"):
        exercises.check_shared_gradient(last_use_only)
    with pytest.raises(AssertionError, match=r"n times the last use's contribution"):
        exercises.check_shared_gradient(lambda w, x, n: n * last_use_only(w, x, n))
    with pytest.raises(AssertionError, match=r"expected a \(3, 3\) tensor, got \(3,\)"):
        exercises.check_shared_gradient(lambda w, x, n: x)
    with pytest.raises(AssertionError, match=r"raised RuntimeError: .* for a \(3, 3\) weight used n_uses=1 times"):
        exercises.check_shared_gradient(lambda w, x, n: (_ for _ in ()).throw(RuntimeError("todo")))
    with pytest.raises(ValueError, match="fn must be a function"):
        exercises.check_shared_gradient(None)


def test_halting_rule_checker_tells_greater_equal_from_greater():
    def strictly_greater(p, threshold):  # halts only once the sum exceeds the threshold
        return act_weights(p, threshold + 1e-12)

    with pytest.raises(AssertionError, match=r"threshold 0.5, for probabilities \[0.25, 0.25, .*>= threshold"):
        exercises.check_halting_rule(strictly_greater)


def test_tensor_layout_refuses_unknown_axis_names():
    with pytest.raises(ValueError, match=r"answer must use the axis names .* got \['seq'\]"):
        exercises.check_tensor_layout(("seq", "batch", "features"))
