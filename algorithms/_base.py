"""The algorithm plug-in contract (docs/design.md §3).

A plug-in declares what it needs and supplies its loss; the backbone (``harness/backbone/training.py``) owns
everything else, identically for every algorithm: model, optimisers, batching, accumulation, the one
reduction of the loss, clipping, schedule, checkpoints. What a plug-in declares:

* ``Options``: a dataclass of its options, each declared once with ``option(default, doc, bounds)``;
  ``sweeps/algo/<name>.yaml`` must match it (``tests/test_options.py``), an unknown key stops the job.
* Data: ``needs_bank`` / ``online``; ``slots`` (the sequences of one example); ``needs_value_model``;
  ``token_fields`` / ``sequence_fields`` (what its examples carry beyond the backbone's own fields, which
  the backbone collates into tensors); ``outputs`` (extra per-token model outputs, from
  ``harness.backbone.sequences.MODEL_OUTPUTS``); ``statistics`` (batch statistics, see below).
* ``build_examples(data, rng)`` (offline) or ``rollout_examples(seqs, group_size)`` (online): the examples,
  each a dict mapping a slot name to a sequence (``harness/backbone/sequences.py``).
* ``loss(batch, stats)``: ``batch[slot]`` holds that slot's completion tensors, ``[B, T]`` right-padded:
  ``logps`` (policy, with grad), ``ref_logps``, ``mask``, ``token_rewards`` (outcome on the last token plus
  any shaping), ``rewards`` (``[B]``), ``values`` (V(s_h), with a value model), the declared fields and
  outputs. It returns ``(terms, metrics)``: ``terms`` maps a name to a ``Term``, made with
  ``per_example(values[B])`` or ``per_token(values[B, T], slot)``. It never reduces over the batch itself.
  ``metrics`` maps a name to a ``Term`` (averaged over the optimiser batch like a loss term: a token mean
  such as a clip fraction) or to a number that is a mean over the micro-batch's examples (weighted by its
  examples); either way a logged metric is the same at every ``train.micro_batch_size``.

**The one reduction.** The backbone sums every term's mean over the whole optimiser batch: a per-example
term over the batch's examples, a per-token term over the real completion tokens of its slot in the
batch. It counts them before the first micro-batch, so gradient accumulation (and, with several
processes, the split of the batch) never changes the update.

**Batch statistics.** A loss that needs a statistic of the batch (KTO's reference point z₀, DQO's
self-normalised importance weight) names it in ``statistics`` and supplies ``batch_statistics(batch)``:
per-example values from the policy's log-probs, without gradient. The backbone averages them over the
whole optimiser batch (a no-grad pass first when the batch is split) and passes the means as ``stats``.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch

from harness.options import option, parse_options


class TrainData:
    """What offline algorithms may train on; every algorithm of a sweep sees the same objects.

    ``demo``: gold demonstrations (the warm start's SFT data), sequences with reward 1; given as a list, or as a
    function that makes it on first use (tens of thousands of demonstrations take seconds to tokenise, and most
    algorithms never read them). ``bank``: the rollout bank grouped by prompt,
    ``{"prompt_id", "prompt_ids", "samples": [sequence, ...]}``."""

    def __init__(self, demo: list[dict] | Callable[[], list[dict]] | None = None, bank: list[dict] | None = None):
        self._demo = demo if demo is not None else []
        self.bank = bank if bank is not None else []

    @property
    def demo(self) -> list[dict]:
        if callable(self._demo):
            self._demo = self._demo()
        return self._demo

    @demo.setter
    def demo(self, value: list[dict]) -> None:
        self._demo = value


# -- options every family shares -------------------------------------------------------------------
@dataclass
class AlgoOptions:
    """No options (``reference``)."""


@dataclass
class TrainedOptions(AlgoOptions):
    lr: float = option(1e-5, "policy learning rate", gt=0)


@dataclass
class ValueModelOptions(TrainedOptions):
    value_lr: float = option(3e-4, "value model learning rate (its own optimiser)", gt=0)
    value_model: Literal["separate", "shared"] = option(
        "separate", "separate: its own copy of π_ref's trunk | shared: a head on the policy's trunk")
    value_coef: float = option(1.0, "weight of the value loss in the summed loss (matters only for `shared`)", ge=0)


@dataclass
class Budget:
    prompts: int = option("${bank.n_prompts}", "prompts seen in all (cycling through the pool): fixes the "
                          "iterations and LR schedule", ge=1)
    gen_tokens: int | None = option(None, "also stop after the iteration whose generated tokens reach this "
                                    "(null = no cap)", ge=1)


@dataclass
class OnlineOptions(TrainedOptions):
    n_samples: int = option(8, "completions per prompt (= bank.k: the same sampling per prompt as the bank)", ge=1)
    prompts_per_iter: int = option(32, "prompts per rollout batch; optimiser steps take train.batch_size "
                                   "completions of it", ge=1)
    epochs: int = option(1, "passes over each rollout batch", ge=1)
    prompt_pool: int = option("${bank.n_prompts}", "the RL prompts it draws from: the bank's, so online and "
                              "offline algorithms see the same prompts", ge=1)
    budget: Budget = option(Budget(), "when to stop")


# -- what a loss returns ---------------------------------------------------------------------------
@dataclass
class Term:
    """Unreduced loss values: ``[B]`` (one per example) or ``[B, T]`` (one per completion token of ``slot``)."""

    values: torch.Tensor
    slot: str | None = None


def per_example(values: torch.Tensor) -> Term:
    """A term averaged over the optimiser batch's examples."""
    return Term(values)


def per_token(values: torch.Tensor, slot: str = "seq") -> Term:
    """A term averaged over the optimiser batch's real completion tokens of ``slot``."""
    return Term(values, slot)


def token_nll(batch) -> tuple[dict[str, Term], dict[str, float]]:
    """Negative log-likelihood of every real token of the ``seq`` slot (SFT, RFT)."""
    return {"nll": per_token(-batch["seq"]["logps"])}, {}


class Algorithm:
    name: str = "algorithm"
    Options = TrainedOptions
    #: False for ``reference``: the pipeline skips training and evaluates π_ref
    trains: bool = True
    #: needs the rollout bank (samples from π_ref with their log-probs and rewards)
    needs_bank: bool = False
    #: trains on live samples from the policy (``OnlineAlgorithm``) rather than on ``build_examples``
    online: bool = False
    #: fewest samples per prompt it can learn from: ``bank.k`` (offline) or ``algo.n_samples`` (online)
    min_samples: int = 1
    #: slots of one example; all slots of a micro-batch go through the model in one forward pass
    slots: tuple[str, ...] = ("seq",)
    #: the backbone builds a value model V_φ (``ValueModelOptions``) and passes ``values`` in every slot
    needs_value_model: bool = False
    #: per-token / per-sequence fields its examples carry, collated into ``[B, T]`` / ``[B]`` tensors
    token_fields: tuple[str, ...] = ()
    sequence_fields: tuple[str, ...] = ()
    #: extra per-token model outputs its loss reads (names in ``harness.backbone.sequences.MODEL_OUTPUTS``)
    outputs: tuple[str, ...] = ()
    #: names of the batch statistics its loss reads (``batch_statistics``)
    statistics: tuple[str, ...] = ()

    def __init__(self, **cfg):
        self.opts = parse_options(self.Options, cfg, "algo")

    @property
    def lr(self) -> float:
        return self.opts.lr

    @property
    def needs_ref(self) -> bool:
        """Whether its loss reads log π_ref (``ref_logps``): the backbone then fills what the data lacks, by the
        training forward before the first update (``Learner.fill_reference``); online, it keeps a frozen π_ref."""
        return True

    def prepare(self, data: TrainData) -> None:
        """Called once before training, with the data the run has (the bank, when ``needs_bank``)."""

    def build_examples(self, data: TrainData, rng: random.Random) -> list[dict]:
        raise NotImplementedError

    def batch_statistics(self, batch) -> dict[str, torch.Tensor]:
        """Per-example values ``[B]`` of each name in ``statistics`` (no gradient); the backbone averages them."""
        return {}

    def loss(self, batch, stats: dict[str, torch.Tensor]) -> tuple[dict[str, Term], dict[str, float]]:
        raise NotImplementedError


class ProcessShaped:
    """An algorithm that can train on Monte-Carlo process-value shaping (``harness/pipeline/process_values.py``,
    design §4): the backbone builds the process values when ``process_alpha`` is not None and adds the shaping
    to the bank's samples. Declared by inheriting this, so no other algorithm carries the hook."""

    @property
    def process_alpha(self) -> float | None:
        """α of the shaping r_h += α·(v̂(s_{h+1}) − v̂(s_h)), or None: not used in this run."""
        raise NotImplementedError


def process_alpha(algo) -> float | None:
    """The shaping α an algorithm asks for, or None (every algorithm that does not declare ``ProcessShaped``)."""
    return algo.process_alpha if isinstance(algo, ProcessShaped) else None


class TrajectoryAlgorithm(Algorithm):
    """Trains on every bank sample, correct or not, one trajectory per example (DQO, DRO, OREO, TBRM)."""

    needs_bank = True

    def build_examples(self, data: TrainData, rng: random.Random) -> list[dict]:
        return [{"seq": s} for g in data.bank for s in g["samples"]]


class OnlineAlgorithm(Algorithm):
    """Trains on samples from the live policy (``harness/backbone/online.py``); takes ``OnlineOptions``."""

    Options = OnlineOptions
    online = True

    def keep_prompt(self, prompt_id: str) -> bool:
        """Whether a prompt of the pool is sampled at all (after ``prepare``)."""
        return True

    def rollout_examples(self, seqs: list[dict], group_size: int) -> list[dict]:
        """Examples from one rollout batch. ``seqs`` come grouped by prompt (``group_size`` in a row), each
        with ``prompt_id``, ``old_logps`` (π_old, the sampling policy), ``ref_logps`` (when ``needs_ref``),
        ``reward`` and, with a value model, ``old_values``; the examples carry copies with what ``loss`` reads added
        (``seqs`` themselves are left as they are)."""
        raise NotImplementedError

    def stop_epochs(self, record: dict) -> bool:
        """Called after each optimiser step on a rollout batch: True skips the rest of its epochs."""
        return False
