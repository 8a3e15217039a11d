"""The algorithm plug-in contract (DESIGN.md §3).

A plug-in says which data it trains on and supplies its loss; the backbone (``harness/training.py``)
owns everything else, identically for every algorithm. The backbone calls:

1. ``build_examples(data, rng)`` once: a list of training examples, each a dict mapping a *slot*
   name (``"seq"``, or ``"chosen"``/``"rejected"``) to a sequence (see ``harness/sequences.py``).
2. ``loss(batch)`` per micro-batch, where ``batch[slot]`` holds that slot's completion tensors
   ``logps`` (policy, with grad), ``ref_logps``, ``mask``, ``rewards`` (``[B]`` outcomes),
   ``token_rewards`` (``[B, T]``: outcome on the last token plus any shaping) and, for algorithms
   that need a value model, ``values`` (``[B, T]``, V(s_h), with grad to the value model). It returns
   ``(loss, metrics)``: the loss is a mean over the micro-batch's examples (``normalize="sequence"``)
   or over its completion tokens (``normalize="token"``); the backbone re-weights micro-batches by
   their share of the whole batch, so gradient accumulation never changes the result.

Online algorithms (``OnlineAlgorithm``: PPO, GRPO) train on live samples instead; the backbone's loop
(``harness/online.py``) samples, grades and scores each rollout batch, then calls the hook
``rollout_examples`` to turn it into examples for the same ``loss``.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch


@dataclass
class TrainData:
    """What offline algorithms may train on; every algorithm of a sweep sees the same objects."""

    #: gold demonstrations (the warm start's SFT data): sequences with reward 1
    demo: list[dict] = field(default_factory=list)
    #: rollout bank grouped by prompt: ``{"prompt_id", "prompt_ids", "samples": [sequence, ...]}``
    bank: list[dict] = field(default_factory=list)


class Algorithm:
    name: str = "algorithm"
    #: False for ``reference``: the pipeline skips training and evaluates π_ref
    trains: bool = True
    #: needs the rollout bank (samples from π_ref with their log-probs and rewards)
    needs_bank: bool = False
    #: slots of one example; all slots of a micro-batch go through the model in one forward pass
    slots: tuple[str, ...] = ("seq",)
    #: "sequence" or "token": what the loss is a mean over (see module docstring)
    normalize: str = "sequence"
    #: the backbone builds a value model V_φ (``algo.value_model``: separate | shared, ``algo.value_lr``)
    #: and passes ``values`` (V(s_h) per response token) in every slot
    needs_value_model: bool = False
    #: may use Monte-Carlo process values as reward shaping (``algo.process_values``)
    uses_process_values: bool = False
    #: trains on live samples from the policy (``OnlineAlgorithm``) rather than on ``build_examples``
    online: bool = False

    def __init__(self, **cfg):
        self.cfg = dict(cfg)
        self.lr = float(cfg.get("lr", 1e-5))

    def build_examples(self, data: TrainData, rng: random.Random) -> list[dict]:
        raise NotImplementedError

    def loss(self, batch: dict[str, dict[str, torch.Tensor]]) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError


class TrajectoryAlgorithm(Algorithm):
    """Trains on every bank sample, correct or not, one trajectory per example (DQO, DRO, OREO)."""

    needs_bank = True

    def build_examples(self, data: TrainData, rng: random.Random) -> list[dict]:
        return [{"seq": s} for g in data.bank for s in g["samples"]]


class OnlineAlgorithm(Algorithm):
    """Trains on samples from the live policy. Options every online algorithm takes (``sweeps/algo/*.yaml``):
    ``n_samples`` per prompt, ``prompts_per_iter``, ``epochs`` over each rollout batch, ``prompt_pool``
    (the RL prompts it draws from; the bank's by default, so online and offline algorithms see the same
    prompts) and ``budget.prompts`` / ``budget.gen_tokens`` (when to stop)."""

    online = True
    #: fewest ``n_samples`` per prompt the algorithm can learn from
    min_samples: int = 1

    @property
    def needs_ref(self) -> bool:
        """Whether the rollouts need log π_ref (a frozen copy of π_ref is kept only then)."""
        return True

    def rollout_examples(self, seqs: list[dict], group_size: int) -> list[dict]:
        """Examples from one rollout batch. ``seqs`` come grouped by prompt (``group_size`` in a row), each
        with ``old_logps`` (π_old, the sampling policy), ``ref_logps`` (when ``needs_ref``), ``reward`` and,
        with a value model, ``old_values``; this hook adds what ``loss`` reads (advantages, returns)."""
        raise NotImplementedError

    def stop_epochs(self, record: dict) -> bool:
        """Called after each optimiser step on a rollout batch: True skips the rest of its epochs."""
        return False


def token_nll(logps: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean negative log-likelihood over real tokens of a ``[B, T]`` batch (SFT, RFT)."""
    n = mask.sum().clamp(min=1)
    loss = -(logps * mask).sum() / n
    return loss, {"nll": loss.item()}
