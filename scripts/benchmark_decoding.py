"""Per-token decoding latency and memory with a K/V cache, shared ("all") vs unshared ("none") at equal depth.

    .venv/bin/python scripts/benchmark_decoding.py [--threads 2 --repeats 15 --prompt 32 --new-tokens 16]

Two sizes (fp32 weights): d_model=128, 6 layers (unshared ~4.7 MB, fits the L3 cache) and d_model=768, 12 layers
(~340 MB unshared vs ~28 MB shared), each at batch 1 and batch 64. One timed call = ``--new-tokens`` decode steps
after a prefill of ``--prompt`` tokens (the cache is cropped back to the prompt before each call); the two models
take turns (``time_interleaved``). Writes ``notebooks/results/decoding.<profile>.json`` (chapter 6b) atomically,
or ``--output``; a recorded file that the new settings would shrink (fewer runs or repeats) is refused, before any
work, unless ``--force``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch

import sharedlib as sl
from sharedlib.bench import paired_ratio_interval, time_interleaved
from sharedlib.decoding import decode_step, prefill
from sharedlib.experiments.recorded import check_output, provenance, recorded_file, replacement_problem, write_recorded

SIZES = {"small": (128, 6), "large": (768, 12)}  # d_model, layers
VOCAB = 256  # bytes: keeps the (shared, unsplit) embedding table small next to the layer weights


def measure(d_model: int, n_layers: int, batch: int, args: argparse.Namespace) -> dict[str, object]:
    """One size at one batch size: raw per-token seconds of both models, their weight and cache bytes."""
    total = args.prompt + args.new_tokens
    models, caches, weights = {}, {}, {}
    generator = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, VOCAB, (batch, args.prompt), generator=generator)  # (B, T)
    tokens = torch.randint(0, VOCAB, (args.new_tokens, batch), generator=generator)  # fed one per step
    for strategy in ("none", "all"):
        torch.manual_seed(0)
        config = sl.TransformerConfig(d_model=d_model, n_heads=d_model // 64, d_ff=4 * d_model, n_layers=n_layers,
                                      strategy=strategy, vocab_size=VOCAB, max_len=total, causal=True, lm_head=True)
        models[strategy] = sl.SharedTransformer(config).eval()
        weights[strategy] = sum(p.numel() * p.element_size() for p in models[strategy].parameters())
        _, caches[strategy] = prefill(models[strategy], prompt, capacity=total)

    def steps_of(strategy: str):
        model, cache = models[strategy], caches[strategy]

        def step() -> None:
            cache.crop(args.prompt)
            for token in tokens:
                decode_step(model, token, cache)

        return step

    times = time_interleaved({s: steps_of(s) for s in models}, repeats=args.repeats, warmup=args.warmup)
    per_token = {s: [t / args.new_tokens for t in ts] for s, ts in times.items()}
    interval = paired_ratio_interval(per_token["all"], per_token["none"])
    return {
        "d_model": d_model,
        "n_layers": n_layers,
        "n_heads": d_model // 64,
        "d_ff": 4 * d_model,
        "vocab_size": VOCAB,
        "batch": batch,
        "prompt": args.prompt,
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "weight_bytes": weights,
        "kv_cache_bytes": {s: c.nbytes() for s, c in caches.items()},  # after prompt + new tokens
        "seconds_per_token": per_token,  # raw, one value per interleaved repeat
        "shared_over_unshared": {"median": interval.median, "low": interval.low, "high": interval.high,
                                 "level": interval.level},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--profile", default="cpu", choices=["cpu"], help="CPU only: the script never uses a GPU")
    parser.add_argument("--name", default="decoding", help="written to notebooks/results/<name>.<profile>.json")
    parser.add_argument("--output", type=Path, default=None, help="write here instead (default: see --name)")
    parser.add_argument("--force", action="store_true", help="replace a recorded file even if it holds more")
    args = parser.parse_args(argv)
    for name in ("threads", "repeats", "prompt", "new_tokens"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    try:  # before any work: a benchmark that cannot be written is not started
        output = check_output(args.output or recorded_file(args.name, args.profile))
    except (ValueError, OSError) as error:
        parser.error(str(error))
    planned = [{"size": size, "batch": batch, "prompt": args.prompt, "new_tokens": args.new_tokens,
                "repeats": args.repeats} for size in args.sizes for batch in args.batches]
    problem = None if args.force else replacement_problem(output, planned)
    if problem:
        parser.error(problem)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    runs = []
    with torch.inference_mode():
        for size in args.sizes:
            for batch in args.batches:
                runs.append({"size": size, **measure(*SIZES[size], batch, args)})
    command = shlex.join([".venv/bin/python", "scripts/benchmark_decoding.py", *(sys.argv[1:] if argv is None
                                                                                  else argv)])
    device = f"cpu, {torch.get_num_threads()} threads"
    data = {"provenance": provenance(command, device, time.perf_counter() - start), "runs": runs}
    print(write_recorded(args.name, args.profile, data, force=args.force, path=output))


if __name__ == "__main__":
    main()
