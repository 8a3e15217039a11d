"""Per-device memory plan (``python -m harness.plan``, docs/design.md §6).

Per stage the job runs (warm start, generation, training): weights, gradients, optimiser states, activations
of one micro-batch and KV cache on one device, whether they fit in ``gpu_mem`` GiB and, if not, the first
memory lever (fixed order) that makes every stage fit, found by planning again with it. Sizes come from the
model's ``config.json`` (``model.name_or_path``: local folder or hub id) or ``model/tiny.yaml``.

A plan is for a GPU: ``train.precision=auto`` counts as bf16. Without DeepSpeed, weights, gradients and
AdamW's two states stay in ``model.dtype`` (autocast only changes the compute). Under DeepSpeed
(``dist=zero2|zero3``) a 16-bit precision casts the module to 16 bits and the ZeRO optimiser keeps an fp32
master copy, Adam's m and v and the fp32 gradient it steps with: the 16 bytes per parameter of DeepSpeed's
estimators (``estimate_zero2/3_model_states_mem_needs``, https://deepspeed.readthedocs.io/en/latest/memory.html).
"""
from __future__ import annotations

import math

from harness.config.schema import updated
from harness.errors import UserError
from harness.registry import get_algorithm, make_algo

GiB = 2**30
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
COLUMNS = ("weights", "grads", "optimiser", "activations", "kv_cache", "total")


def arch(mcfg):
    """The model's config.json, or a Llama of ``tiny``'s sizes (as ``harness.backbone.models.build_tiny_model``)."""
    if mcfg.name_or_path:
        from transformers import AutoConfig

        from harness.backbone.hub import local_model_path

        try:
            return AutoConfig.from_pretrained(local_model_path(str(mcfg.name_or_path)))
        except (OSError, ValueError) as e:
            raise UserError(f"cannot read the config.json of model.name_or_path={mcfg.name_or_path!r}: give a local "
                            f"folder or a reachable hub id ({str(e).strip().splitlines()[0]})") from None
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=int(mcfg.vocab_size), hidden_size=int(mcfg.hidden_size),
                       num_hidden_layers=int(mcfg.num_layers), num_attention_heads=int(mcfg.num_heads),
                       num_key_value_heads=int(mcfg.num_heads), intermediate_size=int(mcfg.intermediate_size),
                       max_position_embeddings=int(mcfg.max_position_embeddings), tie_word_embeddings=True)


def _heads(c) -> tuple[int, int, int]:
    heads = c.num_attention_heads
    kv = getattr(c, "num_key_value_heads", None) or heads
    return heads, kv, getattr(c, "head_dim", None) or c.hidden_size // heads


def sizes(c) -> dict:
    """Parameter counts: ``total``, a decoder ``layer``, the ``head`` (0 when tied), the largest module
    (DeepSpeed's "largest layer"), the largest FSDP unit (a layer, or the root: embeddings and head), and
    ``lora_linear`` = Σ(in + out) of a layer's linears (rank-r LoRA: r·lora_linear per layer)."""
    h, ff, v = c.hidden_size, c.intermediate_size, c.vocab_size
    heads, kv, hd = _heads(c)
    qwen = c.model_type == "qwen2"  # q/k/v biases, without a config flag
    bias = bool(getattr(c, "attention_bias", False))
    attn = 2 * h * heads * hd + 2 * h * kv * hd + (qwen or bias) * (heads + 2 * kv) * hd + (bias and not qwen) * h
    mlp = 3 * h * ff + bool(getattr(c, "mlp_bias", False)) * (2 * ff + h)  # gate, up, down
    layer = attn + mlp + 2 * h  # and two RMSNorms
    head = 0 if c.tie_word_embeddings else v * h
    return {"total": v * h + c.num_hidden_layers * layer + h + head, "layer": layer, "head": head,
            "largest_module": max(v * h, h * ff), "largest_unit": max(layer, v * h + head + h),
            "lora_linear": 2 * (h + heads * hd) + 2 * (h + kv * hd) + 3 * (h + ff)}


