"""Grading many completions at once, in a process pool when the task's grader is costly (MATH's sympy).

``grade_many(task, completions, examples)`` returns ``task.grade(c, ex)`` for each pair, in order, and
logs the throughput. Workers are started with ``spawn`` (never ``fork``: the parent may hold torch and
tokenizer threads) and rebuild the task as ``type(task)(**task.cfg)`` — graders need no data, so the
splits are not shipped. Each worker grades in its main thread, where the per-item SIGALRM timer of
tasks/_grading.py works. If the pool cannot be used (a task class not importable by name, say), the
items are graded in this process instead, with a warning.
"""
from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

log = logging.getLogger("dqo_bench")

#: below this many items a pool costs more to start (~1-2 s per worker: importing sympy) than it saves
MIN_PARALLEL = 1000
_worker_task = None


def _init(cls, cfg: dict) -> None:
    global _worker_task
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _worker_task = cls(**cfg)


def _grade_chunk(pairs: list[tuple[str, dict]]) -> list[float]:
    return [_worker_task.grade(c, ex) for c, ex in pairs]


def default_workers() -> int:
    return max(1, min(16, (os.cpu_count() or 1)))


def grade_many(task, completions: list[str], examples: list[dict], *, workers: int | None = None,
               desc: str = "grade", min_parallel: int = MIN_PARALLEL) -> list[float]:
    """``[task.grade(c, ex) for c, ex in zip(completions, examples)]``, in parallel when worth it."""
    if len(completions) != len(examples):
        raise ValueError(f"{len(completions)} completions for {len(examples)} examples")
    n = len(completions)
    workers = default_workers() if workers is None else max(1, int(workers))
    t0 = time.perf_counter()
    scores = None
    if getattr(task, "parallel_grading", False) and workers > 1 and n >= min_parallel:
        scores = _pool(task, list(zip(completions, examples)), workers)
    used = workers if scores is not None else 1
    if scores is None:
        scores = [task.grade(c, ex) for c, ex in zip(completions, examples)]
    dt = time.perf_counter() - t0
    if n:
        log.info("%s: graded %d items in %.2f s (%.0f items/s, %d process%s)", desc, n, dt, n / max(dt, 1e-9),
                 used, "es" if used > 1 else "")
    return scores


def _pool(task, pairs: list[tuple[str, dict]], workers: int) -> list[float] | None:
    chunk = max(16, len(pairs) // (workers * 8))  # ~8 chunks per worker: balance without IPC per item
    chunks = [pairs[i:i + chunk] for i in range(0, len(pairs), chunk)]
    try:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init,
                                 initargs=(type(task), dict(task.cfg))) as ex:
            return [s for part in ex.map(_grade_chunk, chunks) for s in part]
    except Exception as e:  # noqa: BLE001  pickling/import failures in workers: grade here instead
        log.warning("parallel grading unavailable (%s: %s); grading in this process", type(e).__name__, e)
        return None
