"""The policy and its value model as one module (docs/design.md §3, §6).

One forward, so a distributed wrapper (DDP, FSDP, DeepSpeed's engine) sees every parameter that takes part
in a step through a single call, one ``prepare`` and one optimiser with a parameter group per model (each
its own learning rate): DeepSpeed accepts one model and one optimiser per engine, and FSDP2 one model per
prepare call.
"""
from __future__ import annotations

from torch import nn

from harness.buckets import bucketed
from harness.sequences import completion_logps
from harness.value_model import ValueHead, gather_values


class Agent(nn.Module):
    """``policy`` (a causal LM) and ``value`` (a ``ValueModel`` with its own trunk, a ``ValueHead`` on the
    policy's trunk, or None)."""

    def __init__(self, policy: nn.Module, value: nn.Module | None = None, buckets: bool = True):
        super().__init__()
        self.policy, self.value = policy, value
        # off when weights are sharded (ZeRO-3, FSDP): every process must make the same forward calls, each
        # gathering the weights, and the processes' batches would split into different numbers of buckets
        self.buckets = buckets

    @property
    def shared_trunk(self) -> bool:
        return isinstance(self.value, ValueHead)

    def forward(self, t: dict, outputs=(), policy: bool = True, values: bool = True):
        """``(logps, values, outputs)`` of a collated batch: the policy's log-probs (None when not asked for),
        V(s_h) (None when not asked for or without a value model; a head on the policy's trunk needs the
        policy's pass either way) and the declared extra ``outputs``. Run in length buckets
        (``harness/buckets.py``): padding is mostly not computed."""
        if not self.buckets:
            return self._forward(t, outputs, policy, values)
        return bucketed(lambda rows: self._forward(rows, outputs, policy, values), t)

    def _forward(self, t: dict, outputs, policy: bool, values: bool):
        vm = self.value if values else None
        if self.shared_trunk and vm is not None:
            logps, extra = completion_logps(self.policy, t, outputs, return_hidden=True)
            v = gather_values(vm(extra.pop("hidden")), t["pred_pos"], t["mask"]).float()
            return (logps if policy else None), v, extra
        logps, extra = completion_logps(self.policy, t, outputs) if policy else (None, {})
        if vm is None:
            return logps, None, extra
        return logps, gather_values(vm(t["input_ids"], t["attention_mask"]), t["pred_pos"], t["mask"]).float(), extra
