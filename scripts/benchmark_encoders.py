"""Forward+backward time of the book's encoder vs Hugging Face AlbertModel vs torch.nn.TransformerEncoder.

    .venv/bin/python scripts/benchmark_encoders.py [--batch 8 --seq 128 --repeats 7 --device cpu --threads 2]

Same ALBERT-base shape (H=768, 12 heads, d_ff=3072, 12 layers, all shared, E=128), float32, dropout off.
Ours vs ALBERT: whole models from token ids. Ours vs PyTorch: the layer stacks on the same hidden states.
Writes the raw per-repeat seconds of every step, taken in turns, with provenance, atomically to
``notebooks/results/benchmark_encoders.<profile>.json`` (chapter 6b recomputes its statistics from them).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time

import torch
import transformers
from torch import nn
from transformers import AlbertConfig, AlbertModel

import sharedlib as sl
from sharedlib.bench import forward_backward, paired_ratio_interval, time_interleaved
from sharedlib.recorded import provenance, write_recorded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (CPU)")
    args = parser.parse_args()
    if args.repeats < 2 or args.threads < 1:
        parser.error("--repeats must be >= 2 (paired intervals) and --threads >= 1")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    device = sl.resolve_device(args.device)
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
    command = shlex.join([".venv/bin/python", "scripts/benchmark_encoders.py", *sys.argv[1:]])
    device_name = f"{device.type}, {torch.get_num_threads()} threads" if device.type == "cpu" else str(device)
    profile = "cpu" if device.type == "cpu" else "gpu"
    data = {"provenance": provenance(command, device_name, time.perf_counter() - start), "runs": [run]}
    data["provenance"]["transformers"] = transformers.__version__
    write_recorded("benchmark_encoders", profile, data)


if __name__ == "__main__":
    main()
