"""``ppo``: Proximal Policy Optimization (Schulman et al. 2017, arXiv 1707.06347), online, with a rule reward.

Each iteration samples ``n_samples`` completions for ``prompts_per_iter`` prompts from the live policy;
per-token reward r_t = R·1[t = H] − β_KL·(log π_old − log π_ref)(a_t | s_t) (Ziegler et al. 2019,
arXiv 1909.08593); GAE with γ = 1, λ = 0.95 (Schulman et al. 2016) from the critic — the value model of
the offline family, a copy of π_ref's trunk with a scalar head; advantages whitened over the rollout
batch; clipped ratio and clipped value loss, ``epochs`` passes over the batch in mini-batches of
``train.batch_size``; optional early stop when the approximate KL to π_old passes ``target_kl``.
Both losses are means over the batch's tokens. The maths is in ``algorithms/_policy_gradient.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

from algorithms._base import OnlineAlgorithm, OnlineOptions, ValueModelOptions, per_token
import torch

from algorithms._policy_gradient import (gae, kl_shaped_rewards, masked_whiten, pad_right, ppo_policy_loss,
                                         ppo_value_loss)
from harness.options import option
from harness.registry import register_algorithm


@dataclass
class PPOOptions(OnlineOptions, ValueModelOptions):
    lr: float = option(1.73e-05, "policy learning rate", gt=0)
    epochs: int = option(2, "passes over each rollout batch", ge=1)
    beta_kl: float = option(0.2, "β_KL of the per-token penalty −β_KL·(log π_old − log π_ref)", ge=0)
    gamma: float = option(1.0, "discount", ge=0, le=1)
    gae_lambda: float = option(0.95, "λ of GAE", ge=0, le=1)
    clip: float = option(0.2, "ε of the clipped ratio", gt=0)
    value_clip: float = option(0.2, "the critic may move this far from its old values per rollout batch", gt=0)
    whiten_advantages: bool = option(True, "normalise advantages over each rollout batch")
    target_kl: float | None = option(None, "stop a rollout batch's epochs once the approximate KL to π_old "
                                     "passes this (null = never)", gt=0)


@register_algorithm("ppo")
class PPO(OnlineAlgorithm):
    Options = PPOOptions
    needs_value_model = True
    token_fields = ("advantages", "returns")

    def rollout_examples(self, seqs, group_size):
        o = self.opts
        lengths = [len(s["completion_ids"]) for s in seqs]
        mask = pad_right([[1.0] * n for n in lengths])
        old_logps, old_values = pad_right([s["old_logps"] for s in seqs]), pad_right([s["old_values"] for s in seqs])
        ref_logps = pad_right([s["ref_logps"] for s in seqs])
        outcome = torch.tensor([float(s["reward"]) for s in seqs])
        rewards = kl_shaped_rewards(outcome, old_logps, ref_logps, mask, o.beta_kl)
        adv, ret = gae(rewards, old_values, mask, gamma=o.gamma, lam=o.gae_lambda)
        if o.whiten_advantages:
            adv = masked_whiten(adv, mask)
        return [{"seq": {**s, "advantages": adv[i, :n].tolist(), "returns": ret[i, :n].tolist()}}
                for i, (s, n) in enumerate(zip(seqs, lengths))]

    def loss(self, batch, stats):
        s, o = batch["seq"], self.opts
        pol, pm = ppo_policy_loss(s["logps"], s["old_logps"], s["advantages"], clip=o.clip)
        val, vm = ppo_value_loss(s["values"], s["old_values"], s["returns"], clip=o.value_clip)
        return {"policy": per_token(pol), "value": per_token(o.value_coef * val)}, {**pm, **vm}

    def stop_epochs(self, record):
        return self.opts.target_kl is not None and record.get("approx_kl", 0.0) > self.opts.target_kl
