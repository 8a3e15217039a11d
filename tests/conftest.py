import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"

# Tiny sizes for end-to-end runs: every stage really runs, in seconds. One-step problems on single digits and a
# short, fast warm start, so that the bank holds both correct and wrong samples (the bank algorithms need pairs).
SMOKE = [
    "model.hidden_size=32", "model.num_layers=2", "model.num_heads=2", "model.intermediate_size=64",
    "model.vocab_size=300", "model.warm_start_steps=20", "warm_start.lr=0.01", "warm_start.lr_schedule=constant",
    "task.min_steps=1", "task.max_steps=1", "task.test_max_steps=1", "task.max_operand=9", "task.max_factor=3",
    "task.max_product=27", "task.n_train=400", "task.n_test=40", "task.n_demo=100", "task.n_val=40",
    "bank.n_prompts=24", "bank.k=4", "train.steps=3", "train.batch_size=8", "train.micro_batch_size=4",
    "eval.n_test=16", "eval.k=2", "generation.batch_size=64", "value_check.n_prompts=48", "value_check.k=2",
]


@pytest.fixture
def smoke_overrides():
    return list(SMOKE)


#: the smoke settings that make π_ref: without them a job starts from the shipped family's draw 0 (a π_ref that
#: solves about a third of the problems and most of its bank's prompts sometimes, so every batch carries a signal)
RECIPE = ("model.", "warm_start.", "task.min_steps=", "task.max_steps=", "task.test_max_steps=", "task.max_operand=",
          "task.max_factor=", "task.max_product=", "task.n_demo=")


def on_shipped_ref(overrides: list[str]) -> list[str]:
    return [o for o in overrides if not o.startswith(RECIPE)]


def run_cli(args, cwd=ROOT, timeout=600, env=None):
    import subprocess

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "harness.run", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
