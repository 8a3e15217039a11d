"""``dqo``: Direct Q-function Optimization (Liu et al. 2024, arXiv 2410.09302).

The response is a token-level MDP: state s_h = (x, a_<h), action a_h, reward R ∈ {0, 1} on the last
token. DQO is soft actor-critic with the Q-function parameterised by the language model,
Q_θ(s, a) = β·ℓ_θ(s, a) + V_φ(s), ℓ = log π_θ − log π_ref, trained offline on π_ref's samples:

* soft rewards r̃_h = r_h − β·sg(ℓ_h) and λ-returns G_h = r̃_h + (1−λ)·sg(V_{h+1}) + λ·G_{h+1}
  (G_{H+1} = V_{H+1} = 0);
* value loss  L_V = mean_τ w_τ · mean_h (V_φ(s_h) − sg(G_h))²;
* policy loss L_π = mean_τ w_τ · mean_h (β·ℓ_h + sg(V_φ(s_h)) − sg(r_h + (1−λ)·V_{h+1} + λ·G_{h+1}))²;
* importance weight w_τ = sg(exp(min(Σ_h ℓ_h, c))) corrects for the samples coming from π_ref
  (off when ``is_clip`` is None; optionally divided by its batch mean, ``is_self_normalize``).

λ = 0 is the one-step SAC target, λ = 1 the Monte-Carlo soft return.

**Process supervision** ("process score", §4.3 of the paper): Monte-Carlo values v̂ at solution-step
boundaries, added as potential-based shaping r_h += α·(v̂(s_{h+1}) − v̂(s_h)) at boundary tokens, which
leaves the optimal policy unchanged (Ng et al. 1999). See ``harness/process_values.py``.

**What is reconstructed.** The paper's code is not public. The losses above follow its equations
(§4, Eq. 9–12) as re-stated with the λ-return and importance weighting in OREO's re-implementation
(Wang et al. 2024, arXiv 2412.16145, App. C); the clip constant c, per-sequence token means, separate
policy/value optimisers and the shaping form are our choices, documented in DESIGN.md §4.
"""
from __future__ import annotations

import torch

from algorithms.base import TrajectoryAlgorithm
from harness.registry import register_algorithm


def _shift_left(x: torch.Tensor) -> torch.Tensor:
    """x[:, h+1] at position h, 0 past the end."""
    return torch.cat([x[:, 1:], torch.zeros_like(x[:, :1])], dim=1)


def lambda_returns(soft_rewards: torch.Tensor, next_values: torch.Tensor, mask: torch.Tensor, lam: float):
    """G_h = r̃_h + (1−λ)·V_{h+1} + λ·G_{h+1}, right to left; 0 on padding (so G_{H+1} = 0)."""
    out = torch.zeros_like(soft_rewards)
    g = torch.zeros_like(soft_rewards[:, 0])
    for h in range(soft_rewards.size(1) - 1, -1, -1):
        g = (soft_rewards[:, h] + (1 - lam) * next_values[:, h] + lam * g) * mask[:, h]
        out[:, h] = g
    return out


def importance_weights(seq_logratio: torch.Tensor, is_clip: float | None, self_normalize: bool = False):
    """w_τ = exp(min(Σℓ, c)), detached; ones when ``is_clip`` is None."""
    if is_clip is None:
        return torch.ones_like(seq_logratio)
    w = torch.exp(torch.clamp(seq_logratio.detach(), max=float(is_clip)))
    return w / w.mean().clamp(min=1e-12) if self_normalize else w


def dqo_loss(logps, ref_logps, values, rewards, mask, *, beta, lam=1.0, is_clip=1.0, is_self_normalize=False):
    """``(policy_loss, value_loss, metrics)`` on ``[B, T]`` response tensors (right-padded, ``mask`` 1 on
    real tokens). ``values[b, h]`` is V_φ(s_h), the value of the state *before* token h; ``rewards`` are
    per token (outcome on the last real token, shaping elsewhere). Per-sequence mean over real tokens,
    then batch mean. ``policy_loss`` sends no gradient to ``values``, ``value_loss`` none to ``logps``."""
    mask = mask.to(logps.dtype)
    ell = (logps - ref_logps) * mask
    v = values * mask
    v_next = _shift_left(v).detach()
    r = rewards * mask
    returns = lambda_returns(r - beta * ell.detach(), v_next, mask, lam)
    target = (r + (1 - lam) * v_next + lam * _shift_left(returns)).detach()
    n_tok = mask.sum(-1).clamp(min=1)
    w = importance_weights(ell.sum(-1), is_clip, is_self_normalize)
    pol = (((beta * ell + v.detach() - target) ** 2) * mask).sum(-1) / n_tok
    val = (((v - returns.detach()) ** 2) * mask).sum(-1) / n_tok
    policy_loss, value_loss = (w * pol).mean(), (w * val).mean()
    seq_ell = ell.sum(-1).detach()
    metrics = {
        "policy_loss": policy_loss.item(), "value_loss": value_loss.item(),
        "is_weight_mean": w.mean().item(), "is_weight_min": w.min().item(),
        "seq_logratio_mean": seq_ell.mean().item(),
        "value_first": (v[:, 0]).mean().item(),
    }
    return policy_loss, value_loss, metrics


@register_algorithm("dqo")
class DQO(TrajectoryAlgorithm):
    """Trains on every bank sample (correct and incorrect), one trajectory per example."""

    needs_value_model = True
    uses_process_values = True

    def loss(self, batch):
        s = batch["seq"]
        c = self.cfg
        pol, val, metrics = dqo_loss(
            s["logps"], s["ref_logps"], s["values"], s["token_rewards"], s["mask"], beta=float(c.get("beta", 0.1)),
            lam=float(c.get("lam", 1.0)), is_clip=c.get("is_clip", 1.0),
            is_self_normalize=bool(c.get("is_self_normalize", False)))
        return pol + float(c.get("value_coef", 1.0)) * val, metrics
