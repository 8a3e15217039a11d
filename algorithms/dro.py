"""``dro``: Direct Reward Optimisation (Richemond et al. 2024, arXiv 2405.19107), DRO-V variant.

Single-trajectory, offline: L = ½·(R − V_φ(x) − β·L)² with L = Σ_h log π_θ/π_ref, one value per
prompt read at the last prompt token. The policy gradient is rescaled by 1/β (DRO-V, §4 of the paper).
"""
from __future__ import annotations

from dataclasses import dataclass

from algorithms._base import TrajectoryAlgorithm, ValueModelOptions, per_example
from harness.options import option
from harness.registry import register_algorithm


@dataclass
class DROOptions(ValueModelOptions):
    lr: float = option(2.1e-06, "policy learning rate", gt=0)
    beta: float = option(0.03, "KL strength (the paper's β = 1 is too strong for LMs on {0, 1} rewards)", gt=0)


def dro_loss(seq_logps, seq_ref_logps, values, rewards, *, beta):
    """``(policy [B], value [B], metrics)`` on ``[B]`` tensors: policy (1/β)·½·(R − sg(V) − β·L)², value
    ½·(R − V − β·sg(L))²."""
    logratio = seq_logps - seq_ref_logps
    policy = (0.5 / beta) * (rewards - values.detach() - beta * logratio) ** 2
    value = 0.5 * (rewards - values - beta * logratio.detach()) ** 2
    metrics = {"seq_logratio_mean": logratio.mean().item(), "value_mean": values.mean().item()}
    return policy, value, metrics


@register_algorithm("dro")
class DRO(TrajectoryAlgorithm):
    Options = DROOptions
    needs_value_model = True

    def loss(self, batch, stats):
        s, o = batch["seq"], self.opts
        pol, val, metrics = dro_loss((s["logps"] * s["mask"]).sum(-1), (s["ref_logps"] * s["mask"]).sum(-1),
                                     s["values"][:, 0], s["rewards"], beta=o.beta)
        return {"policy": per_example(pol), "value": per_example(o.value_coef * val)}, metrics
