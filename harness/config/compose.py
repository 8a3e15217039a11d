"""A job's settings composed from ``sweeps/`` as ``harness.run`` composes them, checked first (the preflight) and
after (every shared option against its declaration, ``harness/config/schema.py``; the memory levers): what every
command that reads a config uses."""
from __future__ import annotations

from harness.config.preflight import preflight
from harness.config.schema import Settings, settings
from harness.config.sweeps import SWEEPS
from harness.errors import UserError


def compose(overrides: list[str]) -> Settings:
    """The job's typed settings, checked and composed from ``sweeps/`` as ``harness.run`` does it."""
    import hydra
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from harness.backbone.memory import check_levers

    preflight(overrides)
    GlobalHydra.instance().clear()
    try:
        with hydra.initialize_config_dir(config_dir=str(SWEEPS), version_base=None):
            cfg = hydra.compose("config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as e:  # a bad override, in one line
        first = [str(x).strip().splitlines()[0].rstrip(".") for x in (e, e.__cause__) if x and str(x).strip()]
        raise UserError(": ".join(first) or type(e).__name__) from None
    s = settings(cfg)
    s.overrides = list(overrides)
    check_levers(s.model, s.generation.engine)
    return s
