"""``python tests/_killed_job.py POINT N ARGS...``: ``python -m harness.run ARGS...`` that SIGKILLs itself at the
N-th time it reaches POINT (tests/test_faults.py): a real process dying as a killed job does, nothing cleaned up.

Points: ``warm_start`` and ``train`` (after an optimiser step: the warm start's come first), ``checkpoint``
(a checkpoint's state saved, its step not yet), ``bank`` (samples drawn, not yet graded nor written),
``eval`` (test samples drawn, not yet graded), ``record`` (a record file half-written: its temporary file
written, not yet renamed into place).
"""
import os
import runpy
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import harness.backbone.checkpoints
import harness.backbone.training
import harness.pipeline.bank
import harness.pipeline.evaluation
import harness.storage.records

point, nth = sys.argv[1], int(sys.argv[2])
seen = [0]


def reached() -> None:
    seen[0] += 1
    if seen[0] == nth:
        sys.stdout.flush(), sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def after(owner, name):
    fn = getattr(owner, name)

    def wrapped(*args, **kwargs):
        out = fn(*args, **kwargs)
        reached()
        return out
    setattr(owner, name, wrapped)


def before(owner, name):
    fn = getattr(owner, name)

    def wrapped(*args, **kwargs):
        reached()
        return fn(*args, **kwargs)
    setattr(owner, name, wrapped)


if point in ("warm_start", "train"):
    after(harness.backbone.training.Learner, "step")
elif point == "bank":
    before(harness.pipeline.bank, "grade_many")
elif point == "eval":
    before(harness.pipeline.evaluation, "grade_many")
elif point == "checkpoint":
    write = harness.backbone.checkpoints.atomic_write

    def atomic_write(path, text):
        if Path(path).name == harness.backbone.checkpoints.STEP:
            reached()
        write(path, text)
    harness.backbone.checkpoints.atomic_write = atomic_write
elif point == "record":
    def atomic_write(path, text):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent.parent.name == "runs" and path.suffix in (".json", ".jsonl"):
            path.with_name(path.name + f".tmp{os.getpid()}").write_text(text[: len(text) // 2])
            reached()
        os.replace(_write_tmp(path, text), path)

    def _write_tmp(path, text):
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        tmp.write_text(text)
        return tmp
    harness.storage.records.atomic_write = atomic_write
else:
    raise SystemExit(f"unknown point {point}")

sys.argv = ["harness.run", *sys.argv[3:]]
runpy.run_module("harness.run", run_name="__main__", alter_sys=True)  # as ``python -m harness.run`` runs
