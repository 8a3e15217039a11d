"""Policy-gradient maths for the online algorithms (docs/design.md §4: PPO and GRPO), as pure functions on
``[B, T]`` response tensors (right-padded, ``mask`` 1 on real tokens). Losses come back unreduced: the
backbone owns the one reduction over the optimiser batch (``algorithms/_base.py``).

PPO (Schulman et al. 2017, arXiv 1707.06347) with the RLHF reward of Ziegler et al. 2019 / Ouyang et
al. 2022: r_t = R·1[t = H] − β_KL·(log π_old − log π_ref)(a_t | s_t); GAE (Schulman et al. 2016,
arXiv 1506.02438) with γ = 1, λ = 0.95 from a critic; clipped ratio and clipped value loss.
GRPO (Shao et al. 2024, arXiv 2402.03300): group-normalised outcome advantages, the same clipped
ratio, an optional k3 KL to π_ref; written to equal TRL's ``GRPOTrainer`` loss on the same inputs.
"""
from __future__ import annotations

import torch
from trl.trainer.utils import nanstd

from algorithms._base import per_token as token_metric


def pad_right(rows: list[list[float]]) -> torch.Tensor:
    """Per-token lists of unequal length as one ``[B, T]`` tensor, 0 past each row's end."""
    out = torch.zeros((len(rows), max(map(len, rows), default=0)))
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.float32)
    return out


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x − mean) / std over the real tokens of the batch (PPO's advantage whitening); 0 on padding."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask


def kl_shaped_rewards(outcome: torch.Tensor, old_logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor,
                      beta_kl: float) -> torch.Tensor:
    """Per-token rewards: −β_KL·(log π_old − log π_ref) on every token, plus the outcome on the last one."""
    mask = mask.to(old_logps.dtype)
    r = -beta_kl * (old_logps - ref_logps) * mask
    last = mask.sum(-1).long().clamp(min=1) - 1
    return r.scatter_add(1, last[:, None], outcome.to(r.dtype)[:, None])


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95):
    """``(advantages, returns)``: δ_t = r_t + γ·V_{t+1} − V_t (V past the end = 0), A_t = δ_t + γλ·A_{t+1},
    returns = A + V; all detached, 0 on padding."""
    rewards, values, mask = rewards.detach(), values.detach() * mask, mask.to(rewards.dtype)
    adv = torch.zeros_like(rewards)
    next_v = torch.zeros_like(rewards[:, 0])
    next_a = torch.zeros_like(rewards[:, 0])
    for t in range(rewards.size(1) - 1, -1, -1):
        delta = rewards[:, t] + gamma * next_v - values[:, t]
        next_a = (delta + gamma * lam * next_a) * mask[:, t]
        next_v = values[:, t] * mask[:, t]
        adv[:, t] = next_a
    return adv, (adv + values) * mask


def clipped_surrogate(logps, old_logps, advantages, *, eps_low: float = 0.2, eps_high: float = 0.2):
    """Per-token −min(ρ·A, clip(ρ, 1−ε_low, 1+ε_high)·A) with ρ = exp(log π − log π_old); ``advantages``
    ``[B, T]`` or ``[B, 1]``. Also returns ρ."""
    ratio = torch.exp(logps - old_logps)
    clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high)
    return -torch.min(ratio * advantages, clipped * advantages), ratio


def ppo_policy_loss(logps, old_logps, advantages, *, clip: float = 0.2):
    """``(per-token loss [B, T], metrics)``: the clipped surrogate; the backbone averages it over the batch's tokens."""
    per_token, ratio = clipped_surrogate(logps, old_logps, advantages.detach(), eps_low=clip, eps_high=clip)
    with torch.no_grad():
        clipped = ((ratio - 1).abs() > clip).float()
        approx_kl = 0.5 * (logps - old_logps) ** 2
    return per_token, {"clip_frac": token_metric(clipped), "approx_kl": token_metric(approx_kl)}


def ppo_value_loss(values, old_values, returns, *, clip: float = 0.2):
    """``(per-token loss [B, T], metrics)``: ½·max((V − G)², (clip(V, V_old ± c) − G)²)."""
    returns, old_values = returns.detach(), old_values.detach()
    v_clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    per_token = 0.5 * torch.max((values - returns) ** 2, (v_clipped - returns) ** 2)
    return per_token, {"value_mean": token_metric(values.detach())}


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str = "group") -> torch.Tensor:
    """GRPO advantages for rewards laid out group by group (``group_size`` samples per prompt):
    r − mean of its group, divided by the group's std + 1e-4 (``scale="group"``, TRL's default), by the
    batch's std (``"batch"``) or not at all (``"none"``, Dr. GRPO)."""
    grouped = rewards.view(-1, group_size)
    adv = (grouped - grouped.mean(dim=1, keepdim=True)).view(-1)
    if scale == "group":
        return adv / (nanstd(grouped, dim=1).repeat_interleave(group_size) + 1e-4)
    if scale == "batch":
        return adv / (nanstd(rewards) + 1e-4)
    if scale == "none":
        return adv
    raise ValueError(f"scale={scale!r}: valid values are group, batch, none")


#: GRPO loss types whose values are per token (the rest give one value per sequence)
TOKEN_LEVEL = ("dapo", "bnpo")


def grpo_loss(logps, old_logps, ref_logps, advantages, mask, *, beta: float = 0.0, eps_low: float = 0.2,
              eps_high: float = 0.2, loss_type: str = "grpo", max_completion_length: int | None = None):
    """``(values, metrics)``: TRL's GRPO loss (token-level ratio), unreduced. ``advantages`` ``[B]``;
    ``ref_logps`` is only read when ``beta`` > 0 (k3 estimator exp(ref − π) − (ref − π) − 1). By ``loss_type``:
    ``dapo`` (TRL's default) and ``bnpo``: per-token values ``[B, T]``, to be averaged over the batch's
    tokens; ``grpo``: each sequence's token mean ``[B]``; ``dr_grpo``: each sequence's token sum over
    ``max_completion_length`` ``[B]``. The backbone averages over the whole optimiser batch, so ``bnpo``
    and ``dapo`` both become DAPO's global token mean."""
    mask = mask.to(logps.dtype)
    per_token, ratio = clipped_surrogate(logps, old_logps, advantages.detach()[:, None], eps_low=eps_low,
                                         eps_high=eps_high)
    metrics = {}
    if beta:
        kl = torch.exp(ref_logps - logps) - (ref_logps - logps) - 1
        per_token = per_token + beta * kl
        metrics["kl"] = token_metric(kl.detach())
    if loss_type in TOKEN_LEVEL:
        values = per_token
    elif loss_type == "grpo":
        values = (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
    elif loss_type == "dr_grpo":
        values = (per_token * mask).sum(-1) / (max_completion_length or mask.size(1))
    else:
        raise ValueError(f"loss_type={loss_type!r}: valid values are grpo, dapo, bnpo, dr_grpo")
    with torch.no_grad():
        a = advantages[:, None]
        clipped = ((ratio < 1 - eps_low) & (a < 0)) | ((ratio > 1 + eps_high) & (a > 0))
    return values, {**metrics, "clip_frac": token_metric(clipped.float())}
