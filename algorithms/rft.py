"""``rft``: rejection-sampling fine-tuning (Yuan et al. 2023, arXiv 2308.01825): SFT on the bank's
correct samples, each distinct completion of a prompt once."""
from algorithms.base import Algorithm, token_nll
from harness.registry import register_algorithm


@register_algorithm("rft")
class RFT(Algorithm):
    needs_bank = True
    normalize = "token"

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

    def loss(self, batch):
        return token_nll(batch["seq"]["logps"], batch["seq"]["mask"])
