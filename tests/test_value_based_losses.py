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


def test_apo_optimal_value_and_loss_match_float64_loops():
    from algorithms.apo import apo_loss, optimal_values

    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0] * 4, [1.0] * 4], dtype=torch.float64)
    v = optimal_values(rewards, 0.5)
    for row, got in zip(rewards.tolist(), v.tolist()):
        assert math.isclose(got, 0.5 * math.log(sum(math.exp(r / 0.5) for r in row) / len(row)), rel_tol=1e-12)
    assert v[1] == 0 and math.isclose(v[2].item(), 1.0, rel_tol=1e-12)  # all wrong: 0; all right: 1
    assert optimal_values(rewards, 1e-4)[0].item() > 0.999  # β₁ → 0: the max (the best of K)
    assert abs(optimal_values(rewards, 1e4)[0].item() - 0.5) < 1e-4  # β₁ → ∞: the mean
    logratio = torch.tensor([3.0, -40.0, 0.5], dtype=torch.float64)
    loss, _ = apo_loss(logratio, v, torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64), beta2=1e-3)
    for b, (l, vs, r) in enumerate(zip(logratio.tolist(), v.tolist(), [1.0, 0.0, 1.0])):
        assert math.isclose(loss[b].item(), (1e-3 * l + vs - r) ** 2, rel_tol=1e-12)


def test_apo_loss_and_gradient_equal_trl_a2po(tmp_path):
    """TRL 1.16's ``A2POTrainer.compute_loss`` and ours on the same model and inputs: the same loss and the same
    gradient on every parameter (TRL's own forward pass and log-prob code; its state set by hand)."""
    from collections import defaultdict

    from trl.experimental.a2po import A2POConfig, A2POTrainer

    from algorithms.apo import APO
    from harness.backbone.sequences import collate, completion_logps
    from tests.test_models import small

    tok, model = small()
    prompts = [tok(f"Question: Ann has {i} pens.\nAnswer:")["input_ids"] for i in range(1, 5)]  # equal lengths
    assert len({len(p) for p in prompts}) == 1
    completions = [tok(" 1 + 1" * n + "\n#### 2")["input_ids"] + [tok.eos_token_id] for n in (1, 3, 2, 4)]
    seqs = [{"prompt_ids": p, "completion_ids": c, "reward": r, "prompt_id": f"p{i}"}
            for i, (p, c, r) in enumerate(zip(prompts, completions, [1.0, 0.0, 1.0, 0.0]))]
    t = collate(seqs, tok.pad_token_id)
    with torch.no_grad():  # π_ref: the model slightly moved, so the log-ratios are not all 0
        ref_logps = completion_logps(model, t)[0] + 0.05 * torch.randn(t["mask"].shape) * t["mask"]
    v_star = torch.tensor([0.6, 0.2, 0.9, 0.0])

    algo = APO(lr=1e-6, prompt_pool=4, budget={"prompts": 4}, beta2=0.05)
    algo.v_star = dict(zip([s["prompt_id"] for s in seqs], v_star.tolist()))
    for s, lp in zip(seqs, ref_logps):
        s["ref_logps"] = lp[: len(s["completion_ids"])].tolist()
    ex = algo.rollout_examples(seqs, 1)
    t = collate([e["seq"] for e in ex], tok.pad_token_id, sequence_fields=algo.sequence_fields)
    logps, _ = completion_logps(model, t)
    terms, _ = algo.loss({"seq": {**t, "logps": logps}}, {})
    ours = terms["regression"].values.mean()  # the backbone's reduction over one batch
    g_ours = torch.autograd.grad(ours, list(model.parameters()))

    tr = A2POTrainer.__new__(A2POTrainer)
    tr.args = A2POConfig(output_dir=str(tmp_path), beta2=0.05, report_to=[], use_cpu=True, bf16=False)
    tr.model, tr.model_kwarg_keys = model, set()
    tr._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    width = t["mask"].size(1)
    inputs = {"input_ids": torch.cat([torch.tensor(prompts), t["completion_ids"]], 1),
              "attention_mask": torch.cat([torch.ones(4, len(prompts[0]), dtype=torch.long), t["mask"].long()], 1),
              "logits_to_keep": width, "ref_logps": (ref_logps * t["mask"]).sum(-1), "rewards": t["rewards"],
              "v_star": v_star}
    theirs = tr.compute_loss(model, inputs)
    g_theirs = torch.autograd.grad(theirs, list(model.parameters()))
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)
    for a, b in zip(g_ours, g_theirs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    assert sum(g.abs().sum() for g in g_ours) > 0
