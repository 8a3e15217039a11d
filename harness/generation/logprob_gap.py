"""How far a generation engine's log-probs are from the trainer's (docs/design.md §3): the training-inference
mismatch. vLLM's kernels, or a cached-KV decode outside the trainer's autocast, give log-probs that are not the
trainer's log π; an offline algorithm compared log π_θ with them would start from log-ratios that are not zero, by
an amount that depends on the engine and the sequence length, not on the algorithm. So π_ref's log-probs always come
from the trainer's forward (``harness/training.Learner.fill_reference``), and this gap is recorded as a figure.

K3 is Schulman's unbiased, non-negative estimator of KL(sampler ‖ trainer) from tokens drawn by the sampler:
r = log π_trainer − log π_sampler, k3 = e^r − 1 − r (the measure SGLang and verl report for this mismatch).
"""
from __future__ import annotations

import math


def gap(sampler: list[list[float]], trainer: list[list[float]]) -> dict:
    """Per-token |Δ| (mean and max), per-sequence |ΣΔ| (mean) and the K3 KL per token, Δ = sampler − trainer."""
    n_tok, abs_sum, abs_max, seq_sum, k3 = 0, 0.0, 0.0, 0.0, 0.0
    for s, t in zip(sampler, trainer):
        total = 0.0
        for a, b in zip(s, t):
            d = a - b
            n_tok += 1
            abs_sum += abs(d)
            abs_max = max(abs_max, abs(d))
            total += d
            k3 += math.expm1(-d) + d  # r = -d
        seq_sum += abs(total)
    n_seq = max(len(sampler), 1)
    return {"logprob_gap_mean": abs_sum / max(n_tok, 1), "logprob_gap_max": abs_max,
            "logprob_gap_seq": seq_sum / n_seq, "logprob_gap_k3": k3 / max(n_tok, 1)}
