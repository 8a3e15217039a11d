"""``harness.plan``'s model-state figures against memory measured on this machine (CPU).

    python -m benchmarks.plan_check [--layers 2,15] [--batch 2] [--prompt 32] [--completion 32] [--steps 3]

Two Llamas built from config (``model=tiny`` sizes: hidden 512, vocab 8192, 2 and 15 layers: ~10M and ~50M
parameters) each train a few SFT steps (``harness.backbone.training.train``, fp32, one process) in a fresh process;
the rise of the peak resident set from the smaller to the larger model, where the process's fixed overhead
(interpreter, libraries, allocator) cancels, is compared with the plan's difference in weights + gradients
+ AdamW states (16 bytes per parameter in fp32). Short sequences keep activations (also printed) small.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys

MiB = 2**20


def overrides(args, layers: int) -> list[str]:
    """The job whose train stage is measured, as ``harness.run`` / ``harness.plan`` overrides."""
    return ["model=tiny", "model.hidden_size=512", "model.num_heads=8", "model.intermediate_size=1376",
            "model.vocab_size=8192", "model.max_position_embeddings=256", f"model.num_layers={layers}",
            f"model.max_new_tokens={args.completion}", "model.warm_start_steps=0", "model.dtype=float32",
            "train.precision=fp32", "algo=sft", f"train.steps={args.steps}", f"train.batch_size={args.batch}",
            f"train.micro_batch_size={args.batch}", "dist=none"]


def planned(args, layers: int) -> dict:
    """The plan's train row for this size, in MiB."""
    from harness.config.compose import compose
    from harness.config.memory_plan import arch, plan, sizes

    cfg = compose(overrides(args, layers))
    c = arch(cfg.model)
    row = next(r for r in plan(cfg, c, gpu_mem=1e6, prompt_len=args.prompt) if r["stage"] == "train")
    return {"params": sizes(c)["total"], "state_mib": (row["weights"] + row["grads"] + row["optimiser"]) / MiB,
            "act_mib": row["activations"] / MiB}


def measure(args, layers: int) -> dict:
    """In this (fresh) process: build the model from the plan's config, train, report peak RSS in MiB."""
    import torch
    from transformers import LlamaForCausalLM

    from algorithms._base import TrainData
    from harness.backbone.training import make_accelerator, train
    from harness.config.compose import compose
    from harness.config.memory_plan import arch
    from harness.registry import get_algorithm

    cfg = compose(overrides(args, layers))
    g = torch.Generator().manual_seed(0)
    vocab = int(cfg.model.vocab_size)
    demo = [{"prompt_id": f"p{i}", "prompt_ids": torch.randint(3, vocab, (args.prompt,), generator=g).tolist(),
             "completion_ids": torch.randint(3, vocab, (args.completion,), generator=g).tolist(), "reward": 1.0}
            for i in range(4 * args.batch)]
    algo = get_algorithm("sft")(lr=1e-4)
    examples = algo.build_examples(TrainData(demo=demo), random.Random(0))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    torch.manual_seed(0)
    model = LlamaForCausalLM(arch(cfg.model))
    n_params = sum(p.numel() for p in model.parameters())
    train(model, algo, examples, cfg.train, seed=0, pad_id=0, accelerator=make_accelerator("fp32"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"built": n_params, "before_mib": before, "peak_mib": peak}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", default="2,15", help="two depths: the small and the large model")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--completion", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one size, print JSON
    args = ap.parse_args(argv)
    if args.one is not None:
        print(json.dumps(measure(args, args.one)))
        return 0
    base = sys.argv[1:] if argv is None else list(argv)
    res = {}
    for layers in map(int, args.layers.split(",")):
        out = subprocess.run([sys.executable, "-m", "benchmarks.plan_check", *base, "--one", str(layers)],
                             check=False, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
        if out.returncode:
            print(f"{layers} layers: failed: {out.stderr.strip().splitlines()[-1]}")
            return 1
        res[layers] = json.loads(out.stdout.strip().splitlines()[-1]) | planned(args, layers)
    print(f"SFT, fp32, {args.steps} steps of {args.batch} x {args.prompt}+{args.completion} tokens, on this CPU")
    print(f"{'layers':>6} {'params (M)':>10} {'plan params (M)':>15} {'peak RSS (MiB)':>14} "
          f"{'plan state (MiB)':>16} {'plan activations (MiB)':>22}")
    for layers, r in res.items():
        print(f"{layers:>6} {r['built'] / 1e6:>10.2f} {r['params'] / 1e6:>15.2f} {r['peak_mib']:>14.1f} "
              f"{r['state_mib']:>16.1f} {r['act_mib']:>22.1f}")
    small, large = res.values()
    measured = large["peak_mib"] - small["peak_mib"]
    state = large["state_mib"] - small["state_mib"]
    total = state + large["act_mib"] - small["act_mib"]
    print(f"measured peak difference {measured:.1f} MiB; plan model-state difference {state:.1f} MiB "
          f"(ratio measured/plan {measured / state:.3f}); plan state + activations {total:.1f} MiB "
          f"(ratio {measured / total:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
