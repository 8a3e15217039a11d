"""Run records (docs/design.md §1): ``results/runs/<run-id>/{config.yaml, metrics.json, samples.jsonl, cost.json}``.

Files are written atomically (temporary file, then rename) so a killed job never leaves a record
that looks complete. A record is complete when ``metrics.json`` says ``status: ok``. Under several
processes only rank 0 writes (the others hold the same values).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from harness.distributed.ranks import main_process


def atomic_write(path: Path, text: str) -> None:
    if not main_process():
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:  # a full disk: no half-written temporary left behind
        tmp.unlink(missing_ok=True)
        raise


def disk_full(err: BaseException, where: str | Path) -> bool:
    """Whether ``err`` (or what caused it) is a full disk: ENOSPC/EDQUOT, the message libraries that do not
    raise OSError give (safetensors, torch.save), or less than 1 MiB left under ``where``."""
    import errno
    import shutil

    e: BaseException | None = err
    while e is not None:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(e) or "os error 28" in str(e):
            return True
        e = e.__cause__ or e.__context__
    try:
        return shutil.disk_usage(where).free < 2**20
    except OSError:
        return False


def write_json(path: Path, obj) -> None:
    atomic_write(path, json.dumps(obj, indent=1, default=str) + "\n")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write(path, "".join(json.dumps(r, default=str) + "\n" for r in rows))


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def run_id(task: str, model: str, algo: str, seed: int, digest: str) -> str:
    """Readable and unique: task-model-algo-seed-hash (the hash covers the whole config that matters)."""
    model = re.sub(r"[^A-Za-z0-9.]+", "_", model).strip("_")
    return f"{task}-{model}-{algo}-s{seed}-{digest[:8]}"


def is_complete(run_dir: Path) -> bool:
    p = Path(run_dir) / "metrics.json"
    if not p.exists():
        return False
    try:
        return read_json(p).get("status") == "ok"
    except (json.JSONDecodeError, OSError):
        return False
