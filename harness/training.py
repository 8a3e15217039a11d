"""The shared training loop (DESIGN.md §3): one code path for every algorithm.

Optimiser, LR schedule with warm-up, gradient accumulation, clipping, precision, checkpoints and
logging live here and nowhere else, so leaderboard differences come from the losses alone.
"""
from __future__ import annotations

import contextlib
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
from harness.sequences import SEQ_EXTRAS, TOKEN_EXTRAS, collate, completion_logps
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


class Learner:
    """The policy (and value model) with their optimisers and schedules: ``step(batch)`` is one optimiser
    step of ``algo.loss`` on a list of examples, identical for offline and online algorithms.

    ``cfg``: micro_batch_size, warmup_ratio, lr_schedule, max_grad_norm, weight_decay. ``value_model``: a
    ``ValueModel`` (its own trunk) or a ``ValueHead`` (on the policy's trunk), trained with its own
    optimiser at ``value_lr``; its values reach the loss as ``batch[slot]["values"]``.
    """

    def __init__(self, model, algo, cfg, *, lr: float, steps: int, seed: int, pad_id: int, accelerator,
                 value_model=None, value_lr: float | None = None):
        self.algo, self.cfg, self.lr, self.pad_id, self.accelerator = algo, cfg, lr, pad_id, accelerator
        self.micro_batch_size = int(cfg.micro_batch_size or 0)
        torch.manual_seed(seed)
        self.params = [p for p in model.parameters() if p.requires_grad]
        optimizer, scheduler = _optimizer(self.params, lr, cfg, steps)
        self.model, self.optimizer, self.scheduler = accelerator.prepare(model, optimizer, scheduler)
        self.model.train()
        self.value_model = value_model
        self.shared_trunk = value_model is not None and isinstance(value_model, ValueHead)
        if value_model is not None:
            self.v_params = [p for p in value_model.parameters() if p.requires_grad]
            v_opt, v_sched = _optimizer(self.v_params, float(value_lr or lr), cfg, steps)
            self.value_model, self.v_opt, self.v_sched = accelerator.prepare(value_model, v_opt, v_sched)
            self.value_model.train()
        self.tokens = 0  # tokens through forward + backward so far

    @property
    def policy(self):
        return self.accelerator.unwrap_model(self.model)

    @property
    def critic(self):
        return None if self.value_model is None else self.accelerator.unwrap_model(self.value_model)

    def forward(self, t: dict[str, torch.Tensor], policy: bool = True, values: bool = True):
        """``(logps, values)`` of a collated batch; either is None when not asked for or, for values, without
        a value model (a head on the policy's trunk needs the policy's pass either way)."""
        vm = self.value_model if values else None
        with self.accelerator.autocast():
            if self.shared_trunk and vm is not None:
                logps, hidden = completion_logps(self.model, t, return_hidden=True)
                return (logps if policy else None), gather_values(vm(hidden), t["pred_pos"], t["mask"]).float()
            logps = completion_logps(self.model, t) if policy else None
            if vm is None:
                return logps, None
            return logps, gather_values(vm(t["input_ids"], t["attention_mask"]), t["pred_pos"], t["mask"]).float()

    @contextlib.contextmanager
    def evaluating(self):
        """Eval mode (no dropout) for scoring passes, restored after."""
        mods = [m for m in (self.model, self.value_model) if m is not None]
        modes = [m.training for m in mods]
        for m in mods:
            m.eval()
        try:
            yield
        finally:
            for m, mode in zip(mods, modes):
                m.train(mode)

    def skip_step(self) -> None:
        """Advance the LR schedules without an update (online early stopping keeps the planned schedule)."""
        self.scheduler.step()
        if self.value_model is not None:
            self.v_sched.step()

    def step(self, batch: list[dict], step: int) -> dict:
        """One optimiser step on ``batch`` (``step`` counts from 1, for messages); returns its record."""
        algo, acc = self.algo, self.accelerator
        mbsz = self.micro_batch_size or len(batch)
        micro = [batch[i:i + mbsz] for i in range(0, len(batch), mbsz)]
        n_tok = [sum(len(ex[s]["completion_ids"]) for ex in m for s in algo.slots) for m in micro]
        loss_sum, metrics = 0.0, {}
        for m, nt in zip(micro, n_tok):
            # Weight = this micro-batch's share of what the loss averages over (examples or tokens).
            w = nt / sum(n_tok) if algo.normalize == "token" else len(m) / len(batch)
            t = collate([ex[s] for s in algo.slots for ex in m], self.pad_id, acc.device)
            self.tokens += int(t["attention_mask"].sum())
            logps, values = self.forward(t)
            parts = {}
            for j, s in enumerate(algo.slots):
                sl = slice(j * len(m), (j + 1) * len(m))
                parts[s] = {"logps": logps[sl], **{k: t[k][sl] for k in _LOSS_INPUTS if k in t}}
                if values is not None:
                    parts[s]["values"] = values[sl]
            loss, mets = algo.loss(parts)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{algo.name}: non-finite loss ({loss.item()}) at step {step}; "
                                         f"lower the learning rate (lr={self.lr:g}) or check the data")
            acc.backward(loss * w)
            loss_sum += loss.item() * w
            for key, v in mets.items():
                metrics[key] = metrics.get(key, 0.0) + v * w
        max_norm = float(self.cfg.max_grad_norm or 0)
        gnorm = acc.clip_grad_norm_(self.params, max_norm) if max_norm else None
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.value_model is not None:
            if max_norm:
                metrics["value_grad_norm"] = float(acc.clip_grad_norm_(self.v_params, max_norm))
            self.v_opt.step()
            self.v_sched.step()
            self.v_opt.zero_grad(set_to_none=True)
        return {"step": step, "loss": loss_sum, "lr": self.scheduler.get_last_lr()[0],
                "grad_norm": float(gnorm) if gnorm is not None else math.nan, **metrics}

    def checkpoint(self, ckpt_dir: Path | None, step: int) -> None:
        if ckpt_dir is not None:
            self.accelerator.save_state(str(ckpt_dir))
            (ckpt_dir / "step.json").write_text(json.dumps({"step": step}))

    def resume(self, ckpt_dir: Path | None) -> int:
        """The step a checkpoint in ``ckpt_dir`` was saved at (its state loaded), or 0."""
        if ckpt_dir is None or not (ckpt_dir / "step.json").exists():
            return 0
        self.accelerator.load_state(str(ckpt_dir))
        step = json.loads((ckpt_dir / "step.json").read_text())["step"]
        log.info("resuming from checkpoint %s at step %d", ckpt_dir, step)
        return step


