"""DDP on 2 CPU processes (gloo): a shared model all-reduces fewer bytes by exactly the sharing factor."""

import json
import subprocess
import sys

import pytest

import sharedlib as sl
from sharedlib.experiments import distributed

NO_TORCHRUN = pytest.mark.skipif(distributed.launch_unavailable_reason() is not None,
                                 reason=str(distributed.launch_unavailable_reason()))



@NO_TORCHRUN
def test_allreduce_bytes_scale_with_unique_parameters():
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "sharedlib.experiments.distributed",
        "--d-model",
        "32",
        "--layers",
        "4",
        "--seq-len",
        "8",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    assert printed["world_size"] == 2
    report = printed["by_depth"]["4"]
    for strategy in ("none", "all"):
        assert report[strategy]["allreduce_bytes_per_step"] == 4 * report[strategy]["parameters"]  # float32 grads
    assert report["none"]["parameters"] > 2 * report["all"]["parameters"]
    # where torchrun cannot start (chapter 6b on Windows) the chapter counts what this run measures
    for strategy in ("none", "all"):
        counted = sl.count_parameters(distributed.traffic_model_config(32, 4, 8, strategy))
        assert report[strategy]["parameters"] == counted


def test_launch_is_refused_with_a_reason_on_windows_only():
    assert "libuv" in distributed.launch_unavailable_reason("win32")
    assert distributed.launch_unavailable_reason("linux") is None
    assert distributed.launch_unavailable_reason("darwin") is None


@pytest.mark.skipif(distributed.fsdp_unavailable_reason() is not None,
                    reason=str(distributed.fsdp_unavailable_reason()))
def test_fsdp_gathers_every_applied_layer_and_reduce_scatters_unique_parameters():
    """Under fully_shard the shared block is gathered at each use: only the gradients' traffic shrinks."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "sharedlib.experiments.distributed", "--d-model", "32", "--layers", "2", "4", "--seq-len", "8",
               "--fsdp"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    by_depth = json.loads(result.stdout.strip().splitlines()[-1])["by_depth"]
    assert sorted(by_depth) == ["2", "4"]
    for report in by_depth.values():
        applied = report["none"]["parameters"]  # the unshared model holds every applied layer once
        for strategy in ("none", "all"):
            got = report[strategy]
            for reshard, gathers in ((True, 2), (False, 1)):  # forward and backward, or forward only
                assert got[f"reshard_after_forward={reshard}: all_gather_bytes_per_step"] == gathers * 4 * applied
                assert got[f"reshard_after_forward={reshard}: reduce_scatter_bytes_per_step"] == 4 * got["parameters"]


def test_counting_collectives_refuses_a_torch_without_fsdp2_collectives(monkeypatch):
    import pytest
    import torch.distributed as dist

    from sharedlib.experiments.distributed import counting_collectives

    monkeypatch.delattr(dist, "all_gather_single")
    with pytest.raises(RuntimeError, match="all_gather_single"), counting_collectives():
        pass
