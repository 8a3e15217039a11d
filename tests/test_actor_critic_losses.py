"""DQO, DRO, OREO and KTO losses against plain float64 loops (unreduced: one value per sequence), and which
inputs receive gradient."""
import math

import pytest
import torch

from algorithms.dqo import dqo_loss
from algorithms.dro import dro_loss
from algorithms.kto import kto_loss
from algorithms.oreo import oreo_loss


def batch(seed=0, B=4, T=6):
    g = torch.Generator().manual_seed(seed)
    lengths = [6, 3, 1, 5][:B]
    mask = torch.tensor([[1.0] * n + [0.0] * (T - n) for n in lengths], dtype=torch.float64)
    logps = -torch.rand(B, T, generator=g, dtype=torch.float64) * 3
    ref = logps + torch.randn(B, T, generator=g, dtype=torch.float64) * 0.3
    values = torch.rand(B, T, generator=g, dtype=torch.float64)
    rewards = torch.zeros(B, T, dtype=torch.float64)
    for b, n in enumerate(lengths):
        rewards[b, n - 1] = float(b % 2)  # outcome on the last real token
        if n > 2:
            rewards[b, 1] = 0.25  # some shaping inside
    return logps, ref, values, rewards, mask, lengths


def dqo_reference(logps, ref, values, rewards, lengths, beta, lam, c):
    """Per sequence: the importance-weighted token means of the policy and value residuals."""
    pols, vals = [], []
    B = len(lengths)
    for b in range(B):
        H = lengths[b]
        ell = [logps[b][h] - ref[b][h] for h in range(H)]
        V = [values[b][h] for h in range(H)] + [0.0]
        r = [rewards[b][h] for h in range(H)]
        G = [0.0] * (H + 1)
        for h in reversed(range(H)):
            G[h] = (r[h] - beta * ell[h]) + (1 - lam) * V[h + 1] + lam * G[h + 1]
        w = 1.0 if c is None else math.exp(min(sum(ell), c))
        pol = sum((beta * ell[h] + V[h] - (r[h] + (1 - lam) * V[h + 1] + lam * G[h + 1])) ** 2 for h in range(H)) / H
        val = sum((V[h] - G[h]) ** 2 for h in range(H)) / H
        pols.append(w * pol)
        vals.append(w * val)
    return pols, vals


def close(tensor, values, rel=1e-10):
    return len(tensor) == len(values) and all(math.isclose(a, b, rel_tol=rel) for a, b in zip(tensor.tolist(), values))


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("c", [1.0, None, -0.5])
def test_dqo_loss_matches_float64_loop(lam, c):
    logps, ref, values, rewards, mask, lengths = batch()
    pol, val, metrics = dqo_loss(logps, ref, values, rewards, mask, beta=0.3, lam=lam, is_clip=c)
    ref_pol, ref_val = dqo_reference(logps.tolist(), ref.tolist(), values.tolist(), rewards.tolist(), lengths,
                                     0.3, lam, c)
    assert close(pol, ref_pol) and close(val, ref_val)  # unreduced: one value per sequence
    assert metrics["is_weight_sq_mean"] >= metrics["is_weight_mean"] ** 2  # Jensen: E w² ≥ (E w)²


def test_dqo_self_normalised_weights_divide_by_the_given_batch_mean():
    logps, ref, values, rewards, mask, lengths = batch()
    plain = dqo_loss(logps, ref, values, rewards, mask, beta=0.3, lam=0.5, is_clip=1.0)
    mean = torch.tensor(0.37, dtype=torch.float64)
    normed = dqo_loss(logps, ref, values, rewards, mask, beta=0.3, lam=0.5, is_clip=1.0, weight_mean=mean)
    torch.testing.assert_close(normed[0], plain[0] / 0.37)
    torch.testing.assert_close(normed[1], plain[1] / 0.37)


def test_dqo_padding_values_do_not_matter():
    logps, ref, values, rewards, mask, _ = batch()
    junk = values + (1 - mask) * 123.0
    a = dqo_loss(logps, ref, values, rewards, mask, beta=0.3, lam=0.5)
    b = dqo_loss(logps, ref, junk, rewards, mask, beta=0.3, lam=0.5)
    torch.testing.assert_close(a[0], b[0]) and torch.testing.assert_close(a[1], b[1])


def test_dqo_gradients_flow_to_the_right_inputs():
    logps, ref, values, rewards, mask, _ = batch()
    logps.requires_grad_(True)
    values.requires_grad_(True)
    pol, val, _ = dqo_loss(logps, ref, values, rewards, mask, beta=0.3, lam=0.5, is_clip=1.0)
    g_pol = torch.autograd.grad(pol.sum(), [logps, values], allow_unused=True)
    g_val = torch.autograd.grad(val.sum(), [logps, values], allow_unused=True)
    assert g_pol[0] is not None and g_pol[0].abs().sum() > 0
    assert g_pol[1] is None or g_pol[1].abs().sum() == 0  # policy loss: no gradient to V
    assert g_val[0] is None or g_val[0].abs().sum() == 0  # value loss: no gradient to π
    assert g_val[1] is not None and g_val[1].abs().sum() > 0
    assert (g_pol[0] * (1 - mask)).abs().sum() == 0  # nothing from padding


