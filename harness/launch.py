"""One job over several processes (docs/design.md §7): ``dist=ddp|fsdp|zero2|zero3``.

Hydra composes the job's config once, in the process that ``harness.run`` starts; this module writes it
to the job's Hydra folder and starts ``accelerate launch`` with the strategy's config file
(``accelerate/<dist>.yaml``), which runs ``python -m harness.launch CONFIG.json`` once per process. So Hydra
makes one output folder per job, not per rank, and the same command line works on a laptop and a cluster.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from harness.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
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
    if machines > 1 and not dist.get("main_process_ip"):
        raise UserError("dist.num_machines > 1 needs dist.main_process_ip (the address of machine_rank 0)")
    if not 0 <= int(dist.get("machine_rank") or 0) < machines:
        raise UserError(f"dist.machine_rank={dist.get('machine_rank')} must be in 0..{machines - 1}")
    if name != "ddp" and not torch.cuda.is_available():
        # accelerate turns an FSDP or DeepSpeed config into plain multi-CPU data parallelism on a CPU: it
        # would run, unsharded, under the wrong name
        raise UserError(f"dist={name} needs GPUs (accelerate shards only on GPUs); use dist=ddp on a CPU")
    if name in ("zero2", "zero3"):
        raise UserError(f"dist={name} is not supported yet: DeepSpeed steps the optimiser inside backward and "
                        f"counts micro-batches itself, which the shared training step does not yet hand it; "
                        f"use dist=fsdp (same sharding as zero3) or dist=ddp")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def launch_command(dist: dict, config_path: Path) -> list[str]:
    """``accelerate launch`` with the strategy's config file, running this module on ``config_path``."""
    machines = int(dist.get("num_machines") or 1)
    port = dist.get("main_process_port") or free_port()
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / "accelerate" / f"{dist['name']}.yaml"),
           "--num_processes", str(num_processes(dist)), "--num_machines", str(machines),
           "--machine_rank", str(int(dist.get("machine_rank") or 0)), "--main_process_port", str(port)]
    if dist.get("main_process_ip"):
        cmd += ["--main_process_ip", str(dist["main_process_ip"])]
    return cmd + ["-m", "harness.launch", str(config_path)]


def launch(cfg_dict: dict, out_dir: Path) -> int:
    """Run the job under ``accelerate launch``; its exit code (0 when every process succeeded)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "job.json"
    path.write_text(json.dumps(cfg_dict))
    cmd = launch_command(cfg_dict["dist"], path)
    logging.getLogger("dqo_bench").info("launching %d processes: %s", num_processes(cfg_dict["dist"]), " ".join(cmd))
    # OMP: processes that share a machine's cores split them (torchrun would force 1 thread each)
    cores = max((os.cpu_count() or 1) // max(num_processes(cfg_dict["dist"]) // int(cfg_dict["dist"].get("num_machines") or 1), 1), 1)
    env = {"OMP_NUM_THREADS": str(cores), **os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run(cmd, cwd=os.getcwd(), env=env).returncode


def rank_main(config_path: str) -> None:
    """One process of a launched job: rank 0 logs and shows progress, the others stay quiet."""
    from harness.ranks import main_process
    from harness.run import _job, _setup_logging

    if not main_process():
        os.environ["TQDM_DISABLE"] = "1"
    _setup_logging(logging.INFO if main_process() else logging.WARNING)
    sys.exit(_job(json.loads(Path(config_path).read_text())))


if __name__ == "__main__":
    rank_main(sys.argv[1])
