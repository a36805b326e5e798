"""Forward+backward time of the book's encoder vs Hugging Face AlbertModel vs torch.nn.TransformerEncoder.

    .venv/bin/python scripts/benchmark_encoders.py [--batch 8 --seq 128 --repeats 7 --device cpu]

Same ALBERT-base shape (H=768, 12 heads, d_ff=3072, 12 layers, all shared, E=128), float32, dropout off.
Ours vs ALBERT: whole models from token ids. Ours vs PyTorch: the layer stacks on the same hidden states.
Prints median times and ratios as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
from torch import nn
from transformers import AlbertConfig, AlbertModel

import sharedlib as sl
from sharedlib.bench import forward_backward, median_ratios, time_interleaved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
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
    print(
        json.dumps(
            {
                "device": str(device),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "batch": args.batch,
                "seq": args.seq,
                "repeats": args.repeats,
                "median_seconds": {k: round(statistics.median(v), 4) for k, v in times.items()},
                "sharedlib_over_hf_albert": round(median_ratios(times, "hf_albert")["sharedlib"], 3),
                "sharedlib_stack_over_torch_encoder": round(
                    median_ratios(times, "torch_encoder")["sharedlib_stack"], 3
                ),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
