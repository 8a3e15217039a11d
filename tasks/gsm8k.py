"""``gsm8k``: grade-school math word problems (Cobbe et al. 2021, arXiv 2110.14168).

Records: ``question``, ``answer`` (a worked solution whose last line is ``#### N``). Hub:
``openai/gsm8k`` config ``main`` (7,473 train / 1,319 test); or ``task.data_dir`` with
``train.jsonl``/``test.jsonl`` in that layout.

Grading (docs/design.md §5): the model's answer is the last ``#### N``, else the last ``\\boxed{}``, else
"the answer is N", else the last number; commas, ``$``, units and a trailing ``.`` are ignored and the
values are compared as numbers (tasks/_grading.py) — exact for integers and fractions.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from harness.options import option
from harness.registry import register_task
from tasks._dataset import DatasetOptions, DatasetTask

# Calculator annotations such as "<<48/2=24>>": the tool-use markup of the original release.
_CALC = re.compile(r"<<[^<>]*>>")


@dataclass
class GSM8KOptions(DatasetOptions):
    strip_calculator: bool = option(True, "drop the \"<<48/2=24>>\" calculator annotations from gold solutions "
                                    "(SFT targets, few-shot)")


@register_task("gsm8k")
class GSM8KTask(DatasetTask):
    Options = GSM8KOptions
    label = "gsm8k"
    default_hub_id = "openai/gsm8k"
    default_hub_configs = ("main",)
    required = ("question", "answer")

    def solution_text(self, example: dict) -> str:
        """The worked solution, without calculator annotations unless ``strip_calculator`` is off."""
        text = example["answer"].strip()
        return _CALC.sub("", text) if self.opts.strip_calculator else text

