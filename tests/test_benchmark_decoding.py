"""scripts/benchmark_decoding.py's working-set sweep (issue 23, item 11): the machine's cache sizes (Linux sysfs,
``lscpu``, or None), a width grid that crosses the last-level cache, and a tiny real sweep that writes a valid file.
The writing rules every recorded file follows are tested in ``test_recorded_writers.py``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import benchmark_decoding as bd
import pytest

from sharedlib.experiments import recorded

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "notebooks" / "results"


@pytest.fixture
def results(tmp_path, monkeypatch) -> Path:
    """A copy of the committed recorded files, where ``write_recorded`` writes by default, without the sweep's."""
    folder = tmp_path / "results"
    shutil.copytree(RESULTS, folder)
    (folder / "decoding_sweep.cpu.json").unlink(missing_ok=True)
    monkeypatch.setattr(recorded, "results_dirs", lambda: [folder])
    return folder


def _run(monkeypatch, argv: list[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["benchmark_decoding.py", *argv])
    bd.main()


def _fake_sysfs(root: Path, entries: list[tuple[str, str, str, str | None]]) -> Path:
    """``root/index<i>/{level,type,size,shared_cpu_list}`` as Linux writes them."""
    for i, (level, kind, size, shared) in enumerate(entries):
        index = root / f"index{i}"
        index.mkdir(parents=True)
        for name, value in (("level", level), ("type", kind), ("size", size), ("shared_cpu_list", shared)):
            if value is not None:
                (index / name).write_text(value + "\n")
    return root


# ---------------------------------------------------------------------------------------------------- cache sizes
def test_cache_sizes_are_read_from_a_sysfs_tree(tmp_path):
    root = _fake_sysfs(tmp_path / "cache", [("1", "Data", "48K", "0"), ("1", "Instruction", "32K", "0"),
                                            ("2", "Unified", "2048K", "0"), ("3", "Unified", "32768K", "0-3,8-11")])
    caches = bd.sysfs_caches(root)
    assert caches["source"] == str(root)
    assert caches["L1d"] == {"bytes": 48 << 10, "shared_cpu_list": "0", "shared_by": 1}  # not the instruction cache
    assert caches["L2"] == {"bytes": 2 << 20, "shared_cpu_list": "0", "shared_by": 1}  # per core
    assert caches["L3"] == {"bytes": 32 << 20, "shared_cpu_list": "0-3,8-11", "shared_by": 8}  # shared
    assert bd.cache_bytes(caches, "L3") == 32 << 20


def test_missing_levels_or_files_are_none(tmp_path):
    root = _fake_sysfs(tmp_path / "cache", [("1", "Data", "32K", None), ("2", "Unified", "1024K", "0-1")])
    caches = bd.sysfs_caches(root)
    assert caches["L1d"] == {"bytes": 32 << 10, "shared_cpu_list": None, "shared_by": None}
    assert caches["L3"] is None and bd.cache_bytes(caches, "L3") is None
    assert bd.sysfs_caches(tmp_path / "absent") == {"source": None, "L1d": None, "L2": None, "L3": None}


@pytest.mark.parametrize(("text", "expected"), [("48K", 48 << 10), ("307200K", 300 << 20), ("2 MiB", 2 << 20),
                                                 ("1.5 MiB", 3 << 19), ("64 KB", 64 << 10), ("1G", 1 << 30),
                                                 ("512", 512), ("big", None), ("3 XB", None)])
def test_sizes_parse_as_sysfs_and_lscpu_write_them(text, expected):
    assert bd.parse_size(text) == expected


def test_lscpu_sizes_are_per_instance():
    new = "L1d cache:  96 KiB (2 instances)\nL1i cache:  64 KiB (2 instances)\nL2 cache:   4 MiB (2 instances)\n" \
          "L3 cache:   300 MiB (1 instance)\n"
    caches = bd.parse_lscpu(new)
    assert caches["source"] == "lscpu"
    assert [caches[level]["bytes"] for level in bd.CACHE_LEVELS] == [48 << 10, 2 << 20, 300 << 20]
    old = bd.parse_lscpu("L1d cache:           32K\nL2 cache:            256K\n")  # older util-linux, no L3
    assert old["L1d"]["bytes"] == 32 << 10 and old["L2"] == {"bytes": 256 << 10, "instances": None}
    assert old["L3"] is None


def test_without_sysfs_caches_come_from_lscpu_else_none(tmp_path, monkeypatch):
    monkeypatch.setattr(bd, "SYSFS_CACHE", tmp_path / "absent")
    monkeypatch.setattr(bd.shutil, "which", lambda name: "/usr/bin/lscpu")
    monkeypatch.setattr(bd.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
        a, 0, stdout="L2 cache: 1 MiB (1 instance)\nL3 cache: 8 MiB (1 instance)\n"))
    caches = bd.cpu_caches()
    assert caches["source"] == "lscpu" and caches["L1d"] is None and bd.cache_bytes(caches, "L3") == 8 << 20
    monkeypatch.setattr(bd.shutil, "which", lambda name: None)  # e.g. macOS, Windows
    assert bd.cpu_caches() == {"source": None, "L1d": None, "L2": None, "L3": None}


