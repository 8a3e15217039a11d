"""The task contract (DESIGN.md §3): splits, prompts, gold solutions, a grader, step segmentation."""
from __future__ import annotations

import re

from tasks.grading import extract_numeric_answer, numbers_equal, parse_number


class Task:
    """A task yields raw records (dicts with an ``id``), turns them into prompts and grades completions.

    Subclasses set ``name`` (through ``@register_task``) and implement ``load_splits``; the
    defaults below suit GSM8K-format records (``question``, ``answer`` ending ``#### N``).
    """

    name: str = "task"
    #: plain template for base and from-scratch models (DESIGN.md §10)
    prompt_template: str = "Question: {question}\nAnswer:"

    def __init__(self, **cfg):
        self.cfg = dict(cfg)

    # -- data ---------------------------------------------------------------------------------
    def load_splits(self) -> dict[str, list[dict]]:
        """``{"train": [...], "test": [...]}`` of raw records, each with a unique ``id``."""
        raise NotImplementedError

    # -- prompts and solutions ------------------------------------------------------------------
    def prompt(self, example: dict) -> str:
        return self.prompt_template.format(question=example["question"])

    def solution(self, example: dict) -> str:
        """The gold completion that follows the prompt (for SFT), without the EOS token."""
        return " " + example["answer"].strip()

    def gold_answer(self, example: dict) -> str:
        return example["answer"].split("####")[-1].strip()

    # -- grading --------------------------------------------------------------------------------
    def grade(self, completion: str, example: dict) -> float:
        """1.0 if the completion's final answer equals the gold answer, else 0.0."""
        pred = extract_numeric_answer(completion)
        gold = parse_number(self.gold_answer(example))
        return 1.0 if pred is not None and gold is not None and numbers_equal(pred, gold) else 0.0

    def extract_answer(self, completion: str) -> str | None:
        pred = extract_numeric_answer(completion)
        return None if pred is None else format(pred, "g") if isinstance(pred, float) else str(pred)

    # -- process supervision --------------------------------------------------------------------
    def split_steps(self, solution: str) -> list[tuple[int, int]]:
        """Character spans of the reasoning steps: one per non-empty line."""
        return [(m.start(), m.end()) for m in re.finditer(r"[^\n]+", solution) if m.group().strip()]
