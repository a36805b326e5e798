"""The portability pass of `make test` re-runs every notebook under another CPU arithmetic path: show that the
path really changes the bits, by as little as deterministic arithmetic moves across machines."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from output_precision import RELATIVE_TOLERANCE

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import json, torch
import sharedlib as sl
torch.manual_seed(0)
config = sl.TransformerConfig(d_model=64, n_heads=4, d_ff=256, n_layers=4, strategy="all", vocab_size=256,
                              max_len=32, lm_head=True)
model = sl.SharedTransformer(config)
tokens = torch.randint(0, 256, (4, 32))  # (B, T)
loss = sl.next_token_loss(model, (tokens[:, :-1], tokens[:, 1:]))
loss.backward()
grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
print(json.dumps({"loss": loss.item(), "grad": grad[:4096].tolist(), "isa": torch.backends.cpu.get_cpu_capability()}))
"""


def perturbed_environment() -> dict[str, str]:
    """The variables the Makefile's portability pass sets (PERTURBED := A=x B=y ...)."""
    line = re.search(r"^PERTURBED := (.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE).group(1)
    return dict(pair.split("=", 1) for pair in line.split())


def run_probe(extra: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in perturbed_environment()} | extra
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_the_perturbed_path_changes_the_bits_but_not_the_precision_compared():
    variables = perturbed_environment()
    assert {"ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR"} <= set(variables)
    usual, perturbed = run_probe({}), run_probe(variables)
    assert perturbed["isa"] in ("AVX2", "DEFAULT")
    changed = [(a, b) for a, b in zip(usual["grad"], perturbed["grad"], strict=True) if a != b]
    assert changed, "the perturbed path computed the same bits: it tests nothing"
    distance = sum((a - b) ** 2 for a, b in zip(usual["grad"], perturbed["grad"], strict=True)) ** 0.5
    norm = sum(a**2 for a in usual["grad"]) ** 0.5
    assert distance / norm < RELATIVE_TOLERANCE / 10  # deterministic arithmetic moves far less than nbval allows
    assert abs(usual["loss"] - perturbed["loss"]) < RELATIVE_TOLERANCE * usual["loss"]


def test_make_test_runs_the_notebooks_again_under_the_perturbed_path():
    recipe = re.search(r"^test: .*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.MULTILINE).group(1)
    assert "$(PERTURBED) $(BIN)/python -m pytest notebooks" in recipe  # the portability pass
    assert "$(ONE_THREAD) $(BIN)/python -m pytest notebooks >" in recipe  # the usual nbval pass
    assert "$(BIN)/python -m pytest tests --durations=25;" in recipe  # the unit tests, slowest listed
    assert "[ $$notebooks -eq 0 ]" in recipe and "[ $$perturbed -eq 0 ]" in recipe  # every pass decides
