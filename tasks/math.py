"""``math``: competition mathematics (Hendrycks et al. 2021, arXiv 2103.03874), 7,500 train / 5,000 test.

Records: ``problem``, ``solution`` (LaTeX, final answer in ``\\boxed{}``), ``level``, ``type``. Hub:
``EleutherAI/hendrycks_math`` — the maintained full copy of the original release used by lm-eval
(``hendrycks/competition_math`` was taken down), one config per subject, concatenated in subject order
like the release's folders; or ``task.data_dir`` with ``train.jsonl``/``test.jsonl``.

Grading (docs/design.md §5): the gold answer is the last ``\\boxed{}`` of the gold solution (nested braces,
``\\fbox``, ``\\boxed 5``); the model's likewise (else ``#### X`` or "the answer is X"). Equal when the
Minerva-normalised strings match or math-verify finds them equivalent within ``timeout_s`` seconds
(tasks/_grading.py; the timer is a no-op off the main thread, where long answers are string-matched only).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.errors import UserError
from harness.options import option
from harness.registry import register_task
from tasks import _loaders as loaders
from tasks._dataset import DatasetOptions, DatasetTask
from tasks._grading import extract_math_answer, last_boxed, math_answers_equal

SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory",
            "prealgebra", "precalculus")


@dataclass
class MathOptions(DatasetOptions):
    timeout_s: float = option(5.0, "per-item limit on math-verify's symbolic comparison (a timeout grades 0); "
                              "enforced in a process's main thread", gt=0)


@dataclass
class Math500Options(MathOptions):
    train_data_dir: str | None = option(None, "folder with MATH's train.jsonl; null = data_dir if it has one, else "
                                        "data_dir/../math, else the hub's MATH")


@register_task("math")
class MathTask(DatasetTask):
    Options = MathOptions
    label = "math"
    default_hub_id = "EleutherAI/hendrycks_math"
    default_hub_configs = SUBJECTS
    required = ("problem", "solution")
    parallel_grading = True  # sympy: ~ms per item, worth a process pool on thousands of samples

    def record_id(self, record: dict, split: str, index: int) -> str:
        return record.get("unique_id") or super().record_id(record, split, index)

    def question(self, example: dict) -> str:
        return example["problem"]

    def solution_text(self, example: dict) -> str:
        return example["solution"].strip()

    def gold_answer(self, example: dict) -> str | None:
        return last_boxed(example["solution"])

    def usable(self, record: dict) -> bool:
        """Two train solutions of the release end in an empty ``\\boxed{}`` (number_theory 7115, 7117):
        no answer can match them, so they are dropped with a warning."""
        return bool((self.gold_answer(record) or "").strip())

    def extract_answer(self, completion: str) -> str | None:
        return extract_math_answer(completion)

    def grade(self, completion: str, example: dict) -> float:
        pred, gold = extract_math_answer(completion), self.gold_answer(example)
        return 1.0 if math_answers_equal(pred, gold, timeout_s=self.opts.timeout_s) else 0.0


@register_task("math500")
class Math500Task(MathTask):
    """MATH-500 (Lightman et al. 2023, PRM800K's test subset): 500 MATH test problems.

    Its test split comes from ``HuggingFaceH4/MATH-500`` or ``<data_dir>/test.jsonl``. It has no train
    split of its own: train is MATH's (disjoint from these 500 test problems), read from
    ``train_data_dir``; else ``<data_dir>/train.jsonl`` if present; else ``<data_dir>/../math`` if that
    has a ``train.jsonl`` (a folder of datasets side by side); else the hub's MATH.
    """

    Options = Math500Options
    label = "math500"
    default_hub_id = "HuggingFaceH4/MATH-500"
    default_hub_configs = (None,)

    def raw_splits(self) -> dict[str, list[dict]]:
        data_dir, train_dir = self.opts.data_dir, self.opts.train_data_dir
        if data_dir:
            test = loaders.load_local(data_dir, ("test",), self.required, self.label)["test"]
            if not train_dir:
                for cand in (Path(data_dir), Path(data_dir) / ".." / "math"):
                    if (cand / "train.jsonl").is_file():
                        train_dir = str(cand)
                        break
        else:
            hub_id = self.opts.hub_id or self.default_hub_id
            test = loaders.load_hub(hub_id, [None], ("test",), self.label)["test"]
            loaders.check_fields(test, self.required, f"{hub_id} test")
        math_cfg = {k: v for k, v in self.cfg.items() if k not in ("train_data_dir", "data_dir", "hub_id")}
        try:
            train = MathTask(**math_cfg, data_dir=train_dir).raw_splits()["train"]
        except UserError as e:
            raise UserError(f"math500 takes its train split from MATH; {e} (or task.train_data_dir=PATH)") from None
        return {"train": train, "test": test}
