"""Compute accounting: analytic FLOPs from the model config, wall time, tokens and peak memory per stage,
and the roll-up of a run's stages and consumed artifacts into its cost columns.

FLOPs follow Kaplan et al. 2020 (arXiv 2001.08361, §2.1): a forward pass costs 2 FLOPs per
matmul parameter per token plus attention (2·n_layer·n_ctx·d_attn for QKᵀ and again for AV);
training costs 3× the forward (forward + backward).
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import time
from pathlib import Path

import torch

CPU_PEAK_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dqo-bench" / "cpu_peak_flops.json"


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


def n_devices() -> int:
    """Devices a job occupies: a GPU per process when launched over several (``WORLD_SIZE``), else the
    visible GPUs; a CPU is one device per machine, however many processes share its cores."""
    if not torch.cuda.is_available():
        return max(int(os.environ.get("WORLD_SIZE", "1")) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1)
    return int(os.environ.get("WORLD_SIZE", "0")) or max(torch.cuda.device_count(), 1)


def peak_flops() -> tuple[float | None, str]:
    """``(peak FLOP/s of one device, where the figure comes from)`` for MFU. GPUs: TRL's datasheet table;
    a GPU not in it gives None. CPU: a float32 matmul probe, measured once per machine and cached."""
    if torch.cuda.is_available():
        from trl.trainer.utils import get_peak_flops  # TRL's table (TorchTitan's datasheet figures)

        name = torch.cuda.get_device_name(0)
        peak = get_peak_flops(name, "bfloat16")
        return peak, f"{name}: bf16 dense datasheet peak (TRL)" if peak else f"{name}: not in TRL's peak table"
    key = (f"{platform.processor() or platform.machine()}|{os.cpu_count()} cpus|{torch.get_num_threads()} threads"
           "|probe v2")
    try:
        cache = json.loads(CPU_PEAK_CACHE.read_text())
    except (OSError, json.JSONDecodeError):
        cache = {}
    if key not in cache:
        cache[key] = _matmul_probe()
        try:
            CPU_PEAK_CACHE.parent.mkdir(parents=True, exist_ok=True)
            CPU_PEAK_CACHE.write_text(json.dumps(cache, indent=1))
        except OSError:
            pass  # a read-only home: measure again next time
    return cache[key], f"cpu matmul probe ({key})"


def _matmul_probe(sizes=(512, 1024, 2048), seconds: float = 0.5) -> float:
    """Best float32 matmul throughput over a few sizes (best of 3 timings each): the CPU's practical
    peak for our float32 training. A single size under-reads it by up to a fifth on a 2-core machine."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        t0 = time.perf_counter()
        a @ b  # warm-up, and a first timing to size the repetitions
        reps = max(1, int(seconds / 3 / max(time.perf_counter() - t0, 1e-6)))
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(reps):
                a @ b
            best = max(best, 2.0 * n**3 * reps / (time.perf_counter() - t0))
    return best


def utilisation(flops: float, wall_s: float) -> dict:
    """Device-seconds, achieved FLOP/s and MFU of work that took ``wall_s`` on this job's devices."""
    devices = n_devices()
    peak, source = peak_flops()
    achieved = flops / wall_s / devices if wall_s > 0 else None
    return {"device_s": wall_s * devices, "flops_per_s": achieved,
            "mfu": achieved / peak if achieved and peak else None, "peak_flops": peak, "peak_source": source}


def reset_peak_memory() -> None:
    """Start a stage's peak from what is allocated now (CUDA; the CPU's peak resident set cannot be reset)."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory_mb() -> float:
    """Peak CUDA memory allocated since the last ``reset_peak_memory``, or the process's peak resident set on the
    CPU."""
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
        reset_peak_memory()
        t0 = time.perf_counter()
        try:
            yield rec
        finally:
            rec["wall_s"] += time.perf_counter() - t0
            rec["peak_mem_mb"] = max(rec.get("peak_mem_mb", 0.0), peak_memory_mb())


def mean_length(examples: list[dict], slots) -> float:
    """Mean prompt + completion length of the sequences of ``examples`` (the attention context for FLOPs)."""
    lens = [len(ex[s]["prompt_ids"]) + len(ex[s]["completion_ids"]) for ex in examples for s in slots]
    return sum(lens) / max(len(lens), 1)


def train_stage_flops(config, train_tokens: int, forward_tokens: int, mean_len: float, separate_value_model: bool) -> float:
    """FLOPs of optimiser steps: forward + backward on ``train_tokens`` (twice with a value model of its own
    trunk, which costs as much again) and a forward alone on ``forward_tokens`` (batch statistics)."""
    return (2.0 if separate_value_model else 1.0) * train_flops(config, train_tokens, mean_len) \
        + generate_flops(config, forward_tokens, mean_len)


def run_cost(stages: dict[str, dict], used: dict[str, dict]) -> dict:
    """A run's cost columns from its own stages (``Meter.stages``) and the shared artifacts it consumed
    (``used``: warm start, bank, process values), each stage and artifact given its device time and MFU."""
    for rec in [*stages.values(), *used.values()]:
        util = utilisation(rec.get("flops", 0.0), rec.get("wall_s", 0.0))
        rec.update(device_s=util["device_s"], flops_per_s=util["flops_per_s"], mfu=util["mfu"])
    own = list(stages.values())
    run_util = utilisation(sum(s["flops"] for s in own), sum(s["wall_s"] for s in own))

    def data(key):
        return sum(a.get(key, 0) for a in used.values())

    data_device_s = data("wall_s") * n_devices()
    return {
        "wall_s": sum(s["wall_s"] for s in own),
        "gen_tokens": sum(s["gen_tokens"] for s in own),
        "train_tokens": sum(s["train_tokens"] for s in own),
        "flops": sum(s["flops"] for s in own),
        "peak_mem_mb": max(s.get("peak_mem_mb", 0.0) for s in own),
        "data_wall_s": data("wall_s"),
        "data_gen_tokens": data("gen_tokens"),
        "data_train_tokens": data("train_tokens"),
        "data_flops": data("flops"),
        # sampled to make the training signal (bank, process values, or live rollouts); not evaluation
        "train_gen_tokens": sum(a.get("gen_tokens", 0) for k, a in used.items() if k != "warm_start")
        + stages.get("rollout", {}).get("gen_tokens", 0),
        "device_s": run_util["device_s"],
        "data_device_s": data_device_s,
        # everything spent once π_ref exists (own stages, bank, process values): what a gain is bought with
        "post_ref_device_s": run_util["device_s"] + data_device_s
        - used.get("warm_start", {}).get("wall_s", 0.0) * n_devices(),
        "mfu": run_util["mfu"],
        "train_mfu": stages.get("train", {}).get("mfu"),
        "peak_flops": run_util["peak_flops"],
        "peak_flops_source": run_util["peak_source"],
    }