#: collated tensors every loss may read, besides the policy's log-probs and the values
_LOSS_INPUTS = ("ref_logps", "mask", "rewards", "token_rewards") + TOKEN_EXTRAS + SEQ_EXTRAS


def check_batch_sizes(steps: int, bsz: int, mbsz: int) -> None:
    if steps < 1 or bsz < 1 or mbsz < 1:
        raise UserError(f"train.steps, train.batch_size and train.micro_batch_size must be >= 1 "
                        f"(got {steps}, {bsz}, {mbsz})")


def train(model, algo, examples: list[dict], cfg, *, lr: float, seed: int, pad_id: int, accelerator,
          ckpt_dir: Path | None = None, desc: str = "train", value_model=None, value_lr: float | None = None) -> dict:
    """Run ``cfg.steps`` optimiser steps of ``algo.loss`` on ``examples`` (offline algorithms); returns the
    trained model(s), the history and the trained-token count. ``cfg`` as ``Learner``'s, plus steps,
    batch_size, checkpoint_every and log_every."""
    if not examples:
        raise UserError(f"{algo.name}: no training examples (for bank algorithms: no prompt with the samples "
                        f"it needs; raise bank.k or bank.n_prompts)")
    steps, bsz = int(cfg.steps), int(cfg.batch_size)
    check_batch_sizes(steps, bsz, int(cfg.micro_batch_size or bsz))
    learner = Learner(model, algo, cfg, lr=lr, steps=steps, seed=seed, pad_id=pad_id, accelerator=accelerator,
                      value_model=value_model, value_lr=value_lr)
    start = learner.resume(ckpt_dir)
    history = []
    bar = tqdm(total=steps, initial=start, desc=desc, unit="step", disable=None, dynamic_ncols=True)
    t0 = time.perf_counter()
    for step, idx in enumerate(step_batches(len(examples), bsz, steps, seed), start=1):
        if step <= start:
            continue
        rec = learner.step([examples[i] for i in idx], step)
        history.append(rec)
        bar.set_postfix(loss=f"{rec['loss']:.4f}", tok_s=f"{learner.tokens / max(time.perf_counter() - t0, 1e-9):.0f}")
        bar.update(1)
        log_step(cfg, desc, rec, steps)
        if cfg.checkpoint_every and step % int(cfg.checkpoint_every) == 0 and step < steps:
            learner.checkpoint(ckpt_dir, step)
    bar.close()
    return {"model": learner.policy, "history": history, "train_tokens": learner.tokens, "steps": steps - start,
            "value_model": learner.critic}


def log_step(cfg, desc: str, rec: dict, steps: int) -> None:
    if cfg.log_every and rec["step"] % int(cfg.log_every) == 0:
        log.info("%s step %d/%d loss %.4f %s", desc, rec["step"], steps, rec["loss"],
                 " ".join(f"{k} {v:.4g}" for k, v in rec.items() if k not in ("step", "loss")))


def _optimizer(params, lr: float, cfg, steps: int):
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=float(cfg.weight_decay), betas=(0.9, 0.95))
    scheduler = get_scheduler(cfg.lr_schedule, optimizer, num_warmup_steps=int(round(cfg.warmup_ratio * steps)),
                              num_training_steps=steps)
    return optimizer, scheduler
