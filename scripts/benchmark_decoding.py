"""Per-token decoding latency and memory with a K/V cache, shared ("all") vs unshared ("none") at equal depth.

    .venv/bin/python scripts/benchmark_decoding.py [--threads 2 --repeats 15 --prompt 32 --new-tokens 16]
    .venv/bin/python scripts/benchmark_decoding.py --sweep [--sweep-points 12 --sweep-layers 12]

Two sizes (fp32 weights): d_model=128, 6 layers (unshared ~4.7 MB, fits the L3 cache) and d_model=768, 12 layers
(~340 MB unshared vs ~28 MB shared), each at batch 1 and batch 64. One timed call = ``--new-tokens`` decode steps
after a prefill of ``--prompt`` tokens (the cache is cropped back to the prompt before each call); the two models
take turns (``time_interleaved``). Writes ``notebooks/results/decoding.<profile>.json`` (chapter 6b) atomically,
or ``--output``; a recorded file that the new settings would shrink (fewer runs or repeats) is refused, before any
work, unless ``--force``.

``--sweep`` tests why sharing can decode faster at batch 1 (a block just applied is still in cache): at batch 1 and
fixed depth, log-spaced widths take the unshared layers' weights from well inside L2 (a quarter of it) to well
beyond the last-level cache (4 times L3, at most 2 GiB), and each width records both models' per-token time, the
median paired ratio shared/unshared with a bootstrap interval, the bytes of the shared block, of the unshared
layers and of the K/V cache at the end. The prediction: a ratio near 1 while everything fits, below 1 once the
unshared layers exceed L3 while the shared block still fits. Written to ``notebooks/results/decoding_sweep.<profile>
.json``. Every file records the machine's cache sizes (``provenance.cpu_caches``: L1d, L2, L3 from Linux sysfs, else
``lscpu``; None where unknown).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
import shutil
import subprocess
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
SYSFS_CACHE = Path("/sys/devices/system/cpu/cpu0/cache")
CACHE_LEVELS = ("L1d", "L2", "L3")
# the sweep's grid when the machine's caches are unknown (a typical laptop/server core)
ASSUMED_CACHES = {"L2": 1 << 20, "L3": 32 << 20}
SWEEP_MAX_BYTES = 2 << 30  # unshared layer weights: a cap on memory and time
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10, "M": 1 << 20, "MB": 1 << 20, "MIB": 1 << 20,
          "G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30}


# ---------------------------------------------------------------------------------------------------- cache sizes
def parse_size(text: str) -> int | None:
    """Bytes of a cache size as sysfs or lscpu write it ('48K', '2048K', '2 MiB', '1.5 MiB'); None if unreadable."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([KMG]?(?:i?B)?)\s*", text, flags=re.IGNORECASE)
    if not match or match[2].upper() not in _UNITS:
        return None
    try:
        return round(float(match[1]) * _UNITS[match[2].upper()])
    except ValueError:
        return None


def _cpu_count(cpu_list: str) -> int | None:
    """CPUs in a sysfs list such as '0-1,4,6-7'; None if unreadable."""
    try:
        return sum(int(b) - int(a) + 1 if "-" in part else 1
                   for part in cpu_list.strip().split(",") for a, _, b in [part.partition("-")])
    except ValueError:
        return None


def _empty_caches(source: str | None) -> dict[str, object]:
    return {"source": source, **{level: None for level in CACHE_LEVELS}}


def sysfs_caches(root: Path | None = None) -> dict[str, object]:
    """L1d, L2, L3 of cpu0 from Linux sysfs (``root``, default ``SYSFS_CACHE``: ``index*/{level,type,size,
    shared_cpu_list}``): each ``{"bytes": size of one instance, "shared_cpu_list": the logical CPUs sharing it,
    "shared_by": how many}``, or None if absent."""
    root = SYSFS_CACHE if root is None else root
    caches = _empty_caches(None)
    for index in sorted(root.glob("index*")) if root.is_dir() else []:
        try:
            level, kind, size = ((index / name).read_text().strip() for name in ("level", "type", "size"))
        except OSError:
            continue
        name = f"L{level}" + ("d" if level == "1" else "")
        if name not in CACHE_LEVELS or (level == "1" and kind != "Data") or kind == "Instruction":
            continue
        try:
            shared = (index / "shared_cpu_list").read_text().strip()
        except OSError:
            shared = None
        caches[name] = {"bytes": parse_size(size), "shared_cpu_list": shared,
                        "shared_by": _cpu_count(shared) if shared else None}
        caches["source"] = str(root)
    return caches


