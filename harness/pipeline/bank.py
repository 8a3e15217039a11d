"""The rollout bank (docs/design.md §1): K samples per RL prompt from π_ref, graded, with log π_ref per token (the
trainer's, ``ref_logps``) and the sampler's own (``sampler_logps``).

Stored as parquet through ``datasets``; shared by every offline algorithm of a sweep (an artifact).
"""
from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from datasets import Dataset

from harness.generation import logprob_gap
from harness.generation.grade_parallel import grade_many

FILE = "bank.parquet"


def build_bank(engine, task, examples: list[dict], cfg, *, seed: int, out_dir: Path, score=None) -> dict:
    """Sample, grade and save; returns the bank's summary (its meta). Each sample keeps the engine's log-probs as
    ``sampler_logps``; ``ref_logps`` are the trainer's: ``score(samples)`` (their log-probs by the trainer's own
    forward, with its count of tokens computed) when the engine's are not exact (``engine.exact_logprobs``), then
    the gap between the two is in the meta (``harness/generation/logprob_gap.py``)."""
    prompts = [task.prompt(ex) for ex in examples]
    samples = engine.generate(prompts, n=int(cfg.k), temperature=cfg.temperature, top_p=cfg.top_p,
                              max_new_tokens=cfg.max_new_tokens, seed=seed, desc="rollout bank")
    pairs = [(ex, s) for ex, group in zip(examples, samples) for s in group]
    rewards = iter(grade_many(task, [s.text for _, s in pairs], [ex for ex, _ in pairs], desc="bank grading"))
    rows = []
    for ex, group in zip(examples, samples):
        for j, s in enumerate(group):
            rows.append({"prompt_id": ex["id"], "sample": j, "prompt_ids": s.prompt_ids,
                         "completion_ids": s.token_ids, "sampler_logps": s.logprobs, "ref_logps": s.logprobs,
                         "text": s.text, "reward": next(rewards), "finished": s.finished})
    exact = bool(engine.exact_logprobs) or score is None
    meta = {"sampler_exact": exact}
    if not exact:  # π_ref's log-probs by the trainer's forward; the engine's kept for the gap
        trainer, meta["scored_tokens"] = score([{**r, "ref_logps": None} for r in rows])
        for r, lp in zip(rows, trainer):
            r["ref_logps"] = lp
        meta |= logprob_gap.gap([r["sampler_logps"] for r in rows], trainer)
    Dataset.from_list(rows).to_parquet(str(out_dir / FILE))
    per_prompt = [[r["reward"] for r in g["samples"]] for g in _group(rows)]
    return {
        **meta,
        "n_prompts": len(examples), "k": int(cfg.k), "n_samples": len(rows),
        "frac_correct": sum(r["reward"] for r in rows) / max(len(rows), 1),
        "frac_prompts_mixed": sum(0 < sum(p) < len(p) for p in per_prompt) / max(len(per_prompt), 1),
        "gen_tokens": sum(len(r["completion_ids"]) for r in rows),
        "prompt_tokens": sum(len(r["prompt_ids"]) for r in rows),
    }


def load_bank(path: Path) -> list[dict]:
    """Samples grouped by prompt, in file order: ``[{"prompt_id", "prompt_ids", "samples": [...]}, ...]``."""
    return _group(pq.read_table(Path(path) / FILE).to_pylist())


def _group(rows: list[dict]) -> list[dict]:
    groups: dict[str, dict] = {}
    for r in rows:
        g = groups.setdefault(r["prompt_id"], {"prompt_id": r["prompt_id"], "prompt_ids": r["prompt_ids"],
                                               "samples": []})
        g["samples"].append(r)
    return list(groups.values())
