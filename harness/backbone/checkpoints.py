"""Resumable checkpoints of a training stage: written whole or not at all, and taken without being asked.

A checkpoint is saved into ``<dir>.new`` (``step.json`` last, which marks it complete) and then renamed over
``<dir>``; a kill at any moment leaves the previous checkpoint or the new one, never a mix of the two
(``settle`` finishes an interrupted rename and drops a half-written staging folder).

``Schedule`` says when: every ``train.checkpoint_every`` steps, and whenever ``train.checkpoint_minutes`` of
wall time have passed since the stage started or last saved (default 30: a long stage saves itself). Neither
changes a result: the optimiser, schedule and RNG states are restored exactly, so a resumed run equals an
uninterrupted one (tests/test_faults.py), and both options are outside every key (harness/config/variants.py).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from harness.distributed import ranks
from harness.storage.records import atomic_write

STEP = "step.json"


def _staging(ckpt_dir: Path) -> Path:
    return ckpt_dir.with_name(ckpt_dir.name + ".new")


def settle(ckpt_dir: Path) -> int:
    """The step of the complete checkpoint in ``ckpt_dir`` (a complete staging folder moved in first), or 0."""
    new = _staging(ckpt_dir)
    if ranks.main_process():
        if (new / STEP).exists():  # killed between the two renames of ``save``
            shutil.rmtree(ckpt_dir, ignore_errors=True)
            new.rename(ckpt_dir)
        else:
            shutil.rmtree(new, ignore_errors=True)
    ranks.barrier()
    return json.loads((ckpt_dir / STEP).read_text())["step"] if (ckpt_dir / STEP).exists() else 0


def save(ckpt_dir: Path, save_state, step: int, extra: dict[str, str] | None = None) -> None:
    """``save_state(folder)`` (every process: accelerate gathers sharded states), then ``extra`` files, then
    the step; then the complete folder replaces the previous checkpoint."""
    new = _staging(ckpt_dir)
    if ranks.main_process():
        shutil.rmtree(new, ignore_errors=True)
    ranks.barrier()
    try:
        save_state(str(new))
        for name, text in (extra or {}).items():
            atomic_write(new / name, text)
        atomic_write(new / STEP, json.dumps({"step": step}))
    except BaseException:  # a full disk: the previous checkpoint stays, the half-written one goes
        if ranks.main_process():
            shutil.rmtree(new, ignore_errors=True)
        raise
    ranks.barrier()
    if ranks.main_process():
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        new.rename(ckpt_dir)
    ranks.barrier()


class Schedule:
    """When a stage saves: every ``every`` steps, or once ``minutes`` of wall time have passed since the last
    save (rank 0's clock decides for every process)."""

    def __init__(self, every: int | None, minutes: float | None):
        self.every, self.seconds = int(every or 0), 60.0 * float(minutes or 0)
        self.last = time.monotonic()

    def due(self, step: int, since: int) -> bool:
        """Whether to save at ``step``, the last save (or start) having been at ``since``."""
        by_steps = self.every > 0 and step // self.every > since // self.every
        by_time = self.seconds > 0 and time.monotonic() - self.last >= self.seconds
        return bool(ranks.broadcast(by_steps or by_time))

    def saved(self) -> None:
        self.last = time.monotonic()
