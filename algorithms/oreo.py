"""``oreo``: Offline REasoning Optimization (Wang et al. 2024, arXiv 2412.16145).

DQO's λ = 1 soft-Bellman residuals without importance weighting, plus a KL(π_θ‖π_ref) regulariser
α·KL on the policy. Only the sampled token's log-probs are at hand, and the samples come from π_ref,
so the per-token KL is estimated without bias as E_ref[e^ℓ·ℓ − e^ℓ + 1] (≥ 0 per token; its
π_ref-expectation is KL(π_θ‖π_ref) since E_ref[e^ℓ] = 1).
"""
from __future__ import annotations

import torch

from algorithms.base import TrajectoryAlgorithm
from algorithms.dqo import dqo_loss
from harness.registry import register_algorithm


def kl_to_ref_estimate(logps, ref_logps, mask):
    """Per-sequence mean over real tokens of e^ℓ·ℓ − e^ℓ + 1, then batch mean (ℓ = log π_θ − log π_ref)."""
    ell = (logps - ref_logps) * mask
    ratio = torch.exp(ell)
    per_tok = (ratio * ell - ratio + 1) * mask
    return (per_tok.sum(-1) / mask.sum(-1).clamp(min=1)).mean()


def oreo_loss(logps, ref_logps, values, rewards, mask, *, beta, alpha=0.01):
    """``(policy_loss, value_loss, metrics)``: DQO with λ = 1 and no importance weights, plus α·KL."""
    pol, val, metrics = dqo_loss(logps, ref_logps, values, rewards, mask, beta=beta, lam=1.0, is_clip=None)
    kl = kl_to_ref_estimate(logps, ref_logps, mask)
    metrics["kl_to_ref"] = kl.item()
    return pol + alpha * kl, val, metrics


@register_algorithm("oreo")
class OREO(TrajectoryAlgorithm):
    needs_value_model = True

    def loss(self, batch):
        s = batch["seq"]
        pol, val, metrics = oreo_loss(s["logps"], s["ref_logps"], s["values"], s["token_rewards"], s["mask"],
                                      beta=float(self.cfg.get("beta", 0.1)), alpha=float(self.cfg.get("alpha", 0.01)))
        return pol + float(self.cfg.get("value_coef", 1.0)) * val, metrics
