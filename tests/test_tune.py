"""The comparison protocol (docs/design.md §11): a validation split disjoint from everything else, and ``harness.tune``
(equal trials per algorithm on validation, tuning seeds apart from report seeds, the selection reported on test)."""
import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from harness.errors import UserError
from harness.pipeline.stages import split_train
from harness.registry import available
from harness.tune import draws, parse, space
from tasks import get_task
from tests.conftest import ROOT, SMOKE


def test_the_validation_split_is_disjoint_and_leaves_demos_and_rl_prompts_as_they_were():
    splits = get_task("arith", n_train=600, n_test=100).load_splits()
    demo, rl, val = split_train(splits["train"], 100, 50)
    ids = lambda xs: {x["id"] for x in xs}  # noqa: E731
    assert len(val) == 50 and not ids(val) & (ids(demo) | ids(rl) | ids(splits["test"]))
    assert {x["question"] for x in val}.isdisjoint(x["question"] for x in splits["test"])
    demo0, rl0, val0 = split_train(splits["train"], 100, 0)
    assert demo0 == demo and rl0[:len(rl)] == rl and not val0  # validation comes off the end of the RL prompts
    with pytest.raises(UserError, match="task.n_val=500"):
        split_train(splits["train"], 100, 500)


@pytest.mark.parametrize("argv,message", [
    (["algo=dqo", "tune.trails=3"], "unknown option tune.trails"),
    (["algo=dqo", "seed=1"], "seed is set by harness.tune"),
    (["algo=dqo", "tune.seeds=0", "tune.report_seeds=0,1"], "share a seed"),
    (["tune.trials=2"], "name the algorithms"),
    (["algo=dqo", "tune.trials=x"], "not an integer"),
])
def test_bad_tune_options_are_one_line(argv, message):
    with pytest.raises(UserError, match=message):
        parse(argv)


@pytest.mark.skipif(not list((ROOT / "family").glob("*/draw-0")), reason="no family shipped")
def test_a_draw_the_family_lacks_stops_the_tune_before_its_trials(tmp_path, capsys):
    from harness.tune import main

    assert main(["algo=dqo", "tune.report_draws=0,9", f"results_dir={tmp_path}"]) == 2
    assert "warm_start.draw=9" in capsys.readouterr().err and not (tmp_path / "runs").exists()


def test_an_unknown_or_untunable_algorithm_is_one_line():
    with pytest.raises(UserError, match="unknown algo 'dqx'; valid: apo"):
        space("dqx")
    with pytest.raises(UserError, match="reference cannot be tuned"):
        space("reference")


def test_every_trained_algorithm_declares_a_search_space_with_its_default_inside():
    import yaml

    for name in available("algorithm"):
        raw = yaml.safe_load((ROOT / "sweeps" / "algo" / f"{name}.yaml").read_text())
        if name == "reference":
            assert "search" not in raw
            continue
        dists = space(name)
        assert "lr" in dists, name
        for key, (kind, *args) in dists.items():
            default = raw[key]
            inside = default in args[0] if kind == "choice" else args[0] <= default <= args[1]
            assert inside, f"{name}: default {key}={default} outside its search space"


def test_trials_are_a_seeded_latin_hypercube_one_per_slice_of_every_range():
    import math

    dists = {"lr": ("log", 1e-6, 1e-4), "beta": ("choice", [0.03, 0.1, 0.3, 1.0])}
    trials = draws(dists, 4, seed=0)
    assert trials == draws(dists, 4, seed=0) and trials != draws(dists, 4, seed=1)
    slices = sorted(int(math.log10(t["lr"] / 1e-6) / 2 * 4) for t in trials)  # which quarter of the log range
    assert slices == [0, 1, 2, 3]
    assert sorted(t["beta"] for t in trials) == [0.03, 0.1, 0.3, 1.0]  # 4 trials, 4 choices: each once
    assert all(f"{t['lr']:.3g}" == repr(t["lr"]) or float(f"{t['lr']:.3g}") == t["lr"] for t in trials)


@pytest.mark.slow
def test_tune_gives_each_algorithm_equal_trials_on_val_and_reports_the_best_on_test(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1"}
    args = ["algo=sft,dpo", "tune.trials=2", "tune.seeds=100", "tune.report_seeds=0", *SMOKE,
            f"results_dir={tmp_path}"]
    proc = subprocess.run([sys.executable, "-m", "harness.tune", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = pd.read_csv(tmp_path / "tune.csv")
    assert trials.groupby("algo").size().to_dict() == {"dpo": 2, "sft": 2}
    for algo, g in trials.groupby("algo"):
        assert g.selected.sum() == 1 and g.loc[g.selected, "val_mean"].iloc[0] == g.val_mean.max()
    runs = pd.read_csv(tmp_path / "runs.csv")
    trained = runs[runs.algo != "reference"]
    assert set(trained[trained.eval_split == "val"].seed) == {100}  # trials: tuning seed, validation
    assert set(trained[trained.eval_split == "test"].seed) == {0}  # the report: fresh seed, test
    assert runs[runs.eval_split == "val"].eval_items_hash.nunique() == 1
    assert set(runs.eval_items_hash[runs.eval_split == "val"]).isdisjoint(runs.eval_items_hash[runs.eval_split == "test"])
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    tuned = json.loads((tmp_path / "tuned.json").read_text())
    reported = board[board.variant_id.isin(tuned)]
    assert set(reported.algo) == {"sft", "dpo"} and set(reported.chosen) == {"tuned on val, 2 trials"}
    assert "tuned on val, 2 trials" in (tmp_path / "leaderboard.md").read_text()


def test_two_tunes_sharing_a_results_dir_keep_each_others_selections(tmp_path, monkeypatch):
    """Each tune re-reads ``tune.csv`` and ``tuned.json`` under a lock before it writes: a tune that read them at its
    start would drop what another tune selected meanwhile (two lanes of one sweep lost DQO's and DRO's rows)."""
    import harness.report
    import harness.tune as tune

    other = {"algo": "dro", "params": {"lr": 1e-6}, "chosen": "tuned on val, 2 trials"}

    def finished_elsewhere_meanwhile(algo, opts, rest):  # the other tune writes while this one runs its trials
        (tmp_path / "tuned.json").write_text(json.dumps({"feedbeef": other}))
        pd.DataFrame([{"algo": "dro", "trial": 0, "params": '{"lr": 1e-06}', "val_mean": 0.5, "selected": True}]) \
            .to_csv(tmp_path / "tune.csv", index=False)
        return [{"algo": algo, "trial": 0, "params": '{"lr": 2e-06, "beta": 0.1}', "val_mean": 0.6,
                 "selected": True}], {"params": '{"lr": 2e-06, "beta": 0.1}', "val_mean": 0.6}

    monkeypatch.setattr(tune, "tune_one", finished_elsewhere_meanwhile)
    monkeypatch.setattr(tune, "run_jobs", lambda *a: 0)
    monkeypatch.setattr(harness.report, "write_reports", lambda *a, **k: {})
    (tmp_path / "tuned.json").write_text("{}")  # what this tune would have read at its start
    assert tune.main(["algo=dqo", "tune.trials=1", f"results_dir={tmp_path}"]) == 0
    tuned = json.loads((tmp_path / "tuned.json").read_text())
    assert tuned["feedbeef"] == other and {v["algo"] for v in tuned.values()} == {"dro", "dqo"}
    assert set(pd.read_csv(tmp_path / "tune.csv").algo) == {"dro", "dqo"}
