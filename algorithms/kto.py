"""``kto``: Kahneman-Tversky Optimization (Ethayarajh et al. 2024, arXiv 2402.01306).

Unpaired: every bank sample is desirable (correct) or undesirable (incorrect). The reference point
z₀ is the batch-mismatched KL estimate of the paper (§4.1) and of TRL's KTOTrainer: the mean
log π_θ/π_ref of completions paired with *another* prompt, clamped at 0 and not back-propagated.
Here each sample's mismatched partner is fixed when the examples are built (a random sample of a
different prompt); the backbone fills its reference log-probs with π_ref before training.

Class balance: with ``desirable_weight: auto`` the desirable weight is n_undesirable / n_desirable of
the bank, so λ_D·n_D = λ_U·n_U, the low end of the [1, 4/3] range the KTO authors recommend for
this product ratio (TRL KTOTrainer documentation). A π_ref that solves 40% of the bank otherwise
spends 60% of every batch pushing probabilities down.
"""
from __future__ import annotations

import torch

from algorithms.base import Algorithm
from harness.errors import UserError
from harness.registry import register_algorithm


def kto_loss(seq_logratio, kl_logratio, desirable, *, beta, desirable_weight=1.0, undesirable_weight=1.0):
    """``(loss, metrics)`` on ``[B]`` tensors: ``seq_logratio`` = Σ log π_θ/π_ref of each sample,
    ``kl_logratio`` = the same on mismatched (prompt, completion) pairs, ``desirable`` bool."""
    z0 = kl_logratio.detach().mean().clamp(min=0)
    good = desirable_weight * (1 - torch.sigmoid(beta * (seq_logratio - z0)))
    bad = undesirable_weight * (1 - torch.sigmoid(beta * (z0 - seq_logratio)))
    loss = torch.where(desirable, good, bad).mean()
    metrics = {"kl_ref_point": z0.item(), "desirable_weight": float(desirable_weight),
               "desirable_frac": desirable.float().mean().item(), "seq_logratio_mean": seq_logratio.mean().item()}
    return loss, metrics


@register_algorithm("kto")
class KTO(Algorithm):
    needs_bank = True
    slots = ("seq", "kl")

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
        w = self.cfg.get("desirable_weight", 1.0)
        if w != "auto":
            return float(w)
        n_good = sum(s["reward"] > 0 for s in samples)
        if n_good == 0 or n_good == len(samples):
            raise UserError("kto: desirable_weight=auto needs both correct and incorrect bank samples; set a number")
        return (len(samples) - n_good) / n_good

    def loss(self, batch):
        s, k = batch["seq"], batch["kl"]
        c = self.cfg
        return kto_loss((s["logps"] - s["ref_logps"]).mul(s["mask"]).sum(-1),
                        (k["logps"] - k["ref_logps"]).mul(k["mask"]).sum(-1), s["rewards"] > 0,
                        beta=float(c.get("beta", 0.1)), desirable_weight=self.desirable_weight,
                        undesirable_weight=float(c.get("undesirable_weight", 1.0)))
