"""Calibrate π_ref (docs/design.md §10): greedy test accuracy of the tiny model along its SFT curve,
for several demonstration-split sizes. The default n_demo should put the plateau in 20-60%.

    python benchmarks/warm_start_curve.py --n-demo 100 300 1000 --steps 1500 --every 250
"""
from __future__ import annotations

import argparse
import time

from omegaconf import OmegaConf

from algorithms.sft import SFT
from harness.evaluation import evaluate
from harness.generation import HFEngine
from harness.models import build_tiny_model, train_tiny_tokenizer
from harness.pipeline import split_train
from harness.training import make_accelerator, train
from harness.warm_start import encode_demo
from tasks import get_task


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-demo", type=int, nargs="+", default=[100, 300, 1000])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--every", type=int, default=250)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--n-test", type=int, default=500)
    args = ap.parse_args()
    task = get_task("arith")
    splits = task.load_splits()
    test = splits["test"][: args.n_test]
    ev = OmegaConf.create({"k": 0, "temperature": 0.7, "top_p": 1.0, "max_new_tokens": 64})
    acc = make_accelerator()
    for n_demo in args.n_demo:
        demo = split_train(splits["train"], n_demo)[0]
        texts = [task.prompt(ex) for ex in splits["train"]] + [task.solution(ex) for ex in demo]
        tok = train_tiny_tokenizer(texts, 512)
        model = build_tiny_model(tok)
        examples = [{"seq": s} for s in encode_demo(tok, task, demo)]
        # One cosine schedule over all steps, evaluated at checkpoints by re-running up to each one
        # would cost quadratically; instead use a constant LR after warm-up so checkpoints are a curve.
        cfg = OmegaConf.create(dict(steps=args.every, batch_size=32, micro_batch_size=32, warmup_ratio=0.0,
                                    lr_schedule="constant", max_grad_norm=1.0, weight_decay=0.0,
                                    checkpoint_every=0, log_every=0))
        t0 = time.perf_counter()
        for done in range(args.every, args.steps + 1, args.every):
            model = train(model, SFT(), examples, cfg, lr=args.lr, seed=done, pad_id=tok.pad_token_id,
                          accelerator=acc, desc=f"n_demo={n_demo}")["model"]
            m, _, _ = evaluate(HFEngine(model, tok), task, test, ev, seed=0)
            print(f"n_demo={n_demo} steps={done} greedy_acc={m['accuracy']:.3f} "
                  f"wall={time.perf_counter() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
