"""Peak memory of training steps under each memory lever (docs/design.md §6): none, gradient checkpointing,
LoRA, both; with and without bf16 autocast. Each setting runs in a fresh process, so the peak is its own.

    python -m benchmarks.memory_levers [--hidden 128 --layers 4 --heads 4 --ffn 384] [--algo dqo] [--steps 3]

Peak memory: CUDA max-allocated on a GPU; on a CPU the rise of the process's peak resident set during the
steps over its resident set before them (weights, optimiser state created lazily by the first step,
gradients and activations; allocator caching makes it coarse).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

SETTINGS = {
    "none": {},
    "gradient_checkpointing": {"gradient_checkpointing": True},
    "lora r=8": {"lora": {"r": 8}},
    "lora r=8 + checkpointing": {"gradient_checkpointing": True, "lora": {"r": 8}},
}


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(args, levers: dict, precision: str) -> dict:
    """One setting, in this process: a few optimiser steps of ``args.algo`` on a random batch."""
    import torch
    from omegaconf import OmegaConf
    from transformers import LlamaConfig, LlamaForCausalLM

    from algorithms._base import TrainData
    from harness.backbone.agent import fill_ref_logps
    from harness.backbone.memory import trainable
    from harness.backbone.training import Learner, make_accelerator
    from harness.backbone.value_model import ValueModel
    from harness.registry import get_algorithm

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=args.vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
                         num_attention_heads=args.heads, num_key_value_heads=args.heads,
                         intermediate_size=args.ffn, max_position_embeddings=512, tie_word_embeddings=True)
    mcfg = OmegaConf.create({"gradient_checkpointing": False,
                             "lora": {"r": 0, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"}})
    mcfg = OmegaConf.merge(mcfg, levers)
    g = torch.Generator().manual_seed(0)
    seqs = [{"prompt_id": f"p{i // 8}", "sample": i % 8, "prompt_ids": torch.randint(3, args.vocab, (args.prompt,), generator=g).tolist(),
             "completion_ids": torch.randint(3, args.vocab, (args.completion,), generator=g).tolist(),
             "ref_logps": None, "reward": float(i % 2)} for i in range(args.batch)]
    ref = LlamaForCausalLM(config)
    fill_ref_logps(ref, [{"seq": s} for s in seqs], ("seq",), 0)
    data = TrainData(bank=[{"prompt_id": f"p{p}", "prompt_ids": seqs[8 * p]["prompt_ids"], "samples": seqs[8 * p:8 * p + 8]}
                           for p in range(args.batch // 8)])
    algo = get_algorithm(args.algo)(lr=1e-4)
    examples = algo.build_examples(data, __import__("random").Random(0))
    accelerator = make_accelerator(precision)
    value_model = None
    if algo.needs_value_model:
        value_model = ValueModel(trainable(LlamaForCausalLM(config), mcfg, task_type=None))
    policy = trainable(ref, mcfg)
    n_params = sum(p.numel() for p in policy.parameters())
    n_train = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    cfg = OmegaConf.create({"warmup_ratio": 0.0, "lr_schedule": "constant", "max_grad_norm": 1.0, "weight_decay": 0.0,
                            "micro_batch_size": args.batch})
    learner = Learner(policy, algo, cfg, steps=args.steps, seed=0, pad_id=0, accelerator=accelerator,
                      value_model=value_model)
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() / 2**20
    else:
        before = _rss_mb()
    for step in range(args.steps):
        learner.step(examples[:args.batch], step + 1)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"params_m": n_params / 1e6, "trainable_m": n_train / 1e6, "before_mb": before,
            "peak_rise_mb": peak - before}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=384)
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--prompt", type=int, default=45)
    ap.add_argument("--completion", type=int, default=32)
    ap.add_argument("--algo", default="dqo", help="any offline algorithm (dqo adds a separate value model)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one setting, print JSON
    args = ap.parse_args(argv)
    if args.one:
        name, precision = json.loads(args.one)
        print(json.dumps(measure(args, SETTINGS[name], precision)))
        return 0
    print(f"{args.algo}: Llama hidden {args.hidden}, {args.layers} layers, batch {args.batch} x "
          f"{args.prompt}+{args.completion} tokens, {args.steps} steps")
    print(f"{'precision':<10} {'lever':<28} {'params (M)':>10} {'trainable (M)':>13} {'peak rise (MB)':>15}")
    base = sys.argv[1:] if argv is None else list(argv)
    for precision in args.precisions.split(","):
        for name in SETTINGS:
            out = subprocess.run([sys.executable, "-m", "benchmarks.memory_levers", *base,
                                  "--one", json.dumps([name, precision])], capture_output=True, text=True)
            if out.returncode:
                print(f"{precision:<10} {name:<28} failed: {out.stderr.strip().splitlines()[-1]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{precision:<10} {name:<28} {r['params_m']:>10.2f} {r['trainable_m']:>13.3f} {r['peak_rise_mb']:>15.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
