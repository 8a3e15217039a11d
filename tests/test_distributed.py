"""Several processes give the update one process gives: two CPU processes over gloo (torchrun, as on a GPU
node), the same global batch, one optimiser step of algorithms with a value model, batch statistics and
per-token and per-example terms."""
import os
import subprocess
import sys

import torch

from tests.conftest import ROOT

SPECS = ["dqo", "dqo:is_self_normalize=true", "kto", "ppo", "grpo", "sft"]


def run(out, nproc):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    script = str(ROOT / "tests" / "_distributed_step.py")
    cmd = [sys.executable, script] if nproc == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", script]
    res = subprocess.run([*cmd, str(out), *SPECS], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return torch.load(out)


def test_two_processes_give_the_update_of_one(tmp_path):
    one, two = run(tmp_path / "one.pt", 1), run(tmp_path / "two.pt", 2)
    assert one["world"] == 1 and two["world"] == 2
    for spec in SPECS:
        a, b = one[spec], two[spec]
        assert a["policy"].ne(0).any()
        scale = max(1.0, a["policy"].abs().max().item())
        torch.testing.assert_close(b["policy"], a["policy"], rtol=1e-5, atol=1e-6 * scale, msg=spec)
        if a["value"] is not None:
            torch.testing.assert_close(b["value"], a["value"], rtol=1e-5, atol=1e-6 * max(1.0, a["value"].abs().max().item()),
                                       msg=spec)
        assert abs(a["loss"] - b["loss"]) <= 1e-5 * max(1.0, abs(a["loss"])), spec
