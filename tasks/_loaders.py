"""Loading real datasets (docs/design.md §3, §7): from the Hugging Face hub, or from a local folder of JSONL.

- ``read_jsonl(path, required)`` parses a file line by line, so a bad line is reported as ``file:line``;
- ``load_local(data_dir, splits, required)`` reads ``<data_dir>/<split>.jsonl``;
- ``load_hub(dataset_id, configs, splits)`` calls ``datasets.load_dataset``, but first checks in ~3 s
  that the hub can be reached, so an offline machine gets one line naming the fix, not minutes of retries;
- ``subset(records, n, seed, tag)`` takes a deterministic seeded subset, in the records' original order.
"""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from harness.backbone.hub import hub_reachable
from harness.errors import UserError


def read_jsonl(path: Path, required: tuple[str, ...] = ()) -> list[dict]:
    """The objects of a JSONL file; blank lines are skipped; ``required`` fields must hold text. Errors name
    ``file:line``."""
    path = Path(path)
    records = []
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise UserError(f"{path}:{lineno}: not UTF-8 text (byte {e.start}); save the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise UserError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            check_fields([obj], required, f"{path}:{lineno}", numbered=False)
            records.append(obj)
    return records


def load_local(data_dir: str | Path, splits: tuple[str, ...], required: tuple[str, ...], label: str
               ) -> dict[str, list[dict]]:
    """``{split: records}`` from ``<data_dir>/<split>.jsonl``; a missing folder or file is a UserError
    that says where it looked."""
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise UserError(f"{label}: task.data_dir={data_dir} is not a folder (looked at {root.resolve()})")
    out = {}
    for split in splits:
        path = root / f"{split}.jsonl"
        if not path.is_file():
            raise UserError(f"{label}: no {split}.jsonl in task.data_dir={data_dir} (looked for {path.resolve()})")
        out[split] = read_jsonl(path, required)
        if not out[split]:
            raise UserError(f"{label}: {path.resolve()} has no records (an empty file); give task.data_dir= a folder "
                            f"whose {split}.jsonl holds one JSON object a line")
    return out


def require_hub(dataset_id: str, splits: tuple[str, ...], label: str) -> None:
    """One line naming the fix when the hub cannot be reached (checked before any work, and again at loading)."""
    if not hub_reachable():
        raise UserError(f"{label}: cannot reach the Hugging Face hub for {dataset_id}; "
                        f"point at local files with task.data_dir=PATH (a folder with {'/'.join(s + '.jsonl' for s in splits)})")


def load_hub(dataset_id: str, configs: list[str | None], splits: tuple[str, ...], label: str
             ) -> dict[str, list[dict]]:
    """``{split: records}`` from the hub, the configs of each split concatenated in the order given."""
    require_hub(dataset_id, splits, label)
    from datasets import load_dataset

    out: dict[str, list[dict]] = {s: [] for s in splits}
    for config in configs:
        for split in splits:
            try:
                ds = load_dataset(dataset_id, config, split=split)
            except Exception as e:  # network errors mid-way, a renamed dataset, a missing config
                raise UserError(f"{label}: loading {dataset_id} ({config or 'default'}, {split}) from the hub failed "
                                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                                "use task.data_dir=PATH for local files") from None
            out[split].extend(ds.to_list())
    return out


def check_fields(records: list[dict], required: tuple[str, ...], where: str, numbered: bool = True) -> None:
    """Every required field present and text (hub records are named by row, file lines by ``file:line``)."""
    for i, r in enumerate(records):
        at = f"{where} row {i}" if numbered else where
        missing = [k for k in required if k not in r]
        if missing:
            raise UserError(f"{at}: missing field(s) {', '.join(missing)}")
        wrong = [f"{k} is {type(r[k]).__name__}" for k in required if not isinstance(r[k], str)]
        if wrong:
            raise UserError(f"{at}: field(s) must be text: {', '.join(wrong)}")


def subset(records: list[dict], n: int | None, seed: int, tag: str) -> list[dict]:
    """``n`` records chosen by a seeded RNG (SHA-256 of seed and tag, not Python's hash), kept in their
    original order; all of them when ``n`` is None or not smaller than the split."""
    if n is None or n >= len(records):
        return list(records)
    if n < 0:
        raise UserError(f"{tag}: subset size must be >= 0, got {n}")
    rng = random.Random(int.from_bytes(hashlib.sha256(f"{tag}/{seed}".encode()).digest()[:8], "big"))
    keep = sorted(rng.sample(range(len(records)), n))
    return [records[i] for i in keep]
