"""A job's config composed from ``sweeps/`` as ``harness.run`` composes it, checked first (the preflight) and after
(memory levers, the numbers a plan computes with, the precision): what every command that reads a config uses."""
from __future__ import annotations

from harness.config.preflight import preflight
from harness.config.sweeps import SWEEPS
from harness.errors import UserError

NUMBERS = ("train.batch_size", "train.micro_batch_size", "generation.batch_size", "warm_start.batch_size",
           "warm_start.steps", "bank.max_new_tokens", "eval.max_new_tokens", "vllm.gpu_memory_utilization",
           "model.lora.r", "dist.num_processes", "dist.num_machines")  # the values a plan computes with


def compose(overrides: list[str]):
    """The job's config, checked and composed from ``sweeps/`` as ``harness.run`` does it."""
    import hydra
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from harness.backbone.memory import check_levers
    from harness.backbone.training import check_precision

    preflight(overrides)
    GlobalHydra.instance().clear()
    try:
        with hydra.initialize_config_dir(config_dir=str(SWEEPS), version_base=None):
            cfg = hydra.compose("config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as e:  # a bad override, in one line
        first = [str(x).strip().splitlines()[0].rstrip(".") for x in (e, e.__cause__) if x and str(x).strip()]
        raise UserError(": ".join(first) or type(e).__name__) from None
    check_levers(cfg.model, str(cfg.generation.engine))
    for key in NUMBERS:
        value = OmegaConf.select(cfg, key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
            raise UserError(f"{key}={value!r}: need a number >= 0")
    check_precision(str(cfg.train.precision))  # a plan is for a GPU: fp16 is fine here even on a CPU
    return cfg
