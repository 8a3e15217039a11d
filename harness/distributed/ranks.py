"""Which process am I (docs/design.md §6): the helpers that make every stage of a job work under
``accelerate launch`` with N processes, and do nothing with one.

- Generation: ``harness.generation.engines.ShardedEngine`` gives each process every N-th prompt (``shard``) and gathers
  the samples back in order; a prompt's sampling noise is its own (``harness/generation/sampling.py``), so N processes draw
  what one draws.
- Training: ``Learner.step`` splits the batch itself (``harness/backbone/training.py``).
- Writes: rank 0 writes records and artifacts (``main_process``); the others compute the same values,
  write nothing and wait at the points where they read what rank 0 wrote.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn


def deepspeed() -> bool:
    """Launched with a DeepSpeed config (``dist=zero2|zero3``: accelerate launch sets this)."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def process_state():
    """accelerate's PartialState, joined as every Accelerator of the job joins it: gloo on a CPU, and for
    DeepSpeed on a CPU its CPU accelerator over gloo (accelerate's own CPU default would ignore DeepSpeed)."""
    import torch
    from accelerate import PartialState

    if deepspeed() and not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # read when deepspeed is first imported
        return PartialState(backend="gloo")
    return PartialState(cpu=not torch.cuda.is_available())


def _group():
    """``torch.distributed``, its process group joined (``process_state``), so the first collective may come
    before the job's Accelerator is made."""
    import torch.distributed as dist

    if not dist.is_initialized():
        process_state()
    return dist


def world_size() -> int:
    """Processes of this job (the launcher's ``WORLD_SIZE``; 1 when not launched)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def main_process() -> bool:
    return rank() == 0


def leave(rc: int) -> NoReturn:
    """End a process of a job with ``rc``. With several processes it leaves the process group and exits without
    interpreter teardown: gloo's worker threads of the groups DeepSpeed still holds live until teardown, and a
    worker finishing there may abort a process whose work is done ("terminate called without an active
    exception", CI 2026-12-07). Everything is written and flushed first."""
    if world_size() == 1:
        sys.exit(rc)
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


def barrier() -> None:
    if world_size() > 1:
        _group().barrier()


def broadcast(obj):
    """Rank 0's ``obj`` on every process."""
    if world_size() == 1:
        return obj
    box = [obj]
    _group().broadcast_object_list(box, src=0)
    return box[0]


def main_lock(path):
    """A file lock that rank 0 holds (the others wait for it where they next meet rank 0)."""
    if not main_process():
        return contextlib.nullcontext()
    from filelock import FileLock

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path))


def gather(obj) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every process."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    _group().all_gather_object(out, obj)
    return out


def shard(n: int, world: int, r: int) -> list[int]:
    """The indices of ``n`` items process ``r`` of ``world`` takes: every ``world``-th, padded with its last
    index so that every process makes the same number of calls (sharded weights need every process in
    every forward pass)."""
    mine = list(range(r, n, world))
    size = -(-n // world)
    return mine + [mine[-1] if mine else 0] * (size - len(mine)) if n else []