def activation_bytes(c, b: int, s: int, nbytes: int, checkpointing: bool, logits: bool = True) -> float:
    """What a forward pass of b sequences of s tokens keeps for the backward. Korthikanti et al. 2022
    ("Reducing Activation Recomputation in Large Transformer Models", §4.1) count s·b·h·(34 + 5·a·s/h) bytes
    per GPT layer in 16-bit. A LLaMA/Qwen layer has no dropout masks, and SDPA (HF's default attention) keeps
    no a·s² scores: 16·s·b·h (norm inputs, q/k/v/o inputs, q, k, v, attention output), plus 8·s·b·ff for the
    gated MLP (gate, up, silu(gate) and their product) where GPT's keeps 2·4h. Full checkpointing keeps only
    each layer's input, 2·s·b·h, and recomputes one layer at a time. Logits: b·s·V in the compute dtype plus
    the fp32 copy that log-softmax reads (``harness.backbone.sequences.completion_logps``)."""
    h, layers = c.hidden_size, c.num_hidden_layers
    layer = s * b * (16 * h + 8 * c.intermediate_size) * nbytes / 2
    act = layers * 2 * s * b * h * nbytes / 2 + layer if checkpointing else layers * layer
    return act + (b * s * c.vocab_size * (nbytes + 4) if logits else 0)


def kv_cache_bytes(c, n_seqs: int, seq: int, nbytes: int) -> float:
    """Keys and values of every layer: 2·layers·kv_heads·head_dim·tokens·bytes."""
    _, kv, hd = _heads(c)
    return 2 * c.num_hidden_layers * kv * hd * seq * n_seqs * nbytes


def model_states(p: int, t: int, w: int, cb: int, dist: str, n: int, unit: int) -> tuple[float, float, float]:
    """(weights, gradients, optimiser) bytes per device of a trained model: p parameters (t trainable) of w
    bytes, compute in cb bytes, sharded per ``dist`` over n processes; zero3/fsdp also gather one ``unit``
    (weights and gradients in the compute dtype: DeepSpeed's 4·largest_layer)."""
    deepspeed = dist in ("zero2", "zero3")
    w = 2 if deepspeed and cb == 2 else w  # DeepSpeed casts the module to bf16/fp16
    opt = 16 * t if deepspeed else 2 * w * t  # ZeRO: fp32 master, m, v, fp32 grad; torch AdamW: m, v like p
    shard_p = n if dist in ("zero3", "fsdp") else 1
    shard_go = n if dist in ("zero2", "zero3", "fsdp") else 1
    gathered = unit * cb if dist in ("zero3", "fsdp") else 0
    # DDP all-reduces through buckets that copy every gradient (torch's gradient_as_bucket_view=False default)
    grads = w * t * (2 if dist == "ddp" else 1) / shard_go + (gathered if t == p else 0)
    return w * p / shard_p + gathered, grads, opt / shard_go


def n_processes(cfg) -> int:
    """Processes of the job, one per GPU; ``dist.num_processes=null``: every GPU visible here."""
    if cfg.dist.name == "none":
        return 1
    if cfg.dist.num_processes is not None:
        return max(int(cfg.dist.num_processes), 1)
    import torch

    return max(torch.cuda.device_count(), 1) * max(int(cfg.dist.num_machines), 1)


def seq_len(cfg, c, prompt_len: int) -> int:
    """Tokens of a sequence: the prompt and the longest generation, at most the model's context."""
    new = max(int(cfg.bank.max_new_tokens), int(cfg.eval.max_new_tokens))
    return min(prompt_len + new, getattr(c, "max_position_embeddings", None) or prompt_len + new)


