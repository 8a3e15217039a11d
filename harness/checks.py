"""Range checks on the numeric options, so a nonsense value stops the job with one line before any work."""
from __future__ import annotations

from harness.errors import UserError

# (dotted key, lower bound, upper bound or None, lower bound inclusive)
_RANGES = [
    ("bank.n_prompts", 1, None, True), ("bank.k", 1, None, True), ("bank.temperature", 0, None, False),
    ("bank.top_p", 0, 1, False), ("bank.max_new_tokens", 1, None, True),
    ("eval.k", 0, None, True), ("eval.temperature", 0, None, False), ("eval.top_p", 0, 1, False),
    ("eval.max_new_tokens", 1, None, True), ("eval.n_test", 1, None, True),
    ("train.steps", 1, None, True), ("train.batch_size", 1, None, True), ("train.micro_batch_size", 1, None, True),
    ("train.warmup_ratio", 0, 1, True), ("train.max_grad_norm", 0, None, True), ("train.weight_decay", 0, None, True),
    ("warm_start.steps", 0, None, True), ("warm_start.batch_size", 1, None, True), ("warm_start.lr", 0, None, False),
    ("generation.batch_size", 1, None, True), ("vllm.gpu_memory_utilization", 0, 1, False),
    ("algo.lr", 0, None, False), ("algo.beta", 0, None, False),
    ("algo.value_lr", 0, None, False), ("algo.lam", 0, 1, True), ("algo.process_alpha", 0, None, True),
    ("process.n_prompts", 1, None, True), ("process.k", 1, None, True),
    ("value_check.n_prompts", 0, None, True), ("value_check.k", 1, None, True),
    ("algo.beta_kl", 0, None, True), ("algo.gamma", 0, 1, True), ("algo.gae_lambda", 0, 1, True),
    ("algo.clip", 0, None, False), ("algo.value_clip", 0, None, False), ("algo.target_kl", 0, None, False),
    ("algo.epsilon", 0, 1, False), ("algo.epsilon_high", 0, None, False),
]
#: per algorithm, bounds that replace the ones above (GRPO's KL coefficient may be 0: no KL term)
_ALGO_RANGES = {"grpo": [("algo.beta", 0, None, True)]}
_CHOICES = [("algo.value_model", ("separate", "shared")), ("algo.loss_type", ("dapo", "bnpo", "grpo", "dr_grpo")),
            ("algo.scale_rewards", ("group", "batch", "none"))]


def check_config(cfg) -> None:
    for key, valid in _CHOICES:
        node, leaf = key.split(".")
        value = cfg.get(node, {}).get(leaf)
        if value is not None and value not in valid:
            raise UserError(f"{key}={value!r}: valid values are {', '.join(valid)}")
    special = _ALGO_RANGES.get(str(cfg.get("algo", {}).get("name")), [])
    ranges = [r for r in _RANGES if r[0] not in {k for k, *_ in special}] + special
    for key, lo, hi, inclusive in ranges:
        node, *rest = key.split(".")
        value = cfg.get(node, {}).get(rest[0]) if rest else cfg.get(node)
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
