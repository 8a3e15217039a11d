"""Sampling whose randomness belongs to the request, not to the batch (docs/design.md §6).

A sample is drawn by the Gumbel-max trick: argmax_v (logit_v / T + g_v) is distributed as softmax(logit / T),
and the noise g_v comes from a counter-based hash of (seed, prompt key, sample index, position, token). So
a request draws the same tokens whatever batch, order, padding or process it is generated in: one process
and N processes that each generate a shard of the prompts produce the same samples, and
``generation.batch_size`` changes no result.
"""
from __future__ import annotations

import torch
from transformers import LogitsProcessor

#: changes whenever the samples a request draws change (part of every artifact and run key that samples)
SAMPLER = "gumbel-hash-1"

_M64 = (1 << 64) - 1


def _signed(x: int) -> int:
    x &= _M64
    return x - (1 << 64) if x >= 1 << 63 else x


_C1, _C2 = _signed(0xBF58476D1CE4E5B9), _signed(0x94D049BB133111EB)
_GOLD = _signed(0x9E3779B97F4A7C15)


def _shr(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's ``>>`` is arithmetic)."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def _mix(x: torch.Tensor) -> torch.Tensor:
    """splitmix64's finaliser on int64 tensors (multiplications wrap, as in C)."""
    x = (x ^ _shr(x, 30)) * _C1
    x = (x ^ _shr(x, 27)) * _C2
    return x ^ _shr(x, 31)


def request_keys(seed: int, prompt_keys, sample_index) -> torch.Tensor:
    """One int64 key per request from the run seed, the prompt's key and the sample's index."""
    p = torch.as_tensor(prompt_keys, dtype=torch.int64)
    j = torch.as_tensor(sample_index, dtype=torch.int64)
    return _mix(_mix(_mix(torch.full_like(p, seed) * _GOLD + p) * _GOLD + j))


def uniforms(keys: torch.Tensor, position: int, vocab: int) -> torch.Tensor:
    """``[B, V]`` uniforms in (0, 1) for requests ``keys`` ``[B]`` at generation step ``position``."""
    base = _mix(keys * _GOLD + position)
    x = _mix(base[:, None] * _GOLD + torch.arange(vocab, dtype=torch.int64, device=keys.device)[None, :])
    return (_shr(x, 11).double() + 0.5) / float(1 << 53)


def top_p_mask(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    """True on the smallest set of tokens whose probability reaches ``top_p`` (always the most likely one)."""
    sorted_scores, order = torch.sort(scores, dim=-1, descending=True)
    probs = torch.softmax(sorted_scores, dim=-1)
    before = torch.cumsum(probs, dim=-1) - probs  # mass of the tokens ranked above
    keep_sorted = before < top_p
    return torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)


class GumbelSampler(LogitsProcessor):
    """Turns greedy decoding into sampling at ``temperature`` / ``top_p`` with per-request noise."""

    def __init__(self, keys: torch.Tensor, prompt_width: int, temperature: float, top_p: float = 1.0):
        self.keys, self.width, self.temperature, self.top_p = keys, prompt_width, temperature, top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        s = scores.float() / self.temperature
        if self.top_p < 1.0:
            s = s.masked_fill(~top_p_mask(s, self.top_p), float("-inf"))
        u = uniforms(self.keys.to(s.device), input_ids.shape[1] - self.width, s.shape[-1])
        return s - torch.log(-torch.log(u)).to(s.dtype)
