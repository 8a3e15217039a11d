"""``python -m benchmarks.train_speed`` (or ``python -m harness.bench``): how fast the backbone trains, against TRL, measured in one run (docs/design.md §3, README "Speed").

    python -m harness.bench [pairs=256] [batch=32] [steps=4] [repeats=5] [threads=N] [wait=120] [compile=1]

One table, every figure measured in this process:

- **DPO step, ours vs TRL 1.16's ``DPOTrainer``** on the same pairs in the same batches: TRL tokenizes the pairs
  and precomputes π_ref's log-probs; our ``Learner`` trains on exactly those token ids (its π_ref log-probs
  computed by us, untimed, like TRL's). fp32, the same threads, gradient checkpointing off, clipping at 1.0,
  AdamW at a constant rate. The two are timed alternately, ``steps`` optimiser steps per timing, ``repeats``
  timings each; min and median are reported. Real tokens (not padding) and computed positions (padding
  included) per step are counted for each side, and the table says whether the batches were identical.
- **``train.compile=true``** (``compile=1``): our DPO, DQO and GRPO steps again through ``torch.compile``, each
  timed alternately with its eager twin on the same batches; the compilation (first steps) is timed apart.
- **Generation** tokens/s of the HF engine (and vLLM, when it can run).
- **Grading** items/s of GSM8K and MATH (``../shared/data`` when present, else the built-in problems).
- **MFU** of each step against the measured matmul peak (``harness/backbone/compute.py``).

The model is the testbed's tiny Llama built from scratch (speed does not depend on its weights) on ``arith``
pairs: each prompt's gold solution (chosen) and the same solution with its final answer changed (rejected).
Before timing it waits up to ``wait`` seconds for idle cores and reports the load it saw.
"""
from __future__ import annotations

import os
import re
import statistics
import sys
import time

import torch

DEFAULTS = {"pairs": 256, "batch": 32, "steps": 4, "repeats": 5, "threads": 0, "wait": 120, "compile": 1}


def parse(argv: list[str]) -> dict:
    opts = dict(DEFAULTS)
    for arg in argv:
        key, eq, value = arg.partition("=")
        if key not in opts or not eq:
            raise SystemExit(f"error: unknown argument {arg!r}; usage: python -m harness.bench "
                             + " ".join(f"[{k}={v}]" for k, v in DEFAULTS.items()))
        try:
            opts[key] = int(value)
        except ValueError:
            raise SystemExit(f"error: {key}={value!r} is not an integer") from None
    return opts


def wait_for_idle(seconds: int, busy: float = 15.0) -> str:
    """Wait until the other processes use less than ``busy`` % of the CPU (psutil), at most ``seconds``."""
    import psutil

    me = os.getpid()
    deadline = time.monotonic() + seconds
    while True:
        others = 0.0
        procs = [p for p in psutil.process_iter() if p.pid != me]
        for p in procs:
            try:
                p.cpu_percent(None)
            except psutil.Error:
                pass
        time.sleep(1.0)
        for p in procs:
            try:
                others += p.cpu_percent(None)
            except psutil.Error:
                pass
        if others < busy or time.monotonic() > deadline:
            state = "idle" if others < busy else "CONTENDED"
            return f"{state}: other processes used {others:.0f}% of one core before timing"


# ---- the pairs ------------------------------------------------------------------------------------------

def arith_pairs(n: int):
    """``(tokenizer, model, rows)``: the tiny testbed model and ``n`` arith (prompt, chosen, rejected) texts."""
    from harness.backbone.models import build_tiny_model, train_tiny_tokenizer
    from harness.config.compose import compose
    from tasks import get_task

    cfg = compose([])
    task = get_task("arith")
    train = task.load_splits()["train"]
    tok = train_tiny_tokenizer([task.prompt(ex) for ex in train] + [task.solution(ex) for ex in train[:2000]],
                               int(cfg.model.vocab_size))
    task.bind_tokenizer(tok)
    model = build_tiny_model(tok, hidden_size=int(cfg.model.hidden_size), num_layers=int(cfg.model.num_layers),
                             num_heads=int(cfg.model.num_heads), intermediate_size=int(cfg.model.intermediate_size),
                             max_position_embeddings=int(cfg.model.max_position_embeddings))
    rows = []
    for ex in train[:n]:
        good = task.solution(ex)
        answer = task.gold_answer(ex)
        bad = re.sub(rf"{re.escape(answer)}\s*$", str(int(float(answer)) + 1), good.rstrip())
        rows.append({"prompt": task.prompt(ex), "chosen": good, "rejected": bad})
    return tok, model, rows


