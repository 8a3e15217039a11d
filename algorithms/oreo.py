"""``oreo``: Offline REasoning Optimization (Wang et al. 2024, arXiv 2412.16145).

DQO's λ = 1 soft-Bellman residuals without importance weighting, plus a KL(π_θ‖π_ref) regulariser
α·KL on the policy. Only the sampled token's log-probs are at hand, and the samples come from π_ref,
so the per-token KL is estimated without bias as E_ref[e^ℓ·ℓ − e^ℓ + 1] (≥ 0 per token; its
π_ref-expectation is KL(π_θ‖π_ref) since E_ref[e^ℓ] = 1).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from algorithms._base import TrajectoryAlgorithm, ValueModelOptions, per_example
from algorithms.dqo import dqo_loss
from harness.options import option
from harness.registry import register_algorithm


@dataclass
class OREOOptions(ValueModelOptions):
    lr: float = option(5.67e-05, "policy learning rate", gt=0)
    beta: float = option(0.3, "KL strength β in Q = β·ℓ + V", gt=0)
    alpha: float = option(0.01, "weight of the KL(π‖π_ref) regulariser (OREO's default)", ge=0)


def kl_to_ref_estimate(logps, ref_logps, mask):
    """Each sequence's mean over real tokens of e^ℓ·ℓ − e^ℓ + 1 (ℓ = log π_θ − log π_ref), ``[B]``."""
    ell = (logps - ref_logps) * mask
    ratio = torch.exp(ell)
    per_tok = (ratio * ell - ratio + 1) * mask
    return per_tok.sum(-1) / mask.sum(-1).clamp(min=1)


def oreo_loss(logps, ref_logps, values, rewards, mask, *, beta, alpha=0.01):
    """``(policy [B], value [B], metrics)``: DQO with λ = 1 and no importance weights, plus α·KL."""
    pol, val, metrics = dqo_loss(logps, ref_logps, values, rewards, mask, beta=beta, lam=1.0, is_clip=None)
    kl = kl_to_ref_estimate(logps, ref_logps, mask)
    metrics["kl_to_ref"] = kl.mean().item()
    return pol + alpha * kl, val, metrics


@register_algorithm("oreo")
class OREO(TrajectoryAlgorithm):
    Options = OREOOptions
    needs_value_model = True

    def loss(self, batch, stats):
        s, o = batch["seq"], self.opts
        pol, val, metrics = oreo_loss(s["logps"], s["ref_logps"], s["values"], s["token_rewards"], s["mask"],
                                      beta=o.beta, alpha=o.alpha)
        return {"policy": per_example(pol), "value": per_example(o.value_coef * val)}, metrics
