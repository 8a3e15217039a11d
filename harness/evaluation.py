"""Evaluation (docs/design.md §5): greedy pass@1, mean sampled accuracy and maj@k on the test split."""
from __future__ import annotations

from collections import Counter

from harness.grade_parallel import grade_many


def evaluate(engine, task, examples: list[dict], cfg, *, seed: int) -> tuple[dict, list[dict], int]:
    """``(metrics, per-item rows, generated tokens)``. ``cfg``: k, temperature, top_p, max_new_tokens."""
    prompts = [task.prompt(ex) for ex in examples]
    greedy = engine.generate(prompts, n=1, temperature=0.0, max_new_tokens=cfg.max_new_tokens, seed=seed,
                             desc="eval greedy")
    k = int(cfg.k)
    sampled = engine.generate(prompts, n=k, temperature=cfg.temperature, top_p=cfg.top_p,
                              max_new_tokens=cfg.max_new_tokens, seed=seed, desc=f"eval sampled k={k}") if k else [[] for _ in prompts]
    items = [(ex, s) for ex, g, ss in zip(examples, greedy, sampled) for s in [g[0], *ss]]
    scores = iter(grade_many(task, [s.text for _, s in items], [ex for ex, _ in items], desc="eval grading"))
    rows, n_greedy, n_sampled, n_maj, gen_tokens = [], 0.0, 0.0, 0.0, 0
    for ex, g, ss in zip(examples, greedy, sampled):
        graded = []
        for kind, s in [("greedy", g[0])] + [(f"sample{j}", s) for j, s in enumerate(ss)]:
            correct = next(scores)
            answer = task.extract_answer(s.text)
            gen_tokens += len(s.token_ids)
            rows.append({"prompt_id": ex["id"], "kind": kind, "completion": s.text, "answer": answer,
                         "gold": task.gold_answer(ex), "correct": correct, "finished": s.finished})
            graded.append((answer, correct))
        n_greedy += graded[0][1]
        if ss:
            n_sampled += sum(c for _, c in graded[1:]) / len(ss)
            n_maj += _majority_correct(graded[1:])
    n = len(examples)
    metrics = {"accuracy": n_greedy / n, "accuracy_sampled": n_sampled / n if k else None,
               f"maj_at_{k}": n_maj / n if k else None, "n_eval": n, "eval_k": k}
    return metrics, rows, gen_tokens


def _majority_correct(graded: list[tuple[str | None, float]]) -> float:
    """Correctness of the most frequent extracted answer (ties: the one seen first)."""
    answers = [a for a, _ in graded if a is not None]
    if not answers:
        return 0.0
    top = Counter(answers).most_common(1)[0][0]
    return next(c for a, c in graded if a == top)
