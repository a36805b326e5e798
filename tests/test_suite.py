"""The recorded-experiment machinery (chapters 6 and 8): plans, paired data, the results file, resuming, replay."""

import importlib
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import sharedlib as sl
from sharedlib.experiments import suite

train_module = importlib.import_module("sharedlib.train")  # sl.train is the function

ROOT = Path(__file__).resolve().parents[1]
# The ci profile cut to two strategies, so that a whole experiment (with its lr-sweep) takes about a second.
TINY = replace(suite.PROFILES["ci"], name="ci", strategies=("none", "all"))
TINY_EXPERIMENTS = ["limited-data"]


def run_tiny(output_dir: Path) -> Path:
    return suite.run_experiments(TINY, TINY_EXPERIMENTS, output_dir, command="pytest")


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("results")
    run_tiny(folder)
    return folder


# ------------------------------------------------------------------------------------------------------ plans
def test_cpu_profile_meets_the_method():
    p = suite.PROFILES["cpu"]
    assert p.seeds >= 5 and p.val_windows * p.seq_len >= 65536 and 3 <= len(p.lrs) <= 4
    lrs = {s: 1e-3 for s in (*suite.ALL_STRATEGIES, *suite.budget_labels(p))}
    spec = suite.plan(p, "equal-depth", lrs)[0]
    select, report = suite.validation_windows(suite.corpus_for(spec), spec)
    assert select.shape == report.shape == (p.val_windows // 2, p.seq_len + 1)
    for name in (e for e in suite.EXPERIMENTS if not e.endswith("-sweep")):
        specs = suite.plan(p, name, lrs)
        by_label = {}
        for spec in specs:
            by_label.setdefault(spec.label, []).append(spec.seed)
        assert all(sorted(seeds) == list(range(p.seeds)) for seeds in by_label.values()), name  # every arm paired
    params = {s.label: sl.count_parameters(s.model) for s in suite.plan(p, "equal-params", lrs) if s.seed == 0}
    m = p.n_unique
    for strategy in ("sequence", "cycle", "cycle-rev"):  # Takase & Kiyono: M blocks, N = 2M layers
        assert params[f"{strategy} M={m} N={2 * m}"] == params[f"none N={m}"] < params[f"none N={2 * m}"]


def test_every_strategy_gets_the_same_batches_for_a_seed():
    lrs = {s: 1e-3 for s in suite.ALL_STRATEGIES}
    specs = [s for s in suite.plan(TINY, "equal-depth", lrs)]
    none0, all0, none1 = specs[0], specs[1], specs[2]
    assert (none0.seed, all0.seed, none1.seed) == (0, 0, 1) and none0.model.strategy != all0.model.strategy

    def batches(spec):
        corpus = suite.corpus_for(spec)
        get = suite._FixedValidation(corpus, spec, suite.fixed_windows(corpus.val, spec.seq_len, 32), None)
        g = torch.Generator().manual_seed(spec.train.seed)
        return torch.cat([get("train", g)[0] for _ in range(3)])

    assert torch.equal(batches(none0), batches(all0))
    assert not torch.equal(batches(none0), batches(none1))


def test_fixed_windows_are_strided_and_refuse_too_many():
    data = torch.arange(1000)
    w = suite.fixed_windows(data, 9, 50)
    assert w.shape == (50, 10) and w[0, 0] == 0 and w[-1, -1] == 999
    assert bool((w[1:, 0] - w[:-1, 0] >= 9).all())  # windows never overlap in their scored targets
    assert bool((suite.fixed_windows(data, 9, 111)[1:, 0] - suite.fixed_windows(data, 9, 111)[:-1, 0] >= 9).all())
    with pytest.raises(ValueError, match=r"n_windows must be in 1\.\.111"):
        suite.fixed_windows(data, 9, 112)


def test_bad_names_are_refused():
    with pytest.raises(ValueError, match="profile must be one of"):
        suite.get_profile("laptop")
    with pytest.raises(ValueError, match="experiment must be one of"):
        suite.plan("ci", "bigger-is-better")
    with pytest.raises(ValueError, match=r"not part of this suite: scripts/run_experiments.py --suite hops"):
        suite.plan("ci", "iterations-hops")
    with pytest.raises(ValueError, match="experiment must be one of"):  # the retired first-edition experiment
        suite.plan("ci", "iterations-length")
    with pytest.raises(ValueError, match="run lr-sweep first"):
        suite.plan("ci", "equal-depth", {})


# ----------------------------------------------------------------------------------------- the results file
def test_results_file_shape(tiny_results):
    data = suite.load_results(tiny_results / "experiments.ci.json")
    assert set(suite.PROVENANCE_FIELDS) <= set(data["provenance"]) and data["provenance"]["threads"] >= 1
    labels = {(r["experiment"], r["label"]) for r in data["runs"]}
    controls = {("limited-data", label) for label in ("none N=1", "none dropout=0.1", "none wd=0.1")}
    arms = {("lr-sweep", "none"), ("lr-sweep", "all"), ("limited-data", "none"), ("limited-data", "all")}
    assert labels == arms | controls
    for run in data["runs"]:
        assert "pydoc" in run["data"] and run["tokens"] == run["steps"] * TINY.batch_size * TINY.seq_len
        assert [p[0] for p in run["curve"]][-1] == run["steps"]
        assert run["val_loss"] == pytest.approx(run["curve"][-1][2], rel=1e-6)  # two evaluations, one value
        assert run["parameters"] == sl.count_parameters(sl.TransformerConfig(**run["model_config"]))
        assert suite.flops_curve(run)[-1] == (run["flops_per_token"] * run["tokens"], run["curve"][-1][2])
    limited = [r for r in data["runs"] if r["experiment"] == "limited-data"]
    none, shared = (next(r for r in limited if r["label"] == label) for label in ("none", "all"))
    assert none["flops_per_token"] == shared["flops_per_token"] and none["parameters"] > shared["parameters"]
    assert all(r["split"]["train_bytes"] == TINY.limited_bytes for r in limited)
    by_label = {r["label"]: r for r in limited}
    assert by_label["none N=1"]["parameters"] == shared["parameters"]  # the capacity control: equal parameters
    assert by_label["none dropout=0.1"]["model_config"]["dropout"] == 0.1
    assert by_label["none wd=0.1"]["train_config"]["weight_decay"] == 0.1
    for run in data["runs"]:  # choices on the first half of the held-out split, reports on the second
        best = min(run["curve"], key=lambda point: point[3])
        assert run["best_val_step"] == best[0] and run["best_val_loss"] == best[2]
        assert run["select_val_loss"] == pytest.approx(run["curve"][-1][3], rel=1e-6)
        assert run["select_val_loss"] != run["val_loss"]
    assert data["baselines"]["unigram"] > data["baselines"]["bigram"] > data["baselines"]["trigram"]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: d["provenance"].pop("commit"), "provenance.commit: missing"),
        (lambda d: d["runs"][0].pop("val_loss"), r"runs\[0\].val_loss: missing"),
        (lambda d: d["runs"][1].update(seed="0"), r"runs\[1\].seed: expected int"),
        (lambda d: d["runs"][0].update(val_loss=None), "needs a finite loss"),
        (lambda d: d["runs"][0]["curve"].reverse(), "increasing steps"),
        (lambda d: d["runs"].append(dict(d["runs"][0])), "a second run with"),
    ],
)
def test_validator_finds_each_damage(tiny_results, damage, message):
    data = json.loads((tiny_results / "experiments.ci.json").read_text())
    suite.validate_results(data)
    damage(data)
    with pytest.raises(ValueError, match=message):
        suite.validate_results(data)


