"""A run's *variant*: the command-line overrides that change what it computes, so the leaderboard
never averages runs with different hyper-parameters into one row (``algo=dqo algo.lam=0`` is its
own row, next to plain ``dqo``)."""
from __future__ import annotations

from harness.storage.artifacts import config_hash

#: overrides that never make a different variant: the seed and π_ref's draw are factors of the report; the rest
#: only say where and how to run
_IGNORED = {"seed", "results_dir", "isolate_jobs", "include_reference", "warm_start.draw"}


def _in_spec(spec: dict, dotted: str) -> bool:
    node = spec
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def variant_label(overrides: list[str], spec: dict, read_keys: set[str] = frozenset()) -> str:
    """The overrides (``key=value``) whose key is part of this run's spec, or is read by it through an
    interpolation (``read_keys``), sorted; '' for the defaults. Group choices (``algo=dqo``) are not
    included: the row already names them."""
    keep = []
    for o in overrides:
        key, eq, _ = o.lstrip("+~").partition("=")
        if (eq and "." in key and key.split(".")[0] not in _IGNORED and key not in _IGNORED
                and (_in_spec(spec, key) or key in read_keys)):
            keep.append(o.lstrip("+~"))
    return " ".join(sorted(keep))


def variant_id(spec: dict) -> str:
    """Hash of the run spec without the seed and π_ref's draw (``warm_start.draw``): equal for the seeds and draws
    of one configuration, which the report treats as factors, different as soon as anything else differs (also a
    config file edited between runs)."""
    spec = {k: v for k, v in spec.items() if k not in ("seed", "ref")}  # ref: the draw's weights (its hash)
    if isinstance(spec.get("warm_start"), dict):
        spec["warm_start"] = {k: v for k, v in spec["warm_start"].items() if k != "draw"}
    return config_hash(spec)[:8]


#: options that change how a job runs, not what it computes: no part of any run or artifact key (nor label).
#: micro_batch_size: the backbone reduces over the whole batch, so the update is the same up to the order of
#: float sums (tests/test_accumulation.py); gradient_checkpointing recomputes the same activations; compile runs the
#: same maths through fused kernels (tests/test_compile.py).
OPERATIONAL = {"train": ("checkpoint_every", "checkpoint_minutes", "log_every", "micro_batch_size", "compile"),
               "model": ("gradient_checkpointing",)}


def drop_operational(section: str, values: dict) -> dict:
    """``values`` of a config section without its operational options."""
    return {k: v for k, v in values.items() if k not in OPERATIONAL.get(section, ())}
