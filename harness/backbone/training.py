"""The shared training loop (docs/design.md §3): one code path for every algorithm.

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
from accelerate.utils import DistributedType
from tqdm.auto import tqdm
from transformers import get_scheduler

from harness.backbone import checkpoints
from harness.backbone.agent import Agent
from harness.backbone.sequences import collate
from harness.backbone.value_model import ValueHead
from harness.distributed import ranks
from harness.errors import UserError

log = logging.getLogger(__name__)


#: ``train.precision`` -> accelerate's mixed_precision
PRECISIONS = {"bf16": "bf16", "fp16": "fp16", "fp32": "no"}


def mixed_precision(precision: str = "auto") -> str:
    """accelerate's ``mixed_precision`` for ``train.precision``: ``auto`` is bf16 on a GPU and fp32 on a CPU; one
    line when this machine cannot run it (a name that is none: also here, for callers outside a job)."""
    if precision != "auto" and precision not in PRECISIONS:
        raise UserError(f"train.precision={precision!r}: valid values are auto, {', '.join(PRECISIONS)}")
    cuda = torch.cuda.is_available()
    if precision == "auto":
        return "bf16" if cuda else "no"
    if precision == "fp16" and not cuda:
        raise UserError("train.precision=fp16 needs a GPU (fp16 autocast is GPU-only); use bf16 or fp32 on a CPU")
    return PRECISIONS[precision]


def make_accelerator(precision: str = "auto"):
    """The Accelerator every stage of a job shares: the device, and autocast at ``train.precision``."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration

    ranks.process_state()
    # split_batches: the batch every process holds is the global batch (``Learner.step`` splits it), so a
    # prepared LR schedule advances once per optimiser step, not once per process
    acc = Accelerator(cpu=not torch.cuda.is_available() and not ranks.deepspeed(),
                      mixed_precision=mixed_precision(precision),
                      dataloader_config=DataLoaderConfiguration(split_batches=True))
    if acc.distributed_type == DistributedType.DEEPSPEED:
        # DeepSpeed's batch sizes are bookkeeping here (no dataloader): one accumulation step, so it never
        # rescales a loss; ``Learner.step`` marks the boundary where its engine steps
        acc.state.deepspeed_plugin.deepspeed_config.update(
            train_micro_batch_size_per_gpu=1, gradient_accumulation_steps=1, train_batch_size=acc.num_processes)
    return acc


def shuffled(n: int, rng: random.Random, groups: list | None = None) -> list[int]:
    """Indices 0..n-1 in a seeded shuffle; with ``groups`` (a key per index) the groups are shuffled and each stays
    together, so a batch holds a prompt's examples side by side and computes the prompt once (``harness/backbone/prefix.py``)."""
    if groups is None:
        order = list(range(n))
        rng.shuffle(order)
        return order
    members: dict = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    blocks = list(members.values())
    rng.shuffle(blocks)
    return [i for b in blocks for i in b]


def prompt_groups(examples: list[dict], slots) -> list[tuple]:
    """Each example's prompt (that of its first slot): the key ``train.group_by_prompt`` keeps together."""
    return [tuple(ex[slots[0]]["prompt_ids"]) for ex in examples]


def step_batches(n_examples: int, batch_size: int, steps: int, seed: int, groups: list | None = None):
    """Example indices for each optimiser step: seeded shuffles (of whole ``groups``, when given), epoch after epoch."""
    rng = random.Random(seed)
    order: list[int] = []
    for _ in range(steps):
        while len(order) < batch_size:
            order += shuffled(n_examples, rng, groups)
        yield order[:batch_size]
        order = order[batch_size:]


#: collated fields the model reads, which the loss does not
MODEL_INPUTS = ("input_ids", "attention_mask", "pred_pos", "completion_ids", "prompt_len", "prompt_group")

HISTORY = "history.json"  # in a checkpoint: the steps before it, so a resumed run's history is whole
COUNTS = "token_counts.json"  # and the tokens trained so far, so a resumed run's cost is the whole run's