def test_a_second_run_does_nothing(tiny_results, monkeypatch):
    path = tiny_results / "experiments.ci.json"
    before = path.read_bytes()
    monkeypatch.setattr(suite, "execute_run", lambda *a, **k: pytest.fail("a finished run was executed again"))
    run_tiny(tiny_results)
    assert path.read_bytes() == before


def test_an_interrupted_command_leaves_a_valid_file_and_resumes(tmp_path, tiny_results, monkeypatch):
    calls = []
    real = suite.execute_run

    def dies_after_one(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt  # what Ctrl-C or a kill during the second run looks like
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(suite, "execute_run", dies_after_one)
    with pytest.raises(KeyboardInterrupt):
        run_tiny(tmp_path)
    path = tmp_path / "experiments.ci.json"
    partial = suite.load_results(path)  # valid, with the one finished run
    assert len(partial["runs"]) == 1 and not list(tmp_path.glob("*.tmp"))
    monkeypatch.setattr(suite, "execute_run", real)
    run_tiny(tmp_path)
    resumed = suite.load_results(path)
    complete = suite.load_results(tiny_results / "experiments.ci.json")
    losses = lambda d: {suite.run_key(r): (r["val_loss"], r["curve"]) for r in d["runs"]}  # noqa: E731
    assert losses(resumed) == losses(complete)  # resuming changes no number
    assert resumed["provenance"]["wall_seconds"] >= partial["provenance"]["wall_seconds"]
    assert len(resumed["provenance"]["commands"]) == 2


def test_results_of_other_code_are_refused_unless_mixing_is_allowed(tmp_path, tiny_results):
    data = json.loads((tiny_results / "experiments.ci.json").read_text())
    data["provenance"]["sharedlib_hash"] = "0123456789abcdef"
    (tmp_path / "experiments.ci.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="other sharedlib code"):
        run_tiny(tmp_path)
    suite.run_experiments(TINY, TINY_EXPERIMENTS, tmp_path, command="pytest", allow_mixed=True)


def test_a_damaged_file_is_left_alone(tmp_path):
    path = tmp_path / "experiments.ci.json"
    path.write_text('{"runs": [')
    with pytest.raises(ValueError, match="not valid JSON"):
        run_tiny(tmp_path)
    assert path.read_text() == '{"runs": ['


def test_the_sweep_picks_the_lowest_validation_loss(tiny_results):
    runs = suite.load_results(tiny_results / "experiments.ci.json")["runs"]
    chosen = suite.chosen_lrs(runs, TINY)
    for label in TINY.strategies:
        sweep = [r for r in runs if r["experiment"] == "lr-sweep" and r["label"] == label]
        assert chosen[label] == min(sweep, key=suite.selection_loss)["lr"]
        assert all(r["lr"] == chosen[label] for r in runs if r["experiment"] == "limited-data" and r["label"] == label)
    assert suite.chosen_lrs(runs[:1], TINY) == {}  # an unfinished sweep chooses nothing
    three = replace(TINY, strategies=("none",), lrs=(1e-3, 2e-3, 4e-3))
    sweep = lambda losses: [{"experiment": "lr-sweep", "label": "none", "lr": lr, "status": "ok", "val_loss": v}  # noqa: E731
                            for lr, v in zip(three.lrs, losses, strict=True)]
    assert suite.chosen_lrs(sweep([2.0, 1.5, 1.8]), three) == {"none": 2e-3}
    assert suite.lrs_at_grid_edge(sweep([2.0, 1.5, 1.8]), three) == []
    assert suite.lrs_at_grid_edge(sweep([2.0, 1.9, 1.8]), three) == ["none"]  # best at the largest rate


def test_a_diverged_run_is_recorded_not_fatal(monkeypatch):
    spec = suite.plan(TINY, "lr-sweep")[0]

    def explode(*args, **kwargs):
        raise train_module.NonFiniteLossError("training loss is nan at step 3")

    monkeypatch.setattr(suite, "_train", explode)
    record = suite.execute_run(spec)
    assert record["status"] == "diverged" and record["val_loss"] is None and record["parameters"] > 0
    suite.validate_results({"provenance": dict.fromkeys(suite.PROVENANCE_FIELDS, 0), "runs": [record]})
    with pytest.raises(ValueError, match="diverged"):  # no learning rate is chosen from diverged runs only
        suite.chosen_lrs([{**record, "lr": lr} for lr in TINY.lrs], replace(TINY, strategies=("none",)))


def test_evaluation_that_misses_the_fixed_windows_is_caught(monkeypatch):
    spec = suite.plan(TINY, "lr-sweep")[0]
    real = train_module.evaluate

    def skips_a_chunk(model, loss_fn, get_batch, config, device):
        get_batch("val", torch.Generator())  # one extra call shifts which windows are scored
        return real(model, loss_fn, get_batch, replace(config, eval_batches=1), device)

    monkeypatch.setattr(train_module, "evaluate", skips_a_chunk)
    with pytest.raises(RuntimeError, match="fixed select / report windows"):
        suite.execute_run(spec)


# ------------------------------------------------------------------------------------------------------ replay
def test_replay_matches_the_stored_curve(tiny_results):
    runs = suite.load_results(tiny_results / "experiments.ci.json")["runs"]
    record = next(r for r in runs if r["experiment"] == "limited-data" and r["label"] == "all")
    again = suite.replay_run(record, record["steps"])
    assert not suite.replay_mismatches(again["first_losses"], record["first_losses"])
    assert not suite.replay_mismatches(again["curve"], record["curve"])
    # the check can fail: another rate (the first loss comes before any update), another seed, a shifted curve
    wrong = {**record, "train_config": {**record["train_config"], "lr": record["lr"] * 1.01}}
    assert not suite.replay_matches(suite.replay_run(wrong, 3)["first_losses"][1:3], record["first_losses"][1:3])
    wrong = {**record, "train_config": {**record["train_config"], "seed": record["train_config"]["seed"] + 1}}
    assert not suite.replay_matches(suite.replay_run(wrong, 3)["first_losses"], record["first_losses"][:3])
    assert not suite.replay_matches(again["first_losses"][1:], record["first_losses"][:-1])
    with pytest.raises(ValueError, match="steps must be an integer"):
        suite.replay_run(record, record["steps"] + 1)


def test_replay_tolerance_is_tight_and_never_matches_nan():
    tol = suite.REPLAY_RTOL
    assert 0 < tol <= 1e-4
    losses = [5.5452, 2.0, 0.8006455898284912, 0.05]
    assert suite.replay_matches(losses, losses) and suite.replay_matches([1.0], [1.0 + 0.5 * tol])
    for i in range(len(losses)):  # a stored loss off by ten times the tolerance, up or down, is noticed
        for sign in (1, -1):
            changed = [v * (1 + sign * 10 * tol) if j == i else v for j, v in enumerate(losses)]
            problems = suite.replay_mismatches(losses, changed)
            assert len(problems) == 1 and problems[0].startswith(f"[{i}]")
    nan, inf = float("nan"), float("inf")
    assert not suite.replay_matches([nan], [nan]) and not suite.replay_matches([nan], [1.0])
    assert not suite.replay_matches([1.0], [nan]) and not suite.replay_matches([inf], [inf])
    assert not suite.replay_matches([1.0, 2.0], [1.0])  # a missing step is a mismatch, not a shorter comparison
    curve = [[10, 2.5, 2.4], [20, 2.1, 2.0]]
    assert suite.replay_matches([[10, 2.5 * (1 + tol / 2), 2.4], [20, 2.1, 2.0]], curve)
    assert not suite.replay_matches([[11, 2.5, 2.4], [20, 2.1, 2.0]], curve)
    assert not suite.replay_matches([[10, 2.5, 2.4 * (1 + 10 * tol)], [20, 2.1, 2.0]], curve)


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_committed_results_validate_and_replay(profile):
    path = ROOT / "notebooks" / "results" / f"{suite.SUITE_RESULTS_NAME}.{profile}.json"
    if not path.exists():
        pytest.skip(f"{path.name} is not recorded yet")
    data = suite.load_results(path)
    trigram = data["baselines"]["trigram"]
    ok = [r for r in data["runs"] if r["status"] == "ok"]
    depth = [r["val_loss"] for r in ok if r["experiment"] == "equal-depth"]
    if not depth:  # a partial file (the run is resumable): the best rate of every strategy whose sweep is complete
        lrs = set(suite.get_profile(profile).lrs)
        swept = {}
        for r in ok:
            if r["experiment"] == "lr-sweep":
                swept.setdefault(r["label"], {})[r["lr"]] = r["val_loss"]
        depth = [min(by_lr.values()) for by_lr in swept.values() if set(by_lr) == lrs]
    assert depth and all(v < trigram - 0.1 for v in depth), "recorded models must beat the trigram"
    record = next((r for r in data["runs"] if r["kind"] == "train" and r["device"] == "cpu" and not r.get("reused_from")
                   and r["status"] == "ok"), None)
    if record is None:
        pytest.skip(f"{path.name} holds no CPU training run to replay")
    steps = min(record["steps"], suite.FIRST_LOSSES)
    stored = record["first_losses"][:steps]
    again = suite.replay_run(record, steps)["first_losses"]
    assert not suite.replay_mismatches(again, stored)  # to within suite.REPLAY_RTOL: another CPU rounds otherwise
    for step in range(steps):  # a stored loss off by ten times the tolerance is noticed
        changed = [v * (1 + 10 * suite.REPLAY_RTOL) if i == step else v for i, v in enumerate(stored)]
        assert not suite.replay_matches(again, changed)


def test_script_dry_run(capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_experiments", ROOT / "scripts" / "run_experiments.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--profile", "cpu", "--dry-run"]) == 0
    assert "distinct runs" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        module.main(["--profile", "cpu", "--threads", "0"])


def test_the_code_hash_covers_every_module_a_run_imports():
    """RESULT_MODULES is closed under the package's relative imports, so no code a run executes escapes the hash."""
    from package_imports import imported_modules

    for name in suite.RESULT_MODULES:
        imported = imported_modules(suite.module_path(name)) - {"", "experiments"}  # package __init__s: no code
        assert imported <= set(suite.RESULT_MODULES), f"{name} imports {sorted(imported - set(suite.RESULT_MODULES))}"
    assert suite.module_path("experiments.suite") == Path(suite.__file__).resolve()


def test_rates_are_chosen_on_the_select_windows_not_the_reported_ones():
    p = suite.PROFILES["ci"]
    runs = [
        {"experiment": "lr-sweep", "label": "none", "lr": p.lrs[0], "status": "ok", "val_loss": 1.0,
         "select_val_loss": 2.0},
        {"experiment": "lr-sweep", "label": "none", "lr": p.lrs[1], "status": "ok", "val_loss": 1.5,
         "select_val_loss": 1.9},
    ]
    assert suite.chosen_lrs(runs, p)["none"] == p.lrs[1]  # lowest select loss, although its reported loss is higher
    first_edition = [{k: v for k, v in r.items() if k != "select_val_loss"} for r in runs]
    assert suite.chosen_lrs(first_edition, p)["none"] == p.lrs[0]  # old records: their one validation loss


def test_budget_width_plans_every_cell_with_its_own_rate():
    p = suite.PROFILES["cpu"]
    labels = suite.budget_labels(p)
    assert len(labels) == len(p.budget_widths) * len(p.budget_multipliers) * len(p.budget_strategies)
    sweep = suite.plan(p, "budget-sweep")
    assert {s.seed for s in sweep} == {0} and len(sweep) == len(labels) * len(p.budget_lrs)
    with pytest.raises(ValueError, match="run lr-sweep first"):
        suite.plan(p, "budget-width", {})
    lrs = {label: 1e-3 * (i + 1) for i, label in enumerate(labels)}
    arms = suite.plan(p, "budget-width", lrs)
    for spec in arms:
        width, steps = (int(part.split("=")[1]) for part in spec.label.split()[1:])
        assert spec.model.d_model == width and spec.model.d_ff == 4 * width and spec.train.steps == steps
        assert spec.train.lr == lrs[spec.label]
    assert {s.train.steps for s in arms} == {p.steps * k for k in p.budget_multipliers}


def test_the_best_step_rule_chooses_on_each_run_s_best_select_loss():
    p = suite.PROFILES["ci"]

    def run(lr, curve):  # curve: select losses at each evaluation; the last is select_val_loss
        return {"experiment": "lr-sweep", "label": "none", "lr": lr, "status": "ok", "val_loss": 9.0,
                "select_val_loss": curve[-1], "curve": [[i, 0.0, 9.0, v] for i, v in enumerate(curve)]}

    # the first rate ends worse but was better at its best step (it overfits after it)
    runs = [run(p.lrs[0], [2.0, 1.2, 1.6]), run(p.lrs[1], [2.0, 1.5, 1.4])]
    assert suite.chosen_lrs(runs, p)["none"] == p.lrs[1]
    assert suite.chosen_lrs(runs, p, "best")["none"] == p.lrs[0]
    assert suite.selection_loss(runs[0], "best") == 1.2 and suite.selection_loss(runs[0]) == 1.6
    with pytest.raises(ValueError, match="rule"):
        suite.chosen_lrs(runs, p, "first")
    old = {**runs[0], "curve": [[i, 0.0, v] for i, v in enumerate([2.0, 1.2])]}  # first edition
    with pytest.raises(ValueError, match="first-edition"):
        suite.selection_loss(old, "best")


def test_budget_stopped_trains_only_the_cells_whose_best_step_rate_differs(tmp_path):
    torch.set_num_threads(1)
    p = replace(TINY, steps=6, warmup=2, eval_every=3, budget_widths=(16,), budget_multipliers=(1,))
    path = suite.run_experiments(p, ["budget-sweep", "budget-width"], tmp_path, command="pytest")
    data = suite.load_results(path)
    labels = suite.budget_labels(p)
    # make the best-step choice of "none" differ from its last-step one: its runs at the
    # other rate get a better select loss early in the curve
    last = suite.chosen_lrs(data["runs"], p)
    other = next(lr for lr in p.budget_lrs if lr != last[labels[0]])
    for r in data["runs"]:
        if r["experiment"] == "budget-sweep" and r["label"] == labels[0] and r["lr"] == other:
            r["curve"][0][3] = min(pt[3] for rr in data["runs"] for pt in rr["curve"]) - 0.5
    suite.write_results(path, data)
    assert suite.chosen_lrs(data["runs"], p, "best")[labels[0]] == other
    suite.run_experiments(p, ["budget-stopped"], tmp_path, command="pytest")
    stopped = [r for r in suite.load_results(path)["runs"] if r["experiment"] == "budget-stopped"]
    assert {(r["label"], r["seed"]) for r in stopped} == {(x, s) for x in labels for s in range(p.seeds)}
    for r in stopped:
        rule_rate = other if r["label"] == labels[0] else last[r["label"]]
        assert r["lr"] == rule_rate
        # a run equal to a recorded one (budget-width's, or the sweep's seed 0) is copied
        copied = "reused_from" in r
        assert copied == (r["label"] != labels[0] or r["seed"] == 0), (r["label"], r["seed"])


def test_a_rate_at_the_edge_of_the_grid_widens_the_sweep():
    p = suite.PROFILES["ci"]
    low, high = min(p.lrs), max(p.lrs)

    def sweep(losses):
        return [{"experiment": "lr-sweep", "label": "none", "lr": lr, "status": "ok", "val_loss": loss,
                 "select_val_loss": loss} for lr, loss in losses.items()]

    runs = sweep({low: 2.0, high: 1.0})  # best at the largest rate
    assert suite.lrs_at_grid_edge(runs, p) == ["none"]
    (extra,) = suite.grid_extensions(runs, p, "lr-sweep")
    assert (extra.label, extra.seed, extra.train.lr) == ("none", 0, 2 * high)
    runs = sweep({low: 2.0, high: 1.0, 2 * high: 1.5})  # the wider rate is worse: the choice is inside
    assert suite.grid_extensions(runs, p, "lr-sweep") == [] and suite.lrs_at_grid_edge(runs, p) == []
    runs = sweep({low: 2.0, high: 1.0, 2 * high: 0.9, 4 * high: 0.8})  # at most MAX_GRID_EXTENSIONS per side
    assert p.max_grid_extensions == 2 and suite.grid_extensions(runs, p, "lr-sweep") == []
    assert suite.lrs_at_grid_edge(runs, p) == ["none"]  # still flagged
    runs = sweep({low: 1.0, high: 2.0})
    assert [s.train.lr for s in suite.grid_extensions(runs, p, "lr-sweep")] == [low / 2]
