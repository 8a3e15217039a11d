"""``dpo``: Direct Preference Optimization (Rafailov et al. 2023, arXiv 2305.18290) on pairs of a
correct and an incorrect bank sample of the same prompt."""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from algorithms._base import Algorithm, TrainedOptions, per_example
from harness.options import option
from harness.registry import register_algorithm


@dataclass
class DPOOptions(TrainedOptions):
    lr: float = option(2.1e-06, "policy learning rate", gt=0)
    beta: float = option(0.03, "strength of the implicit KL to π_ref", gt=0)
    max_pairs_per_prompt: int = option(4, "pairs per prompt, each sample used at most once", ge=1)


def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, *, beta):
    """``(loss [B], metrics)``: −log σ(β·((πc − rc) − (πr − rr))) of each pair, on ``[B]`` sequence log-probs."""
    chosen = policy_chosen_logps - ref_chosen_logps
    rejected = policy_rejected_logps - ref_rejected_logps
    margin = beta * (chosen - rejected)
    metrics = {
        "reward_margin": margin.mean().item(),
        "reward_accuracy": (margin > 0).float().mean().item(),
        "chosen_logratio": chosen.mean().item(),
        "rejected_logratio": rejected.mean().item(),
    }
    return -F.logsigmoid(margin), metrics


@register_algorithm("dpo")
class DPO(Algorithm):
    Options = DPOOptions
    needs_bank = True
    min_samples = 2  # a pair: a correct and an incorrect sample of one prompt
    slots = ("chosen", "rejected")

    def build_examples(self, data, rng):
        """Per prompt, up to ``max_pairs_per_prompt`` (correct, incorrect) pairs, each sample used once."""
        out = []
        for group in data.bank:
            good = [s for s in group["samples"] if s["reward"] > 0]
            bad = [s for s in group["samples"] if s["reward"] <= 0]
            rng.shuffle(good)
            rng.shuffle(bad)
            out += [{"chosen": c, "rejected": r} for c, r in list(zip(good, bad))[:self.opts.max_pairs_per_prompt]]
        return out

    def loss(self, batch, stats):
        c, r = batch["chosen"], batch["rejected"]
        values, metrics = dpo_loss(
            (c["logps"] * c["mask"]).sum(-1), (r["logps"] * r["mask"]).sum(-1),
            (c["ref_logps"] * c["mask"]).sum(-1), (r["ref_logps"] * r["mask"]).sum(-1), beta=self.opts.beta)
        return {"dpo": per_example(values)}, metrics
