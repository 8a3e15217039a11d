"""The online loop (docs/design.md §3, §4): sample from the live policy, grade, score, then optimise — PPO, GRPO.

Each iteration takes the next ``prompts_per_iter`` prompts of a seeded order over the prompt pool (the
bank's RL prompts, cycled), samples ``n_samples`` completions each from the current policy at T = 1,
grades them, adds log π_old (the sampler's log-probs, or a forward pass when the engine's differ from
the trainer's numerics), log π_ref (a frozen copy) and the critic's values, lets the plug-in turn the
batch into examples (``rollout_examples``), and runs ``epochs`` passes over them in mini-batches of
``train.batch_size`` with the same ``Learner`` every offline algorithm uses.

Budget (``algo.budget``): ``prompts`` seen (fixes the number of iterations, hence the LR schedule) and
an optional cap on ``gen_tokens`` that ends the run after the iteration that reaches it. Generation is
metered in its own ``rollout`` stage; optimisation in ``train``.
"""
from __future__ import annotations

import logging
import math
import random
import time

import torch

from harness.backbone import compute
from harness.backbone.agent import Agent
from harness.backbone.compute import mean_length, train_stage_flops
from harness.backbone.memory import adapters_off
from harness.backbone.sequences import collate
from harness.backbone.training import Learner, Loop, check_batch_sizes, prompt_groups, shuffled
from harness.errors import UserError
from harness.generation import logprob_gap
from harness.generation.grade_parallel import grade_many

log = logging.getLogger("dqo_bench")
LOG = "online_log.json"  # beside a checkpoint: the history and rollout log up to it


def online_plan(algo, batch_size: int) -> dict:
    """Iterations and optimiser steps implied by the algorithm's options (typed and bounded by its ``Options``).
    ``budget.prompts`` are seen exactly: the last iteration may take fewer than ``prompts_per_iter``."""
    o = algo.opts
    g, per_iter, prompts = o.n_samples, o.prompts_per_iter, o.budget.prompts
    if g < algo.min_samples:
        raise UserError(f"algo.n_samples={g}: {algo.name} needs at least {algo.min_samples} samples per prompt")
    sizes = [min(per_iter, prompts - i) for i in range(0, prompts, per_iter)]  # prompts per iteration
    return {"n_samples": g, "prompts_per_iter": per_iter, "epochs": o.epochs, "prompt_pool": o.prompt_pool,
            "budget_prompts": prompts, "iterations": len(sizes), "iteration_sizes": sizes,
            "steps": sum(o.epochs * math.ceil(n * g / batch_size) for n in sizes), "gen_token_cap": o.budget.gen_tokens}


def prompt_order(n_pool: int, n_needed: int, seed: int) -> list[int]:
    """Indices into the pool: seeded shuffles, pass after pass, so every prompt is used once before any twice."""
    rng, out = random.Random(seed), []
    while len(out) < n_needed:
        order = list(range(n_pool))
        rng.shuffle(order)
        out += order
    return out[:n_needed]


