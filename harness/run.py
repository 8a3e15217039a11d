"""Entry point: ``python -m harness.run [-m] key=value ...`` (Hydra; configs in ``sweeps/``).

One job per combination of a sweep (``-m algo=sft,rft,dpo seed=0,1``), each in its own process; a
failing job is recorded as failed and the others run on. After each job the leaderboard is rebuilt
from every run record under ``results_dir``.
"""
from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from harness.config.preflight import preflight
from harness.config.schema import interpolations, settings
from harness.distributed.gpu_slots import gpu_slot, gpus_per_job
from harness.errors import UserError

log = logging.getLogger("dqo_bench")
_failed: list[str] = []
_sweep = [False]


def _launch(cfg_dict: dict) -> int:
    """Check the job here (one line, before any process starts), then run it in its own process(es)."""
    from harness.distributed.strategies import from_slurm
    from harness.pipeline.job import STOPPED
    from harness.pipeline.launch import launch
    from harness.pipeline.stages import check_job

    cfg_dict = {**cfg_dict, "dist": from_slurm(cfg_dict["dist"])}
    try:
        check_job(settings(cfg_dict))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return STOPPED
    return launch(cfg_dict, Path(HydraConfig.get().runtime.output_dir))


@hydra.main(version_base=None, config_path="../sweeps", config_name="config")
def hydra_entry(cfg: DictConfig) -> None:
    # the model stack loads here, after the arguments were checked: a typo costs one line, not seconds of imports
    from harness.pipeline.job import STOPPED, run_one
    from harness.reporting.leaderboard import write_reports

    cfg_dict = OmegaConf.to_container(cfg, resolve=True)
    cfg_dict["_overrides"] = list(HydraConfig.get().overrides.task)  # names the run's variant, with the keys
    cfg_dict["_interpolated"] = interpolations(cfg)  # that its sections read through ${...}
    label = f"algo={cfg.algo.name} task={cfg.task.name} model={cfg.model.name} seed={cfg.seed}"
    _sweep[0] = HydraConfig.get().mode == RunMode.MULTIRUN
    # in a sweep, the job's own GPUs while it runs (jobs of a parallel launcher never share one)
    with gpu_slot(cfg.results_dir, gpus_per_job(cfg_dict["dist"])) if _sweep[0] else contextlib.nullcontext():
        if cfg.dist.name != "none" or (_sweep[0] and cfg.isolate_jobs):  # in a process of its own
            rc = _launch(cfg_dict)
        else:
            rc = run_one(cfg_dict)
    if rc != 0:
        _failed.append(label)
    try:
        paths = write_reports(cfg.results_dir) if rc != STOPPED else None  # nothing new to report
    except OSError as e:  # a full disk: the records stay; `python -m harness.report` rebuilds the tables later
        print(f"error: cannot write the leaderboard under results_dir={cfg.results_dir} ({e.strerror}); "
              f"free space, then: python -m harness.report results_dir={cfg.results_dir}", file=sys.stderr)
        paths = None
    if paths:
        log.info("leaderboard: %s", paths["leaderboard"])


def main() -> None:
    try:
        preflight(sys.argv[1:])
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    hydra_entry()
    if _failed and _sweep[0]:
        print(f"error: {len(_failed)} job(s) failed: {'; '.join(_failed)} (see results_dir/runs/*/error.txt)",
              file=sys.stderr)
    if _failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
