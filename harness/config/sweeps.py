"""``sweeps/``: the declared configuration (docs/design.md §7): its folder, the resolvers its yaml files use, and
``config.yaml`` as written (the declared options and the config groups' defaults)."""
from __future__ import annotations

import functools
import math
import os
from pathlib import Path

from omegaconf import OmegaConf

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"
# `${mul:${bank.n_prompts},8}` in a yaml: a budget that follows the bank's size (8 passes over its prompts)
OmegaConf.register_new_resolver("mul", lambda *xs: math.prod(int(x) for x in xs), replace=True)
OmegaConf.register_new_resolver("pid", os.getpid, replace=True)  # `${pid:}`: Hydra's folders, one per sweep


def config_choices(group: str) -> list[str]:
    return sorted(p.stem for p in (SWEEPS / group).glob("*.yaml"))


@functools.cache
def main_config() -> dict:
    """``sweeps/config.yaml`` as written (before Hydra composes it): the declared options and defaults."""
    import yaml

    return yaml.safe_load((SWEEPS / "config.yaml").read_text())


def default_choice(group: str) -> str:
    """The config group's default in ``config.yaml`` (``algo: dqo``)."""
    for item in main_config()["defaults"]:
        if isinstance(item, dict) and group in item:
            return item[group]
    raise KeyError(group)
