"""Chapter 5e's recorded Sudoku experiment: held-out grids really held out, arms matched as
their names say, the runner resumable and its file checked (ci profile)."""

import json
from dataclasses import replace

import pytest
import record_sudoku as script
import torch

from sharedlib.experiments import sudoku
from sharedlib.measure import count_module_parameters

CI = sudoku.SUDOKU_PROFILES["ci"]
CPU = sudoku.SUDOKU_PROFILES["cpu"]


def grids(solutions):
    return {tuple(g) for g in solutions.tolist()}


def test_select_report_and_harder_sets_use_grids_never_trained_on():
    sets = sudoku.puzzle_sets(CI)
    train = grids(sets["train"][1])
    select, report, harder = (grids(sets[k][1]) for k in ("select", "report", "harder"))
    assert train.isdisjoint(select | report | harder)
    assert select.isdisjoint(report) and select and report
    assert harder == report  # the same held-out grids, more blanks
    blanks = {k: (sets[k][0] == 0).sum(1).unique().tolist() for k in sets}
    assert blanks == {"train": [CI.blanks], "select": [CI.blanks], "report": [CI.blanks],
                      "harder": [CI.harder_blanks]}


def test_arms_are_matched_as_their_names_say():
    passes = {arm: sudoku._layer_passes(CPU, arm) for arm in sudoku.ARMS}
    trm = passes["recursive"]
    # N_sup T (n + 1) L per answer; per step (T - 1)(n + 1) L without a graph, 3 (n + 1) L with one
    L = CPU.n_layers
    assert trm == {"per_answer": 4 * 2 * 3 * L, "per_training_step": 1 * 3 * L + 3 * 3 * L}
    for arm in ("inner-only", "outer-only", "shuffled-labels"):
        assert passes[arm]["per_answer"] == trm["per_answer"]  # as much computation per answer
    assert passes["plain-deep"]["per_training_step"] == trm["per_training_step"]  # equal training FLOPs
    parameters = {arm: count_module_parameters(sudoku.build_arm(CPU, arm, 0)) for arm in sudoku.ARMS}
    H = CPU.d_model
    # the same network: the loops add y_0, z_0 and the halting head, nothing else
    assert parameters["recursive"] - parameters["plain"] == 2 * H + H + 1
    assert parameters["inner-only"] == parameters["outer-only"] == parameters["recursive"]
    assert parameters["plain-deep"] > 3 * parameters["plain"]
    with pytest.raises(ValueError, match="arm must be one of"):
        sudoku.arm_settings(CPU, "recurrent")


def test_shuffled_labels_pair_puzzles_with_grids_they_do_not_match(monkeypatch):
    seen = {}
    real = sudoku.train

    def spy(model, loss_fn, get_batch, config):
        seen["batch"] = get_batch("train", torch.Generator().manual_seed(0))
        return real(model, loss_fn, get_batch, replace(config, steps=1, eval_every=1))

    monkeypatch.setattr(sudoku, "train", spy)
    sudoku.execute_arm(CI, "shuffled-labels", 1e-2, 0)
    puzzles, labels = seen["batch"]
    shown = puzzles != 0
    assert not (labels[shown] == puzzles[shown]).all()  # the givens contradict the labels
    sudoku.execute_arm(CI, "recursive", 1e-2, 0)
    puzzles, labels = seen["batch"]
    assert (labels[puzzles != 0] == puzzles[puzzles != 0]).all()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    out = tmp_path_factory.mktemp("sudoku")
    path = sudoku.run_sudoku("ci", out, "test")
    return path, json.loads(path.read_text())


def test_the_runner_sweeps_then_runs_the_seeds_and_resumes(recorded, monkeypatch):
    path, data = recorded
    runs = data["runs"]
    swept = [arm for arm in CI.arms if arm not in sudoku.RATE_FROM]
    assert len(runs) == len(swept) * (len(CI.lrs) + CI.seeds - 1) + len(sudoku.RATE_FROM) * CI.seeds
    for arm in CI.arms:
        lr = sudoku.chosen_rate(runs, sudoku.RATE_FROM.get(arm, arm))
        assert {r["seed"] for r in runs if r["arm"] == arm and r["lr"] == lr} == set(range(CI.seeds))
    assert data["baselines"]["report"]["puzzles"] == len(sudoku.puzzle_sets(CI)["report"][0])
    # a second call finds every run and trains nothing
    monkeypatch.setattr(sudoku, "execute_arm", lambda *a: pytest.fail("re-trained a recorded run"))
    sudoku.run_sudoku("ci", path.parent, "test again")
    assert len(json.loads(path.read_text())["runs"]) == len(runs)


