"""Accuracy against compute (docs/design.md §11): a learning curve on the validation split along
training, and the leaderboard's accuracy at a compute budget every row reached.

With ``eval.every=N`` a run scores greedy accuracy on the first ``eval.curve_items`` validation problems every N
optimiser steps (online: at the first iteration boundary past each N) and at the end. Each point joins that step's
record in ``train_history.jsonl`` (so a resumed run keeps its earlier points) with the compute spent after π_ref
so far: ``curve_flops`` (the shared data the run consumed, the bank or process values, plus its own training or
rollouts), ``curve_device_s`` and ``curve_gen_tokens`` (tokens sampled for learning). The curve's own
evaluation is a diagnostic charged to nobody: its time is left out of the stage it interrupts.
"""
from __future__ import annotations

import time

from harness.backbone import compute
from harness.generation.grade_parallel import grade_many


class Curve:
    """``on_step`` of ``training.train`` and ``online.train_online``. ``own(learner)``: the run's own
    ``(flops, gen_tokens)`` so far; ``data``: the shared artifacts' ``(flops, wall_s, gen_tokens)``."""

    def __init__(self, engine, task, items: list[dict], every: int, max_new_tokens: int, seed: int, own, data):
        self.engine, self.task, self.items, self.every = engine, task, items, every
        self.prompts = [task.prompt(ex) for ex in items]
        self.max_new_tokens, self.seed, self.own, self.data = max_new_tokens, seed, own, data
        self.last, self.wall_s, self.gen_tokens, self.points = 0, 0.0, 0, 0
        self.t0 = time.perf_counter()

    def __call__(self, step: int, steps: int, learner) -> dict | None:
        if step - self.last < self.every and step < steps:
            return None
        t = time.perf_counter()
        self.engine.load_weights(learner.policy)
        with learner.evaluating():
            out = self.engine.generate(self.prompts, n=1, temperature=0.0, max_new_tokens=self.max_new_tokens,
                                       seed=self.seed, desc="curve")
        scores = grade_many(self.task, [g[0].text for g in out], self.items, desc="curve grading")
        self.gen_tokens += sum(len(g[0].token_ids) for g in out)
        own_flops, own_gen = self.own(learner)
        data_flops, data_wall, data_gen = self.data
        wall = t - self.t0 - self.wall_s  # training time so far, earlier curve points excluded
        self.wall_s += time.perf_counter() - t
        self.last, self.points = step, self.points + 1
        return {"val_accuracy": sum(scores) / len(scores), "curve_flops": data_flops + own_flops,
                "curve_device_s": (data_wall + wall) * compute.n_devices(),
                "curve_gen_tokens": data_gen + own_gen}

    def diagnostics(self) -> dict:
        return {"points": self.points, "wall_s": self.wall_s, "gen_tokens": self.gen_tokens, "items": len(self.items)}
