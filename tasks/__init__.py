"""Tasks: datasets, prompts and graders. ``get_task("arith").grade(completion, example)``."""
from __future__ import annotations


def get_task(name: str, **cfg):
    """An instance of the task registered as ``name``; ``cfg`` overrides its defaults."""
    from harness.registry import get_task_class

    return get_task_class(name)(**cfg)