def train_online(algo, prompts: list[dict], task, engine, *, model, ref_model, value_model, cfg, max_new_tokens: int,
                 seed: int, pad_id: int, accelerator, meter, ckpt_dir=None, desc: str = "train", on_step=None) -> dict:
    """Run the online loop; returns what ``training.train`` returns plus the rollout log. ``cfg``: the ``train``
    section (the Learner's settings, as ``training.train`` takes them); ``max_new_tokens``: the rollouts' length
    cap. ``on_step(step, steps, learner)`` is called after each iteration; the fields it returns join the
    iteration's last step record."""
    plan = online_plan(algo, int(cfg.batch_size))
    bsz = int(cfg.batch_size)
    check_batch_sizes(plan["steps"], bsz, int(cfg.micro_batch_size or bsz))
    pool = [p for p in prompts[: plan["prompt_pool"]] if algo.keep_prompt(p["id"])]
    if not pool:
        raise UserError(f"{algo.name}: no RL prompts to sample from; raise algo.prompt_pool or task.n_train")
    g, per_iter = plan["n_samples"], plan["prompts_per_iter"]
    order = prompt_order(len(pool), plan["budget_prompts"], seed)
    learner = Learner(model, algo, cfg, steps=plan["steps"], seed=seed, pad_id=pad_id,
                      accelerator=accelerator, value_model=value_model)
    # A checkpoint is taken at an iteration boundary; what follows it is a pure function of the seed.
    loop = Loop(learner, cfg, ckpt_dir, LOG, plan["steps"], desc)
    start, saved = loop.start, loop.saved or {}
    for name, counts in saved.get("meter", {}).items():  # the stages' tokens, FLOPs and time before the checkpoint
        rec = meter.stages.setdefault(name, {"wall_s": 0.0, "gen_tokens": 0, "train_tokens": 0, "flops": 0.0})
        rec.update({k: rec.get(k, 0) + v for k, v in counts.items()})
    log.info("%s: %d iterations of %d prompts x %d samples, %d epochs: %d optimiser steps of %d",
             algo.name, plan["iterations"], per_iter, g, plan["epochs"], plan["steps"], bsz)
    history, rollouts = saved.get("history", []), saved.get("rollouts", [])
    step, gen_tokens = 0, saved.get("gen_tokens", 0)
    for it in range(plan["iterations"]):
        batch = [pool[i] for i in order[it * per_iter:it * per_iter + plan["iteration_sizes"][it]]]
        if step < start:  # resuming: this iteration's steps are in the checkpoint already
            step += plan["epochs"] * math.ceil(len(batch) * g / bsz)
            continue
        it_start = step
        with meter.stage("rollout") as st:
            t0 = time.perf_counter()
            engine.load_weights(learner.policy)
            seqs, info = _rollout(algo, batch, task, engine, learner, ref_model, g, max_new_tokens, seed * 1_000_003 + it,
                                  pad_id, accelerator.device)
            examples = algo.rollout_examples(seqs, g)
            gen_tokens += info["gen_tokens"]
            st.update(gen_tokens=st["gen_tokens"] + info["gen_tokens"], flops=st["flops"] + info["flops"])
            info.update(iteration=it + 1, step=step, rollout_s=time.perf_counter() - t0)
        with meter.stage("train") as st:
            tokens0, fwd0 = learner.tokens, learner.forward_tokens
            stopped = False
            for epoch in range(plan["epochs"]):
                idx = shuffled(len(examples), random.Random(seed * 7919 + it * 31 + epoch),
                               prompt_groups(examples, algo.slots) if getattr(cfg, "group_by_prompt", False) else None)
                for k in range(0, len(idx), bsz):
                    step += 1
                    if stopped:  # early stop: the schedule still advances, so its length stays the budget's
                        learner.skip_step()
                        continue
                    rec = learner.step([examples[i] for i in idx[k:k + bsz]], step)
                    rec.update(iteration=it + 1, epoch=epoch + 1)
                    history.append(rec)
                    loop.log(rec)
                    stopped = algo.stop_epochs(rec)
            trained = learner.tokens - tokens0
            st.update(train_tokens=st["train_tokens"] + trained,
                      flops=st["flops"] + train_stage_flops(model.config, trained, learner.forward_tokens - fwd0,
                                                            mean_length(examples, algo.slots),
                                                            learner.value_model is not None and not learner.shared_trunk))
        rollouts.append(info)
        if on_step is not None and history:
            history[-1].update(on_step(step, plan["steps"], learner) or {})
        loop.bar.update(step - loop.bar.n)
        loop.bar.set_postfix(reward=f"{info['reward_mean']:.3f}", gen_tok=gen_tokens)
        log.info("%s iteration %d/%d: reward %.3f, %d generated tokens (%d in all), %.1f s sampling",
                 algo.name, it + 1, plan["iterations"], info["reward_mean"], info["gen_tokens"], gen_tokens,
                 info["rollout_s"])
        counted = {name: {k: meter.stages[name][k] for k in ("wall_s", "gen_tokens", "train_tokens", "flops")}
                   for name in ("rollout", "train")}
        loop.checkpoint(step, it_start, {"history": history, "rollouts": rollouts, "gen_tokens": gen_tokens,
                                         "meter": counted}, last=it + 1 == plan["iterations"])
        if plan["gen_token_cap"] is not None and gen_tokens >= plan["gen_token_cap"]:
            log.info("%s: generation budget of %d tokens reached after iteration %d", algo.name,
                     plan["gen_token_cap"], it + 1)
            break
    return loop.result(history, rollouts=rollouts, plan=plan, gen_tokens=gen_tokens)


