"""The value model V_φ (docs/design.md §3): a causal-LM trunk with a zero-initialised scalar head.

V(s_h) for response token h is read from the trunk's hidden state at the last token of s_h, i.e. the
position whose logits predict token h; V(x) (DRO) is therefore the value at the last prompt token.
``separate``: its own copy of π_ref's trunk (default). ``shared``: the head sits on the policy's own
trunk, so value gradients also move the policy's body.
"""
from __future__ import annotations

import torch
from torch import nn


class ValueHead(nn.Module):
    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.float()).squeeze(-1)


class ValueModel(nn.Module):
    """A separate trunk (the decoder of a causal LM, without its LM head) plus a value head."""

    def __init__(self, causal_lm):
        super().__init__()
        self.trunk = causal_lm.get_decoder()
        self.head = ValueHead(causal_lm.config.hidden_size)

    def forward(self, input_ids, attention_mask) -> torch.Tensor:
        hidden = self.trunk(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(hidden)


def gather_values(values_all: torch.Tensor, pred_pos: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` per-position values -> ``[B, T]`` V(s_h) for each response token h (0 on padding)."""
    return values_all.gather(1, pred_pos) * mask
