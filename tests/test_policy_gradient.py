"""PPO and GRPO maths against float64 loops, and GRPO against TRL's own GRPOTrainer loss."""
import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from algorithms._base import per_example, per_token
from algorithms._policy_gradient import (
    TOKEN_LEVEL,
    gae,
    group_advantages,
    grpo_loss,
    kl_shaped_rewards,
    masked_mean,
    ppo_policy_loss,
    ppo_value_loss,
)
from harness.backbone.training import reduce_terms


def batch(seed=0, B=3, T=5, lengths=(5, 3, 1)):
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(B, T, dtype=torch.float64)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    r = lambda: torch.randn(B, T, generator=g, dtype=torch.float64)  # noqa: E731
    return mask, r


def test_gae_and_shaped_rewards_match_loops():
    mask, r = batch()
    old, ref, values = r(), r(), r()
    outcome = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    rewards = kl_shaped_rewards(outcome, old, ref, mask, beta_kl=0.05)
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.95)
    for b, n in enumerate([5, 3, 1]):
        rew = [-0.05 * (old[b, t] - ref[b, t]).item() for t in range(n)]
        rew[-1] += outcome[b].item()
        assert torch.allclose(rewards[b, :n], torch.tensor(rew, dtype=torch.float64))
        assert (rewards[b, n:] == 0).all() and (adv[b, n:] == 0).all()
        a_next = 0.0
        for t in reversed(range(n)):
            v_next = values[b, t + 1].item() if t + 1 < n else 0.0
            a_next = rew[t] + v_next - values[b, t].item() + 0.95 * a_next
            assert math.isclose(adv[b, t].item(), a_next, rel_tol=1e-12, abs_tol=1e-12)
            assert math.isclose(ret[b, t].item(), a_next + values[b, t].item(), rel_tol=1e-12, abs_tol=1e-12)


def test_ppo_losses_match_loops_and_route_gradients():
    mask, r = batch(1)
    logps = r().requires_grad_()
    old, adv, old_v, ret = r() * 0.1 + logps.detach(), r(), r(), r()
    values = (old_v + 0.3 * r()).requires_grad_()
    loss, m = ppo_policy_loss(logps, old, adv, clip=0.2)
    vloss, _ = ppo_value_loss(values, old_v, ret, clip=0.2)
    loss, vloss = masked_mean(loss, mask), masked_mean(vloss, mask)  # per token: the batch's token mean
    terms, vterms = [], []
    for b, n in enumerate([5, 3, 1]):
        for t in range(n):
            rho = math.exp(logps[b, t].item() - old[b, t].item())
            a = adv[b, t].item()
            terms.append(-min(rho * a, min(max(rho, 0.8), 1.2) * a))
            v, vo, g = values[b, t].item(), old_v[b, t].item(), ret[b, t].item()
            vc = vo + min(max(v - vo, -0.2), 0.2)
            vterms.append(0.5 * max((v - g) ** 2, (vc - g) ** 2))
    assert math.isclose(loss.item(), sum(terms) / len(terms), rel_tol=1e-12)
    assert math.isclose(vloss.item(), sum(vterms) / len(vterms), rel_tol=1e-12)
    loss.backward()
    assert (logps.grad[mask == 0] == 0).all() and logps.grad.abs().sum() > 0 and values.grad is None


def test_group_advantages():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])  # two groups of 3
    adv = group_advantages(rewards, 3)
    std = math.sqrt(((2 / 3) ** 2 + 2 * (1 / 3) ** 2) / 2)  # Bessel-corrected, as TRL
    assert torch.allclose(adv[:3], torch.tensor([2 / 3, -1 / 3, -1 / 3]) / (std + 1e-4))
    assert (adv[3:] == 0).all()  # a group that is all correct teaches nothing
    assert torch.allclose(group_advantages(rewards, 3, "none")[:3], torch.tensor([2 / 3, -1 / 3, -1 / 3]))


def trl_grpo_loss(loss_type, beta, logps, old, ref, adv, mask, max_len):
    """TRL 1.16's ``GRPOTrainer._compute_loss`` on given tensors: the trainer's state is set by hand and
    the model forward replaced by the given log-probs (everything else is TRL's code)."""
    from accelerate import Accelerator
    from trl import GRPOTrainer

    tr = GRPOTrainer.__new__(GRPOTrainer)
    tr.__dict__.update(
        loss_type=loss_type, beta=beta, epsilon_low=0.2, epsilon_high=0.28, importance_sampling_level="token",
        top_entropy_quantile=1.0, off_policy_mask_threshold=None, use_vllm=False, aux_loss_enabled=False,
        _entropy_bonus_enabled=False, current_gradient_accumulation_steps=1, max_completion_length=max_len,
        model=SimpleNamespace(training=True), _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        args=SimpleNamespace(delta=None, use_bias_correction_kl=False, steps_per_generation=1),
        vllm_importance_sampling_correction=False)
    tr.accelerator = Accelerator(cpu=True)
    tr._get_per_token_logps_and_entropies = lambda *a, **k: (logps, torch.zeros_like(logps), None)
    B, T = logps.shape
    inputs = {"prompt_ids": torch.zeros(B, 2, dtype=torch.long), "prompt_mask": torch.ones(B, 2, dtype=torch.long),
              "completion_ids": torch.zeros(B, T, dtype=torch.long), "completion_mask": mask.long(),
              "advantages": adv, "old_per_token_logps": old, "ref_per_token_logps": ref,
              "num_items_in_batch": mask.sum()}
    return tr._compute_loss(None, inputs)


@pytest.mark.parametrize("loss_type,beta", [("grpo", 0.0), ("grpo", 0.04), ("bnpo", 0.04), ("dr_grpo", 0.0),
                                                   ("dapo", 0.0), ("dapo", 0.04)])
def test_grpo_loss_equals_trl(loss_type, beta):
    mask, r = batch(2, B=4, T=6, lengths=(6, 4, 2, 5))
    mask = mask.float()
    logps = (r().float() * 0.5 - 1).requires_grad_()
    old = logps.detach() + 0.3 * r().float()  # ratios both inside and outside the clip range
    ref = logps.detach() + 0.2 * r().float()
    adv = torch.tensor([1.2, -0.7, 0.4, -1.5])
    values, _ = grpo_loss(logps, old, ref, adv, mask, beta=beta, eps_low=0.2, eps_high=0.28, loss_type=loss_type,
                          max_completion_length=6)
    # reduced as the backbone reduces an optimiser batch (here: one micro-batch)
    term = per_token(values) if loss_type in TOKEN_LEVEL else per_example(values)
    ours = reduce_terms({"policy": term}, {"seq": {"mask": mask}},
                        {"examples": 4, "tokens": {"seq": int(mask.sum())}})["policy"]
    theirs = trl_grpo_loss(loss_type, beta, logps, old, ref, adv, mask, 6)
    assert torch.allclose(ours, theirs, rtol=1e-6, atol=1e-7), (ours.item(), theirs.item())
    g1, = torch.autograd.grad(ours, logps)
    g2, = torch.autograd.grad(theirs, logps)
    assert torch.allclose(g1, g2, rtol=1e-5, atol=1e-7)
