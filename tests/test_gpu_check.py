"""The prepared GPU check (scripts/gpu_check.sh) in its CPU mode: every step runs and the output files are written,
so the script is ready, not rotten, when a GPU is lent."""
import json
import os
import subprocess

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_gpu_check_cpu_mode_runs_every_step_and_writes_its_table(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": os.environ.get("PYTHON", "")}
    env["PYTHON"] = env["PYTHON"] or str(ROOT / ".venv" / "bin" / "python")
    res = subprocess.run(["bash", "scripts/gpu_check.sh", "--cpu"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    records = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    steps = {r["step"]: r for r in records}
    assert {"device", "dqo dist=none", "grpo dist=none", "generation (hf engine)", "pytest -m gpu"} <= set(steps)
    assert all(r["status"] in ("ok", "skipped") for r in records), records
    for algo in ("dqo", "grpo"):
        r = steps[f"{algo} dist=none"]
        assert r["train_tokens_per_s"] > 0 and r["peak_gib_measured"]["train"] > 0
        assert r["peak_gib_planned"]["train" if algo == "dqo" else "train (online)"] > 0
    assert steps["generation (hf engine)"]["gen_tokens_per_s"] > 0
    table = (tmp_path / "out" / "gpu_check.md").read_text()
    assert "| dqo dist=none | ok |" in table and "planned" in table
