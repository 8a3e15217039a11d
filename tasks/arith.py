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

Difficulty knobs: ``min_steps``/``max_steps`` (chain length, the main one), ``max_operand``
(start value and +/- operands), ``max_factor`` and ``max_product`` (size of products and divisors).
Problems are a pure function of the config: ``random.Random`` seeded from a SHA-256 of
(seed, split), never from Python's hash. Questions are unique within each split and test questions
never appear in train; the test split does not depend on ``n_train``.
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


@dataclass
class ArithOptions(TaskOptions):
    n_train: int = option(5000, "train problems (demonstrations + RL prompts)", ge=0)
    n_test: int = option(500, "test problems, questions disjoint from train", ge=0)
    min_steps: int = option(2, "fewest operations per problem", ge=1)
    max_steps: int = option(5, "most operations per problem (the main difficulty knob)", ge=1)
    max_operand: int = option(20, "start value and +/- operands are drawn from 1..max_operand", ge=1)
    max_product: int = option(100, "a multiplication is allowed only if its result is <= max_product", ge=2)
    max_factor: int = option(5, "multipliers and exact divisors are drawn from 2..max_factor", ge=2)


@register_task("arith")
class ArithTask(Task):
    """Multi-step arithmetic word problems; see the module docstring for the knobs."""

    Options = ArithOptions

    def __init__(self, **cfg):
        super().__init__(**cfg)
        if self.opts.min_steps > self.opts.max_steps:
            raise UserError(f"task.min_steps={self.opts.min_steps} > task.max_steps={self.opts.max_steps}: "
                            f"need min_steps <= max_steps")
        self._splits: dict[str, list[dict]] | None = None

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

    def _problem(self, rng: random.Random) -> tuple[str, str]:
        """One (question, answer) pair."""
        c = self.opts
        person = rng.choice(_PEOPLE)
        one, many = rng.choice(_ITEMS)
        v = rng.randint(1, c.max_operand)
        sentences = [f"{person[0]} has {v} {one if v == 1 else many}."]
        lines = []
        for _ in range(rng.randint(c.min_steps, c.max_steps)):
            op, n = self._step(rng, v)
            new = {"+": v + n, "-": v - n, "*": v * n, "/": v // n}[op]
            sentences.append(self._sentence(rng, op, n, person))
            lines.append(f"{v} {op} {n} = {new}")
            v = new
        sentences.append(f"How many {many} does {person[0]} have now?")
        return " ".join(sentences), "\n".join(lines + [f"#### {v}"])

    def _generate(self, split: str, n: int, exclude: set[str]) -> list[dict]:
        rng = random.Random(_split_seed(self.opts.seed, split))
        seen = set(exclude)
        records: list[dict] = []
        misses = 0  # consecutive duplicates: a long run means the problem space is exhausted
        while len(records) < n:
            question, answer = self._problem(rng)
            if question in seen:
                misses += 1
                if misses == _MAX_MISSES:
                    raise UserError(
                        f"arith: could only make {len(records)} distinct {split} problems of {n} asked; "
                        "lower n_train/n_test or widen max_operand/max_steps"
                    )
                continue
            misses = 0
            seen.add(question)
            records.append({"id": f"arith-{split}-{len(records):05d}", "question": question, "answer": answer})
        return records

    def load_splits(self) -> dict[str, list[dict]]:
        """``{"train": [n_train records], "test": [n_test records]}``; disjoint questions, cached."""
        if self._splits is None:
            test = self._generate("test", self.opts.n_test, exclude=set())
            train = self._generate("train", self.opts.n_train, exclude={r["question"] for r in test})
            self._splits = {"train": train, "test": test}
        return self._splits
