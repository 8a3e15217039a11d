import math

import torch

from algorithms.dpo import dpo_loss


def reference_dpo(pc, pr, rc, rr, beta):
    total = 0.0
    for a, b, c, d in zip(pc, pr, rc, rr):
        z = beta * ((a - c) - (b - d))
        total += -math.log(1.0 / (1.0 + math.exp(-z)))
    return total / len(pc)


def test_dpo_loss_matches_float64_loop():
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (torch.randn(7, generator=g, dtype=torch.float64) * 5 - 20 for _ in range(4))
    loss, metrics = dpo_loss(pc, pr, rc, rr, beta=0.1)
    assert math.isclose(loss.mean().item(), reference_dpo(pc.tolist(), pr.tolist(), rc.tolist(), rr.tolist(), 0.1),
                        rel_tol=1e-12)
    margins = 0.1 * ((pc - rc) - (pr - rr))
    assert math.isclose(metrics["reward_accuracy"], (margins > 0).double().mean().item(), rel_tol=1e-6)


def test_dpo_loss_is_log2_at_reference_and_gradient_pushes_chosen_up():
    pc = torch.tensor([-10.0, -12.0], requires_grad=True)
    pr = torch.tensor([-11.0, -9.0], requires_grad=True)
    loss, _ = dpo_loss(pc, pr, pc.detach(), pr.detach(), beta=0.5)
    assert torch.allclose(loss, torch.full((2,), math.log(2)))
    loss.sum().backward()
    assert (pc.grad < 0).all() and (pr.grad > 0).all()  # descent raises chosen, lowers rejected


def test_dpo_loss_extreme_margins_are_finite():
    big = torch.tensor([1e4])
    loss, _ = dpo_loss(-big, big, torch.zeros(1), torch.zeros(1), beta=1.0)
    assert torch.isfinite(loss).all() and loss.item() > 1e3
