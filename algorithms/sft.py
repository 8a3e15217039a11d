"""``sft``: more supervised fine-tuning on the gold demonstrations π_ref was trained on.

The control row (DESIGN.md §10): an algorithm must beat *more of the same training* to count."""
from algorithms.base import Algorithm, token_nll
from harness.registry import register_algorithm


@register_algorithm("sft")
class SFT(Algorithm):
    normalize = "token"

    def build_examples(self, data, rng):
        return [{"seq": s} for s in data.demo]

    def loss(self, batch):
        return token_nll(batch["seq"]["logps"], batch["seq"]["mask"])
