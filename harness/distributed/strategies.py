"""The distribution strategies (``dist=none|ddp|fsdp|zero2|zero3``, docs/design.md §6): what each is and what can be
known about one before any work. Starting processes is ``harness/pipeline/launch.py``'s."""
from __future__ import annotations

import importlib.util
import os

import torch

from harness.errors import UserError

STRATEGIES = ("none", "ddp", "fsdp", "zero2", "zero3")
#: the strategies that shard weights: every process must take part in every forward pass
SHARDED = ("fsdp", "zero3")


def num_processes(dist: dict) -> int:
    """``dist.num_processes``, or one per GPU of every machine when null."""
    if dist.get("num_processes") is not None:
        return int(dist["num_processes"])
    if not torch.cuda.is_available():
        raise UserError(f"dist={dist['name']} on a CPU needs dist.num_processes (e.g. dist.num_processes=2)")
    return torch.cuda.device_count() * int(dist.get("num_machines") or 1)


def check_dist(dist: dict, max_grad_norm: float = 0.0) -> None:
    """What can be known about ``dist`` before any work; one line when it cannot run here."""
    name = dist["name"]
    if name not in STRATEGIES:
        raise UserError(f"unknown dist {name!r}; valid: {', '.join(STRATEGIES)}")
    if name == "none":
        return
    n, machines = num_processes(dist), int(dist.get("num_machines") or 1)
    if n < 1 or machines < 1 or n % machines:
        raise UserError(f"dist.num_processes={n} must be a positive multiple of dist.num_machines={machines}")
    if machines > 1 and not (dist.get("main_process_ip") and dist.get("main_process_port")):
        raise UserError("dist.num_machines > 1 needs dist.main_process_ip and dist.main_process_port (the address "
                        "and a free port of the node with machine_rank 0), unless SLURM gives them")
    if not 0 <= int(dist.get("machine_rank") or 0) < machines:
        raise UserError(f"dist.machine_rank={dist.get('machine_rank')} must be in 0..{machines - 1}")
    if name == "fsdp" and not torch.cuda.is_available():
        # accelerate turns an FSDP config into plain multi-CPU data parallelism on a CPU: it would run,
        # unsharded, under the wrong name
        raise UserError("dist=fsdp needs GPUs (accelerate does not shard with FSDP on a CPU); use dist=zero3 "
                        "(DeepSpeed shards on a CPU too) or dist=ddp")
    if name in ("zero2", "zero3") and importlib.util.find_spec("deepspeed") is None:
        raise UserError(f"dist={name} needs DeepSpeed: pip install 'dqo-bench[deepspeed]' (or pip install deepspeed)")


def from_slurm(dist: dict) -> dict:
    """On a SLURM allocation of several nodes (``hydra/launcher=slurm``, one task per node), this node's
    rank and the first node's address, as submitit reads them from SLURM."""
    if int(dist.get("num_machines") or 1) == 1 or "SLURM_JOB_ID" not in os.environ:
        return dist
    import submitit

    env = submitit.JobEnvironment()
    return {**dist, "machine_rank": env.node, "main_process_ip": dist.get("main_process_ip") or env.hostnames[0],
            "main_process_port": dist.get("main_process_port") or 29500 + int(os.environ["SLURM_JOB_ID"]) % 10000}
