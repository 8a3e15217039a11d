"""``kto``: Kahneman-Tversky Optimization (Ethayarajh et al. 2024, arXiv 2402.01306).

Unpaired: every bank sample is desirable (correct) or undesirable (incorrect). The reference point
z₀ is the batch-mismatched KL estimate of the paper (§4.1) and of TRL's KTOTrainer: the mean
log π_θ/π_ref of completions paired with *another* prompt, clamped at 0 and not back-propagated.
Here each sample's mismatched partner is fixed when the examples are built (a random sample of a
different prompt); the backbone fills its reference log-probs with π_ref before training. z₀ is a
batch statistic: the backbone averages it over the whole optimiser batch, however it is split.

Class balance: with ``desirable_weight: auto`` the desirable weight is n_undesirable / n_desirable of
the bank, so λ_D·n_D = λ_U·n_U, the low end of the [1, 4/3] range the KTO authors recommend for
this product ratio (TRL KTOTrainer documentation). A π_ref that solves 40% of the bank otherwise
spends 60% of every batch pushing probabilities down.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from algorithms._base import Algorithm, TrainedOptions, per_example
from harness.errors import UserError
from harness.options import option
from harness.registry import register_algorithm


@dataclass
class KTOOptions(TrainedOptions):
    lr: float = option(4.19e-06, "policy learning rate", gt=0)
    beta: float = option(0.1, "strength of the implicit KL to π_ref", gt=0)
    desirable_weight: Literal["auto"] | float = option(
        "auto", "λ_D; auto = n_undesirable / n_desirable of the bank (balances the classes)", gt=0)
    undesirable_weight: float = option(1.0, "λ_U", gt=0)


def kto_loss(seq_logratio, z0, desirable, *, beta, desirable_weight=1.0, undesirable_weight=1.0):
    """``(loss [B], metrics)``: ``seq_logratio`` = Σ log π_θ/π_ref of each sample, ``z0`` the reference
    point (the batch's mean mismatched log-ratio, clamped at 0), ``desirable`` bool ``[B]``."""
    z0 = z0.detach().clamp(min=0)
    good = desirable_weight * (1 - torch.sigmoid(beta * (seq_logratio - z0)))
    bad = undesirable_weight * (1 - torch.sigmoid(beta * (z0 - seq_logratio)))
    metrics = {"kl_ref_point": z0.item(), "desirable_weight": float(desirable_weight),
               "desirable_frac": desirable.float().mean().item(), "seq_logratio_mean": seq_logratio.mean().item()}
    return torch.where(desirable, good, bad), metrics


def _seq_logratio(s) -> torch.Tensor:
    return ((s["logps"] - s["ref_logps"]) * s["mask"]).sum(-1)


@register_algorithm("kto")
class KTO(Algorithm):
    Options = KTOOptions
    needs_bank = True
    slots = ("seq", "kl")
    statistics = ("kl",)

    def build_examples(self, data, rng):
        samples = [s for g in data.bank for s in g["samples"]]
        out = []
        for s in samples:
            for _ in range(10):  # a partner from another prompt (any, if the bank has a single prompt)
                other = samples[rng.randrange(len(samples))]
                if other["prompt_id"] != s["prompt_id"]:
                    break
            kl = {"prompt_ids": s["prompt_ids"], "completion_ids": other["completion_ids"], "ref_logps": None}
            out.append({"seq": s, "kl": kl})
        self.desirable_weight = self._desirable_weight(samples)
        return out

    def _desirable_weight(self, samples) -> float:
        w = self.opts.desirable_weight
        if w != "auto":
            return float(w)
        n_good = sum(s["reward"] > 0 for s in samples)
        if n_good == 0 or n_good == len(samples):
            raise UserError("kto: desirable_weight=auto needs both correct and incorrect bank samples; set a number")
        return (len(samples) - n_good) / n_good

    def batch_statistics(self, batch):
        return {"kl": _seq_logratio(batch["kl"])}

    def loss(self, batch, stats):
        s = batch["seq"]
        values, metrics = kto_loss(_seq_logratio(s), stats["kl"], s["rewards"] > 0, beta=self.opts.beta,
                                   desirable_weight=self.desirable_weight,
                                   undesirable_weight=self.opts.undesirable_weight)
        return {"kto": per_example(values)}, metrics
