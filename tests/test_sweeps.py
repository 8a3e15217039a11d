"""Sweeps beyond one job at a time: Hydra's joblib launcher (hydra/launcher=parallel) and submitit (the SLURM
preset's launcher, run here with submitit's local executor), GPU slots, and shared artifacts built once."""
import json

import pandas as pd
import pytest

from harness.distributed.gpu_slots import gpu_slot, gpus_per_job
from tests.conftest import run_cli


def _runs(root):
    runs = pd.read_csv(root / "runs.csv")
    assert (runs.status == "ok").all(), runs[["algo", "status"]]
    return runs


@pytest.mark.slow
def test_parallel_jobs_build_a_shared_bank_and_reference_once(tmp_path, smoke_overrides):
    res = run_cli(["-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", "algo=rft,dpo",
                   f"results_dir={tmp_path}", *smoke_overrides])
    assert res.returncode == 0, res.stderr[-3000:]
    runs = _runs(tmp_path)
    assert sorted(runs.algo) == ["dpo", "reference", "rft"]  # the reference row once, though both jobs need it
    assert len([p for p in (tmp_path / "artifacts").glob("bank-*") if p.is_dir()]) == 1
    hits = [json.loads((tmp_path / "runs" / rid / "cost.json").read_text())["artifacts"]["bank"]["hit"]
            for rid in runs.query("algo != 'reference'").run_id]
    assert sorted(hits) == [False, True]  # built by one job, read by the other
    # both ran at once: each job's run overlaps the other's in time
    spans = [((d / "config.yaml").stat().st_mtime, (d / "metrics.json").stat().st_mtime)  # start, end
             for d in (tmp_path / "runs" / rid for rid in runs.query("algo != 'reference'").run_id)]
    assert max(a for a, _ in spans) < min(b for _, b in spans)


@pytest.mark.slow
def test_submitit_runs_each_job_of_a_sweep(tmp_path, smoke_overrides):
    res = run_cli(["-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "algo=sft", "seed=0,1",
                   f"results_dir={tmp_path}", *smoke_overrides])
    assert res.returncode == 0, res.stderr[-3000:]
    runs = _runs(tmp_path)
    assert sorted(runs.query("algo == 'sft'").seed) == [0, 1]
    assert list((tmp_path / "hydra").glob("*/.submitit/*/*_log.out"))  # submitit's own job logs


def test_the_slurm_preset_composes(tmp_path):
    res = run_cli(["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=8",
                   "dist=fsdp", f"results_dir={tmp_path}", "--cfg", "hydra", "--package", "hydra.launcher"])
    assert res.returncode == 0, res.stderr[-2000:]
    out = res.stdout
    assert "SlurmLauncher" in out and "partition: gpu" in out and "gpus_per_node: 8" in out and "tasks_per_node: 1" in out


def test_gpu_slots_are_disjoint_and_released(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpus = ["0", "1", "2", "3"]
    with gpu_slot(tmp_path, 2, gpus) as a:
        import os

        first = os.environ["CUDA_VISIBLE_DEVICES"]
        with gpu_slot(tmp_path, 2, gpus) as b:  # another job while the first runs
            second = os.environ["CUDA_VISIBLE_DEVICES"]
    assert (a, first, b, second) == (0, "0,1", 1, "2,3")
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    with gpu_slot(tmp_path, 2, gpus) as again:
        assert again == 0
    with gpu_slot(tmp_path, 4, gpus) as whole:  # a job that needs every GPU: nothing to assign
        assert whole is None and "CUDA_VISIBLE_DEVICES" not in os.environ
    assert gpus_per_job({"name": "none"}) == 1
    assert gpus_per_job({"name": "ddp", "num_processes": 8, "num_machines": 2}) == 4


@pytest.mark.slow
def test_two_sweeps_at_once_on_one_results_dir_share_artifacts_and_keep_the_tables_whole(tmp_path, smoke_overrides):
    """Two users (or two terminals) start overlapping sweeps at the same moment on one results_dir."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "harness.run", "-m", f"algo={algos}", f"results_dir={tmp_path}",
                               *smoke_overrides], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for algos in ("sft,dpo", "dpo,rft")]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-2000:] for o in outs)
    log = "\n".join(outs)
    assert log.count("warm start: built") == 1 and log.count("rollout bank: sampled") == 1
    assert len([x for x in log.splitlines() if "=== arith-tiny-dpo-" in x]) == 1  # dpo run once, read by the other
    runs = _runs(tmp_path)
    assert sorted(runs.algo) == ["dpo", "reference", "rft", "sft"]
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    assert sorted(board.algo) == ["dpo", "reference", "rft", "sft"] and (board.status == "ok").all()
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
