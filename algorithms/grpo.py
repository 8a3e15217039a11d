"""``grpo``: Group Relative Policy Optimization (Shao et al. 2024, arXiv 2402.03300), online.

``n_samples`` completions per prompt from the live policy; each one's advantage is its outcome minus its
group's mean, over the group's std (``scale_rewards``: group | batch | none); TRL's clipped token-level
ratio with an optional k3 KL to π_ref (``beta``; 0, TRL's default, keeps no π_ref copy) and its
``loss_type`` aggregations. Equal to TRL 1.16 ``GRPOTrainer``'s loss on the same inputs
(``tests/test_policy_gradient.py``); the maths is in ``algorithms/policy_gradient.py``.
"""
from __future__ import annotations

import torch

from algorithms.base import OnlineAlgorithm
from algorithms.policy_gradient import group_advantages, grpo_loss
from harness.registry import register_algorithm


@register_algorithm("grpo")
class GRPO(OnlineAlgorithm):
    min_samples = 2  # advantages are relative to the prompt's group

    @property
    def needs_ref(self):
        return float(self.cfg.get("beta", 0.0)) > 0

    @property
    def normalize(self):
        # grpo and dr_grpo average per sequence (dr_grpo over a fixed length); dapo/bnpo over the batch's tokens
        return "token" if self.cfg.get("loss_type", "dapo") in ("dapo", "bnpo") else "sequence"

    def rollout_examples(self, seqs, group_size):
        rewards = torch.tensor([float(s["reward"]) for s in seqs])
        adv = group_advantages(rewards, group_size, str(self.cfg.get("scale_rewards", "group")))
        for s, a in zip(seqs, adv.tolist()):
            s["advantage"] = a
        return [{"seq": s} for s in seqs]

    def loss(self, batch):
        s, c = batch["seq"], self.cfg
        return grpo_loss(s["logps"], s["old_logps"], s["ref_logps"], s["advantage"], s["mask"],
                         beta=float(c.get("beta", 0.0)), eps_low=float(c.get("epsilon", 0.2)),
                         eps_high=float(c.get("epsilon_high") or c.get("epsilon", 0.2)),
                         loss_type=str(c.get("loss_type", "dapo")),
                         max_completion_length=c.get("max_completion_length"))