def parse_lscpu(text: str) -> dict[str, object]:
    """L1d, L2, L3 from ``lscpu``'s summary ('L2 cache: 4 MiB (2 instances)' is 2 MiB per instance; older versions
    write one instance's size, '2048K'); levels it does not name are None."""
    caches = _empty_caches("lscpu")
    for line in text.splitlines():
        match = re.match(r"\s*(L1d|L2|L3) cache:\s*([^(]+?)\s*(?:\((\d+) instances?\))?\s*$", line)
        if match and (size := parse_size(match[2])) is not None:
            instances = int(match[3]) if match[3] else None
            caches[match[1]] = {"bytes": size // instances if instances else size, "instances": instances}
    return caches


def cpu_caches() -> dict[str, object]:
    """The machine's cache sizes: Linux sysfs, else ``lscpu``, else None for each level (e.g. macOS, Windows)."""
    caches = sysfs_caches()
    if any(caches[level] for level in CACHE_LEVELS):
        return caches
    if shutil.which("lscpu"):
        try:
            out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=True,
                                 env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"}).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        caches = parse_lscpu(out)
        if any(caches[level] for level in CACHE_LEVELS):
            return caches
    return _empty_caches(None)


def cache_bytes(caches: dict[str, object], level: str) -> int | None:
    """Bytes of one instance of ``level`` ('L2', 'L3'), None if unknown."""
    entry = caches.get(level)
    return entry.get("bytes") if isinstance(entry, dict) else None


# ---------------------------------------------------------------------------------------------------------- sweep
def layer_bytes(d_model: int, n_layers: int) -> int:
    """fp32 bytes of ``n_layers`` distinct (attention, FFN) blocks at d_ff = 4 d: 12 d^2 + 13 d parameters each."""
    return 4 * n_layers * (12 * d_model * d_model + 13 * d_model)


def heads_of(d_model: int) -> int:
    """Heads of about 64 dimensions: the most, up to d_model // 64 (at least one), that split d_model into even head
    dimensions (d_model // 64 for a multiple of 64)."""
    return next(h for h in range(max(1, d_model // 64), 0, -1) if d_model % (2 * h) == 0)


def _round_width(d: float) -> int:
    """A sweep width: a multiple of 16 below 64, of 32 from there."""
    step = 16 if d < 64 else 32
    return max(16, step * round(d / step))


def sweep_widths(low_bytes: int, high_bytes: int, n_layers: int, points: int) -> list[int]:
    """Widths whose unshared layer weights (``layer_bytes``) are log-spaced from ``low_bytes`` to ``high_bytes``
    (distinct after rounding to ``_round_width``)."""
    if points < 2 or not 0 < low_bytes < high_bytes:
        raise ValueError(f"need points >= 2 and 0 < low < high bytes, got {points}, {low_bytes}, {high_bytes}")
    widths: list[int] = []
    for i in range(points):
        target = low_bytes * (high_bytes / low_bytes) ** (i / (points - 1))
        d = _round_width(math.sqrt(target / (48 * n_layers)))  # 48 L d^2 bytes, the 13 d term aside
        if d not in widths:
            widths.append(d)
    return widths


def where_it_fits(nbytes: int, caches: dict[str, int | None]) -> str:
    """The smallest of L2, L3 that holds ``nbytes`` ('L2', 'L3'), 'beyond L3', or 'unknown'."""
    for level in ("L2", "L3"):
        if caches.get(level) is None:
            return "unknown"
        if nbytes <= caches[level]:
            return level
    return "beyond L3"


# -------------------------------------------------------------------------------------------------------- measure
def measure(d_model: int, n_layers: int, batch: int, args: argparse.Namespace) -> dict[str, object]:
    """One size at one batch size: raw per-token seconds of both models, their weight and cache bytes."""
    total = args.prompt + args.new_tokens
    models, caches, weights, layers = {}, {}, {}, {}
    generator = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, VOCAB, (batch, args.prompt), generator=generator)  # (B, T)
    tokens = torch.randint(0, VOCAB, (args.new_tokens, batch), generator=generator)  # fed one per step
    for strategy in ("none", "all"):
        torch.manual_seed(0)
        config = sl.TransformerConfig(d_model=d_model, n_heads=heads_of(d_model), d_ff=4 * d_model,
                                      n_layers=n_layers, strategy=strategy, vocab_size=VOCAB, max_len=total,
                                      causal=True, lm_head=True)
        models[strategy] = sl.SharedTransformer(config).eval()
        weights[strategy] = sum(p.numel() * p.element_size() for p in models[strategy].parameters())
        blocks = [*models[strategy].attention.parameters(), *models[strategy].ffn.parameters()]
        layers[strategy] = sum(p.numel() * p.element_size() for p in blocks)  # distinct blocks: read per token
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
        "n_heads": heads_of(d_model),
        "d_ff": 4 * d_model,
        "vocab_size": VOCAB,
        "batch": batch,
        "prompt": args.prompt,
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "weight_bytes": weights,  # all parameters, embeddings included
        "layer_weight_bytes": layers,  # the distinct blocks' weights: all of "none"'s layers, "all"'s one block
        "kv_cache_bytes": {s: c.nbytes() for s, c in caches.items()},  # after prompt + new tokens
        "seconds_per_token": per_token,  # raw, one value per interleaved repeat
        "shared_over_unshared": {"median": interval.median, "low": interval.low, "high": interval.high,
                                 "level": interval.level},
    }


def _sweep_plan(args: argparse.Namespace, caches: dict[str, object]) -> dict[str, object]:
    """The sweep's grid: widths, the bytes they span and the cache sizes they were chosen from."""
    assumed = [level for level in ("L2", "L3") if not cache_bytes(caches, level)]
    sizes = {level: cache_bytes(caches, level) or ASSUMED_CACHES[level] for level in ("L2", "L3")}
    low = args.sweep_min_bytes or sizes["L2"] // 4
    high = args.sweep_max_bytes or min(4 * sizes["L3"], SWEEP_MAX_BYTES)
    widths = sweep_widths(low, high, args.sweep_layers, args.sweep_points)
    return {"n_layers": args.sweep_layers, "batch": 1, "widths": widths, "grid_bytes": [low, high],
            "cache_bytes": sizes, "assumed": assumed}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64], help="of the default run (sweep: 1)")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES), help="of the default run")
    parser.add_argument("--sweep", action="store_true", help="the working-set sweep at batch 1 instead of --sizes")
    parser.add_argument("--sweep-points", type=int, default=12, help="widths of the sweep (before deduplication)")
    parser.add_argument("--sweep-layers", type=int, default=12, help="depth of the sweep's models")
    parser.add_argument("--sweep-min-bytes", type=int, default=None,
                        help="unshared layer weights of the narrowest width (default: a quarter of L2)")
    parser.add_argument("--sweep-max-bytes", type=int, default=None,
                        help=f"... of the widest (default: 4 x L3, at most {SWEEP_MAX_BYTES >> 30} GiB)")
    parser.add_argument("--profile", default="cpu", choices=["cpu"], help="CPU only: the script never uses a GPU")
    parser.add_argument("--name", default=None,
                        help="written to notebooks/results/<name>.<profile>.json (default decoding, decoding_sweep)")
    parser.add_argument("--output", type=Path, default=None, help="write here instead (default: see --name)")
    parser.add_argument("--force", action="store_true", help="replace a recorded file even if it holds more")
    args = parser.parse_args(argv)
    for name in ("threads", "repeats", "prompt", "new_tokens", "sweep_layers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.sweep_points < 2:
        parser.error("--sweep-points must be >= 2")
    name = args.name or ("decoding_sweep" if args.sweep else "decoding")
    try:  # before any work: a benchmark that cannot be written is not started
        output = check_output(args.output or recorded_file(name, args.profile))
    except (ValueError, OSError) as error:
        parser.error(str(error))
    caches = cpu_caches()
    plan = None
    if args.sweep:
        try:
            plan = _sweep_plan(args, caches)
        except ValueError as error:
            parser.error(f"--sweep-min-bytes/--sweep-max-bytes: {error}")
        points = [("sweep", d, args.sweep_layers, 1) for d in plan["widths"]]
    else:
        points = [(size, *SIZES[size], batch) for size in args.sizes for batch in args.batches]
    planned = [{"size": size, "batch": batch, "prompt": args.prompt, "new_tokens": args.new_tokens,
                "repeats": args.repeats, **({"d_model": d} if args.sweep else {})} for size, d, _, batch in points]
    problem = None if args.force else replacement_problem(output, planned)
    if problem:
        parser.error(problem)
    torch.set_num_threads(args.threads)
    load_at_start = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    start = time.perf_counter()
    runs = []
    with torch.inference_mode():
        for size, d_model, n_layers, batch in points:
            run = {"size": size, **measure(d_model, n_layers, batch, args)}
            if plan is not None:
                layers = run.get("layer_weight_bytes", {})
                run["fits"] = {s: where_it_fits(b, plan["cache_bytes"]) for s, b in layers.items()}
                ratio = run.get("shared_over_unshared", {})
                print(f"d_model={d_model}: unshared layers {layers.get('none', 0) / 2**20:.1f} MiB "
                      f"({run['fits'].get('none')}), shared block {layers.get('all', 0) / 2**20:.2f} MiB; "
                      f"shared/unshared {ratio.get('median', float('nan')):.3f} "
                      f"[{ratio.get('low', float('nan')):.3f}, {ratio.get('high', float('nan')):.3f}]", flush=True)
            runs.append(run)
    command = shlex.join([".venv/bin/python", "scripts/benchmark_decoding.py", *(sys.argv[1:] if argv is None
                                                                                  else argv)])
    device = f"cpu, {torch.get_num_threads()} threads"
    data = {"provenance": {**provenance(command, device, time.perf_counter() - start), "cpu_caches": caches,
                       "load_average_at_start": load_at_start},
            **({"sweep": plan} if plan is not None else {}), "runs": runs}
    print(write_recorded(name, args.profile, data, force=args.force, path=output))


if __name__ == "__main__":
    main()
