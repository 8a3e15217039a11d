"""``python -m harness.bench`` runs end to end at tiny sizes and says its comparison is fair (its figures are
read by a person on an idle machine, never asserted)."""
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_the_bench_runs_and_compares_the_same_tokens():
    res = subprocess.run([sys.executable, "-m", "harness.bench", "pairs=32", "batch=8", "steps=1", "repeats=2",
                          "wait=0"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout
    assert "token ids identical on both sides: True" in out
    for row in ("| DPO, ours |", "| DPO, TRL 1.16 DPOTrainer |", "| DQO, ours |", "| GRPO, ours |", "| hf (",
                "| DQO, ours, train.compile=true |", "train.compile=true against eager"):
        assert row in out, out


def test_a_bad_argument_is_one_line():
    res = subprocess.run([sys.executable, "-m", "harness.bench", "pairz=3"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode != 0 and res.stderr.strip().count("\n") == 0 and "unknown argument 'pairz=3'" in res.stderr
