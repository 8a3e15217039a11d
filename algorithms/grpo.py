"""``grpo``: Group Relative Policy Optimization (Shao et al. 2024, arXiv 2402.03300), online.

``n_samples`` completions per prompt from the live policy; each one's advantage is its outcome minus its
group's mean, over the group's std (``scale_rewards``: group | batch | none); TRL's clipped token-level
ratio with an optional k3 KL to π_ref (``beta``; 0, TRL's default, keeps no π_ref copy) and its
``loss_type`` aggregations. Equal to TRL 1.16 ``GRPOTrainer``'s loss on the same inputs
(``tests/test_policy_gradient.py``); the maths is in ``algorithms/_policy_gradient.py``.
Option names and defaults follow TRL 1.16's ``GRPOConfig``, except ``beta`` (see ``sweeps/algo/grpo.yaml``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from algorithms._base import OnlineAlgorithm, OnlineOptions, per_example, per_token
from algorithms._policy_gradient import TOKEN_LEVEL, group_advantages, grpo_loss
from harness.options import option
from harness.registry import register_algorithm


@dataclass
class GRPOOptions(OnlineOptions):
    lr: float = option(1.31e-05, "policy learning rate", gt=0)
    beta: float = option(0.04, "k3 KL to π_ref (0 keeps no π_ref copy)", ge=0)
    epsilon: float = option(0.2, "clip range of the ratio (lower side)", gt=0, le=1)
    epsilon_high: float | None = option(None, "upper side (null = epsilon; DAPO uses 0.28)", gt=0)
    loss_type: Literal["dapo", "bnpo", "grpo", "dr_grpo"] = option(
        "dapo", "dapo | bnpo: mean over the batch's tokens; grpo: per-sequence mean; dr_grpo: sum / (completions · "
        "max_completion_length)")
    scale_rewards: Literal["group", "batch", "none"] = option(
        "group", "group: divide by the group's std | batch: by the batch's | none (Dr. GRPO)")
    max_completion_length: int | None = option("${model.max_new_tokens}", "the constant of dr_grpo", ge=1)


@register_algorithm("grpo")
class GRPO(OnlineAlgorithm):
    Options = GRPOOptions
    min_samples = 2  # advantages are relative to the prompt's group
    sequence_fields = ("advantage",)

    @property
    def needs_ref(self):
        return self.opts.beta > 0

    def rollout_examples(self, seqs, group_size):
        rewards = torch.tensor([float(s["reward"]) for s in seqs])
        adv = group_advantages(rewards, group_size, self.opts.scale_rewards)
        return [{"seq": {**s, "advantage": a}} for s, a in zip(seqs, adv.tolist())]

    def loss(self, batch, stats):
        s, o = batch["seq"], self.opts
        values, metrics = grpo_loss(s["logps"], s["old_logps"], s["ref_logps"], s["advantage"], s["mask"],
                                    beta=o.beta, eps_low=o.epsilon, eps_high=o.epsilon_high or o.epsilon,
                                    loss_type=o.loss_type, max_completion_length=o.max_completion_length)
        return {"policy": per_token(values) if o.loss_type in TOKEN_LEVEL else per_example(values)}, metrics
