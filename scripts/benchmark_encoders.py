"""Forward+backward time of the book's encoder vs Hugging Face AlbertModel vs torch.nn.TransformerEncoder.

    .venv/bin/python scripts/benchmark_encoders.py [--batch 8 --seq 128 --repeats 7 --device cpu --threads 2]

Same ALBERT-base shape (H=768, 12 heads, d_ff=3072, 12 layers, all shared, E=128), float32, dropout off.
Ours vs ALBERT: whole models from token ids. Ours vs PyTorch: the layer stacks on the same hidden states.
Writes the raw per-repeat seconds of every step, taken in turns, with provenance, atomically to
``notebooks/results/benchmark_encoders.<profile>.json`` (chapter 6b recomputes its statistics from them), or to
``--output``; a recorded file that the new settings would shrink (other sizes, fewer repeats) is refused, before any
work, unless ``--force``.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
import transformers
from torch import nn
from transformers import AlbertConfig, AlbertModel

import sharedlib as sl
from sharedlib.bench import forward_backward, paired_ratio_interval, time_interleaved
from sharedlib.experiments.recorded import check_output, provenance, recorded_file, replacement_problem, write_recorded


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (CPU)")
    parser.add_argument("--output", type=Path, default=None,
                        help="write here instead of notebooks/results/benchmark_encoders.<profile>.json")
    parser.add_argument("--force", action="store_true", help="replace a recorded file even if it holds more")
    args = parser.parse_args(argv)
    if args.repeats < 2 or args.threads < 1:
        parser.error("--repeats must be >= 2 (paired intervals) and --threads >= 1")
    try:
        device = sl.resolve_device(args.device)
    except ValueError as error:
        parser.error(str(error))
    profile = "cpu" if device.type == "cpu" else "gpu"
    try:  # before any work: a benchmark that cannot be written is not started
        output = check_output(args.output or recorded_file("benchmark_encoders", profile))
    except (ValueError, OSError) as error:
        parser.error(str(error))
    problem = None if args.force else replacement_problem(
        output, [{"batch": args.batch, "seq": args.seq, "repeats": args.repeats}])
    if problem:
        parser.error(problem)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    torch.manual_seed(0)
    config = AlbertConfig(  # ALBERT-base (AlbertConfig's own defaults are the xxlarge shape)
        embedding_size=128,
        hidden_size=768,
        num_attention_heads=12,
        intermediate_size=3072,
        num_hidden_layers=12,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    albert = AlbertModel(config, add_pooling_layer=False).to(device).train()
    ours = sl.from_albert(albert).to(device).train()
    layer = nn.TransformerEncoderLayer(768, 12, 3072, dropout=0.0, activation="gelu", batch_first=True)
    reference = nn.TransformerEncoder(layer, 12, enable_nested_tensor=False)
    reference.layers = nn.ModuleList([layer] * 12)  # shared, like ALBERT
    reference = reference.to(device).train()
    ids = torch.randint(0, config.vocab_size, (args.batch, args.seq), device=device)
    hidden = torch.randn(args.batch, args.seq, 768, device=device)
    steps = {
        "sharedlib": forward_backward(lambda: ours(ids)),
        "hf_albert": forward_backward(lambda: albert(ids).last_hidden_state),
        "sharedlib_stack": forward_backward(lambda: ours.encode(hidden)),
        "torch_encoder": forward_backward(lambda: reference(hidden)),
    }
    times = time_interleaved(steps, repeats=args.repeats)
    pairs = {"sharedlib_over_hf_albert": ("sharedlib", "hf_albert"),
             "sharedlib_stack_over_torch_encoder": ("sharedlib_stack", "torch_encoder")}
    run = {
        "batch": args.batch,
        "seq": args.seq,
        "repeats": args.repeats,
        "seconds": times,  # raw: one value per interleaved repeat, per step
        "median_seconds": {k: statistics.median(v) for k, v in times.items()},
    }
    for name, (a, b) in pairs.items():
        interval = paired_ratio_interval(times[a], times[b])
        run[name] = {"median": interval.median, "low": interval.low, "high": interval.high, "level": interval.level}
    command = shlex.join([".venv/bin/python", "scripts/benchmark_encoders.py", *(sys.argv[1:] if argv is None
                                                                                  else argv)])
    device_name = f"{device.type}, {torch.get_num_threads()} threads" if device.type == "cpu" else str(device)
    data = {"provenance": provenance(command, device_name, time.perf_counter() - start), "runs": [run]}
    data["provenance"]["transformers"] = transformers.__version__
    print(write_recorded("benchmark_encoders", profile, data, force=args.force, path=output))


if __name__ == "__main__":
    main()
