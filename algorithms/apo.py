"""``apo``: A*-PO, policy optimisation by optimal-advantage regression (Brantley et al. 2025, arXiv 2505.20686).

Stage 1 (offline): the optimal value of each prompt from K samples of π_ref — the rollout bank —
V*(x) = β₁·log mean_i exp(R_i/β₁) (β₁ = 0.5). Stage 2 (online): one sample per prompt from the live
policy and a least-squares regression of the implicit reward onto the optimal advantage,

    L(θ) = mean_τ ( β₂·Σ_h [log π_θ(a_h|s_h) − log π_ref(a_h|s_h)] + V*(x) − R(τ) )²     (β₂ = 1e-3),

with no critic, no clipping and no importance ratio: each rollout batch is used once, in
``prompts_per_iter × n_samples / train.batch_size`` optimiser steps (the authors' scripts: 256 prompts,
mini-batches of 128, two steps). Stage 1 is the shared bank, charged to the run as its data cost.

Read from the authors' code (ZhaolinGao/A-PO: ``rl_dataset.py`` for V*, ``core_algos.py`` for the loss)
and TRL 1.16's ``trl.experimental.a2po``, whose loss and gradient ours equals on the same inputs
(``tests/test_value_based_losses.py``). Where the two differ we expose the choice: ``filter_all_incorrect``
(off in the authors' scripts, on in TRL) and ``entropy_coef`` (0.001 in the authors' scripts, absent in
TRL and in the paper's loss; default 0).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from algorithms._base import Budget, OnlineAlgorithm, OnlineOptions, per_example, per_token
from harness.errors import UserError
from harness.options import option
from harness.registry import register_algorithm


@dataclass
class APOOptions(OnlineOptions):
    lr: float = option(2.96e-06, "policy learning rate", gt=0)
    beta1: float = option(0.5, "β₁ of V*(x) = β₁·log mean_i exp(R_i/β₁) over the bank's samples of x", gt=0)
    beta2: float = option(1e-3, "β₂ of the regression (β₂·Σ log π/π_ref + V*(x) − R)²", gt=0)
    filter_all_incorrect: bool = option(False, "skip prompts whose bank samples are all incorrect (TRL's default; "
                                        "the authors' scripts keep them)")
    entropy_coef: float = option(0.0, "entropy bonus per token (the authors' scripts use 0.001)", ge=0)
    n_samples: int = option(1, "completions per prompt from the live policy (stage 2 takes one)", ge=1)
    prompts_per_iter: int = option(64, "prompts per rollout batch: two optimiser steps of 32, each sample used once",
                                   ge=1)
    budget: Budget = option(Budget(prompts="${mul:${bank.n_prompts},${bank.k}}"),
                            "when to stop (default: as many rollouts as the bank holds, like grpo's)")


def optimal_values(rewards: torch.Tensor, beta1: float) -> torch.Tensor:
    """V*(x) = β₁·log mean_i exp(R_i/β₁) for ``rewards`` ``[n_prompts, K]``, computed stably."""
    return beta1 * (torch.logsumexp(rewards / beta1, dim=-1) - math.log(rewards.size(-1)))


def apo_loss(seq_logratio, v_star, rewards, *, beta2):
    """``(loss [B], metrics)``: (β₂·Σℓ + V*(x) − R)² per sample, on ``[B]`` tensors."""
    implicit = beta2 * seq_logratio
    advantage = rewards - v_star
    metrics = {"implicit_reward": implicit.mean().item(), "advantage": advantage.mean().item(),
               "v_star": v_star.mean().item()}
    return (implicit - advantage) ** 2, metrics


@register_algorithm("apo")
class APO(OnlineAlgorithm):
    Options = APOOptions
    needs_bank = True  # stage 1: V* from π_ref's K samples per prompt
    sequence_fields = ("v_star",)

    @property
    def outputs(self):
        return ("entropy",) if self.opts.entropy_coef > 0 else ()

    def prepare(self, data):
        groups = [g for g in data.bank if g["samples"]]
        rewards = torch.tensor([[float(s["reward"]) for s in g["samples"]] for g in groups], dtype=torch.float64)
        v = optimal_values(rewards, self.opts.beta1)
        self.v_star = {g["prompt_id"]: float(x) for g, x in zip(groups, v)}
        self.all_incorrect = {g["prompt_id"] for g, r in zip(groups, rewards) if r.sum() == 0}

    def keep_prompt(self, prompt_id):
        if prompt_id not in self.v_star:
            raise UserError(f"apo: prompt {prompt_id} has no V* (it is not in the bank): algo.prompt_pool must not "
                            f"exceed bank.n_prompts")
        return not (self.opts.filter_all_incorrect and prompt_id in self.all_incorrect)

    def rollout_examples(self, seqs, group_size):
        return [{"seq": {**s, "v_star": self.v_star[s["prompt_id"]]}} for s in seqs]

    def loss(self, batch, stats):
        s, o = batch["seq"], self.opts
        seq_logratio = ((s["logps"] - s["ref_logps"]) * s["mask"]).sum(-1)
        values, metrics = apo_loss(seq_logratio, s["v_star"], s["rewards"], beta2=o.beta2)
        terms = {"regression": per_example(values)}
        if o.entropy_coef > 0:
            terms["entropy"] = per_token(-o.entropy_coef * s["entropy"])
        return terms, metrics
