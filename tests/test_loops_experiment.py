"""The recorded looped-LM experiment of chapter 5d at its ci profile: plan, records,
resumption, refusals, and the realised depths of the random arm."""

import itertools
import json
from dataclasses import replace

import pytest
import torch

import sharedlib.looped as looped_module
from sharedlib.experiments import loops
from sharedlib.experiments.recorded import _cpu_name

CI = loops.get_loops_profile("ci")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("loops")
    path = loops.run_loops(CI, out, command="pytest")
    return path, loops.load_loops(path)


def test_the_sweep_comes_first_then_every_seed_at_the_chosen_rates(recorded):
    _, data = recorded
    runs = data["runs"]
    sweep = [r for r in runs if r["seed"] == 0 and r["label"] in loops.SWEPT]
    assert len(sweep) == len(loops.SWEPT) * len(CI.lrs)
    assert runs[: len(sweep)] == sweep  # recorded before anything else
    for label in loops.SWEPT:
        rate = loops.chosen_rate(runs, label)
        best = min((r for r in sweep if r["label"] == label), key=lambda r: r["select_loss"])
        assert rate == best["lr"]
        assert {r["seed"] for r in runs if r["label"] == label and r["lr"] == rate} == set(range(CI.seeds))
    cycle = loops.chosen_rate(runs, "cycle scratch")
    for label in loops.CONVERSIONS:
        assert {(r["lr"], r["seed"]) for r in runs if r["label"] == label} == {(cycle, s) for s in range(CI.seeds)}
    assert {r["lr"] for r in runs if r["label"].endswith("high-lr")} == {CI.high_lr}
    assert loops.plan_jobs(CI, runs) == []


def test_records_hold_what_the_chapter_reads(recorded):
    _, data = recorded
    by_label = {r["label"]: r for r in data["runs"] if r["seed"] == 1}
    fixed = by_label["fixed"]
    depths = [row["n_iterations"] for row in fixed["by_iterations"]]
    assert depths == list(range(1, CI.max_iterations + 1))
    at_r = fixed["by_iterations"][CI.n_iterations - 1]["report_loss"]
    assert at_r == pytest.approx(fixed["report_loss"], abs=1e-6)  # evaluated at r
    flops = [row["forward_flops_per_token"] for row in fixed["by_iterations"]]
    assert all(b > a for a, b in itertools.pairwise(flops))
    assert fixed["kl_exits"][0]["threshold"] == 0 and fixed["kl_exits"][0]["mean_iterations"] == CI.max_iterations
    cache = fixed["cache"]
    assert cache["exact_bytes_per_token"] > cache["one_slot_bytes_per_token"]
    assert "gate_exits" in by_label["gate"] and "converted_loss" in by_label["average"]
    assert by_label["bounded high-lr"]["injection_spectral_norm"] == pytest.approx(CI.injection_bound, rel=0.05)


def test_a_second_run_adds_nothing_and_other_settings_are_refused(recorded, tmp_path):
    path, _ = recorded
    before = path.read_text()
    loops.run_loops(CI, path.parent, command="pytest")
    assert json.loads(path.read_text())["runs"] == json.loads(before)["runs"]
    other = replace(CI, entropy_weight=0.5)
    with pytest.raises(ValueError, match="other profile_settings"):
        loops.run_loops(other, path.parent, command="pytest")
    data = json.loads(path.read_text())
    data["provenance"]["sharedlib_hashes"] = ["0" * 16]  # written by other code
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="allow_mixed"):
        loops.run_loops(CI, path.parent, command="pytest")
    loops.run_loops(CI, path.parent, command="pytest", allow_mixed=True)  # nothing to add
    path.write_text(before)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises((ValueError, OSError)):
        loops.run_loops(CI, blocker / "sub", command="pytest")


def test_the_random_arm_records_the_depths_it_trained_at(monkeypatch):
    torch.set_num_threads(1)
    drawn = []
    real = looped_module.sample_iterations

    def recording(loop, generator=None):
        depth = real(loop, generator)
        drawn.append(depth)
        return depth

    monkeypatch.setattr(looped_module, "sample_iterations", recording)
    profile = replace(CI, exit_windows=2)
    record = loops.execute_arm(profile, "random", CI.lrs[0], 0)
    # the record's count is made before training; the training draws are then counted here
    steps = CI.model.steps
    trained = drawn[-steps:]
    assert len(set(trained)) > 1
    assert record["mean_training_iterations"] == pytest.approx(sum(trained) / steps)


def test_unknown_arms_and_profiles_are_refused():
    with pytest.raises(ValueError, match="label"):
        loops.execute_arm(CI, "looped", 1e-3, 0)
    with pytest.raises(ValueError, match="profile"):
        loops.get_loops_profile("tpu")


def test_the_report_tables_pair_seeds_and_match_a_hand_computation(recorded, monkeypatch):
    from sharedlib.book import loops_report

    _, data = recorded
    header, rows = loops_report.iteration_rows(data)
    assert len(rows) == CI.max_iterations and len(header) == len(rows[0])
    r = CI.n_iterations
    fixed, random = loops_report.final_runs(data, "fixed"), loops_report.final_runs(data, "random")
    by_hand = [random[s]["by_iterations"][r - 1]["report_loss"] - fixed[s]["by_iterations"][r - 1]["report_loss"]
               for s in range(CI.seeds)]
    assert rows[r - 1][4].startswith(f"{sum(by_hand) / len(by_hand):+.3f}")
    for table in (loops_report.exit_rows, loops_report.cache_rows, loops_report.stability_rows,
                  loops_report.conversion_rows):
        header, rows = table(data)
        assert rows and all(len(row) == len(header) for row in rows)
    assert "looped models" in loops_report.settings_line(data)
    loops_report.plot_test_time_compute(data)


def test_the_recorded_file_replays_from_its_settings():
    """The committed cpu file comes from this code: a run re-trained to its first
    evaluation (same seed, rate and schedule) matches the stored curve point, and not
    another seed's (so the check can fail)."""
    from sharedlib.book import loops_report

    torch.set_num_threads(1)  # as the recording's workers
    data = loops_report.load_loops_report("cpu")
    profile = loops.LoopsProfile(**{k: tuple(v) if isinstance(v, list) else v
                                    for k, v in data["profile_settings"].items()})
    runs = loops_report.final_runs(data, "cycle scratch")
    replayed = loops.replay_first_point(profile, runs[1])
    assert replayed[0] == runs[1]["curve"][0][0]
    if _cpu_name() in data["provenance"]["machine"]:
        # the recording's kind of CPU: the same bits up to summation order
        assert replayed[1:] == pytest.approx(runs[1]["curve"][0][1:], rel=1e-3)
        assert replayed[1:] != pytest.approx(runs[2]["curve"][0][1:], rel=1e-3)
    else:
        # another CPU: 200 steps amplify the last bits to about the seeds' own spread
        # (an Intel Xeon replay of this AMD EPYC run: +1.8%), so the point must fall in
        # the seeds' range, widened by 3% (an untrained model scores 5.5 nats)
        selects = [run["curve"][0][2] for run in runs.values()]
        assert 0.97 * min(selects) <= replayed[2] <= 1.03 * max(selects)