def plan(cfg, c, gpu_mem: float, prompt_len: int) -> list[dict]:
    """One row per stage the job runs: bytes per device, and whether they fit in ``gpu_mem`` GiB."""
    algo, sz, m = make_algo(cfg.algo), sizes(c), cfg.model
    dist, n, w = str(cfg.dist.name), n_processes(cfg), BYTES[str(m.dtype)]
    cb = 2 if str(cfg.train.precision) in ("auto", "bf16", "fp16") else w  # activations: autocast's dtype
    seq = seq_len(cfg, c, prompt_len)
    p, unit = sz["total"], sz["largest_unit" if dist == "fsdp" else "largest_module"]
    vllm = str(cfg.generation.engine) == "vllm"
    # vLLM, colocated for the whole job, loads 16-bit weights; the rest of its share is its KV cache
    vllm_w = 2 * p if vllm else 0
    vllm_kv = float(cfg.vllm.gpu_memory_utilization) * gpu_mem * GiB - vllm_w if vllm else 0.0
    hf_kv = 0.0 if vllm else kv_cache_bytes(c, int(cfg.generation.batch_size), seq, w)

    def row(stage, weights, grads=0.0, opt=0.0, act=0.0, kv=0.0):
        weights, kv = weights + vllm_w, kv + vllm_kv
        total = weights + grads + opt + (act + kv if vllm else max(act, kv))  # HF rollouts and updates take turns
        return {"stage": stage, "weights": weights, "grads": grads, "optimiser": opt, "activations": act,
                "kv_cache": kv, "total": total, "fits": total <= gpu_mem * GiB and vllm_kv >= 0}

    def train_row(stage, a, batch: int, micro: int, ckpt: bool, lora_r: int, kv: float = 0.0):
        mb = min(micro or batch, math.ceil(batch / n)) * len(a.slots)  # sequences per forward pass and device
        t = lora_r * c.num_hidden_layers * sz["lora_linear"] if lora_r else p
        value = a.needs_value_model and getattr(a.opts, "value_model", "separate")
        states = [model_states(p, t + (c.hidden_size + 1) * (value == "shared"), w, cb, dist, n, unit)]
        act = activation_bytes(c, mb, seq, cb, ckpt)
        if value == "separate":  # a second trunk (no lm_head) and a scalar head, with its own AdamW
            vp = p - sz["head"] + c.hidden_size + 1
            states.append(model_states(vp, t + c.hidden_size + 1 if lora_r else vp, w, cb, dist, n, 0))
            act += activation_bytes(c, mb, seq, cb, ckpt, logits=False)
        weights, grads, opt = (sum(x) for x in zip(*states))
        if a.online and a.needs_ref and not lora_r:  # a frozen π_ref copy, not prepared by accelerate: whole
            weights += w * p
        return row(stage, weights, grads, opt, act, kv)

    rows = []
    if int(cfg.warm_start.steps) > 0:  # SFT of π_ref: no LoRA, no checkpointing, no accumulation
        ws = get_algorithm(str(cfg.warm_start.algo))(lr=float(cfg.warm_start.lr))
        rows.append(train_row("warm start", ws, int(cfg.warm_start.batch_size), 0, False, 0))
    rows.append(row("generation", w * p, kv=hf_kv))
    if algo.trains:
        rows.append(train_row("train (online)" if algo.online else "train", algo, int(cfg.train.batch_size),
                              int(cfg.train.micro_batch_size or 0), bool(m.gradient_checkpointing),
                              int(m.lora.r or 0), hf_kv if algo.online else 0.0))
    return rows


