"""The value-based methods that cite DQO (TBRM, A*-PO): losses against plain float64 loops, which inputs
receive gradient, and what their optima are."""
import math

import torch

from algorithms.tbrm import tbrm_loss


def batch(seed=0, lengths=(6, 3, 1, 5), T=6):
    g = torch.Generator().manual_seed(seed)
    B = len(lengths)
    mask = torch.tensor([[1.0] * n + [0.0] * (T - n) for n in lengths], dtype=torch.float64)
    logps = -torch.rand(B, T, generator=g, dtype=torch.float64) * 3
    ref = logps + torch.randn(B, T, generator=g, dtype=torch.float64) * 0.3
    rewards = torch.tensor([float(b % 2) for b in range(B)], dtype=torch.float64)
    return logps, ref, rewards, mask, list(lengths)


def test_tbrm_loss_matches_float64_loop():
    logps, ref, rewards, mask, lengths = batch()
    v1 = torch.tensor([0.7, -1.2, 3.0, 0.1], dtype=torch.float64)
    loss, m = tbrm_loss(logps, ref, v1, rewards, mask, beta=0.25)
    for b, H in enumerate(lengths):
        residual = v1[b].item() + sum(logps[b, h].item() - ref[b, h].item() for h in range(H)) - rewards[b].item() / 0.25
        assert math.isclose(loss[b].item(), residual ** 2, rel_tol=1e-12)
    assert math.isclose(m["residual_abs"], loss.sqrt().mean().item(), rel_tol=1e-12)


def test_tbrm_gradient_reaches_the_log_probs_and_the_first_value_not_padding():
    logps, ref, rewards, mask, _ = batch(1)
    logps.requires_grad_(True)
    v1 = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    loss, _ = tbrm_loss(logps, ref, v1, rewards, mask, beta=0.5)
    g_lp, g_v = torch.autograd.grad(loss.sum(), [logps, v1])
    assert g_lp.abs().sum() > 0 and (g_lp * (1 - mask)).abs().sum() == 0  # nothing from padding
    assert (g_v != 0).all()  # V(s₁) is trained, not detached (the paper's fixed-V variant gets stuck)


def test_tbrm_zero_residual_is_the_soft_optimal_policy_on_a_bandit():
    """One token: logits = log π_ref + r/β make every residual 0, and softmax(logits) ∝ π_ref·exp(r/β)."""
    beta = 0.5
    p_ref = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    r = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    logits = torch.log(p_ref) + r / beta
    logp = torch.log_softmax(logits, -1)
    loss, _ = tbrm_loss(logp[:, None], torch.log(p_ref)[:, None], torch.logsumexp(logits, -1).expand(3), r,
                        torch.ones(3, 1, dtype=torch.float64), beta=beta)
    assert loss.abs().max().item() < 1e-20
    soft = p_ref * torch.exp(r / beta)
    torch.testing.assert_close(logp.exp(), soft / soft.sum())
    shifted, _ = tbrm_loss(logp[:, None], torch.log(p_ref)[:, None], torch.logsumexp(logits + 1, -1).expand(3), r,
                           torch.ones(3, 1, dtype=torch.float64), beta=beta)
    assert torch.allclose(shifted, torch.ones(3, dtype=torch.float64))  # Q = logit: its level is pinned too
