"""Range checks on the shared numeric options, so a nonsense value stops the job with one line before any
work. An algorithm's own options are typed and bounded by its ``Options`` (``harness/options.py``)."""
from __future__ import annotations

from harness.errors import UserError

# (dotted key, lower bound, upper bound or None, lower bound inclusive)
_RANGES = [
    ("bank.n_prompts", 1, None, True), ("bank.k", 1, None, True), ("bank.temperature", 0, None, False),
    ("bank.top_p", 0, 1, False), ("bank.max_new_tokens", 1, None, True),
    ("eval.k", 0, None, True), ("eval.temperature", 0, None, False), ("eval.top_p", 0, 1, False),
    ("eval.max_new_tokens", 1, None, True), ("eval.n_test", 1, None, True), ("eval.n_sampled", 0, None, True),
    ("eval.every", 0, None, True),
    ("eval.curve_items", 1, None, True),
    ("train.steps", 1, None, True), ("train.batch_size", 1, None, True), ("train.micro_batch_size", 1, None, True),
    ("train.checkpoint_every", 0, None, True), ("train.checkpoint_minutes", 0, None, True),
    ("train.log_every", 0, None, True), ("train.warmup_ratio", 0, 1, True), ("train.max_grad_norm", 0, None, True), ("train.weight_decay", 0, None, True),
    ("warm_start.steps", 0, None, True), ("warm_start.batch_size", 1, None, True), ("warm_start.lr", 0, None, False),
    ("warm_start.draw", 0, None, True), ("warm_start.warmup_ratio", 0, 1, True), ("warm_start.max_grad_norm", 0, None, True),
    ("warm_start.weight_decay", 0, None, True),
    ("generation.batch_size", 1, None, True), ("vllm.gpu_memory_utilization", 0, 1, False),
    ("process.n_prompts", 1, None, True), ("process.k", 1, None, True),
    ("value_check.n_prompts", 0, None, True), ("value_check.k", 1, None, True),
]


#: shared switches that must be true or false (a typo like `maybe` would otherwise read as true)
_SWITCHES = ["train.group_by_prompt", "train.compile", "warm_start.rebuild", "include_reference", "isolate_jobs"]


def check_config(cfg) -> None:
    for key in _SWITCHES:
        node, _, leaf = key.rpartition(".")
        value = (cfg.get(node, {}) if node else cfg).get(leaf)
        if value is not None and not isinstance(value, bool):
            raise UserError(f"{key}={value!r}: give true or false")
    if cfg.get("train", {}).get("compile") and cfg.get("dist", {}).get("name") in ("zero3", "fsdp"):
        raise UserError(f"train.compile=true does not run with sharded weights (dist={cfg.dist.name}): "
                        "use dist=ddp or dist=zero2, or drop train.compile")
    if "seed" in cfg and (isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int)):
        raise UserError(f"seed={cfg.get('seed')!r} is not an integer (seed=0, or a sweep: seed=0,1,2)")
    for key, lo, hi, inclusive in _RANGES:
        node, leaf = key.split(".")
        value = cfg.get(node, {}).get(leaf)
        if value is None:
            continue
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise UserError(f"{key}={value!r} is not a number") from None
        low_ok = v >= lo if inclusive else v > lo
        if not low_ok or (hi is not None and v > hi):
            bound = f"{'>=' if inclusive else '>'} {lo}" + (f" and <= {hi}" if hi is not None else "")
            raise UserError(f"{key}={value} is out of range: it must be {bound}")
