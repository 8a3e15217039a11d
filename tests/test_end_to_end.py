"""The harness as a user runs it: `python -m harness.run ...` in a subprocess, with tiny sizes."""
import json

import pandas as pd
import pytest

from tests.conftest import run_cli


def test_sweep_writes_leaderboard_reuses_bank_and_skips_finished_runs(tmp_path, smoke_overrides):
    res = run_cli(["-m", "algo=sft,rft,dpo", "task=arith", f"results_dir={tmp_path}", *smoke_overrides])
    assert res.returncode == 0, res.stderr[-3000:]
    log = res.stdout + res.stderr
    assert log.count("rollout bank: sampled") == 1, log[-3000:]  # sampled once, by rft
    assert "rollout bank: reusing" in log  # ... and reused by dpo
    assert log.count("warm start: built") == 1

    board = pd.read_csv(tmp_path / "leaderboard.csv")
    assert list(board.algo)[0] == "reference"
    assert set(board.algo) == {"reference", "sft", "rft", "dpo"}
    for col in ["task", "model", "algo", "n_seeds", "accuracy", "accuracy_sampled", "n_eval", "wall_s",
                "gen_tokens", "train_tokens", "flops", "peak_mem_mb", "status"]:
        assert col in board.columns
    assert (board.status == "ok").all() and (board.n_eval == 16).all()
    assert board.accuracy.between(0, 1).all()
    trained = board[board.algo != "reference"]
    assert (trained.train_tokens > 0).all() and (board.gen_tokens > 0).all() and (board.flops > 0).all()
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert len(runs) == 4
    # Provenance: which code, packages and grader produced each number.
    assert runs["provenance.packages.torch"].str.startswith("2.13").all()
    assert runs["provenance.grader"].eq("tasks.arith.ArithTask.grade").all()
    assert {"leaderboard.md", "accuracy_vs_cost.png"} <= {p.name for p in tmp_path.iterdir()}
    for rid in runs.run_id:
        d = tmp_path / "runs" / rid
        assert {"config.yaml", "metrics.json", "samples.jsonl", "cost.json"} <= {p.name for p in d.iterdir()}
        n_lines = len((d / "samples.jsonl").read_text().splitlines())
        assert n_lines == 16 * 3  # greedy + k=2 samples per item

    again = run_cli(["algo=dpo", "task=arith", f"results_dir={tmp_path}", *smoke_overrides])
    assert again.returncode == 0
    assert "already complete, skipping" in again.stdout + again.stderr

    # Any saved model folder works as a policy, used as it is (as a hub id would be).
    saved = next(p for p in (tmp_path / "artifacts").glob("warm_start-*") if p.is_dir())
    local = run_cli(["algo=reference", f"results_dir={tmp_path}", *smoke_overrides,
                     f"model.name_or_path={saved}", "model.warm_start_steps=0"])
    assert local.returncode == 0, local.stderr[-2000:]
    row = pd.read_csv(tmp_path / "runs.csv").query("model == @saved.name")
    ref = runs.query("algo == 'reference'")
    assert len(row) == 1 and row.accuracy.item() == ref.accuracy.item()  # the same π_ref, the same result


def test_unknown_names_fail_with_one_line(tmp_path):
    for arg, valid in [("algo=nope", "dpo"), ("task=nope", "arith"), ("model=nope", "tiny")]:
        res = run_cli([arg, f"results_dir={tmp_path}"])
        assert res.returncode == 2
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "unknown" in lines[0] and valid in lines[0], res.stderr


@pytest.mark.slow  # whole jobs through the CLI: the fast suite keeps one such sweep
def test_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path, smoke_overrides):
    # Near-greedy samples are alike, so no prompt has a (correct, incorrect) pair: dpo fails with a clear error
    # once its bank is built; sft runs on.
    res = run_cli(["-m", "algo=dpo,sft", f"results_dir={tmp_path}", *smoke_overrides, "bank.k=2",
                   "bank.temperature=0.01"])
    assert res.returncode == 1 and "1 job(s) failed" in res.stderr, res.stderr[-2000:]
    assert "dpo: no training examples" in res.stderr
    runs = pd.read_csv(tmp_path / "runs.csv").set_index("algo")
    assert runs.loc["dpo", "status"] == "failed" and "no training examples" in runs.loc["dpo", "error"]
    assert runs.loc["sft", "status"] == "ok" and runs.loc["reference", "status"] == "ok"


@pytest.mark.slow  # whole jobs through the CLI: the fast suite keeps one such sweep
def test_actor_critic_family_runs_and_reports_value_check_and_variants(tmp_path, smoke_overrides):
    res = run_cli(["-m", "algo=dqo,dro,oreo,kto", f"results_dir={tmp_path}", *smoke_overrides])
    assert res.returncode == 0, res.stderr[-3000:]
    shaped = run_cli(["algo=dqo", "algo.process_values=true", "algo.value_model=shared", f"results_dir={tmp_path}",
                      *smoke_overrides, "process.n_prompts=8", "process.k=4"])
    assert shaped.returncode == 0, shaped.stderr[-3000:]
    assert "value check: reusing" in shaped.stdout + shaped.stderr  # held-out states built once, shared
    # the shaping really shapes: some step of some sample has a non-zero Monte-Carlo value
    values = [v for f in (tmp_path / "artifacts").glob("process_values-*/process_values.jsonl")
              for line in f.read_text().splitlines() for v in json.loads(line)["values"].values()]
    assert values and max(values) > 0, values

    runs = pd.read_csv(tmp_path / "runs.csv")
    assert (runs.status == "ok").all() and len(runs) == 6
    critics = runs[runs.algo.isin(["dqo", "dro", "oreo"])]
    assert critics.value_n_states.min() >= 3
    assert runs[runs.algo == "kto"].value_n_states.isna().all()  # no value model, no check

    board = pd.read_csv(tmp_path / "leaderboard.csv", keep_default_na=False).query("algo == 'dqo'")
    assert len(board) == 2  # the shaped, shared-trunk run is its own row, not averaged into plain dqo
    assert any("algo.process_values=true" in v and "algo.value_model=shared" in v for v in board.variant)
    cost = json.loads(next((tmp_path / "runs").glob("*-dqo-*/cost.json")).read_text())
    assert "value_check" in cost["diagnostics"]
    # Every stage and every artifact the run used carries its device time and utilisation.
    assert cost["stages"]["train"]["device_s"] > 0 and 0 < cost["stages"]["train"]["mfu"] < 1
    assert cost["artifacts"]["bank"]["device_s"] > 0 and cost["artifacts"]["warm_start"]["mfu"] > 0
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    assert board[board.algo != "reference"].gain_per_device_hour.notna().all()