class Learner:
    """The policy (and value model) with their optimisers and schedules: ``step(batch)`` is one optimiser
    step of ``algo.loss`` on a list of examples, identical for offline and online algorithms.

    ``cfg``: micro_batch_size, warmup_ratio, lr_schedule, max_grad_norm, weight_decay. The learning rate is
    the plug-in's ``lr``. ``value_model``: a ``ValueModel`` (its own trunk) or a ``ValueHead`` (on the
    policy's trunk), trained with its own optimiser at the plug-in's ``value_lr``; its values reach the loss
    as ``batch[slot]["values"]``.
    """

    def __init__(self, model, algo, cfg, *, steps: int, seed: int, pad_id: int, accelerator, value_model=None):
        self.algo, self.cfg, self.lr, self.pad_id, self.accelerator = algo, cfg, algo.lr, pad_id, accelerator
        self.micro_batch_size = int(cfg.micro_batch_size or 0)
        torch.manual_seed(seed)
        self.value_model = value_model
        self.shared_trunk = isinstance(value_model, ValueHead)
        # one module, one optimiser: a parameter group per model, each at its own learning rate
        self.params = [p for p in model.parameters() if p.requires_grad]
        groups = [{"params": self.params, "lr": self.lr}]
        if value_model is not None:
            self.v_params = [p for p in value_model.parameters() if p.requires_grad]
            groups.append({"params": self.v_params, "lr": algo.opts.value_lr})
        optimizer, scheduler = _optimizer(groups, cfg, steps)
        self.deepspeed = accelerator.distributed_type == DistributedType.DEEPSPEED
        if self.deepspeed:
            # DeepSpeed's engine steps the optimiser (and this schedule) inside the last micro-batch's backward,
            # which ``step`` marks, and clips one global norm itself
            accelerator.state.deepspeed_plugin.deepspeed_config["gradient_clipping"] = float(cfg.max_grad_norm or 0.0)
        # accelerate saves every object it prepared: an earlier Learner's (the warm start's) would enter this one's
        # checkpoints, and a rerun that reuses the warm start could not load them (accelerate's advice: free_memory
        # between two trainings)
        accelerator.free_memory()
        sharded = accelerator.distributed_type == DistributedType.FSDP or (
            self.deepspeed and accelerator.state.deepspeed_plugin.zero_stage == 3)
        self.model, self.optimizer, self.scheduler = accelerator.prepare(
            Agent(model, value_model, sharded=sharded, compile=bool(getattr(cfg, "compile", False))), optimizer, scheduler)
        if self.deepspeed:  # accelerate's backward drives the first engine it prepared; this Learner's is its own
            from accelerate.utils.deepspeed import DeepSpeedEngineWrapper

            self.engine = DeepSpeedEngineWrapper(self.model)
        self.model.train()
        self.tokens = 0  # tokens through forward + backward so far, as the forward computed them (all processes)
        self.forward_tokens = 0  # tokens through a forward pass alone (log π_ref; batch statistics of a split batch)
        self.computed = 0  # tokens every forward of this process computed (``Agent.last_tokens``)

    @property
    def policy(self):
        return self.accelerator.unwrap_model(self.model).policy

    @property
    def critic(self):
        return self.accelerator.unwrap_model(self.model).value

    def forward(self, t: dict[str, torch.Tensor], policy: bool = True, values: bool = True):
        """``(logps, values, outputs)`` of a collated batch (``Agent.forward``), under the job's autocast; the tokens
        it computed (a prompt shared by rows once per call that shares it) add to ``computed``."""
        with self.accelerator.autocast():
            out = self.model(t, self.algo.outputs if policy else (), policy=policy,
                             values=values and self.value_model is not None)
        self.computed += self.accelerator.unwrap_model(self.model).last_tokens
        return out

    def micro_batches(self, batch: list) -> list[list]:
        """This process's share of an optimiser batch (every W-th example), in micro-batches."""
        local = batch[self.accelerator.process_index::self.accelerator.num_processes]
        mbsz = self.micro_batch_size or len(local)
        return [local[i:i + mbsz] for i in range(0, len(local), mbsz)]

    @torch.no_grad()
    def fill_reference(self, examples: list[dict], batches) -> None:
        """log π_ref for every sequence of ``examples`` that has none (docs/design.md §3), before any update, by the
        training forward itself: the same path, precision and micro-batches as the step that first trains on it,
        so the log-ratios of the first step are exactly zero, whatever the engine that sampled. ``batches``: the
        steps' example indices (``step_batches``); their forward tokens are metered."""
        slots = self.algo.slots
        missing = {i for i, ex in enumerate(examples) if any(ex[s].get("ref_logps") is None for s in slots)}
        before = self.computed
        with self.evaluating():
            for batch in batches:
                if not missing:
                    break
                for m in self.micro_batches(batch):
                    if not missing.intersection(m):
                        continue
                    parts = self.slot_tensors([examples[i] for i in m], grad=False)
                    for row, i in enumerate(m):
                        for s in slots:
                            seq = examples[i][s]
                            if seq.get("ref_logps") is None:
                                seq["ref_logps"] = parts[s]["logps"][row, :len(seq["completion_ids"])].tolist()
                    missing.difference_update(m)
        self.forward_tokens += self._summed(self.computed - before)

    def _summed(self, tokens: int) -> int:
        """Tokens computed by this process, summed over the processes."""
        if self.accelerator.num_processes > 1:
            return int(self.accelerator.reduce(torch.tensor(tokens, device=self.accelerator.device), "sum").item())
        return tokens

    @contextlib.contextmanager
    def evaluating(self):
        """Eval mode (no dropout) for scoring passes, restored after."""
        mode = self.model.training
        self.model.eval()
        try:
            yield
        finally:
            self.model.train(mode)

    @contextlib.contextmanager
    def _sync(self, last: bool):
        """Gradient synchronisation across processes only on the last micro-batch of a step (DDP's no_sync)."""
        with self.accelerator.no_sync(self.model) if not last and self.accelerator.num_processes > 1 \
                else contextlib.nullcontext():
            yield

    def skip_step(self) -> None:
        """Advance the LR schedule without an update (online early stopping keeps the planned schedule)."""
        (self.scheduler.scheduler if self.deepspeed else self.scheduler).step()  # DeepSpeed's wrapper: a no-op

    def collate(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        """Every slot of ``examples`` in one padded batch, slot after slot, with the plug-in's declared fields."""
        seqs = [ex[s] for s in self.algo.slots for ex in examples]
        return collate(seqs, self.pad_id, self.accelerator.device, self.algo.token_fields, self.algo.sequence_fields)

    def slot_tensors(self, examples: list[dict], grad: bool = True) -> dict[str, dict]:
        """What ``loss`` reads: per slot, the completion tensors of one forward pass over ``examples``. Without
        ``grad``: the policy's alone (for batch statistics)."""
        t = self.collate(examples)
        with torch.set_grad_enabled(grad):
            logps, v, extra = self.forward(t, values=grad)
        inputs = {"logps": logps, "values": v, **extra}
        inputs |= {k: x for k, x in t.items() if k not in MODEL_INPUTS}
        n = len(examples)
        return {s: {k: x[j * n:(j + 1) * n] for k, x in inputs.items() if x is not None}
                for j, s in enumerate(self.algo.slots)}

    def statistics(self, micro: list[list[dict]], n_examples: int) -> dict[str, torch.Tensor]:
        """The plug-in's batch statistics, averaged over every example of the optimiser batch (no gradient):
        this process's micro-batches, summed over the processes."""
        sums = {}
        for m in micro:
            values = self.algo.batch_statistics(self.slot_tensors(m, grad=False))
            for key in self.algo.statistics:
                sums[key] = sums.get(key, 0.0) + values[key].sum()
        if self.accelerator.num_processes > 1:
            sums = {k: self.accelerator.reduce(v, "sum") for k, v in sums.items()}
        return {k: v / n_examples for k, v in sums.items()}

    def step(self, batch: list[dict], step: int) -> dict:
        """One optimiser step on ``batch`` (``step`` counts from 1, for messages); returns its record.

        The plug-in's terms are reduced here, over the whole batch: counts first, then each micro-batch's
        share of the batch mean is back-propagated, so how the batch is split never changes the update.
        With several processes (every one holds the same ``batch``) each takes every W-th example; its shares
        are multiplied by W because DDP averages the processes' gradients, and gradients are synchronised
        once, on the last micro-batch."""
        algo, acc = self.algo, self.accelerator
        world = acc.num_processes
        if len(batch) < world:
            raise UserError(f"train.batch_size={len(batch)} is smaller than the {world} processes; raise it")
        counts = batch_counts(batch, algo.slots)  # the whole batch's: every process knows it
        micro = self.micro_batches(batch)
        one_pass = len(micro) == 1 and world == 1  # then the statistics come from the training pass itself
        start = self.computed
        stats = self.statistics(micro, len(batch)) if algo.statistics and not one_pass else {}
        stats_tokens = self.computed - start
        totals, metrics = {}, {}
        if self.deepspeed:
            acc.deepspeed_engine_wrapped = self.engine
        for i, m in enumerate(micro):
            if self.deepspeed:  # the engine steps at the boundary, inside backward
                acc.gradient_state._set_sync_gradients(i == len(micro) - 1)
            with self._sync(last=i == len(micro) - 1):
                parts = self.slot_tensors(m)
                if algo.statistics and one_pass:
                    with torch.no_grad():
                        stats = {k: algo.batch_statistics(parts)[k].mean() for k in algo.statistics}
                terms, mets = algo.loss(parts, stats)
                loss = 0.0
                for name, share in reduce_terms(terms, parts, counts).items():
                    if not torch.isfinite(share):
                        raise FloatingPointError(f"{algo.name}: non-finite loss term {name!r} ({share.item()}) at "
                                                 f"step {step}; lower the learning rate (lr={self.lr:g}) or check the data")
                    totals[name] = totals.get(name, 0.0) + share.item()
                    loss = loss + share
                acc.backward(loss * world)
            for key, v in mets.items():  # a Term: reduced as a loss term; a number: the micro-batch's example mean
                share = (reduce_terms({key: v}, parts, counts)[key].item() if hasattr(v, "values")
                         else v * len(m) / len(batch))
                metrics[key] = metrics.get(key, 0.0) + share
        # charged as what the forward computed: a prompt once per call that shares it (harness/backbone/prefix.py), so prompts
        # split over length buckets, micro-batches or processes are charged as often as they ran
        self.forward_tokens += self._summed(stats_tokens)
        self.tokens += self._summed(self.computed - start - stats_tokens)
        if world > 1:  # the record is the whole batch's: summed over processes
            totals = {k: acc.reduce(torch.tensor(v), "sum").item() for k, v in totals.items()}
            metrics = {k: acc.reduce(torch.tensor(v), "sum").item() for k, v in metrics.items()}
        max_norm = float(self.cfg.max_grad_norm or 0)
        gnorm = None
        if self.deepspeed:  # stepped (and clipped: one norm over both models) in the last backward
            acc.gradient_state._set_sync_gradients(True)
            gnorm = acc.deepspeed_engine_wrapped.get_global_grad_norm() if max_norm else None
        elif max_norm:  # each model clipped to its own norm, as with an optimiser of its own
            acc.unscale_gradients()
            gnorm = torch.nn.utils.clip_grad_norm_(self.params, max_norm)
            if self.value_model is not None:
                metrics["value_grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.v_params, max_norm))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"step": step, "examples": len(batch), "loss": sum(totals.values()),
                **{f"{k}_loss": v for k, v in totals.items()},
                "lr": self.scheduler.get_last_lr()[0],
                "grad_norm": float(gnorm) if gnorm is not None else math.nan, **metrics}

    def policy_state_dict(self) -> dict:
        """The policy's full state dict on rank 0, gathered when its weights are sharded (every process calls)."""
        state = self.accelerator.get_state_dict(self.model)
        return {k.removeprefix("policy."): v for k, v in (state or {}).items() if k.startswith("policy.")}

    def checkpoint(self, ckpt_dir: Path | None, step: int, extra: dict[str, str] | None = None) -> None:
        """Save the whole training state (and ``extra`` files, e.g. the history so far) at ``step``."""
        if ckpt_dir is not None:
            counts = json.dumps({"tokens": self.tokens, "forward_tokens": self.forward_tokens})
            checkpoints.save(ckpt_dir, self.accelerator.save_state, step, {**(extra or {}), COUNTS: counts})

    def resume(self, ckpt_dir: Path | None) -> int:
        """The step a checkpoint in ``ckpt_dir`` was saved at (its state loaded), or 0."""
        step = checkpoints.settle(ckpt_dir) if ckpt_dir is not None else 0
        if step:
            self.accelerator.load_state(str(ckpt_dir))
            if (ckpt_dir / COUNTS).exists():  # the run's token counts are the whole run's, as if never stopped
                counts = json.loads((ckpt_dir / COUNTS).read_text())
                self.tokens, self.forward_tokens = counts["tokens"], counts["forward_tokens"]
            log.info("resuming from checkpoint %s at step %d", ckpt_dir, step)
        return step


def batch_counts(batch: list[dict], slots) -> dict:
    """What the plug-in's terms are averaged over: the batch's examples, and its real completion tokens per slot."""
    return {"examples": len(batch), "tokens": {s: sum(len(ex[s]["completion_ids"]) for ex in batch) for s in slots}}


def reduce_terms(terms: dict, parts: dict, counts: dict) -> dict[str, torch.Tensor]:
    """Each term's share of its mean over the optimiser batch, from one micro-batch: per-example terms are
    summed and divided by the batch's examples, per-token terms summed over their slot's real tokens and
    divided by the batch's tokens of that slot (``batch_counts``)."""
    out = {}
    for name, term in terms.items():
        if term.slot is None:
            out[name] = term.values.sum() / counts["examples"]
        else:
            out[name] = (term.values * parts[term.slot]["mask"]).sum() / max(counts["tokens"][term.slot], 1)
    return out


def check_batch_sizes(steps: int, bsz: int, mbsz: int) -> None:
    if steps < 1 or bsz < 1 or mbsz < 1:
        raise UserError(f"train.steps, train.batch_size and train.micro_batch_size must be >= 1 "
                        f"(got {steps}, {bsz}, {mbsz})")


def train(model, algo, examples: list[dict], cfg, *, seed: int, pad_id: int, accelerator,
          ckpt_dir: Path | None = None, desc: str = "train", value_model=None, on_step=None) -> dict:
    """Run ``cfg.steps`` optimiser steps of ``algo.loss`` on ``examples`` (offline algorithms); returns the
    trained model(s), the history and the token counts. ``cfg`` as ``Learner``'s, plus steps, batch_size,
    group_by_prompt, checkpoint_every and log_every. ``on_step(step, steps, learner)`` may return fields to add
    to the step's record (a learning-curve point)."""
    if not examples:
        raise UserError(f"{algo.name}: no training examples (for bank algorithms: no prompt with the samples "
                        f"it needs; raise bank.k or bank.n_prompts)")
    steps, bsz = int(cfg.steps), int(cfg.batch_size)
    check_batch_sizes(steps, bsz, int(cfg.micro_batch_size or bsz))
    learner = Learner(model, algo, cfg, steps=steps, seed=seed, pad_id=pad_id, accelerator=accelerator,
                      value_model=value_model)
    groups = prompt_groups(examples, algo.slots) if getattr(cfg, "group_by_prompt", False) else None
    if algo.needs_ref and not algo.online:  # before a checkpoint's weights are loaded: the policy is still π_ref
        learner.fill_reference(examples, step_batches(len(examples), bsz, steps, seed, groups))
    loop = Loop(learner, cfg, ckpt_dir, HISTORY, steps, desc)
    history = loop.saved or []
    t0 = time.perf_counter()
    for step, idx in enumerate(step_batches(len(examples), bsz, steps, seed, groups), start=1):
        if step <= loop.start:
            continue
        rec = learner.step([examples[i] for i in idx], step)
        if on_step is not None:
            rec.update(on_step(step, steps, learner) or {})
        history.append(rec)
        loop.bar.set_postfix(loss=f"{rec['loss']:.4f}",
                             tok_s=f"{learner.tokens / max(time.perf_counter() - t0, 1e-9):.0f}")
        loop.bar.update(1)
        loop.log(rec)
        loop.checkpoint(step, step - 1, history, last=step == steps)
    return loop.result(history, steps=steps - loop.start, policy_state=learner.policy_state_dict)


class Loop:
    """What the offline and the online loop share around their steps: resuming (the Learner's state, then the
    loop's own record saved beside the checkpoint), the progress bar, the step log, checkpoints on their schedule
    and what a loop returns."""

    def __init__(self, learner: Learner, cfg, ckpt_dir: Path | None, saved_name: str, total: int, desc: str):
        self.learner, self.cfg, self.ckpt_dir, self.saved_name, self.total, self.desc = \
            learner, cfg, ckpt_dir, saved_name, total, desc
        self.start = learner.resume(ckpt_dir)
        saved = ckpt_dir / saved_name if ckpt_dir is not None else None
        self.saved = json.loads(saved.read_text()) if self.start and saved.exists() else None
        self.schedule = checkpoints.Schedule(cfg.checkpoint_every, getattr(cfg, "checkpoint_minutes", 0))
        self.bar = tqdm(total=total, initial=self.start, desc=desc, unit="step", disable=None, dynamic_ncols=True)

    def log(self, rec: dict) -> None:
        log_step(self.cfg, self.desc, rec, self.total)

    def checkpoint(self, step: int, since: int, record, last: bool) -> None:
        """A checkpoint at ``step`` with ``record`` (JSON) beside it, when one is due since step ``since``; never
        after the last step (the run's own record follows at once)."""
        if self.ckpt_dir is not None and not last and self.schedule.due(step, since):
            self.learner.checkpoint(self.ckpt_dir, step, {self.saved_name: json.dumps(record)})
            self.schedule.saved()

    def result(self, history: list[dict], **extra) -> dict:
        self.bar.close()
        learner = self.learner
        return {"model": learner.policy, "history": history, "train_tokens": learner.tokens,
                "forward_tokens": learner.forward_tokens, "value_model": learner.critic, **extra}


def log_step(cfg, desc: str, rec: dict, steps: int) -> None:
    if cfg.log_every and rec["step"] % int(cfg.log_every) == 0:
        log.info("%s step %d/%d loss %.4f %s", desc, rec["step"], steps, rec["loss"],
                 " ".join(f"{k} {v:.4g}" for k, v in rec.items() if k not in ("step", "loss")))


def _optimizer(groups: list[dict], cfg, steps: int):
    """AdamW over the parameter groups (each with its ``lr``) and the schedule, which scales every group's."""
    optimizer = torch.optim.AdamW(groups, weight_decay=float(cfg.weight_decay), betas=(0.9, 0.95))
    scheduler = get_scheduler(cfg.lr_schedule, optimizer, num_warmup_steps=int(round(cfg.warmup_ratio * steps)),
                              num_training_steps=steps)
    return optimizer, scheduler
