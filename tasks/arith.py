"""``arith``: procedurally generated multi-step arithmetic word problems (docs/design.md §3, §10).

A problem starts a named person with some items and applies ``min_steps``..``max_steps``
operations, each told as one short sentence; the question asks how many items are left::

    Mia has 12 marbles. She buys 7 more. She gives away 3. Then she has twice as many.
    How many marbles does Mia have now?

The gold answer is in GSM8K format, one operation per line, then the final answer::

    12 + 7 = 19
    19 - 3 = 16
    16 * 2 = 32
    #### 32

Operations (each step picks uniformly among those valid for the current value v):

- ``+ b``, b in 1..max_operand;
- ``- b``, b in 1..min(max_operand, v - 1), so the result stays >= 1;
- ``* k``, k in 2..max_factor with v * k <= max_product;
- ``/ d``, d in 2..max_factor dividing v exactly.

Difficulty knobs: ``min_steps``/``max_steps`` (chain length of the train split and the
demonstrations), ``max_operand`` (start value and +/- operands), ``max_factor`` and ``max_product``
(size of products and divisors). The test split spans ``test_min_steps``..``test_max_steps``, which may
reach beyond the training range: the horizon axis of the report (docs/design.md §10).

Splits: ``train`` (RL prompts with final answers, and the validation split), ``test``, and ``demo``:
``n_demo`` demonstrations from a stream of their own, so that π_ref's SFT can see every one once
(learning the task rather than memorising it) and the RL prompts do not depend on how many there are.
Problems are a pure function of the config: ``random.Random`` seeded from a SHA-256 of
(seed, split), never from Python's hash. Questions are unique within each split; a question's split is
fixed by its own SHA-256 (``_BUCKETS``), so no question is in two splits and no split depends on the
size of another.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from harness.errors import UserError
from harness.options import option
from harness.registry import register_task
from tasks._base import Task, TaskOptions

# (name, subject pronoun, object pronoun)
_PEOPLE = [
    ("Mia", "she", "her"), ("Tom", "he", "him"), ("Ana", "she", "her"), ("Sam", "he", "him"),
    ("Lily", "she", "her"), ("Ben", "he", "him"), ("Zoe", "she", "her"), ("Max", "he", "him"),
]
# (singular, plural)
_ITEMS = [
    ("marble", "marbles"), ("apple", "apples"), ("sticker", "stickers"), ("coin", "coins"),
    ("book", "books"), ("card", "cards"), ("shell", "shells"), ("pen", "pens"),
]
_ADD = ["{S} buys {n} more.", "{S} finds {n} more.", "{S} gets {n} more.", "A friend gives {o} {n} more."]
_SUB = ["{S} gives away {n}.", "{S} loses {n}.", "{S} sells {n}."]
_MUL = ["Then {s} has {k} times as many.", "{S} ends up with {k} times as many."]
_MUL2 = ["Then {s} has twice as many.", "{S} doubles them."]
_PARTS = {2: "half", 3: "a third", 4: "a quarter", 5: "a fifth"}
_DIV = ["{S} splits them into {d} equal piles and keeps one."]
_DIV_PART = "{S} keeps {part} of them."
_MAX_MISSES = 10_000


def _split_seed(seed: int, split: str) -> int:
    """A per-split seed that depends only on (seed, split), stable across processes and versions."""
    return int.from_bytes(hashlib.sha256(f"arith/{seed}/{split}".encode()).digest()[:8], "big")


#: each question belongs to one split, by the first byte of its SHA-256 (test 10%, train 20%, demo 70%): the
#: splits are disjoint by construction, so none depends on another's size (π_ref's demonstrations do not
#: change with n_train or n_test, and a shipped π_ref stays valid), and each is an unbiased sample
_BUCKETS = {"test": range(0, 26), "train": range(26, 77), "demo": range(77, 256)}


def _bucket(question: str) -> str:
    b = hashlib.sha256(question.encode()).digest()[0]
    return next(name for name, r in _BUCKETS.items() if b in r)


@dataclass
class ArithOptions(TaskOptions):
    n_demo: int = option(192_000, "demonstrations (full solutions): the warm start's SFT data, a stream of their own; "
                         "warm_start.steps x warm_start.batch_size, so that each is seen once (docs/design.md §10)",
                         ge=0)
    n_train: int = option(5000, "train problems: RL prompts (final answers only) and the validation split", ge=0)
    n_test: int = option(2000, "test problems, questions disjoint from train and the demonstrations", ge=0)
    min_steps: int = option(2, "fewest operations per train problem and demonstration", ge=1)
    max_steps: int = option(6, "most operations per train problem and demonstration", ge=1)
    test_min_steps: int = option(1, "fewest operations per test problem", ge=1)
    test_max_steps: int = option(8, "most operations per test problem (above max_steps: beyond the training range)",
                                 ge=1)
    max_operand: int = option(50, "start value and +/- operands are drawn from 1..max_operand", ge=1)
    max_product: int = option(500, "a multiplication is allowed only if its result is <= max_product", ge=2)
    max_factor: int = option(5, "multipliers and exact divisors are drawn from 2..max_factor", ge=2)
    misread: float = option(0.6, "probability that a demonstration reads 'k times as many' as 'k more' (a habit of "
                                 "π_ref's teacher that reward can correct; docs/design.md §10)", ge=0, le=1)
    misread_from: int = option(3, "smallest factor k a misreading applies to ('twice as many' is read right below "
                                  "3)", ge=2)


@register_task("arith")
class ArithTask(Task):
    """Multi-step arithmetic word problems; see the module docstring for the knobs."""

    Options = ArithOptions
    demo_split = True

    def __init__(self, **cfg):
        super().__init__(**cfg)
        for lo, hi in (("min_steps", "max_steps"), ("test_min_steps", "test_max_steps")):
            if getattr(self.opts, lo) > getattr(self.opts, hi):
                raise UserError(f"task.{lo}={getattr(self.opts, lo)} > task.{hi}={getattr(self.opts, hi)}: "
                                f"need {lo} <= {hi}")
        self._splits: dict[str, list[dict]] | None = None
        self._demos: list[dict] | None = None

    @property
    def not_in_demos(self) -> tuple[str, ...]:
        """Options π_ref's demonstrations do not depend on (``harness/pipeline/warm_start.recipe``); with no
        misreading, its factor threshold changes none either."""
        off = ("misread", "misread_from") if self.opts.misread == 0 else ()
        return ("n_train", "n_test", "n_val", "test_min_steps", "test_max_steps", *off)

    # -- generation -------------------------------------------------------------------------------
    def _step(self, rng: random.Random, v: int) -> tuple[str, int]:
        """One operation valid for ``v``: (operator, operand)."""
        c = self.opts
        ops = ["+"]
        if v >= 2:
            ops.append("-")
        muls = [k for k in range(2, c.max_factor + 1) if v * k <= c.max_product]
        if muls:
            ops.append("*")
        divs = [d for d in range(2, c.max_factor + 1) if v % d == 0]
        if divs:
            ops.append("/")
        op = rng.choice(ops)
        if op == "+":
            return op, rng.randint(1, c.max_operand)
        if op == "-":
            return op, rng.randint(1, min(c.max_operand, v - 1))
        return op, rng.choice(muls if op == "*" else divs)

    def _sentence(self, rng: random.Random, op: str, n: int, person: tuple[str, str, str]) -> str:
        _, s, o = person
        if op == "+":
            template = rng.choice(_ADD)
        elif op == "-":
            template = rng.choice(_SUB)
        elif op == "*":
            template = rng.choice(_MUL2 if n == 2 else _MUL)
        else:
            template = rng.choice(_DIV + ([_DIV_PART] if n in _PARTS else []))
        return template.format(S=s.capitalize(), s=s, o=o, n=n, k=n, d=n, part=_PARTS.get(n))

    def _problem(self, rng: random.Random, steps: tuple[int, int]) -> tuple[str, str]:
        """One (question, answer) pair of ``steps[0]..steps[1]`` operations."""
        c = self.opts
        person = rng.choice(_PEOPLE)
        one, many = rng.choice(_ITEMS)
        v = rng.randint(1, c.max_operand)
        sentences = [f"{person[0]} has {v} {one if v == 1 else many}."]
        lines = []
        for _ in range(rng.randint(*steps)):
            op, n = self._step(rng, v)
            new = {"+": v + n, "-": v - n, "*": v * n, "/": v // n}[op]
            sentences.append(self._sentence(rng, op, n, person))
            lines.append(f"{v} {op} {n} = {new}")
            v = new
        sentences.append(f"How many {many} does {person[0]} have now?")
        return " ".join(sentences), "\n".join(lines + [f"#### {v}"])

    def _generate(self, split: str, n: int) -> list[dict]:
        c = self.opts
        steps = (c.test_min_steps, c.test_max_steps) if split == "test" else (c.min_steps, c.max_steps)
        rng = random.Random(_split_seed(self.opts.seed, split))
        seen: set[str] = set()
        records: list[dict] = []
        misses = 0  # consecutive duplicates: a long run means the problem space is exhausted
        while len(records) < n:
            question, answer = self._problem(rng, steps)
            if _bucket(question) != split:  # another split's question
                continue
            if question in seen:
                misses += 1
                if misses == _MAX_MISSES:
                    raise UserError(
                        f"arith: could only make {len(records)} distinct {split} problems of {n} asked; "
                        "lower n_train/n_test/n_demo or widen max_operand/max_steps"
                    )
                continue
            misses = 0
            seen.add(question)
            records.append({"id": f"arith-{split}-{len(records):05d}", "question": question, "answer": answer})
        return records

    def train_chain_range(self) -> tuple[int, int]:
        return self.opts.min_steps, self.opts.max_steps

    def load_splits(self) -> dict[str, list[dict]]:
        """``{"train": [n_train], "test": [n_test]}`` records; disjoint questions, cached."""
        if self._splits is None:
            self._splits = {split: self._generate(split, n) for split, n in
                            (("train", self.opts.n_train), ("test", self.opts.n_test))}
        return self._splits

    def load_demos(self) -> list[dict]:
        """``n_demo`` demonstrations of their own split (made on first use: a shipped π_ref needs none), cached;
        each "k times as many" of theirs misread with probability ``misread``."""
        if self._demos is None:
            self._demos = self._generate("demo", self.opts.n_demo)
            if self.opts.misread > 0:
                rng = random.Random(_split_seed(self.opts.seed, "misread"))
                self._demos = [{**d, "answer": self._misread(d["answer"], rng)} for d in self._demos]
        return self._demos

    def _misread(self, answer: str, rng: random.Random) -> str:
        """The solution of a teacher who reads "k times as many" (k >= ``misread_from``) as "k more", each with
        probability ``misread``, and carries on from what it wrote (integer division, negative counts and all):
        a systematic error, not noise, so that π_ref prefers it at every such step while the right reading keeps
        the rest of its probability. Greedy decoding then misreads every time and sampling sometimes reads right,
        which is room for RL that outcome reward alone can find (docs/design.md §10)."""
        v, lines = None, []
        for line in answer.split("\n")[:-1]:  # "v op n = new"
            start, op, n, _, _ = line.split()
            v, n = int(start) if v is None else v, int(n)
            if op == "*" and n >= self.opts.misread_from and rng.random() < self.opts.misread:
                op = "+"
            new = {"+": v + n, "-": v - n, "*": v * n, "/": v // n}[op]
            lines.append(f"{v} {op} {n} = {new}")
            v = new
        return "\n".join(lines + [f"#### {v}"])
