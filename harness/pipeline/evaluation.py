"""Evaluation (docs/design.md §5): greedy pass@1, mean sampled accuracy, maj@k and pass@k on the test split."""
from __future__ import annotations

from collections import Counter

from harness.generation.grade_parallel import grade_many


def evaluate(engine, task, examples: list[dict], cfg, *, seed: int) -> tuple[dict, list[dict], int]:
    """``(metrics, per-item rows, generated tokens)``. ``cfg``: k, temperature, top_p, max_new_tokens and
    n_sampled (sampled accuracy and maj@k on the first n_sampled items only; null = all): greedy accuracy
    is over every item, and per chain length where the task defines one (``accuracy_by_length``)."""
    prompts = [task.prompt(ex) for ex in examples]
    greedy = engine.generate(prompts, n=1, temperature=0.0, max_new_tokens=cfg.max_new_tokens, seed=seed,
                             desc="eval greedy")
    k = int(cfg.k)
    n_sampled = len(prompts) if getattr(cfg, "n_sampled", None) is None else min(int(cfg.n_sampled), len(prompts))
    sampled = engine.generate(prompts[:n_sampled], n=k, temperature=cfg.temperature, top_p=cfg.top_p,
                              max_new_tokens=cfg.max_new_tokens, seed=seed, desc=f"eval sampled k={k}") if k else []
    sampled = sampled + [[] for _ in prompts[len(sampled):]]
    items = [(ex, s) for ex, g, ss in zip(examples, greedy, sampled) for s in [g[0], *ss]]
    scores = iter(grade_many(task, [s.text for _, s in items], [ex for ex, _ in items], desc="eval grading"))
    rows, n_greedy, acc_sampled, n_maj, n_pass, gen_tokens = [], 0.0, 0.0, 0.0, 0.0, 0
    by_length: dict[int, list[float]] = {}
    for ex, g, ss in zip(examples, greedy, sampled):
        graded, length = [], task.chain_length(ex)
        for kind, s in [("greedy", g[0])] + [(f"sample{j}", s) for j, s in enumerate(ss)]:
            correct = next(scores)
            answer = task.extract_answer(s.text)
            gen_tokens += len(s.token_ids)
            rows.append({"prompt_id": ex["id"], "kind": kind, "completion": s.text, "answer": answer,
                         "gold": task.gold_answer(ex), "correct": correct, "finished": s.finished,
                         "chain_length": length})
            graded.append((answer, correct))
        n_greedy += graded[0][1]
        if length is not None:
            by_length.setdefault(length, []).append(graded[0][1])
        if ss:
            acc_sampled += sum(c for _, c in graded[1:]) / len(ss)
            n_maj += _majority_correct(graded[1:])
            n_pass += max(c for _, c in graded[1:])
    n = len(examples)
    metrics = {"accuracy": n_greedy / n, "accuracy_sampled": acc_sampled / n_sampled if k and n_sampled else None,
               f"maj_at_{k}": n_maj / n_sampled if k and n_sampled else None,
               f"pass_at_{k}": n_pass / n_sampled if k and n_sampled else None, "n_eval": n,
               "n_eval_sampled": n_sampled if k else 0, "eval_k": k,
               "accuracy_by_length": {str(L): sum(v) / len(v) for L, v in sorted(by_length.items())} or None}
    return metrics, rows, gen_tokens


def _majority_correct(graded: list[tuple[str | None, float]]) -> float:
    """Correctness of the most frequent extracted answer (ties: the one seen first)."""
    answers = [a for a, _ in graded if a is not None]
    if not answers:
        return 0.0
    top = Counter(answers).most_common(1)[0][0]
    return next(c for a, c in graded if a == top)
