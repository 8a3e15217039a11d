"""Process values (docs/design.md §4, DQO's "process score"): Monte-Carlo estimates v̂(s) at solution-step
boundaries of the bank's samples, and the potential-based shaping they give.

v̂(s) is the fraction of ``k`` rollouts from π_ref, continued from the sampled prefix s, that the task
grades correct; v̂ at the prompt itself is the mean reward of the prompt's bank samples (they are
rollouts from it). Identical prefixes are rolled out once. Shaping with potential Φ = v̂ of the last
boundary reached (Φ = 0 once the response ends) adds α·(Φ(s_{h+1}) − Φ(s_h)) at boundary tokens and
−α·Φ at the last token; it telescopes to −α·v̂(x), a constant per prompt, so the optimal policy is
unchanged (Ng, Harada & Russell 1999).
"""
from __future__ import annotations

import json
from pathlib import Path

FILE = "process_values.jsonl"


def boundaries(completion_ids: list[int], tokenizer) -> list[int]:
    """Indices h such that token h ends a solution step (contains a newline), excluding the last token."""
    return [h for h, t in enumerate(completion_ids[:-1]) if "\n" in tokenizer.decode([t])]


def build_process_values(engine, task, bank: list[dict], tokenizer, cfg, *, seed: int, out_dir: Path) -> dict:
    """Estimate v̂ at every step boundary of the bank's samples; saves ``{prompt_id, sample, values}``
    rows where ``values`` maps boundary token index -> v̂ after that token. ``cfg``: k, temperature,
    max_new_tokens."""
    examples = {ex["id"]: ex for ex in task.load_splits()["train"]}
    owner: dict[tuple, tuple] = {}  # distinct prefix (prompt + response ids) -> (group, sample, h) of its first use
    for g in bank:
        for s in g["samples"]:
            for h in boundaries(s["completion_ids"], tokenizer):
                owner.setdefault(tuple(g["prompt_ids"]) + tuple(s["completion_ids"][: h + 1]), (g, s, h))
    keys = list(owner)
    outs = engine.generate([list(k) for k in keys], n=int(cfg.k), temperature=cfg.temperature, top_p=1.0,
                           max_new_tokens=int(cfg.max_new_tokens), seed=seed, desc="process values")
    value_of, gen_tokens = {}, 0
    for key, samples in zip(keys, outs):
        g, s, h = owner[key]
        prefix_text = tokenizer.decode(s["completion_ids"][: h + 1], skip_special_tokens=True)
        ex = examples[g["prompt_id"]]
        value_of[key] = sum(task.grade(prefix_text + x.text, ex) for x in samples) / len(samples)
        gen_tokens += sum(len(x.token_ids) for x in samples)
    rows = []
    for g in bank:
        for s in g["samples"]:
            vals = {h: value_of[tuple(g["prompt_ids"]) + tuple(s["completion_ids"][: h + 1])]
                    for h in boundaries(s["completion_ids"], tokenizer)}
            rows.append({"prompt_id": g["prompt_id"], "sample": s["sample"], "values": vals})
    (out_dir / FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"n_prefixes": len(keys), "k": int(cfg.k), "gen_tokens": gen_tokens,
            "prompt_tokens": sum(len(k) for k in keys) * int(cfg.k)}


def load_process_values(path: Path) -> dict[tuple[str, int], dict[int, float]]:
    out = {}
    for line in (Path(path) / FILE).read_text().splitlines():
        r = json.loads(line)
        out[(r["prompt_id"], r["sample"])] = {int(h): v for h, v in r["values"].items()}
    return out


def shaping(n_tokens: int, start_value: float, values: dict[int, float], alpha: float) -> list[float]:
    """Per-token shaping rewards for one response of ``n_tokens`` tokens (see module docstring)."""
    out = [0.0] * n_tokens
    phi = start_value
    for h in sorted(values):
        out[h] += alpha * (values[h] - phi)
        phi = values[h]
    out[-1] += alpha * (0.0 - phi)
    return out