@torch.no_grad()
def _rollout(algo, prompts, task, engine, learner, ref_model, g, max_new, seed, pad_id, device):
    """One rollout batch: ``g`` graded samples per prompt with old/ref log-probs and old values."""
    groups = engine.generate([task.prompt(ex) for ex in prompts], n=g, temperature=1.0, top_p=1.0,
                             max_new_tokens=max_new, seed=seed, desc="rollout")
    pairs = [(ex, s) for ex, group in zip(prompts, groups) for s in group]
    rewards = grade_many(task, [s.text for _, s in pairs], [ex for ex, _ in pairs], desc="rollout grading")
    seqs = [{"prompt_ids": list(s.prompt_ids), "completion_ids": list(s.token_ids), "old_logps": list(s.logprobs),
             "reward": float(r), "prompt_id": ex["id"]} for (ex, s), r in zip(pairs, rewards)]
    gen = sum(len(s["completion_ids"]) for s in seqs)
    prompt_tok = sum(len(s["prompt_ids"]) for s in seqs)
    flops = compute.sampling_flops(learner.policy.config, gen, prompt_tok, len(seqs))
    # Scoring passes: π_old when the sampler's numerics are not the trainer's, the critic, π_ref.
    need_policy, need_values = not engine.exact_logprobs, learner.value_model is not None
    sampled = [s["old_logps"] for s in seqs]
    for i in range(0, len(seqs), 64):
        chunk = seqs[i:i + 64]
        t = collate(chunk, pad_id, device)
        with learner.evaluating():
            logps, values, _ = learner.forward(t, policy=need_policy, values=need_values)
        ref = _ref_logps(ref_model, learner, t) if algo.needs_ref else None
        for row, s in enumerate(chunk):
            n = len(s["completion_ids"])
            for key, x in (("old_logps", logps), ("old_values", values), ("ref_logps", ref)):
                if x is not None:
                    s[key] = x[row, :n].tolist()
    passes = int(need_policy or (need_values and learner.shared_trunk)) + \
        int(need_values and not learner.shared_trunk) + int(algo.needs_ref)
    flops += passes * compute.generate_flops(learner.policy.config, gen + prompt_tok, (gen + prompt_tok) / len(seqs))
    per_prompt = [rewards[i:i + g] for i in range(0, len(rewards), g)]
    gap = logprob_gap.gap(sampled, [s["old_logps"] for s in seqs]) if need_policy else {}
    return seqs, {**gap, "gen_tokens": gen, "prompt_tokens": prompt_tok, "n_samples": len(seqs), "flops": flops,
                  "reward_mean": sum(rewards) / len(rewards),
                  "frac_prompts_mixed": sum(0 < sum(p) < len(p) for p in per_prompt) / len(per_prompt),
                  "mean_len": gen / len(seqs)}


def _ref_logps(ref_model, learner, t):
    """log π_ref of a rollout batch: the frozen copy, or (LoRA) the policy with its adapters off, through the
    trainer's own forward path (``harness/backbone/agent.py``) and precision, as the policy's log-probs it is compared with."""
    sharded = learner.accelerator.unwrap_model(learner.model).sharded
    with learner.accelerator.autocast():
        if ref_model is not None:
            return Agent(ref_model, sharded=sharded)(t)[0]
        with learner.evaluating(), adapters_off(learner.policy):
            return Agent(learner.policy, sharded=sharded)(t)[0]
