"""Compute accounting: analytic FLOPs from the model config, wall time, tokens and peak memory per stage.

FLOPs follow Kaplan et al. 2020 (arXiv 2001.08361, §2.1): a forward pass costs 2 FLOPs per
matmul parameter per token plus attention (2·n_layer·n_ctx·d_attn for QKᵀ and again for AV);
training costs 3× the forward (forward + backward).
"""
from __future__ import annotations

import contextlib
import resource
import time

import torch


def matmul_params(config) -> int:
    """Parameters that multiply activations: the blocks' projections and the LM head (not embeddings)."""
    d, ff, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    heads = config.num_attention_heads
    kv = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or d // heads
    attn = d * heads * head_dim * 2 + d * kv * head_dim * 2  # q, o and k, v
    mlp = 3 * d * ff  # gated MLP: gate, up, down
    return layers * (attn + mlp) + d * config.vocab_size


def forward_flops_per_token(config, context: float) -> float:
    """Forward FLOPs for one token attending to ``context`` earlier tokens (on average)."""
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return 2.0 * matmul_params(config) + 4.0 * config.num_hidden_layers * context * heads * head_dim


def train_flops(config, tokens: int, mean_len: float) -> float:
    return 3.0 * tokens * forward_flops_per_token(config, mean_len / 2)


def generate_flops(config, tokens: int, mean_len: float) -> float:
    return tokens * forward_flops_per_token(config, mean_len / 2)


def sampling_flops(config, gen_tokens: int, prompt_tokens: int, n_sequences: int) -> float:
    """Forward FLOPs of sampling ``n_sequences``: every prompt token (prefill) and generated token once."""
    processed = gen_tokens + prompt_tokens
    return generate_flops(config, processed, processed / max(n_sequences, 1))


def peak_memory_mb() -> float:
    """Peak CUDA memory allocated, or the process's peak resident set on the CPU."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class Meter:
    """Wall time, tokens, FLOPs and peak memory for each named stage of a job."""

    def __init__(self):
        self.stages: dict[str, dict] = {}

    @contextlib.contextmanager
    def stage(self, name: str):
        rec = self.stages.setdefault(name, {"wall_s": 0.0, "gen_tokens": 0, "train_tokens": 0, "flops": 0.0})
        t0 = time.perf_counter()
        try:
            yield rec
        finally:
            rec["wall_s"] += time.perf_counter() - t0
            rec["peak_mem_mb"] = peak_memory_mb()

    def total(self, key: str) -> float:
        return sum(s.get(key, 0) for s in self.stages.values())
