"""``dpo``: Direct Preference Optimization (Rafailov et al. 2023, arXiv 2305.18290) on pairs of a
correct and an incorrect bank sample of the same prompt."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from algorithms.base import Algorithm
from harness.registry import register_algorithm


def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, *, beta):
    """Mean over the batch of −log σ(β·((πc − rc) − (πr − rr))) on ``[B]`` sequence log-probs."""
    chosen = policy_chosen_logps - ref_chosen_logps
    rejected = policy_rejected_logps - ref_rejected_logps
    margin = beta * (chosen - rejected)
    loss = -F.logsigmoid(margin).mean()
    metrics = {
        "reward_margin": margin.mean().item(),
        "reward_accuracy": (margin > 0).float().mean().item(),
        "chosen_logratio": chosen.mean().item(),
        "rejected_logratio": rejected.mean().item(),
    }
    return loss, metrics


@register_algorithm("dpo")
class DPO(Algorithm):
    needs_bank = True
    slots = ("chosen", "rejected")

    def build_examples(self, data, rng):
        """Per prompt, up to ``max_pairs_per_prompt`` (correct, incorrect) pairs, each sample used once."""
        cap = int(self.cfg.get("max_pairs_per_prompt", 4))
        out = []
        for group in data.bank:
            good = [s for s in group["samples"] if s["reward"] > 0]
            bad = [s for s in group["samples"] if s["reward"] <= 0]
            rng.shuffle(good)
            rng.shuffle(bad)
            out += [{"chosen": c, "rejected": r} for c, r in list(zip(good, bad))[:cap]]
        return out

    def loss(self, batch):
        c, r = batch["chosen"], batch["rejected"]
        return dpo_loss(
            (c["logps"] * c["mask"]).sum(-1), (r["logps"] * r["mask"]).sum(-1),
            (c["ref_logps"] * c["mask"]).sum(-1), (r["ref_logps"] * r["mask"]).sum(-1),
            beta=float(self.cfg.get("beta", 0.1)),
        )
