"""Sampling throughput of each available generation engine (hf, and vllm on a GPU with the `gpu` extra):
the rollout workload of the online algorithms — n samples per prompt at T = 1 with log-probs — on the
`arith` prompts, with a pushed weight update between two timed rounds (the online loop's pattern).

    python -m benchmarks.generation_throughput --model results/artifacts/warm_start-<hash> [--engines hf vllm]
    python -m benchmarks.generation_throughput --model Qwen/Qwen2.5-0.5B-Instruct --max-new-tokens 256
"""
from __future__ import annotations

import argparse
import time

import torch

from harness.backbone.models import load_model, load_tokenizer
from harness.errors import UserError
from harness.generation.engines import make_engine
from tasks import get_task


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a local model folder (e.g. a warm_start artifact) or hub id")
    ap.add_argument("--engines", nargs="+", default=["hf", "vllm"])
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--n", type=int, default=8, help="samples per prompt")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=256, help="hf engine: sequences per generate call")
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tok = load_tokenizer(args.model)
    task = get_task("arith")
    task.bind_tokenizer(tok)
    prompts = [task.prompt(ex) for ex in task.load_splits()["train"][: args.prompts]]
    print(f"device: {device}; {args.prompts} prompts x {args.n} samples, up to {args.max_new_tokens} new tokens")
    for name in args.engines:
        model = load_model(args.model, device=device)
        try:
            engine = make_engine(name, model, tok, batch_size=args.batch_size, model_path=args.model)
        except UserError as e:
            print(f"{name}: skipped ({e})")
            continue
        engine.generate(prompts[:4], n=2, max_new_tokens=8)  # warm-up: compilation, CUDA graphs, caches
        for round_ in (1, 2):
            t0 = time.perf_counter()
            out = engine.generate(prompts, n=args.n, temperature=1.0, max_new_tokens=args.max_new_tokens, seed=round_)
            dt = time.perf_counter() - t0
            toks = sum(len(s.token_ids) for g in out for s in g)
            print(f"{name} round {round_}: {toks} tokens in {dt:.2f} s = {toks / dt:,.0f} tokens/s")
            t0 = time.perf_counter()
            engine.load_weights(model)  # the online loop pushes the policy after every update
            print(f"{name} weight push: {time.perf_counter() - t0:.3f} s")
        del engine, model


if __name__ == "__main__":
    main()
