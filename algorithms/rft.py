"""``rft``: rejection-sampling fine-tuning (Yuan et al. 2023, arXiv 2308.01825): SFT on the bank's
correct samples, each distinct completion of a prompt once. Token-mean NLL."""
from dataclasses import dataclass

from algorithms._base import Algorithm, TrainedOptions, token_nll
from harness.options import option
from harness.registry import register_algorithm


@dataclass
class RFTOptions(TrainedOptions):
    lr: float = option(3.15e-05, "policy learning rate", gt=0)


@register_algorithm("rft")
class RFT(Algorithm):
    Options = RFTOptions
    needs_bank = True
    needs_ref = False  # the NLL reads no log π_ref

    def build_examples(self, data, rng):
        out = []
        for group in data.bank:
            seen = set()
            for s in group["samples"]:
                key = tuple(s["completion_ids"])
                if s["reward"] > 0 and key not in seen:
                    seen.add(key)
                    out.append({"seq": s})
        return out

    def loss(self, batch, stats):
        return token_nll(batch)
