"""``DatasetTask``: a task over a real dataset (GSM8K, MATH) loaded from the hub or a local folder.

Subclasses set the dataset's hub id/configs, its required fields and the record → question/solution
mapping. Options shared by every dataset task (documented in sweeps/task/*.yaml): ``data_dir``,
``hub_id``, ``n_train``/``n_test`` with ``seed`` (deterministic subsets), ``prompt_style``, ``n_shot``.
"""
from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import dataclass
from typing import Literal

from harness.errors import UserError
from harness.options import option
from tasks import _loaders as loaders
from tasks._base import Task, TaskOptions

log = logging.getLogger("dqo_bench")


@dataclass
class DatasetOptions(TaskOptions):
    data_dir: str | None = option(None, "folder with train.jsonl/test.jsonl in the dataset's own fields; null = the hub")
    hub_id: str | None = option(None, "hub dataset when data_dir is null (null = the task's usual one)")
    n_train: int | None = option(None, "deterministic subset of the train split (null = all); chosen by `seed`, "
                                 "original order kept", ge=0)
    n_test: int | None = option(None, "deterministic subset of the test split (null = all); eval.n_test then takes "
                                "its first items", ge=0)
    prompt_style: Literal["auto", "chat", "plain"] = option(
        "auto", "auto (chat template if the model's tokenizer has one) | chat | plain (\"Question: ...\\nAnswer:\")")
    n_shot: int = option(0, "worked train examples shown before each question (chat: earlier turns; plain: Q/A "
                         "pairs)", ge=0)


class DatasetTask(Task):
    Options = DatasetOptions
    label: str = "dataset"                  # in error messages
    default_hub_id: str = ""
    default_hub_configs: tuple = (None,)    # configs concatenated per split (MATH: one per subject)
    required: tuple[str, ...] = ()          # fields every record must have

    def __init__(self, **cfg):
        super().__init__(**cfg)
        self._splits: dict[str, list[dict]] | None = None
        self._shots: list[dict] | None = None

    # -- data ---------------------------------------------------------------------------------------
    def raw_splits(self) -> dict[str, list[dict]]:
        """``{"train", "test"}`` records as stored (local folder if ``data_dir`` is set, else the hub)."""
        if self.opts.data_dir:
            return loaders.load_local(self.opts.data_dir, ("train", "test"), self.required, self.label)
        hub_id = self.opts.hub_id or self.default_hub_id
        raw = loaders.load_hub(hub_id, list(self.default_hub_configs), ("train", "test"), self.label)
        for split, recs in raw.items():
            loaders.check_fields(recs, self.required, f"{hub_id} {split}")
        return raw

    def check_source(self) -> None:
        """Before any work: a local folder is read whole (an empty file or a bad line is named now, not after
        the warm start); the hub is probed."""
        if self.opts.data_dir:
            self.raw_splits()
        else:
            loaders.require_hub(self.opts.hub_id or self.default_hub_id, ("train", "test"), self.label)

    def record_id(self, record: dict, split: str, index: int) -> str:
        return f"{self.name}-{split}-{index:05d}"

    def usable(self, record: dict) -> bool:
        """Whether a record can be graded at all (MATH: its solution has a non-empty ``\\boxed{}``)."""
        return True

    def records(self, split: str, raw: list[dict]) -> list[dict]:
        """The raw records of a split with their stable ``id`` (from the position in the full split)."""
        return [{**r, "id": self.record_id(r, split, i)} for i, r in enumerate(raw)]

    def load_splits(self) -> dict[str, list[dict]]:
        """Usable records with their ``id``, subset to ``n_train``/``n_test``; cached."""
        if self._splits is None:
            raw = self.raw_splits()
            self._splits = {}
            for split, n in (("train", self.opts.n_train), ("test", self.opts.n_test)):
                recs = self.records(split, raw.get(split, []))
                dropped = [r["id"] for r in recs if not self.usable(r)]
                if dropped:
                    log.warning("%s %s: dropped %d record(s) without a gradable gold answer: %s", self.label, split,
                                len(dropped), ", ".join(dropped[:5]) + (" ..." if len(dropped) > 5 else ""))
                    recs = [r for r in recs if self.usable(r)]
                self._splits[split] = loaders.subset(recs, n, self.opts.seed, f"{self.name}/{split}")
        return self._splits

    def few_shot(self) -> list[dict]:
        """``n_shot`` train records (seeded choice, fixed across run seeds) shown as worked examples."""
        n = self.opts.n_shot
        if self._shots is None:
            if not n:
                self._shots = []
            else:
                train = self.load_splits()["train"]
                if len(train) < n:
                    raise UserError(f"{self.label}: task.n_shot={n} but the train split has {len(train)} records")
                seed = int.from_bytes(hashlib.sha256(f"{self.name}/shots/{self.opts.seed}".encode()).digest()[:8], "big")
                self._shots = [train[i] for i in sorted(random.Random(seed).sample(range(len(train)), n))]
        return self._shots