# ---------------------------------------------------------------------------------------------------------- sweep
def test_existing_sizes_keep_their_heads():
    assert [bd.heads_of(d) for d, _ in bd.SIZES.values()] == [2, 12]


@pytest.mark.parametrize(("l2", "l3"), [(1 << 20, 32 << 20), (2 << 20, 300 << 20), (512 << 10, 16 << 20)])
def test_the_sweep_grid_crosses_the_last_level_cache(l2, l3):
    n_layers = 12
    widths = bd.sweep_widths(l2 // 4, 4 * l3, n_layers, 12)
    unshared = [bd.layer_bytes(d, n_layers) for d in widths]
    assert widths == sorted(set(widths)) and len(widths) >= 8
    assert unshared[0] < l2 / 2 and unshared[-1] > 3 * l3  # well inside L2 to well beyond L3
    assert bd.layer_bytes(widths[-1], 1) < l3  # the shared block still fits at the widest
    assert sum(b > l3 for b in unshared) >= 2 and sum(b <= l3 for b in unshared) >= 4
    for d in widths:  # every width is a valid model: heads split it into even head dimensions
        assert d % (2 * bd.heads_of(d)) == 0


def test_the_layer_bytes_formula_matches_the_model():
    import sharedlib as sl

    for d, n_layers in [(32, 3), (96, 2), (160, 1)]:
        config = sl.TransformerConfig(d_model=d, n_heads=bd.heads_of(d), d_ff=4 * d, n_layers=n_layers,
                                      strategy="none", vocab_size=bd.VOCAB, max_len=8, causal=True, lm_head=True)
        model = sl.SharedTransformer(config)
        blocks = [*model.attention.parameters(), *model.ffn.parameters()]
        assert sum(p.numel() * p.element_size() for p in blocks) == bd.layer_bytes(d, n_layers)


def test_the_plan_follows_the_caches_or_assumes_them():
    args = type("Args", (), {"sweep_layers": 12, "sweep_points": 10, "sweep_min_bytes": None,
                             "sweep_max_bytes": None})()
    huge = {"source": "x", "L1d": None, "L2": {"bytes": 2 << 20}, "L3": {"bytes": 1 << 30}}
    plan = bd._sweep_plan(args, huge)
    assert plan["grid_bytes"] == [512 << 10, bd.SWEEP_MAX_BYTES] and plan["assumed"] == []  # capped
    unknown = bd._sweep_plan(args, {"source": None, "L1d": None, "L2": None, "L3": None})
    assert unknown["assumed"] == ["L2", "L3"] and unknown["cache_bytes"] == bd.ASSUMED_CACHES


TINY = ["--sweep", "--sweep-points", "3", "--sweep-layers", "2", "--repeats", "2", "--warmup", "0", "--prompt", "4",
        "--new-tokens", "2", "--threads", "1"]
TINY_CACHES = {"source": "test", "L1d": {"bytes": 4 << 10}, "L2": {"bytes": 64 << 10}, "L3": {"bytes": 256 << 10}}


def test_a_tiny_sweep_writes_a_valid_file(results, monkeypatch):
    monkeypatch.setattr(bd, "cpu_caches", lambda: TINY_CACHES)  # tiny caches: a tiny grid, seconds of work
    before = {p.name: p.read_bytes() for p in results.iterdir() if p.is_file()}
    _run(monkeypatch, TINY)
    path = results / "decoding_sweep.cpu.json"
    data = recorded.load_recorded("decoding_sweep", "cpu")
    assert {p.name: p.read_bytes() for p in results.iterdir() if p.is_file() and p != path} == before  # untouched
    assert data["provenance"]["cpu_caches"] == TINY_CACHES and "--sweep" in data["provenance"]["command"]
    plan = data["sweep"]
    assert plan["batch"] == 1 and plan["n_layers"] == 2 and plan["grid_bytes"] == [16 << 10, 1 << 20]
    assert [r["d_model"] for r in data["runs"]] == plan["widths"] and len(plan["widths"]) == 3
    for run in data["runs"]:
        d = run["d_model"]
        assert run["size"] == "sweep" and run["batch"] == 1 and run["n_layers"] == 2 and run["repeats"] == 2
        assert run["layer_weight_bytes"] == {"none": bd.layer_bytes(d, 2), "all": bd.layer_bytes(d, 1)}
        assert run["kv_cache_bytes"]["none"] == run["kv_cache_bytes"]["all"] == 2 * 2 * 1 * 6 * d * 4
        assert all(len(ts) == 2 and min(ts) > 0 for ts in run["seconds_per_token"].values())
        ratio = run["shared_over_unshared"]
        assert ratio["low"] <= ratio["median"] <= ratio["high"] and ratio["level"] == 0.95
        assert set(run["fits"].values()) <= {"L2", "L3", "beyond L3"}
    assert data["runs"][0]["fits"]["none"] == "L2" and data["runs"][-1]["fits"]["none"] == "beyond L3"
    json.dumps(data)  # plain JSON throughout


def test_a_smaller_sweep_does_not_replace_a_recorded_one(results, monkeypatch, capsys):
    monkeypatch.setattr(bd, "cpu_caches", lambda: TINY_CACHES)
    _run(monkeypatch, TINY)
    path = results / "decoding_sweep.cpu.json"
    before = path.read_bytes()
    monkeypatch.setattr(bd, "measure", lambda *a, **k: pytest.fail("the sweep started although it is refused"))
    with pytest.raises(SystemExit):
        _run(monkeypatch, [*TINY[:2], "2", *TINY[3:]])
    assert path.read_bytes() == before and "holds 3 runs" in capsys.readouterr().err


def test_a_tiny_sweep_does_not_replace_the_recorded_sweep(tmp_path, monkeypatch, capsys):
    recorded_sweep = RESULTS / "decoding_sweep.cpu.json"
    if not recorded_sweep.exists():
        pytest.skip("no recorded sweep yet")
    folder = tmp_path / "results"
    folder.mkdir()
    shutil.copy(recorded_sweep, folder)
    monkeypatch.setattr(recorded, "results_dirs", lambda: [folder])
    monkeypatch.setattr(bd, "cpu_caches", lambda: TINY_CACHES)
    monkeypatch.setattr(bd, "measure", lambda *a, **k: pytest.fail("the sweep started although it is refused"))
    with pytest.raises(SystemExit):
        _run(monkeypatch, TINY)
    assert (folder / "decoding_sweep.cpu.json").read_bytes() == recorded_sweep.read_bytes()
    assert "--force" in capsys.readouterr().err


def test_the_default_run_keeps_its_format_and_gains_the_cache_sizes(results, monkeypatch, tmp_path):
    def fake_measure(d_model, n_layers, batch, args):
        return {"d_model": d_model, "n_layers": n_layers, "batch": batch, "prompt": args.prompt,
                "new_tokens": args.new_tokens, "repeats": args.repeats}

    monkeypatch.setattr(bd, "measure", fake_measure)
    output = tmp_path / "decoding.json"
    _run(monkeypatch, ["--repeats", "2", "--output", str(output)])
    data = json.loads(output.read_text())
    assert set(data) == {"provenance", "runs"} and "cpu_caches" in data["provenance"]
    assert [(r["size"], r["d_model"], r["batch"]) for r in data["runs"]] == [
        ("small", 128, 1), ("small", 128, 64), ("large", 768, 1), ("large", 768, 64)]
