"""The policy and its value model as one module (docs/design.md §3, §6).

One forward, so a distributed wrapper (DDP, FSDP, DeepSpeed's engine) sees every parameter that takes part
in a step through a single call, one ``prepare`` and one optimiser with a parameter group per model (each
its own learning rate): DeepSpeed accepts one model and one optimiser per engine, and FSDP2 one model per
prepare call.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from harness.backbone import buckets, prefix
from harness.backbone.sequences import collate, completion_logps, logps_from
from harness.backbone.value_model import ValueHead, gather_values


class Agent(nn.Module):
    """``policy`` (a causal LM) and ``value`` (a ``ValueModel`` with its own trunk, a ``ValueHead`` on the
    policy's trunk, or None)."""

    def __init__(self, policy: nn.Module, value: nn.Module | None = None, sharded: bool = False,
                 compile: bool = False):
        super().__init__()
        self.policy, self.value = policy, value
        # ``train.compile``: the training passes go through ``torch.compile``d views of the same modules (they share
        # the parameters; kept in a plain dict, so the state dict, checkpoints and wrappers see only the originals,
        # and ``generate`` stays eager). ``dynamic``: one graph for every batch shape, not one per bucket length
        self._compiled = {id(m): torch.compile(m, dynamic=True)
                          for m in (policy, value, getattr(value, "trunk", None))
                          if compile and m is not None and not isinstance(m, ValueHead)}
        # with weights sharded (ZeRO-3, FSDP) every process must make the same forward calls, each gathering the
        # weights: no length buckets (the processes' batches would split differently), and the prompt-sharing path
        # always (two calls per model, whatever the batch)
        self.sharded = sharded
        # what the last forward ran: real tokens (a shared prompt counted once) and positions (padding included)
        self.last_tokens = self.last_positions = 0

    def _run(self, module: nn.Module) -> nn.Module:
        """The module to call for a training pass: its compiled view under ``train.compile``, else itself."""
        return self._compiled.get(id(module), module)

    @property
    def shared_trunk(self) -> bool:
        return isinstance(self.value, ValueHead)

    def forward(self, t: dict, outputs=(), policy: bool = True, values: bool = True):
        """``(logps, values, outputs)`` of a collated batch: the policy's log-probs (None when not asked for),
        V(s_h) (None when not asked for or without a value model; a head on the policy's trunk needs the
        policy's pass either way) and the declared extra ``outputs``. Each distinct prompt is computed once
        (``harness/backbone/prefix.py``) or the sequences run whole in length buckets (``harness/backbone/buckets.py``), whichever
        computes fewer positions; either way most padding is never computed."""
        self.last_tokens = self.last_positions = 0
        path, groups = self._plan(t)
        if path == "prefix":
            fn = lambda rows: self._prefix_forward(rows, prefix.layout(rows), outputs, policy, values)  # noqa: E731
        else:
            fn = lambda rows: self._forward(rows, outputs, policy, values)  # noqa: E731
        return buckets.bucketed(fn, t, groups=groups)

    def _plan(self, t: dict) -> tuple[str, list[list[int]]]:
        """``(path, buckets)``: with sharded weights one bucket (every process makes the same calls), by the prompt-
        sharing path unless gradient checkpointing is on; otherwise the cheaper path in positions computed, a call
        counted as ``buckets.OVERHEAD`` positions."""
        rows = [list(range(t["input_ids"].size(0)))]
        share = "prompt_group" in t and not any(
            getattr(m, "is_gradient_checkpointing", False)  # transformers turns the KV cache off under it
            for m in (self.policy, getattr(self.value, "trunk", None)) if m is not None)
        if self.sharded:
            return ("prefix" if share else "whole"), rows
        lengths = t["attention_mask"].sum(1).tolist()
        whole = buckets.split(lengths)
        if share:
            shared = prefix.split(t)
            whole_cost = buckets.computed_positions(lengths, groups=whole) + buckets.OVERHEAD * len(whole)
            if prefix.cost(t, shared) < whole_cost:
                return "prefix", shared
        return "whole", whole

    def _prefix_forward(self, t: dict, lay: dict, outputs, policy: bool, values: bool):
        real, computed = prefix.counts(lay)
        self.last_tokens, self.last_positions = self.last_tokens + real, self.last_positions + computed
        vm = self.value if values else None
        shared = self.shared_trunk and vm is not None
        logps, v, extra = None, None, {}
        if policy or shared:
            logits, hidden = prefix.run(self._run(self.policy), lay, lm=True, hidden=shared)
            logps, extra = logps_from(logits, t, outputs)
            if shared:
                v = vm(hidden) * t["mask"]
        if vm is not None and not shared:
            v = vm.head(prefix.run(self._run(vm.trunk), lay, lm=False, hidden=True)[1]) * t["mask"]
        return (logps if policy else None), (v.float() if v is not None else None), extra

    def _forward(self, t: dict, outputs, policy: bool, values: bool):
        self.last_tokens += int(t["attention_mask"].sum())
        self.last_positions += int(t["attention_mask"].sum(1).max()) * t["attention_mask"].size(0)
        vm = self.value if values else None
        if self.shared_trunk and vm is not None:
            logps, extra = completion_logps(self._run(self.policy), t, outputs, return_hidden=True)
            v = gather_values(vm(extra.pop("hidden")), t["pred_pos"], t["mask"]).float()
            return (logps if policy else None), v, extra
        logps, extra = completion_logps(self._run(self.policy), t, outputs) if policy else (None, {})
        if vm is None:
            return logps, None, extra
        return logps, gather_values(self._run(vm)(t["input_ids"], t["attention_mask"]), t["pred_pos"], t["mask"]).float(), extra


@torch.no_grad()
def fill_ref_logps(model, examples: list[dict], slots, pad_id: int, device=None, batch_size: int = 64,
                   autocast=contextlib.nullcontext) -> int:
    """Compute log π_ref for every sequence of ``examples`` whose ``ref_logps`` is None, with ``model``
    (π_ref, before any training) through the trainer's forward path (``harness/backbone/agent.py``) under ``autocast``
    (the trainer's precision). Returns the number of tokens processed (a prompt shared in a chunk once)."""
    todo = [ex[s] for ex in examples for s in slots if ex[s].get("ref_logps") is None]
    was_training = model.training
    model.eval()
    tokens, agent = 0, Agent(model)
    for i in range(0, len(todo), batch_size):
        chunk = todo[i:i + batch_size]
        with autocast():
            lp = agent(collate(chunk, pad_id, device))[0]  # a prompt shared by rows of the chunk computed once
        tokens += agent.last_tokens
        for row, seq in enumerate(chunk):
            seq["ref_logps"] = lp[row, : len(seq["completion_ids"])].tolist()
    model.train(was_training)
    return tokens