def test_rates_are_chosen_on_the_select_set_not_the_report_set():
    def run(lr, select, report):
        return {"arm": "plain", "seed": 0, "lr": lr, "reported_step": 1,
                "select": {"solved": [select]}, "report": {"solved": [report]}}

    runs = [run(1e-3, 0.2, 0.9), run(3e-3, 0.5, 0.1)]
    assert sudoku.chosen_rate(runs, "plain") == 3e-3


def test_a_file_of_other_settings_or_a_broken_file_is_refused(recorded, tmp_path):
    path, data = recorded
    other = tmp_path / path.name
    other.write_text(json.dumps({**data, "profile_settings": {**data["profile_settings"], "steps": 7}}))
    with pytest.raises(ValueError, match="profile_settings"):
        sudoku.run_sudoku("ci", tmp_path, "test")
    broken = {**data, "runs": data["runs"] + data["runs"][:1]}
    with pytest.raises(ValueError, match="recorded twice"):
        sudoku.validate_sudoku(broken)
    with pytest.raises(ValueError, match="arm"):
        sudoku.validate_sudoku({**data, "runs": [{**data["runs"][0], "arm": "other"}]})


def test_the_script_refuses_an_output_it_cannot_write_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(sudoku, "run_sudoku", lambda *a, **k: pytest.fail("started work"))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(SystemExit):
        script.main(["--profile", "ci", "--output-dir", str(blocker)])
    with pytest.raises(SystemExit):
        script.main(["--threads", "0"])


def test_the_report_recomputes_from_the_runs(recorded):
    from sharedlib.book import sudoku_report

    _, data = recorded
    data = {**data, "profile": "ci"}
    header, rows = sudoku_report.arm_rows(data)
    assert [row[0] for row in rows] == list(CI.arms) and all(len(r) == len(header) for r in rows)
    # recursive minus plain, by hand from the stored rates at the reported step
    def rate(arm, seed):
        run = sudoku_report.final_runs(data, arm)[seed]
        return 100 * run["report"]["solved"][run["reported_step"] - 1]

    by_hand = [rate("recursive", s) - rate("plain", s) for s in range(CI.seeds)]
    found = {arm: d for arm, d, _ in sudoku_report.compare_to_recursive(data)}
    assert set(found) == set(sudoku_report.BASELINES)
    assert found["plain"].mean == pytest.approx(sum(by_hand) / len(by_hand))
    assert "Holm" in sudoku_report.comparison_sentences(data)["plain"]
    assert sudoku_report.rounds_rows(data)[1]
    assert "Sudoku" in sudoku_report.settings_line(data)
    sudoku_report.plot_improvement_steps(data)
    values = [100 * sudoku_report.final_runs(data, "plain")[s]["report"]["solved"][0] for s in range(CI.seeds)]
    assert sudoku_report.seed_values(data, "plain") == ", ".join(f"{v:.1f}" for v in values)
    header, rows = sudoku_report.memorisation_rows(data)
    assert [row[0] for row in rows] == list(CI.arms) and rows[-1][4]  # shuffled: its own labels
    run = sudoku_report.final_runs(data, "plain")
    gaps = [100 * (r["train"]["solved"][0] - r["report"]["solved"][0]) for r in run.values()]
    assert rows[3][3].startswith(f"{sum(gaps) / len(gaps):+.1f}")


def test_a_clear_difference_is_claimed_and_a_flat_one_is_not(recorded):
    from sharedlib.book import sudoku_report

    _, data = recorded
    runs = json.loads(json.dumps(data["runs"]))
    seeds = {"recursive": [0.50, 0.61, 0.55, 0.58, 0.52], "plain": [0.20, 0.30, 0.22, 0.27, 0.25]}
    fake = []
    for arm, values in seeds.items():
        template = next(r for r in runs if r["arm"] == arm)
        for seed, value in enumerate(values):
            rates = [value] * len(template["report"]["solved"])
            fake.append({**template, "seed": seed, "lr": template["lr"],
                         "select": {"solved": rates}, "report": {**template["report"], "solved": rates}})
    data = {**data, "runs": fake, "profile_settings": {**data["profile_settings"], "arms": ["recursive", "plain"]}}
    sentence = sudoku_report.comparison_sentences(data)["plain"]
    assert sentence.startswith("the recursive reasoner has a higher share") and "by 30.4 points" in sentence
    noise = [0.01, -0.01, 0.02, -0.02, 0.0]  # recursive - plain by seed: mean 0
    flat = [{**r, "report": {**r["report"], "solved": [0.4 + noise[r["seed"]] * (r["arm"] == "recursive")] * 8}}
            for r in fake]
    assert "no evidence" in sudoku_report.comparison_sentences({**data, "runs": flat})["plain"]