def lever_groups(cfg, dist: bool = True) -> list[list[dict]]:
    """The memory levers in the order they are suggested, each a list of settings from weak to strong."""
    def halvings(key, x):
        return [{key: x >> i} for i in range(1, x.bit_length())]

    m, n = cfg.model, n_processes(cfg)
    vllm = cfg.generation.engine == "vllm"
    groups = [[{"model.dtype": "bfloat16"}] if m.dtype == "float32" else [],
              [] if m.gradient_checkpointing else [{"model.gradient_checkpointing": True}],
              halvings("train.micro_batch_size", int(cfg.train.micro_batch_size or cfg.train.batch_size)),
              [] if int(m.lora.r or 0) or vllm else [{"model.lora.r": 16}],  # LoRA is hf-engine only
              [] if vllm else halvings("generation.batch_size", int(cfg.generation.batch_size)),
              [{"vllm.gpu_memory_utilization": u} for u in (0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
               if vllm and u > float(cfg.vllm.gpu_memory_utilization)],
              [{"dist.name": "zero3", "dist.num_processes": k} for k in (2, 4, 8, 16, 32, 64) if dist and k > n]]
    return [g for g in groups if g]


def suggest(cfg, c, gpu_mem: float, prompt_len: int, dist: bool = True) -> dict | None:
    """The first lever setting that alone makes every stage fit; else levers added in order until they fit,
    then each relaxed (last first) to its weakest setting that still fits."""
    def fits(chosen: dict) -> bool:
        new = cfg
        for key, value in ((k, v) for s in chosen.values() for k, v in s.items()):
            new = updated(new, key, value)
        return all(r["fits"] for r in plan(new, c, gpu_mem, prompt_len))

    groups = lever_groups(cfg, dist)
    for g in groups:
        for setting in g:
            if fits({0: setting}):
                return setting
    chosen: dict[int, dict] = {}
    for i, g in enumerate(groups):
        chosen[i] = g[-1]
        if fits(chosen):
            break
    else:
        return None
    for i in reversed(list(chosen)):
        chosen[i] = next(s for s in [{}] + groups[i] if fits({**chosen, i: s}))
    return {k: v for s in chosen.values() for k, v in s.items()}


def as_args(overrides: dict) -> str:
    return " ".join(f"{'dist' if k == 'dist.name' else k}={str(v).lower() if isinstance(v, bool) else v}"
                    for k, v in overrides.items())


def report(cfg, gpu_mem: float, prompt_len: int) -> str:
    """The printed plan: a header, the table (GiB per device) and the verdict with the lever."""
    import pandas as pd

    c = arch(cfg.model)
    rows, sz, n = plan(cfg, c, gpu_mem, prompt_len), sizes(c), n_processes(cfg)
    df = pd.DataFrame(rows)
    df[list(COLUMNS)] = (df[list(COLUMNS)] / GiB).round(2)
    df["fits"] = df["fits"].map({True: "yes", False: "no"})
    lines = [(f"model {cfg.model.name_or_path or 'tiny'}: {sz['total'] / 1e9:.3f}B parameters "
              f"({c.num_hidden_layers} layers, hidden {c.hidden_size}, vocab {c.vocab_size}); algo={cfg.algo['name']}"),
             (f"dist={cfg.dist.name} over {n} process(es); model.dtype={cfg.model.dtype}, train.precision="
              f"{cfg.train.precision} (auto: bf16 on a GPU); sequences of {seq_len(cfg, c, prompt_len)} tokens "
              f"(prompt_len={prompt_len} + max_new_tokens, capped at the context); GiB per device"),
             df.to_string(index=False)]
    if all(r["fits"] for r in rows):
        return "\n".join(lines + [f"fits in {gpu_mem:g} GiB per device"])
    lever = suggest(cfg, c, gpu_mem, prompt_len)
    lines.append(f"does not fit in {gpu_mem:g} GiB per device; " +
                 (f"fits with: {as_args(lever)}" if lever else "no lever in the list makes it fit"))
    if lever and "dist.name" in lever:
        same = suggest(cfg, c, gpu_mem, prompt_len, dist=False)
        lines.append(f"on {n} device(s): " + (f"fits with: {as_args(same)}" if same else "no lever makes it fit"))
    return "\n".join(lines)
