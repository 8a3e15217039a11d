"""Faults (docs/design.md §7): a job killed (SIGKILL) at any stage and rerun ends with the records of a job never
killed; nothing half-written is read as complete; a full disk stops in one line and loses nothing finished; a
non-finite loss is a failed run, shown as failed."""
import json
import math
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from harness.backbone import checkpoints
from harness.storage.artifacts import ArtifactStore
from tests.conftest import ROOT, SMOKE, run_cli

JOB = ["include_reference=false", *SMOKE]
EVERY_STEP = "train.checkpoint_minutes=1e-9"  # a checkpoint after every step (no part of the key)
#: what a record holds that does not depend on the clock
SAME = ["run_id", "status", "accuracy", "accuracy_sampled", "n_eval", "final_loss", "n_train_examples",
        "train_tokens", "gen_tokens", "flops", "data_train_tokens", "data_gen_tokens", "value_n_states",
        "value_corr_spearman"]


def record(results) -> dict:
    (run,) = [p for p in (results / "runs").iterdir() if p.is_dir()]
    metrics = json.loads((run / "metrics.json").read_text())
    return {"metrics": {k: metrics.get(k) for k in SAME},
            **{name: (run / name).read_text() for name in ("samples.jsonl", "train_history.jsonl")}}


def same(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The records of each algorithm's job never killed (computed once, when first asked for)."""
    out = {}

    def get(algo):
        if algo not in out:
            results = tmp_path_factory.mktemp(f"whole-{algo}")
            res = run_cli([*ALGOS[algo], f"results_dir={results}", *JOB])
            assert res.returncode == 0, res.stderr[-3000:]
            out[algo] = record(results)
        return out[algo]
    return get


WARM = 20  # the smoke warm start's steps: the algorithm's optimiser steps come after them
ALGOS = {"dqo": ["algo=dqo"],  # offline, bank, separate value model, value check
         "ppo": ["algo=ppo", "algo.prompts_per_iter=8"]}  # online: 3 rollout iterations of 16 steps


@pytest.mark.parametrize("algo, point, nth", [
    pytest.param("dqo", "train", WARM + 2, id="dqo-train", marks=pytest.mark.slow),
    pytest.param("dqo", "warm_start", 7, id="dqo-warm_start", marks=pytest.mark.slow),
    pytest.param("dqo", "checkpoint", 4, id="dqo-mid-checkpoint", marks=pytest.mark.slow),
    pytest.param("dqo", "bank", 1, id="dqo-bank", marks=pytest.mark.slow),
    pytest.param("dqo", "eval", 1, id="dqo-eval", marks=pytest.mark.slow),
    pytest.param("dqo", "record", 3, id="dqo-record", marks=pytest.mark.slow),
    pytest.param("ppo", "train", WARM + 20, id="ppo-train", marks=pytest.mark.slow),  # in the 2nd iteration
])
def test_a_job_killed_anywhere_and_rerun_ends_with_the_records_of_one_never_killed(
        tmp_path, uninterrupted, algo, point, nth):
    args = [*ALGOS[algo], f"results_dir={tmp_path}", *JOB, EVERY_STEP]
    killed = subprocess.run([sys.executable, str(ROOT / "tests" / "_killed_job.py"), point, str(nth), *args],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-3000:]
    rerun = run_cli(args)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    if point in ("warm_start", "train", "checkpoint"):
        assert "resuming from checkpoint" in rerun.stdout + rerun.stderr
    got, want = record(tmp_path), uninterrupted(algo)
    assert got["samples.jsonl"] == want["samples.jsonl"]
    assert got["train_history.jsonl"] == want["train_history.jsonl"]
    diff = {k: (got["metrics"][k], want["metrics"][k]) for k in SAME if not same(got["metrics"][k], want["metrics"][k])}
    assert not diff
    leftovers = [p for p in tmp_path.rglob("*") if ".tmp" in p.name or p.name.endswith((".new", ".ckpt"))
                 or p.name == "checkpoint"]
    assert not leftovers


def test_an_interrupted_checkpoint_is_never_read_as_complete(tmp_path):
    ckpt = tmp_path / "checkpoint"

    def state(step):
        return lambda folder: (tmp_path / folder).mkdir(parents=True) or (tmp_path / folder / "w").write_text(str(step))

    checkpoints.save(ckpt, state(1), 1)
    assert checkpoints.settle(ckpt) == 1
    # killed while saving step 2: the staging folder has state but no step.json
    (tmp_path / "checkpoint.new").mkdir()
    (tmp_path / "checkpoint.new" / "w").write_text("2")
    assert checkpoints.settle(ckpt) == 1 and (ckpt / "w").read_text() == "1"
    assert not (tmp_path / "checkpoint.new").exists()
    # killed between removing the old checkpoint and renaming the new one into place
    checkpoints.save(ckpt, state(3), 3)
    shutil.copytree(ckpt, tmp_path / "checkpoint.new")
    shutil.rmtree(ckpt)
    assert checkpoints.settle(ckpt) == 3 and (ckpt / "w").read_text() == "3"


def test_stale_artifact_folders_of_killed_builds_are_removed_but_not_one_being_built(tmp_path):
    store = ArtifactStore(tmp_path)
    (tmp_path / "bank-aaa.tmp").mkdir()
    (tmp_path / "bank-aaa.tmp" / "bank.parquet").write_text("half")
    (tmp_path / "bank-bbb.tmp").mkdir()  # being built by another process, which holds its lock
    held = subprocess.Popen([sys.executable, "-c", "import sys,time; from filelock import FileLock; "
                             "l = FileLock(sys.argv[1]); l.acquire(); print('held', flush=True); time.sleep(60)",
                             str(tmp_path / "bank-bbb") + ".lock"], stdout=subprocess.PIPE, text=True)
    try:
        assert held.stdout.readline().strip() == "held"
        assert store.clean_stale() == [tmp_path / "bank-aaa.tmp"]
        assert (tmp_path / "bank-bbb.tmp").exists()
    finally:
        held.kill()


def test_a_non_finite_loss_is_a_failed_run_named_by_step_and_term_and_shown_as_failed(tmp_path):
    res = run_cli(["algo=sft", "algo.lr=1e30", f"results_dir={tmp_path}", *JOB])
    assert res.returncode == 1
    out = res.stdout + res.stderr
    errors = [x for x in out.splitlines() if "ERROR" in x or x.startswith("error")]
    assert len(errors) == 1 and "non-finite loss term 'nll'" in errors[0] and "at step" in errors[0], out[-2000:]
    assert "Traceback" not in out and "UserWarning" not in out
    (metrics,) = (tmp_path / "runs").glob("*/metrics.json")
    assert json.loads(metrics.read_text())["status"] == "failed"
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    assert board.status.tolist() == ["failed"] and board.accuracy.isna().all()
    assert "| failed |" in (tmp_path / "leaderboard.md").read_text()


def _tmpfs_prefix():
    """A command prefix under which the job may mount a tmpfs that nobody else sees (root, or a user namespace)."""
    probe = "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d && umount $d"
    for prefix in (["unshare", "-m"], ["unshare", "-rm"]):  # a mount namespace of its own: gone with the job
        if shutil.which("mount") and subprocess.run([*prefix, "sh", "-c", probe], capture_output=True).returncode == 0:
            return prefix
    return None


@pytest.mark.slow
@pytest.mark.skipif(_tmpfs_prefix() is None, reason="cannot mount a tmpfs here (neither root nor user namespaces)")
def test_a_full_disk_stops_in_one_line_leaves_nothing_half_written_and_loses_nothing(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    job = " ".join([f"{sys.executable} -m harness.run algo=dqo results_dir={disk}", *JOB])
    script = f"""
mount -t tmpfs -o size=300k tmpfs {disk}
{job} > {tmp_path}/full.out 2> {tmp_path}/full.err; echo $? > {tmp_path}/full.rc
find {disk} > {tmp_path}/full.files
mount -o remount,size=4m {disk}
{job} > {tmp_path}/again.out 2> {tmp_path}/again.err; echo $? > {tmp_path}/again.rc
find {disk} -name metrics.json -exec cat {{}} + > {tmp_path}/again.metrics
"""
    subprocess.run([*_tmpfs_prefix(), "sh", "-c", script], cwd=ROOT, timeout=600, check=True,
                   env={**__import__("os").environ, "TQDM_DISABLE": "1"})
    err = (tmp_path / "full.out").read_text() + (tmp_path / "full.err").read_text()
    lines = [x for x in err.splitlines() if x.startswith("error") or "ERROR" in x or "Traceback" in x]
    assert len(lines) == 1 and "no space left on the disk of results_dir" in lines[0], err[-3000:]
    files = (tmp_path / "full.files").read_text().split()
    assert not [f for f in files if ".tmp" in f or f.endswith("metrics.json") or "leaderboard" in f], files
    assert any("warm_start-" in f and f.endswith("model.safetensors") for f in files)  # what was finished stays
    again = (tmp_path / "again.out").read_text() + (tmp_path / "again.err").read_text()
    assert (tmp_path / "again.rc").read_text().strip() == "0", again[-3000:]
    assert "warm start: reusing" in again and json.loads((tmp_path / "again.metrics").read_text())["status"] == "ok"


def test_a_long_stage_saves_itself_by_default(monkeypatch):
    """``train.checkpoint_minutes`` (default 30) saves once that much wall time has passed, with no step count
    asked; ``checkpoint_every`` still saves on its multiples."""
    from harness.config.compose import compose

    assert float(compose([]).train.checkpoint_minutes) > 0
    clock = [0.0]
    monkeypatch.setattr(checkpoints.time, "monotonic", lambda: clock[0])
    schedule = checkpoints.Schedule(every=0, minutes=30)
    clock[0] = 29 * 60
    assert not schedule.due(5, 4)
    clock[0] = 30 * 60
    assert schedule.due(6, 5)
    schedule.saved()
    assert not schedule.due(7, 6)
    by_steps = checkpoints.Schedule(every=4, minutes=0)
    assert [s for s in range(1, 13) if by_steps.due(s, s - 1)] == [4, 8, 12]
    assert by_steps.due(9, 6) and not by_steps.due(7, 5)  # an online iteration from step 6 to 9 crosses 8