# ---- the two DPO steps ------------------------------------------------------------------------------------

def trl_side(model, tok, rows, batch: int, lr: float, beta: float, out_dir: str):
    """TRL's DPOTrainer over ``rows`` with π_ref's log-probs precomputed; returns it and its tokenized dataset."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(output_dir=out_dir, per_device_train_batch_size=batch, learning_rate=lr, beta=beta,
                     lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
                     gradient_checkpointing=False, precompute_ref_log_probs=True, max_length=None,
                     use_cpu=True, bf16=False, fp16=False, report_to="none", logging_steps=10**9,
                     save_strategy="no", disable_tqdm=True, dataloader_num_workers=0, seed=0)
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    trainer.create_optimizer_and_scheduler(num_training_steps=10**6)
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's own loop, which the bench steps past
    return trainer


def trl_step(trainer, batch_rows) -> dict:
    inputs = trainer.data_collator(batch_rows)
    trainer.model.train()
    trainer.training_step(trainer.model, inputs)
    trainer.accelerator.clip_grad_norm_(trainer.model.parameters(), 1.0)
    trainer.optimizer.step()
    trainer.lr_scheduler.step()
    trainer.optimizer.zero_grad(set_to_none=True)
    return {"real": int(inputs["attention_mask"].sum()), "computed": int(inputs["input_ids"].numel())}


def our_side(model, tok, dataset, lr: float, beta: float, batch: int):
    """Our Learner with the DPO plug-in, on the token ids TRL made (π_ref's per-token log-probs filled by us)."""
    from harness.backbone.agent import fill_ref_logps
    from harness.registry import get_algorithm

    examples = []
    for r in dataset:
        examples.append({s: {"prompt_ids": list(r["prompt_ids"]), "completion_ids": list(r[f"{s}_ids"]),
                             "ref_logps": None} for s in ("chosen", "rejected")})
    fill_ref_logps(model, examples, ("chosen", "rejected"), tok.pad_token_id)
    return learner_for(get_algorithm("dpo")(lr=lr, beta=beta), model, tok, batch), examples


def learner_for(algo, model, tok, batch: int, value_model=None, compiled: bool = False):
    """A Learner as the TRL side is configured: one pass a step, constant rate, clipping at 1.0, fp32; its training
    passes through ``torch.compile`` when ``compiled`` (``train.compile``)."""
    from omegaconf import OmegaConf

    from harness.backbone.training import Learner, make_accelerator

    cfg = OmegaConf.create({"micro_batch_size": batch, "warmup_ratio": 0.0, "lr_schedule": "constant",
                            "max_grad_norm": 1.0, "weight_decay": 0.0, "compile": compiled})
    return Learner(model, algo, cfg, steps=10**6, seed=0, pad_id=tok.pad_token_id,
                   accelerator=make_accelerator("fp32"), value_model=value_model)


# ---- our other steps: DQO (bank, separate value model) and GRPO (live groups) ---------------------------------

def bank_from_rows(tok, model, rows, k: int) -> list[dict]:
    """A bank as the harness samples one: ``k`` samples a prompt, alternately the chosen and the rejected text,
    with rewards and π_ref's log-probs."""
    from harness.backbone.agent import fill_ref_logps

    out = []
    for p, r in enumerate(rows):
        prompt = tok(r["prompt"])["input_ids"]
        samples = []
        for j in range(k):
            text = r["chosen"] if j % 2 == 0 else r["rejected"]
            samples.append({"prompt_id": f"p{p}", "sample": j, "prompt_ids": prompt, "reward": float(j % 2 == 0),
                            "completion_ids": tok(text)["input_ids"] + [tok.eos_token_id], "ref_logps": None})
        out.append({"prompt_id": f"p{p}", "prompt_ids": prompt, "samples": samples})
    fill_ref_logps(model, [{"seq": s} for g in out for s in g["samples"]], ("seq",), tok.pad_token_id)
    return out


def algo_learner(name: str, model, tok, bank: list[dict], batch: int, compiled: bool = False):
    """``(learner, examples)`` of a registered algorithm fed as the pipeline feeds it (``build_examples`` on the
    bank, or ``rollout_examples`` on the bank's samples as one rollout batch), its value model a separate trunk."""
    import copy
    import random

    from algorithms._base import TrainData
    from harness.backbone.agent import fill_ref_logps
    from harness.backbone.value_model import ValueModel
    from harness.config.compose import compose
    from harness.registry import make_algo

    algo = make_algo(compose([f"algo={name}"]).algo)  # its yaml's options, as a job gets them
    data = TrainData(bank=bank)
    algo.prepare(data)
    if algo.online:
        seqs = [{**s, "old_logps": list(s["ref_logps"]), "old_values": [0.0] * len(s["completion_ids"])}
                for g in bank for s in g["samples"]]
        examples = algo.rollout_examples(seqs, len(bank[0]["samples"]))
    else:
        examples = algo.build_examples(data, random.Random(0))
        fill_ref_logps(model, examples, algo.slots, tok.pad_token_id)
    value = ValueModel(copy.deepcopy(model)) if algo.needs_value_model else None
    return learner_for(algo, model, tok, batch, value, compiled=compiled), examples


def generation_rate(model, tok, prompts: list[str], max_new_tokens: int = 64) -> dict:
    """Tokens/s of the HF engine sampling (T = 1) 4 completions of each prompt, one timing after a warm-up."""
    from harness.generation.engines import HFEngine

    engine = HFEngine(model, tok, batch_size=64)
    engine.generate(prompts[:4], n=1, temperature=1.0, max_new_tokens=8, seed=0)
    t0 = time.perf_counter()
    out = engine.generate(prompts, n=4, temperature=1.0, max_new_tokens=max_new_tokens, seed=0)
    wall = time.perf_counter() - t0
    tokens = sum(len(s.token_ids) for group in out for s in group)
    return {"tokens": tokens, "wall_s": wall}


def grading_rates() -> list[tuple[str, int, float]]:
    """``(task, items, seconds)``: serial ``task.grade`` of each test record against the next record's gold
    solution (mostly wrong, so every item takes the whole path: normalisation, then math-verify for MATH; a
    solution graded against its own record stops at the exact match), on the real test splits in
    ``../shared/data`` when present, else on ``arith``."""
    from pathlib import Path

    from tasks import get_task

    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    out = []
    for name, field in (("gsm8k", "answer"), ("math500", "solution")):
        if not (shared / name).is_dir():
            continue
        task = get_task(name, data_dir=str(shared / name))
        items = task.load_splits()["test"][:500]
        t0 = time.perf_counter()
        for ex, other in zip(items, items[1:] + items[:1]):
            task.grade(other[field], ex)
        out.append((name, len(items), time.perf_counter() - t0))
    if not out:
        task = get_task("arith")
        items = task.load_splits()["test"][:500]
        t0 = time.perf_counter()
        for ex, other in zip(items, items[1:] + items[:1]):
            task.grade(task.solution_text(other), ex)
        out.append(("arith", len(items), time.perf_counter() - t0))
    return out


def time_steps(step_fn, batches) -> tuple[float, dict]:
    t0 = time.perf_counter()
    counts = {"real": 0, "computed": 0}
    for b in batches:
        for k, v in step_fn(b).items():
            counts[k] += v
    return time.perf_counter() - t0, counts


def alternate(sides: dict, order: list, steps: int, repeats: int) -> tuple[dict, dict]:
    """``(times, counts)`` per side: ``repeats`` timings of ``steps`` steps each, on the same batches, the sides
    taking turns (the order rotated every repeat, so none is always first). ``sides``: name -> step function."""
    names = list(sides)
    times, counts = {n: [] for n in names}, {}
    for r in range(repeats):
        chunk = order[1 + r * steps: 1 + (r + 1) * steps]
        for name in names[r % len(names):] + names[:r % len(names)]:
            t, c = time_steps(sides[name], chunk)
            times[name].append(t / len(chunk))
            counts[name] = {k: v / len(chunk) for k, v in c.items()}
    return times, counts


def compile_warmup(step_fn, order: list) -> float:
    """Seconds of the untimed steps a compiled side takes over every batch it will be timed on: its compilations
    (the first step's graphs, and any recompilation a later batch's path or shape needs) fall here, not in the
    timings."""
    return time_steps(step_fn, order[1:])[0]


def main(argv: list[str]) -> int:
    opts = parse(argv)
    import copy
    import tempfile

    from harness.backbone import compute

    threads = opts["threads"] or torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    print(f"harness.bench: {opts}, torch {torch.__version__}, {threads} threads", flush=True)
    tok, model, rows = arith_pairs(opts["pairs"])
    lr, beta, bsz, steps, repeats = 3e-6, 0.1, opts["batch"], opts["steps"], opts["repeats"]
    compiled = bool(opts["compile"])
    peak, source = compute.peak_flops()
    table, compile_s = [], {}

    def row(name, times, counts, examples_per_step, mean_len, separate_value=False):
        med = statistics.median(times)
        flops = compute.train_stage_flops(model.config, counts["real"], 0, mean_len, separate_value)
        table.append(f"| {name} | {min(times):.3f} | {med:.3f} | {examples_per_step / med:.1f} | "
                     f"{counts['real'] / med:.0f} | {counts['computed']:.0f} | {counts['real']:.0f} | "
                     f"{100 * flops / med / peak:.1f}% |")
        return med

    def step_fn(learner, examples):
        return lambda b: our_step_any(learner, [examples[i] for i in b])

    with tempfile.TemporaryDirectory() as out:
        trainer = trl_side(copy.deepcopy(model), tok, rows, bsz, lr, beta, out)
        dataset = trainer.train_dataset
        learner, examples = our_side(copy.deepcopy(model), tok, dataset, lr, beta, bsz)
        n = len(examples)
        order = [[(k * bsz + i) % n for i in range(bsz)] for k in range(1 + steps * repeats)]
        same = all(list(dataset[i]["chosen_ids"]) == examples[i]["chosen"]["completion_ids"]
                   and list(dataset[i]["rejected_ids"]) == examples[i]["rejected"]["completion_ids"]
                   and list(dataset[i]["prompt_ids"]) == examples[i]["chosen"]["prompt_ids"] for i in range(n))
        sides = {"ours": step_fn(learner, examples),
                 "trl": lambda b, tr=trainer: trl_step(tr, [dataset[i] for i in b])}
        if compiled:  # the same examples (their π_ref log-probs already filled), a second Learner that compiles
            twin = learner_for(learner.algo, copy.deepcopy(model), tok, bsz, compiled=True)
            sides["ours, compiled"] = step_fn(twin, examples)
        for name, fn in sides.items():  # one untimed step each (allocator, lazy init); a compiled side compiles
            if "compiled" in name:
                compile_s["DPO"] = compile_warmup(fn, order)
            else:
                fn(order[0])
        load = wait_for_idle(opts["wait"])
        print(load, flush=True)
        times, counts = alternate(sides, order, steps, repeats)
    mean_len = sum(len(ex[s]["prompt_ids"]) + len(ex[s]["completion_ids"]) for ex in examples
                   for s in ("chosen", "rejected")) / (2 * n)
    ours = row("DPO, ours", times["ours"], counts["ours"], bsz, mean_len)
    theirs = row("DPO, TRL 1.16 DPOTrainer", times["trl"], counts["trl"], bsz, mean_len)
    fastest = ours
    if compiled:
        fastest = min(ours, row("DPO, ours, train.compile=true", times["ours, compiled"], counts["ours, compiled"],
                                bsz, mean_len))

    # DQO on the bank (separate value model) and GRPO on live groups: ours alone, examples = sequences
    bank = bank_from_rows(tok, model, rows[: max(bsz, opts["pairs"] // 4)], 8)
    speedups = []
    for name in ("dqo", "grpo"):
        learner, exs = algo_learner(name, copy.deepcopy(model), tok, bank, bsz)
        order = [[(k * bsz + i) % len(exs) for i in range(bsz)] for k in range(1 + steps * repeats)]
        sides = {"eager": step_fn(learner, exs)}
        sides["eager"](order[0])
        if compiled:
            sides["compiled"] = step_fn(algo_learner(name, copy.deepcopy(model), tok, bank, bsz, True)[0], exs)
            compile_s[name.upper()] = compile_warmup(sides["compiled"], order)
        times, counts = alternate(sides, order, steps, repeats)
        slots = learner.algo.slots
        mlen = sum(len(ex[s]["prompt_ids"]) + len(ex[s]["completion_ids"]) for ex in exs for s in slots) \
            / (len(exs) * len(slots))
        separate = learner.value_model is not None and not learner.shared_trunk
        eager = row(f"{name.upper()}, ours", times["eager"], counts["eager"], bsz, mlen, separate_value=separate)
        if compiled:
            fast = row(f"{name.upper()}, ours, train.compile=true", times["compiled"], counts["compiled"], bsz, mlen,
                       separate_value=separate)
            speedups.append(f"{name.upper()} {eager / fast:.2f}x")

    header = ["| step | s/step min | s/step median | examples/s | real tokens/s | computed positions/step | "
              "real tokens/step | MFU |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    print("\n".join(header + table))
    print(f"\nDPO step, ours / TRL (pairs per second, medians of {repeats} timings of {steps} steps): "
          f"{theirs / ours:.2f}x" + (f"; with train.compile=true {theirs / fastest:.2f}x" if compiled else ""))
    if compiled:
        print(f"train.compile=true against eager, examples per second: DPO {ours / fastest:.2f}x, "
              + ", ".join(speedups) + "; the untimed first steps that compiled: "
              + ", ".join(f"{k} {v:.1f} s" for k, v in compile_s.items()) + f" ({steps * repeats} steps each)")
    print(f"fair: the same {n} pairs in the same batches of {bsz} pairs, fp32, {threads} threads, clipping 1.0, "
          f"constant-rate AdamW; token ids identical on both sides: {same}; {load}")
    print(f"MFU against {peak / 1e9:.1f} GFLOP/s ({source})")

    gen = generation_rate(model, tok, [r["prompt"] for r in rows[:64]])
    print(f"\n| engine | generated tokens | s | tokens/s |\n|---|---:|---:|---:|\n"
          f"| hf (64 prompts x 4, T = 1, <= 64 new) | {gen['tokens']} | {gen['wall_s']:.2f} | "
          f"{gen['tokens'] / gen['wall_s']:.0f} |")
    from harness.errors import UserError
    from harness.generation.engines import check_engine

    try:
        check_engine("vllm")
    except UserError as e:
        print(f"| vllm | not run here: {e} | | |")
    print("\n| grading (serial; each record against the next one's solution) | items | s | items/s |\n"
          "|---|---:|---:|---:|")
    for name, items, wall in grading_rates():
        print(f"| {name} | {items} | {wall:.2f} | {items / wall:.0f} |")
    return 0


def our_step_any(learner, batch_examples) -> dict:
    before = learner.tokens
    learner.step(batch_examples, 0)
    agent = learner.accelerator.unwrap_model(learner.model)
    return {"real": learner.tokens - before, "computed": agent.last_positions}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