def test_dqo_optimum_is_the_soft_optimal_policy_on_a_one_step_bandit():
    """One token, reward R: the residual vanishes when β·ℓ = R − V, the soft-optimal Q."""
    mask = torch.ones(3, 1, dtype=torch.float64)
    R = torch.tensor([[1.0], [0.0], [1.0]], dtype=torch.float64)
    V = torch.full((3, 1), 0.4, dtype=torch.float64)
    ref = torch.full((3, 1), -1.0, dtype=torch.float64)
    logps = ref + (R - V) / 0.5  # β = 0.5
    pol, _, _ = dqo_loss(logps, ref, V, R, mask, beta=0.5, lam=1.0, is_clip=None)
    assert pol.abs().max().item() < 1e-20


def test_dro_loss_matches_hand_computation_and_routes_gradients():
    lp = torch.tensor([-3.0, -5.0], dtype=torch.float64, requires_grad=True)
    rlp = torch.tensor([-3.5, -4.0], dtype=torch.float64)
    v = torch.tensor([0.3, 0.6], dtype=torch.float64, requires_grad=True)
    R = torch.tensor([1.0, 0.0], dtype=torch.float64)
    beta = 0.1
    pol, val, _ = dro_loss(lp, rlp, v, R, beta=beta)
    L = [0.5, -1.0]
    exp_pol = sum((1 / beta) * 0.5 * (r - vv - beta * l) ** 2 for r, vv, l in zip([1, 0], [0.3, 0.6], L)) / 2
    exp_val = sum(0.5 * (r - vv - beta * l) ** 2 for r, vv, l in zip([1, 0], [0.3, 0.6], L)) / 2
    assert math.isclose(pol.mean().item(), exp_pol, rel_tol=1e-12)
    assert math.isclose(val.mean().item(), exp_val, rel_tol=1e-12)
    assert torch.autograd.grad(pol.sum(), v, allow_unused=True)[0] is None
    assert torch.autograd.grad(val.sum(), lp, allow_unused=True)[0] is None


def test_oreo_is_dqo_lambda1_without_is_plus_kl():
    logps, ref, values, rewards, mask, lengths = batch(seed=3)
    pol, val, m = oreo_loss(logps, ref, values, rewards, mask, beta=0.3, alpha=0.01)
    ref_pol, ref_val = dqo_reference(logps.tolist(), ref.tolist(), values.tolist(), rewards.tolist(), lengths,
                                     0.3, 1.0, None)
    kl = [sum(math.exp(l) * l - math.exp(l) + 1 for l in (logps[b, :H] - ref[b, :H]).tolist()) / H
          for b, H in enumerate(lengths)]
    assert close(pol, [p + 0.01 * k for p, k in zip(ref_pol, kl)])
    assert close(val, ref_val) and math.isclose(m["kl_to_ref"], sum(kl) / len(kl), rel_tol=1e-10)


def test_kto_loss_matches_hand_computation():
    r = torch.tensor([0.5, -0.2, 1.5], dtype=torch.float64)
    kl = torch.tensor([0.1, 0.4, -0.2], dtype=torch.float64)
    d = torch.tensor([True, False, False])
    loss, m = kto_loss(r, kl.mean(), d, beta=2.0, desirable_weight=1.0, undesirable_weight=1.5)
    z0 = max(0.0, (0.1 + 0.4 - 0.2) / 3)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expected = [1 - sig(2 * (0.5 - z0)), 1.5 * (1 - sig(2 * (z0 + 0.2))), 1.5 * (1 - sig(2 * (z0 - 1.5)))]
    assert close(loss, expected, rel=1e-12) and math.isclose(m["kl_ref_point"], z0)
    neg = kto_loss(r, (-kl.abs() - 1).mean(), d, beta=2.0)[1]
    assert neg["kl_ref_point"] == 0.0  # the reference point is clamped at 0


def test_kto_auto_weight_balances_desirable_and_undesirable_mass():
    import random

    from algorithms._base import TrainData
    from algorithms.kto import KTO

    samples = [{"prompt_id": f"p{i // 4}", "prompt_ids": [1], "completion_ids": [2], "reward": float(i % 4 == 0)}
               for i in range(40)]  # 10 correct, 30 incorrect
    algo = KTO(desirable_weight="auto")
    algo.build_examples(TrainData(bank=[{"samples": samples}]), random.Random(0))
    assert algo.desirable_weight == 3.0  # λ_D·n_D = λ_U·n_U
    fixed = KTO(desirable_weight=1.5)
    fixed.build_examples(TrainData(bank=[{"samples": samples}]), random.Random(0))
    assert fixed.desirable_weight == 1.5
