"""``ppo``: Proximal Policy Optimization (Schulman et al. 2017, arXiv 1707.06347), online, with a rule reward.

Each iteration samples ``n_samples`` completions for ``prompts_per_iter`` prompts from the live policy;
per-token reward r_t = R·1[t = H] − β_KL·(log π_old − log π_ref)(a_t | s_t) (Ziegler et al. 2019,
arXiv 1909.08593); GAE with γ = 1, λ = 0.95 (Schulman et al. 2016) from the critic — the value model of
the offline family, a copy of π_ref's trunk with a scalar head; advantages whitened over the rollout
batch; clipped ratio and clipped value loss, ``epochs`` passes over the batch in mini-batches of
``train.batch_size``; optional early stop when the approximate KL to π_old passes ``target_kl``.
The maths is in ``algorithms/policy_gradient.py``.
"""
from __future__ import annotations

from algorithms.base import OnlineAlgorithm
from algorithms.policy_gradient import gae, kl_shaped_rewards, masked_whiten, ppo_policy_loss, ppo_value_loss
from harness.registry import register_algorithm
from harness.sequences import collate


@register_algorithm("ppo")
class PPO(OnlineAlgorithm):
    needs_value_model = True
    normalize = "token"  # both losses are means over the batch's tokens

    def rollout_examples(self, seqs, group_size):
        c = self.cfg
        t = collate(seqs, pad_id=0)
        rewards = kl_shaped_rewards(t["rewards"], t["old_logps"], t["ref_logps"], t["mask"],
                                    float(c.get("beta_kl", 0.05)))
        adv, ret = gae(rewards, t["old_values"], t["mask"], gamma=float(c.get("gamma", 1.0)),
                       lam=float(c.get("gae_lambda", 0.95)))
        if c.get("whiten_advantages", True):
            adv = masked_whiten(adv, t["mask"])
        for i, s in enumerate(seqs):
            n = len(s["completion_ids"])
            s["advantages"], s["returns"] = adv[i, :n].tolist(), ret[i, :n].tolist()
        return [{"seq": s} for s in seqs]

    def loss(self, batch):
        s, c = batch["seq"], self.cfg
        pol, pm = ppo_policy_loss(s["logps"], s["old_logps"], s["advantages"], s["mask"],
                                  clip=float(c.get("clip", 0.2)))
        val, vm = ppo_value_loss(s["values"], s["old_values"], s["returns"], s["mask"],
                                 clip=float(c.get("value_clip", 0.2)))
        return pol + float(c.get("value_coef", 1.0)) * val, {**pm, **vm}

    def stop_epochs(self, record):
        target = self.cfg.get("target_kl")
        return target is not None and record.get("approx_kl", 0.0) > float(target)
