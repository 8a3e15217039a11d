"""``sft``: more supervised fine-tuning on the gold demonstrations π_ref was trained on (token-mean NLL).

The control row (docs/design.md §10): an algorithm must beat *more of the same training* to count. The
warm start trains π_ref with this plug-in too (``warm_start.algo``)."""
from dataclasses import dataclass

from algorithms._base import Algorithm, TrainedOptions, token_nll
from harness.options import option
from harness.registry import register_algorithm


@dataclass
class SFTOptions(TrainedOptions):
    lr: float = option(3.15e-05, "policy learning rate", gt=0)


@register_algorithm("sft")
class SFT(Algorithm):
    Options = SFTOptions
    needs_ref = False  # the NLL reads no log π_ref

    def build_examples(self, data, rng):
        return [{"seq": s} for s in data.demo]

    def loss(self, batch, stats):
        return token_nll(batch)