def test_killing_a_sweep_stops_its_running_job(tmp_path, smoke_overrides):
    """`kill <sweep pid>` must not leave the job process computing on its own."""
    import signal
    import subprocess
    import sys
    import time

    import psutil

    from tests.conftest import ROOT

    args = [sys.executable, "-m", "harness.run", "-m", "algo=reference", f"results_dir={tmp_path}",
            *smoke_overrides, "model.warm_start_steps=100000"]
    sweep = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    jobs = []
    try:
        deadline = time.time() + 60
        while not jobs and time.time() < deadline:
            time.sleep(0.5)
            jobs = [c for c in psutil.Process(sweep.pid).children() if "harness.pipeline.launch" in " ".join(c.cmdline())]
        assert jobs, "the sweep started no job process"
        time.sleep(3)  # let it get going
        sweep.send_signal(signal.SIGKILL)
        sweep.wait()
        _, alive = psutil.wait_procs(jobs, timeout=15)
        assert not alive, "the job kept running after its sweep was killed"
    finally:
        for p in [*jobs, *psutil.Process().children(recursive=True)]:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass


@pytest.mark.slow  # whole jobs through the CLI: the fast suite keeps one such sweep
def test_tbrm_trains_on_the_bank_and_online(tmp_path, smoke_overrides):
    res = run_cli(["-m", "algo=tbrm", "algo.source=bank,online", "algo.n_samples=4", "algo.prompts_per_iter=8",
                   f"results_dir={tmp_path}", *smoke_overrides, "include_reference=false"])
    assert res.returncode == 0, res.stderr[-3000:]
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert (runs.status == "ok").all() and len(runs) == 2
    is_online = runs.variant.str.contains("algo.source=online")
    offline, online = runs[~is_online].iloc[0], runs[is_online].iloc[0]
    assert offline.data_gen_tokens > 0 and offline.train_gen_tokens == offline.data_gen_tokens  # the bank
    assert online.data_gen_tokens == 0 and online.online_iterations == 3 and online.train_gen_tokens > 0
    history = [json.loads(x) for x in (tmp_path / "runs" / offline.run_id / "train_history.jsonl").read_text().splitlines()]
    assert len(history) == 3 and all("residual_loss" in h and "value_first" in h for h in history)


@pytest.mark.slow  # whole jobs through the CLI: the fast suite keeps one such sweep
def test_apo_estimates_v_star_from_the_bank_then_trains_online(tmp_path, smoke_overrides):
    res = run_cli(["algo=apo", f"results_dir={tmp_path}", *smoke_overrides, "include_reference=false"])
    assert res.returncode == 0, res.stderr[-3000:]
    (run,) = [json.loads(p.read_text()) for p in tmp_path.glob("runs/*/metrics.json")]
    d = tmp_path / "runs" / run["run_id"]
    rollouts = [json.loads(x) for x in (d / "rollouts.jsonl").read_text().splitlines()]
    # budget: bank.k passes over the bank's 24 prompts, one sample each, 64 prompts per rollout batch
    assert [r["n_samples"] for r in rollouts] == [64, 32] and run["online_steps"] == 8 + 4
    cost = json.loads((d / "cost.json").read_text())
    assert run["train_gen_tokens"] == cost["artifacts"]["bank"]["gen_tokens"] + sum(r["gen_tokens"] for r in rollouts)
    history = [json.loads(x) for x in (d / "train_history.jsonl").read_text().splitlines()]
    assert len(history) == 12 and all("regression_loss" in h and "v_star" in h for h in history)

    bad = run_cli(["algo=apo", "algo.prompt_pool=25", f"results_dir={tmp_path}", *smoke_overrides,
                   "include_reference=false"])
    assert bad.returncode == 1 and "algo.prompt_pool must not exceed bank.n_prompts" in bad.stderr, bad.stderr[-2000:]


@pytest.mark.slow  # whole jobs through the CLI: the fast suite keeps one such sweep
def test_a_value_check_whose_states_have_no_step_boundary_records_its_prompt_level_check(tmp_path, smoke_overrides):
    """One-token rollouts hold no step boundary (a model answering on one line): the states are the prompts."""
    res = run_cli(["algo=dqo", f"results_dir={tmp_path}", *smoke_overrides, "value_check.n_prompts=8",
                   "value_check.max_new_tokens=1", "include_reference=false"])
    assert res.returncode == 0, res.stderr[-3000:]
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert (runs.status == "ok").all() and runs.value_n_states.tolist() == [8]
