"""``dro``: Direct Reward Optimisation (Richemond et al. 2024, arXiv 2405.19107), DRO-V variant.

Single-trajectory, offline: L = ½·(R − V_φ(x) − β·L)² with L = Σ_h log π_θ/π_ref, one value per
prompt read at the last prompt token. The policy gradient is rescaled by 1/β (DRO-V, §4 of the paper).
"""
from __future__ import annotations

from algorithms.base import TrajectoryAlgorithm
from harness.registry import register_algorithm


def dro_loss(seq_logps, seq_ref_logps, values, rewards, *, beta):
    """``(policy_loss, value_loss, metrics)`` on ``[B]`` tensors: policy (1/β)·½·(R − sg(V) − β·L)²,
    value ½·(R − V − β·sg(L))², each a batch mean."""
    logratio = seq_logps - seq_ref_logps
    policy_loss = (0.5 / beta) * ((rewards - values.detach() - beta * logratio) ** 2).mean()
    value_loss = 0.5 * ((rewards - values - beta * logratio.detach()) ** 2).mean()
    metrics = {"policy_loss": policy_loss.item(), "value_loss": value_loss.item(),
               "seq_logratio_mean": logratio.mean().item(), "value_mean": values.mean().item()}
    return policy_loss, value_loss, metrics


@register_algorithm("dro")
class DRO(TrajectoryAlgorithm):
    needs_value_model = True

    def loss(self, batch):
        s = batch["seq"]
        pol, val, metrics = dro_loss((s["logps"] * s["mask"]).sum(-1), (s["ref_logps"] * s["mask"]).sum(-1),
                                     s["values"][:, 0], s["rewards"], beta=float(self.cfg.get("beta", 0.1)))
        return pol + float(self.cfg.get("value_coef", 1.0)) * val, metrics
