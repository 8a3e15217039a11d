"""GPUs for the jobs of a parallel sweep (``hydra/launcher=parallel``): each job takes the first free slot of
``dist.num_processes`` GPUs (one with ``dist=none``) and holds it while it runs, so jobs that run at once
never share a GPU; a job with no free slot waits for one. Slots are file locks under ``results_dir``, so
they hold across the launcher's worker processes."""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from filelock import FileLock, Timeout


def visible_gpus() -> list[str]:
    """This machine's GPUs as CUDA names them (the ones ``CUDA_VISIBLE_DEVICES`` leaves, if set)."""
    import torch

    if not torch.cuda.is_available():
        return []
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    return [g for g in env.split(",") if g] if env else [str(i) for i in range(torch.cuda.device_count())]


def gpus_per_job(dist: dict) -> int:
    """GPUs one job takes: its processes' (one GPU each), one with ``dist=none``; 0 = all of them."""
    if dist["name"] == "none":
        return 1
    return int(dist.get("num_processes") or 0) // int(dist.get("num_machines") or 1)


@contextlib.contextmanager
def gpu_slot(results_dir, gpus_per_job: int, gpus: list[str] | None = None, poll_s: float = 2.0):
    """Set ``CUDA_VISIBLE_DEVICES`` to a free slot's GPUs for the duration (nothing when every GPU is one slot)."""
    gpus = visible_gpus() if gpus is None else gpus
    slots = len(gpus) // gpus_per_job if gpus_per_job else 1
    if slots <= 1:
        yield None
        return
    folder = Path(results_dir) / ".gpu_slots"
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        for s in range(slots):
            lock = FileLock(str(folder / f"slot{s}.lock"))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            before = os.environ.get("CUDA_VISIBLE_DEVICES")
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus[s * gpus_per_job:(s + 1) * gpus_per_job])
            try:
                yield s
            finally:
                if before is None:
                    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
                else:
                    os.environ["CUDA_VISIBLE_DEVICES"] = before
                lock.release()
            return
        time.sleep(poll_s)
