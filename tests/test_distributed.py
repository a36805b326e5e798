"""DDP on 2 CPU processes (gloo): a shared model all-reduces fewer bytes by exactly the sharing factor."""

import json
import subprocess
import sys


def test_allreduce_bytes_scale_with_unique_parameters():
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "sharedlib.distributed",
        "--d-model",
        "32",
        "--layers",
        "4",
        "--seq-len",
        "8",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["world_size"] == 2
    for strategy in ("none", "all"):
        assert report[strategy]["allreduce_bytes_per_step"] == 4 * report[strategy]["parameters"]  # float32 grads
    assert report["none"]["parameters"] > 2 * report["all"]["parameters"]
