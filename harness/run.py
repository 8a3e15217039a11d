"""Entry point: ``python -m harness.run [-m] key=value ...`` (Hydra; configs in ``sweeps/``).

One job per combination of a sweep (``-m algo=sft,rft,dpo seed=0,1``), each in its own process; a
failing job is recorded as failed and the others run on. After each job the leaderboard is rebuilt
from every run record under ``results_dir``.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import shutil
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from harness.errors import UserError
from harness.gpu_slots import gpu_slot, gpus_per_job

log = logging.getLogger("dqo_bench")
SWEEPS = Path(__file__).resolve().parent.parent / "sweeps"
# `${mul:${bank.n_prompts},8}` in a yaml: a budget that follows the bank's size (8 passes over its prompts)
OmegaConf.register_new_resolver("mul", lambda *xs: math.prod(int(x) for x in xs), replace=True)
OmegaConf.register_new_resolver("pid", os.getpid, replace=True)  # `${pid:}`: Hydra's folders, one per sweep
_failed: list[str] = []
MIN_FREE = 256 * 1024  # bytes results_dir's disk needs before Hydra writes its logs there
_sweep = [False]


def config_choices(group: str) -> list[str]:
    return sorted(p.stem for p in (SWEEPS / group).glob("*.yaml"))


def preflight(argv: list[str]) -> None:
    """Check algo/task/model/dist names, and the ``algo.`` / ``task.`` keys against the options of every chosen
    algorithm and task, before Hydra starts, so a typo costs one line, not a traceback (nor a silently
    ignored ``++algo.x=``)."""
    from harness.registry import available

    check_keys(argv)
    check_results_dir(argv)
    chosen = {"algo": [default_choice("algo")], "task": [default_choice("task")]}
    for arg in argv:
        key, eq, value = arg.partition("=")
        key = key.lstrip("+~")
        if not eq or key not in ("algo", "task", "model", "dist") or "(" in value:
            continue
        valid = config_choices(key)
        if key in ("algo", "task"):
            plugins = set(available("algorithm" if key == "algo" else "task"))
            valid = [v for v in valid if v in plugins]
        for name in value.split(","):
            if name and name not in valid:
                raise UserError(f"unknown {key} {name!r}; valid: {', '.join(valid)}")
        if key in chosen:
            chosen[key] = [n for n in value.split(",") if n]
    for group, kind in (("algo", "algorithm"), ("task", "task")):
        keys = [a.partition("=")[0].lstrip("+~")[len(group) + 1:] for a in argv if a.lstrip("+~").startswith(group + ".")]
        if keys:
            from harness.options import check_key
            from harness.registry import get

            for name in chosen[group]:
                for key in keys:
                    if key != "name":
                        check_key(get(kind, name).Options, key, group, name if len(chosen[group]) > 1 else "")


@functools.cache
def main_config() -> dict:
    """``sweeps/config.yaml`` as written (before Hydra composes it): the declared options and defaults."""
    import yaml

    return yaml.safe_load((SWEEPS / "config.yaml").read_text())


def check_keys(argv: list[str]) -> None:
    """An override of a key that ``config.yaml`` does not declare stops with one line naming the closest one
    (``+key=`` adds a key on purpose; ``algo.``/``task.`` keys are checked against the plug-in's options,
    ``model.`` keys depend on the model group)."""
    import difflib

    declared = {k: v for k, v in main_config().items() if k != "defaults"}
    tops = set(declared) | {"algo", "task", "model", "dist", "hydra"}
    for arg in argv:
        key, eq, _ = arg.partition("=")
        if not eq or key.startswith(("+", "~", "-")) or "/" in key:
            continue
        parts = key.split(".")
        known = tops if len(parts) == 1 or parts[0] not in tops else (
            set(declared[parts[0]]) | ({"name"} if parts[0] == "dist" else set())
            if len(parts) == 2 and isinstance(declared.get(parts[0]), dict) and parts[0] != "model" else None)
        i = 0 if parts[0] not in tops else len(parts) - 1  # the part that is unknown
        if known is not None and parts[i] not in known:
            close = difflib.get_close_matches(parts[i], sorted(known), n=1)
            hint = f" (did you mean {'.'.join([*parts[:i], close[0], *parts[i + 1:]])}?)" if close else ""
            raise UserError(f"unknown option {key}{hint}; every option is listed in sweeps/config.yaml")


def check_results_dir(argv: list[str]) -> None:
    """``results_dir`` can be created (Hydra writes its logs there first)."""
    value = str(main_config()["results_dir"])
    for arg in argv:
        key, eq, v = arg.partition("=")
        if eq and key.lstrip("+") == "results_dir":
            value = v
    if "," in value or "$" in value:  # a sweep over folders, or an interpolation: Hydra resolves it
        return
    try:
        Path(value).mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(value).free
    except OSError as e:
        raise UserError(f"results_dir={value}: cannot create it ({e.strerror}); give a folder you can write to") from None
    if free < MIN_FREE:
        raise UserError(f"results_dir={value}: only {free // 1024} KiB free on its disk; free space or give "
                        f"another results_dir=")


def default_choice(group: str) -> str:
    """The config group's default in ``config.yaml`` (``algo: dqo``)."""
    for item in main_config()["defaults"]:
        if isinstance(item, dict) and group in item:
            return item[group]
    raise KeyError(group)


def _launch(cfg_dict: dict) -> int:
    """Check the job here (one line, before any process starts), then run it in its own process(es)."""
    from harness.job import STOPPED
    from harness.launch import launch
    from harness.pipeline import check_job
    from harness.strategies import from_slurm

    cfg_dict = {**cfg_dict, "dist": from_slurm(cfg_dict["dist"])}
    try:
        check_job(OmegaConf.create(cfg_dict))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return STOPPED
    return launch(cfg_dict, Path(HydraConfig.get().runtime.output_dir))


@hydra.main(version_base=None, config_path="../sweeps", config_name="config")
def hydra_entry(cfg: DictConfig) -> None:
    # the model stack loads here, after the arguments were checked: a typo costs one line, not seconds of imports
    from harness.job import STOPPED, run_one
    from harness.report import write_reports

    cfg_dict = OmegaConf.to_container(cfg, resolve=True)
    cfg_dict["_overrides"] = list(HydraConfig.get().overrides.task)  # names the run's variant
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
