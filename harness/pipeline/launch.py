"""A job in process(es) of its own (docs/design.md §6): one (a job of a sweep, ``isolate_jobs``) or several
(``dist=ddp|fsdp|zero2|zero3``).

Hydra composes the job's config once, in the process that ``harness.run`` starts; this module writes it
to the job's Hydra folder and runs ``python -m harness.pipeline.launch CONFIG.json``: directly, or once per process
under ``accelerate launch`` with the strategy's config file (``accelerate_configs/<dist>.yaml``). So Hydra makes
one output folder per job, not per rank, GPU state never leaks from one job to the next, and the same
command line works on a laptop and a cluster.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from harness.distributed.ranks import leave, main_process
from harness.distributed.strategies import num_processes
from harness.pipeline.job import run_one, setup_logging

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def launch_command(dist: dict, config_path: Path) -> list[str]:
    """This module on ``config_path``: alone with ``dist=none``, else under ``accelerate launch`` with the
    strategy's config file."""
    if dist["name"] == "none":
        return [sys.executable, "-m", "harness.pipeline.launch", str(config_path)]
    machines = int(dist.get("num_machines") or 1)
    port = dist.get("main_process_port") or free_port()
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / "accelerate_configs" / f"{dist['name']}.yaml"),
           "--num_processes", str(num_processes(dist)), "--num_machines", str(machines),
           "--machine_rank", str(int(dist.get("machine_rank") or 0)), "--main_process_port", str(port)]
    if dist.get("main_process_ip"):
        cmd += ["--main_process_ip", str(dist["main_process_ip"])]
    return cmd + ["-m", "harness.pipeline.launch", str(config_path)]


def launch(cfg_dict: dict, out_dir: Path) -> int:
    """Run the job in its own process(es); its exit code (0 when every process succeeded)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "job.json"
    path.write_text(json.dumps(cfg_dict))
    dist = cfg_dict["dist"]
    cmd = launch_command(dist, path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    if dist["name"] != "none":
        per_machine = num_processes(dist) // int(dist.get("num_machines") or 1)
        logging.getLogger("dqo_bench").info("launching %d processes: %s", num_processes(dist), " ".join(cmd))
        # processes that share a machine's cores split them (torchrun would give each one thread)
        env.setdefault("OMP_NUM_THREADS", str(max((os.cpu_count() or 1) // per_machine, 1)))
    return subprocess.run(cmd, cwd=os.getcwd(), env=env, check=False, preexec_fn=_term_with_parent).returncode


def _term_with_parent() -> None:
    """In the launched process, before it starts: SIGTERM when this process dies (Linux), so a killed sweep
    takes ``accelerate launch`` and, through it, the job's processes with it."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _exit_with_parent(poll_s: float = 2.0) -> None:
    """Stop this process when the one that started it is gone: Ctrl-C reaches both, but a `kill` of a sweep
    alone would leave its job computing (and holding the device) with nobody to read it. A checkpoint, if
    any, lets the next run resume."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(143)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def rank_main(config_path: str) -> None:
    """The job (or one process of it): rank 0 logs and shows progress, the others stay quiet."""
    if not main_process():
        os.environ["TQDM_DISABLE"] = "1"
    setup_logging(logging.INFO if main_process() else logging.WARNING)
    _exit_with_parent()
    leave(run_one(json.loads(Path(config_path).read_text())))


if __name__ == "__main__":
    rank_main(sys.argv[1])
