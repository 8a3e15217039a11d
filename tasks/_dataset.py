"""``DatasetTask``: a task over a real dataset (GSM8K, MATH) loaded from the hub or a local folder.

Subclasses set the dataset's hub id/configs, its required fields and the record → question/solution
mapping. Options shared by every dataset task (documented in sweeps/task/*.yaml): ``data_dir``,
``hub_id``, ``n_train``/``n_test`` with ``seed`` (deterministic subsets), ``prompt_style``, ``n_shot``.
"""
from __future__ import annotations

import hashlib
import logging
import random

from harness.errors import UserError
from tasks import _loaders as loaders
from tasks._base import Task

log = logging.getLogger("dqo_bench")


class DatasetTask(Task):
    label: str = "dataset"                  # in error messages
    default_hub_id: str = ""
    default_hub_configs: tuple = (None,)    # configs concatenated per split (MATH: one per subject)
    required: tuple[str, ...] = ()          # fields every record must have

    def __init__(self, *, data_dir: str | None = None, hub_id: str | None = None, n_train: int | None = None,
                 n_test: int | None = None, seed: int = 0, prompt_style: str = "auto", n_shot: int = 0, **extra):
        for key, n in (("n_train", n_train), ("n_test", n_test)):
            if n is not None and n < 0:
                raise UserError(f"{self.label}: task.{key} must be >= 0 or null, got {n}")
        if n_shot < 0:
            raise UserError(f"{self.label}: task.n_shot must be >= 0, got {n_shot}")
        super().__init__(data_dir=data_dir, hub_id=hub_id, n_train=n_train, n_test=n_test, seed=seed,
                         prompt_style=prompt_style, n_shot=n_shot, **extra)
        self._splits: dict[str, list[dict]] | None = None
        self._shots: list[dict] | None = None

    # -- data ---------------------------------------------------------------------------------------
    def raw_splits(self) -> dict[str, list[dict]]:
        """``{"train", "test"}`` records as stored (local folder if ``data_dir`` is set, else the hub)."""
        if self.cfg["data_dir"]:
            return loaders.load_local(self.cfg["data_dir"], ("train", "test"), self.required, self.label)
        hub_id = self.cfg["hub_id"] or self.default_hub_id
        raw = loaders.load_hub(hub_id, list(self.default_hub_configs), ("train", "test"), self.label)
        for split, recs in raw.items():
            loaders.check_fields(recs, self.required, f"{hub_id} {split}")
        return raw

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
            for split, n in (("train", self.cfg["n_train"]), ("test", self.cfg["n_test"])):
                recs = self.records(split, raw.get(split, []))
                dropped = [r["id"] for r in recs if not self.usable(r)]
                if dropped:
                    log.warning("%s %s: dropped %d record(s) without a gradable gold answer: %s", self.label, split,
                                len(dropped), ", ".join(dropped[:5]) + (" ..." if len(dropped) > 5 else ""))
                    recs = [r for r in recs if self.usable(r)]
                self._splits[split] = loaders.subset(recs, n, self.cfg["seed"], f"{self.name}/{split}")
        return self._splits

    def few_shot(self) -> list[dict]:
        """``n_shot`` train records (seeded choice, fixed across run seeds) shown as worked examples."""
        n = self.cfg["n_shot"]
        if self._shots is None:
            if not n:
                self._shots = []
            else:
                train = self.load_splits()["train"]
                if len(train) < n:
                    raise UserError(f"{self.label}: task.n_shot={n} but the train split has {len(train)} records")
                seed = int.from_bytes(hashlib.sha256(f"{self.name}/shots/{self.cfg['seed']}".encode()).digest()[:8], "big")
                self._shots = [train[i] for i in sorted(random.Random(seed).sample(range(len(train)), n))]
        return self._shots
