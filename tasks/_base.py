"""The task contract (docs/design.md §3): splits, prompts, gold solutions and a grader."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from harness.options import option, parse_options
from tasks import _prompts as prompts
from tasks._grading import extract_numeric_answer, numbers_equal, parse_number


@dataclass
class TaskOptions:
    n_demo: int = option(1000, "train problems with full solutions: the warm start's SFT data; the rest of "
                         "train are RL prompts with final answers only (docs/design.md §10)", ge=0)
    n_val: int = option(500, "train problems held out for validation (eval.split=val: tuning), never demonstrations, "
                        "RL prompts or test (docs/design.md §5)", ge=0)
    seed: int = option(0, "data seed: the data are a pure function of the config (keep it fixed across run seeds)")


class Task:
    """A task yields raw records (dicts with an ``id``), turns them into prompts and grades completions.

    Subclasses set ``name`` (through ``@register_task``) and implement ``load_splits``; the
    defaults below suit GSM8K-format records (``question``, ``answer`` ending ``#### N``).

    Prompts: the pipeline calls ``bind_tokenizer(tok)`` once π_ref's tokenizer is loaded; the option
    ``prompt_style`` (auto | chat | plain, see tasks/_prompts.py) then decides whether ``prompt(ex)`` is
    the chat template or the plain ``Question: ...\nAnswer:`` one. ``prompt_record()`` describes it for
    the run record. Options are the ``Options`` dataclass (``sweeps/task/<name>.yaml`` matches it);
    ``type(task)(**task.cfg)`` rebuilds an equivalent task (grading workers do it).
    """

    name: str = "task"
    Options = TaskOptions
    #: plain template for base and from-scratch models (docs/design.md §10)
    prompt_template: str = prompts.PLAIN_TEMPLATE
    #: the chat-style instruction appended to the question
    instruction: str = prompts.BOXED_INSTRUCTION
    #: whether grading is costly enough to be worth a process pool (harness/generation/grade_parallel.py)
    parallel_grading: bool = False
    #: whether the task makes demonstrations of its own (``load_demos``: a procedural task's fresh problems);
    #: otherwise the demonstrations are ``n_demo`` problems cut from train
    demo_split: bool = False
    #: options the demonstrations do not depend on, so that a shipped π_ref made from them stays valid when
    #: they change (``harness/warm_start.recipe``); the validation split is the end of train's shuffled order
    not_in_demos: tuple[str, ...] = ("n_val",)

    def __init__(self, **cfg):
        self.opts = parse_options(self.Options, cfg, "task")
        self._tokenizer = None

    @property
    def cfg(self) -> dict:
        """The options as keyword arguments (to rebuild the task in another process)."""
        return dataclasses.asdict(self.opts)

    @property
    def _style(self) -> str:
        return getattr(self.opts, "prompt_style", "auto")

    def check_source(self) -> None:
        """Before any work: the task's data can be read (a dataset task probes the hub or reads its folder)."""

    # -- prompts ------------------------------------------------------------------------------------
    def bind_tokenizer(self, tokenizer) -> None:
        """Called once by the pipeline after π_ref's tokenizer is loaded; fixes the prompt style."""
        self._tokenizer = tokenizer
        prompts.resolve_style(self._style, tokenizer)  # fail early: chat asked of a tokenizer without a template

    @property
    def prompt_style(self) -> str:
        """``chat`` or ``plain``: the configured ``prompt_style`` resolved against the bound tokenizer."""
        return prompts.resolve_style(self._style, getattr(self, "_tokenizer", None))

    def question(self, example: dict) -> str:
        return example["question"]

    def few_shot(self) -> list[dict]:
        """Demonstration records shown before every question (none by default)."""
        return []

    def prompt(self, example: dict) -> str:
        """The full prompt string: chat template applied (with the generation prompt), or the plain one."""
        shots = [(self.question(d), self.solution_text(d)) for d in self.few_shot()]
        if self.prompt_style == "chat":
            return prompts.chat_prompt(self._tokenizer, self.question(example), shots, self.instruction)
        return prompts.plain_prompt(self.question(example), shots, self.prompt_template)

    def prompt_record(self) -> dict:
        """What the prompt is, for the run record: style, instruction, number of shots and the template."""
        style = self.prompt_style
        if style == "chat":
            template = prompts.chat_prompt(self._tokenizer, "{question}", [], self.instruction)
        else:
            template = self.prompt_template
        return {"style": style, "configured_style": self._style,
                "instruction": self.instruction if style == "chat" else None,
                "n_shot": len(self.few_shot()), "template": template}

    # -- data ---------------------------------------------------------------------------------
    def load_splits(self) -> dict[str, list[dict]]:
        """``{"train": [...], "test": [...]}`` of raw records, each with a unique ``id``."""
        raise NotImplementedError

    def load_demos(self) -> list[dict]:
        """The demonstrations, for a task with ``demo_split``: disjoint from train and test."""
        raise NotImplementedError

    # -- solutions ----------------------------------------------------------------------------------
    def solution_text(self, example: dict) -> str:
        """The gold worked solution, stripped."""
        return example["answer"].strip()

    def solution(self, example: dict) -> str:
        """The gold completion that follows the prompt (for SFT), without the EOS token: a leading space
        after the plain template's ``Answer:``, none after a chat template's generation prompt."""
        return ("" if self.prompt_style == "chat" else " ") + self.solution_text(example)

    def gold_answer(self, example: dict) -> str:
        return example["answer"].split("####")[-1].strip()

    def train_chain_range(self) -> tuple[int, int] | None:
        """The chain lengths of the train split (demonstrations and RL prompts), where the task fixes them: test
        lengths above it are beyond the training range."""
        return None

    def chain_length(self, example: dict) -> int | None:
        """Reasoning steps of the gold solution (GSM8K format: its lines before ``####``), the report's horizon
        axis (docs/design.md §10); None where the solution has no such structure."""
        answer = example.get("answer", "")
        if "####" not in answer:
            return None
        return sum(1 for line in answer.split("####")[0].splitlines() if line.strip())

    # -- grading --------------------------------------------------------------------------------
    def grade(self, completion: str, example: dict) -> float:
        """1.0 if the completion's final answer equals the gold answer, else 0.0."""
        pred = extract_numeric_answer(completion)
        gold = parse_number(self.gold_answer(example))
        return 1.0 if pred is not None and gold is not None and numbers_equal(pred, gold) else 0.0

    def extract_answer(self, completion: str) -> str | None:
        pred = extract_numeric_answer(completion)
        return None if pred is None else format(pred, "g") if isinstance(pred, float) else str(pred)
