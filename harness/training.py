"""The shared training loop (DESIGN.md §3): one code path for every algorithm.

Optimiser, LR schedule with warm-up, gradient accumulation, clipping, precision, checkpoints and
logging live here and nowhere else, so leaderboard differences come from the losses alone.
"""
from __future__ import annotations

import json
import logging
import math
import random
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import get_scheduler

from harness.errors import UserError
from harness.sequences import collate, completion_logps
from harness.value_model import ValueHead, gather_values

log = logging.getLogger(__name__)


def make_accelerator():
    """bf16 autocast on a GPU, fp32 on the CPU; the same Accelerator serves every stage of a job."""
    from accelerate import Accelerator

    cuda = torch.cuda.is_available()
    return Accelerator(cpu=not cuda, mixed_precision="bf16" if cuda else "no")


def step_batches(n_examples: int, batch_size: int, steps: int, seed: int):
    """Example indices for each optimiser step: seeded shuffles, epoch after epoch."""
    rng = random.Random(seed)
    order: list[int] = []
    for _ in range(steps):
        while len(order) < batch_size:
            epoch = list(range(n_examples))
            rng.shuffle(epoch)
            order += epoch
        yield order[:batch_size]
        order = order[batch_size:]


def train(model, algo, examples: list[dict], cfg, *, lr: float, seed: int, pad_id: int, accelerator,
          ckpt_dir: Path | None = None, desc: str = "train", value_model=None, value_lr: float | None = None) -> dict:
    """Run ``cfg.steps`` optimiser steps of ``algo.loss`` on ``examples``; returns the history and counts.

    ``cfg``: steps, batch_size, micro_batch_size, warmup_ratio, lr_schedule, max_grad_norm,
    weight_decay, checkpoint_every, log_every. ``value_model``: a ``ValueModel`` (its own trunk) or a
    ``ValueHead`` (on the policy's trunk), trained with its own optimiser at ``value_lr``; its values
    reach the loss as ``batch[slot]["values"]``.
    """
    if not examples:
        raise UserError(f"{algo.name}: no training examples (for bank algorithms: no prompt with the samples "
                        f"it needs; raise bank.k or bank.n_prompts)")
    steps, bsz = int(cfg.steps), int(cfg.batch_size)
    mbsz = int(cfg.micro_batch_size or bsz)
    if steps < 1 or bsz < 1 or mbsz < 1:
        raise UserError(f"train.steps, train.batch_size and train.micro_batch_size must be >= 1 "
                        f"(got {steps}, {bsz}, {mbsz})")
    torch.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer, scheduler = _optimizer(params, lr, cfg, steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    model.train()
    shared_trunk = value_model is not None and isinstance(value_model, ValueHead)
    if value_model is not None:
        v_params = [p for p in value_model.parameters() if p.requires_grad]
        v_opt, v_sched = _optimizer(v_params, float(value_lr or lr), cfg, steps)
        value_model, v_opt, v_sched = accelerator.prepare(value_model, v_opt, v_sched)
        value_model.train()

    start = _resume(accelerator, ckpt_dir)
    history, tokens = [], 0
    bar = tqdm(total=steps, initial=start, desc=desc, unit="step", disable=None, dynamic_ncols=True)
    t0 = time.perf_counter()
    for step, idx in enumerate(step_batches(len(examples), bsz, steps, seed), start=0):
        if step < start:
            continue
        batch = [examples[i] for i in idx]
        micro = [batch[i:i + mbsz] for i in range(0, len(batch), mbsz)]
        n_tok = [sum(len(ex[s]["completion_ids"]) for ex in m for s in algo.slots) for m in micro]
        total_tok = sum(n_tok)
        loss_sum, metrics = 0.0, {}
        for k, (m, nt) in enumerate(zip(micro, n_tok)):
            # Weight = this micro-batch's share of what the loss averages over (examples or tokens).
            w = nt / total_tok if algo.normalize == "token" else len(m) / len(batch)
            seqs = [ex[s] for s in algo.slots for ex in m]
            t = collate(seqs, pad_id, accelerator.device)
            tokens += int(t["attention_mask"].sum())
            with accelerator.autocast():
                if shared_trunk:
                    logps, hidden = completion_logps(model, t, return_hidden=True)
                    values = gather_values(value_model(hidden), t["pred_pos"], t["mask"])
                else:
                    logps = completion_logps(model, t)
                    values = None if value_model is None else gather_values(
                        value_model(t["input_ids"], t["attention_mask"]), t["pred_pos"], t["mask"])
            parts = {}
            for j, s in enumerate(algo.slots):
                sl = slice(j * len(m), (j + 1) * len(m))
                parts[s] = {"logps": logps[sl], "ref_logps": t["ref_logps"][sl], "mask": t["mask"][sl],
                            "rewards": t["rewards"][sl], "token_rewards": t["token_rewards"][sl]}
                if values is not None:
                    parts[s]["values"] = values[sl].float()
            loss, mets = algo.loss(parts)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{algo.name}: non-finite loss ({loss.item()}) at step {step + 1}; "
                                         f"lower the learning rate (lr={lr:g}) or check the data")
            accelerator.backward(loss * w)
            loss_sum += loss.item() * w
            for key, v in mets.items():
                metrics[key] = metrics.get(key, 0.0) + v * w
        gnorm = accelerator.clip_grad_norm_(params, float(cfg.max_grad_norm)) if cfg.max_grad_norm else None
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if value_model is not None:
            if cfg.max_grad_norm:
                metrics["value_grad_norm"] = float(accelerator.clip_grad_norm_(v_params, float(cfg.max_grad_norm)))
            v_opt.step()
            v_sched.step()
            v_opt.zero_grad(set_to_none=True)
        rec = {"step": step + 1, "loss": loss_sum, "lr": scheduler.get_last_lr()[0],
               "grad_norm": float(gnorm) if gnorm is not None else math.nan, **metrics}
        history.append(rec)
        elapsed = time.perf_counter() - t0
        bar.set_postfix(loss=f"{loss_sum:.4f}", tok_s=f"{tokens / max(elapsed, 1e-9):.0f}")
        bar.update(1)
        if cfg.log_every and (step + 1) % int(cfg.log_every) == 0:
            log.info("%s step %d/%d loss %.4f %s", desc, step + 1, steps, loss_sum,
                     " ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
        if ckpt_dir and cfg.checkpoint_every and (step + 1) % int(cfg.checkpoint_every) == 0 and step + 1 < steps:
            _checkpoint(accelerator, ckpt_dir, step + 1)
    bar.close()
    return {"model": accelerator.unwrap_model(model), "history": history, "train_tokens": tokens,
            "steps": steps - start,
            "value_model": None if value_model is None else accelerator.unwrap_model(value_model)}


def _optimizer(params, lr: float, cfg, steps: int):
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=float(cfg.weight_decay), betas=(0.9, 0.95))
    scheduler = get_scheduler(cfg.lr_schedule, optimizer, num_warmup_steps=int(round(cfg.warmup_ratio * steps)),
                              num_training_steps=steps)
    return optimizer, scheduler


def _checkpoint(accelerator, ckpt_dir: Path, step: int) -> None:
    accelerator.save_state(str(ckpt_dir))
    (ckpt_dir / "step.json").write_text(json.dumps({"step": step}))


def _resume(accelerator, ckpt_dir: Path | None) -> int:
    if ckpt_dir is None or not (ckpt_dir / "step.json").exists():
        return 0
    accelerator.load_state(str(ckpt_dir))
    step = json.loads((ckpt_dir / "step.json").read_text())["step"]
    log.info("resuming from checkpoint %s at step %d", ckpt_dir, step)
    return step
