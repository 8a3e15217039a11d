"""Content-addressed artifacts (docs/design.md §1): warm start, rollout bank, process values.

An artifact's key is a hash of exactly the config that determines it, so every job of a sweep that
needs the same bank finds the one an earlier job built. Artifacts are built in a temporary folder and
renamed into place when complete; a lock keeps two concurrent jobs from building the same one.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

from filelock import FileLock

from harness.distributed import ranks

log = logging.getLogger(__name__)

META = "meta.json"


def config_hash(spec) -> str:
    """Stable hash of a JSON-able spec (key order does not matter)."""
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class ArtifactStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, stage: str, spec: dict) -> Path:
        return self.root / f"{stage}-{config_hash({'stage': stage, **spec})[:12]}"

    def checkpoint_dir(self, stage: str, spec: dict) -> Path:
        """Where a long build (the warm start) keeps its resumable checkpoint; removed once the artifact is built."""
        path = self.path(stage, spec)
        return path.with_name(path.name + ".ckpt")

    def clean_stale(self) -> list[Path]:
        """Remove the temporary folders of builds that were killed (no job holds their lock); returns them."""
        removed = []
        for tmp in sorted(self.root.glob("*.tmp")) if self.root.is_dir() else []:
            lock = FileLock(str(tmp.with_suffix("")) + ".lock")
            try:
                with lock.acquire(timeout=0):
                    if tmp.exists():
                        shutil.rmtree(tmp, ignore_errors=True)
                        removed.append(tmp)
            except TimeoutError:  # a build in progress (filelock.Timeout is a TimeoutError)
                continue
        if removed:
            log.info("removed %d unfinished artifact folder(s) of killed builds: %s", len(removed),
                     ", ".join(p.name for p in removed))
        return removed

    def get_or_build(self, stage: str, spec: dict, build: Callable[[Path], dict]) -> tuple[Path, dict, bool]:
        """``(path, meta, hit)``. On a miss ``build(tmp_dir)`` fills the folder and returns its meta
        (cost, counts); the spec and the build's wall time are added to it.

        With several processes (``harness/distributed/ranks.py``) every one runs ``build`` (its generation and training
        are split over them), rank 0 alone in the real folder and under the lock, the others in a scratch
        folder they delete; rank 0 decides hit or miss and the others read what it wrote."""
        path = self.path(stage, spec)
        if ranks.world_size() == 1:
            return self._get_or_build(path, stage, spec, build)
        if ranks.main_process():
            self.root.mkdir(parents=True, exist_ok=True)
            with FileLock(str(path) + ".lock"):  # another job building it: the other ranks wait in broadcast
                hit = ranks.broadcast((path / META).exists())
                result = self._get_or_build(path, stage, spec, build, locked=True)
        else:
            hit = ranks.broadcast(None)
            if not hit:
                with tempfile.TemporaryDirectory(prefix=f"{stage}-rank{ranks.rank()}-") as scratch:
                    build(Path(scratch))
        ranks.barrier()  # rank 0 has renamed the artifact into place
        return result if ranks.main_process() else (path, json.loads((path / META).read_text()), hit)

    def _get_or_build(self, path: Path, stage: str, spec: dict, build, locked: bool = False):
        self.root.mkdir(parents=True, exist_ok=True)
        with contextlib.nullcontext() if locked else FileLock(str(path) + ".lock"):
            if (path / META).exists():
                return path, json.loads((path / META).read_text()), True
            tmp = path.with_name(path.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            t0 = time.perf_counter()
            try:
                meta = dict(build(tmp) or {})
                meta.setdefault("wall_s", time.perf_counter() - t0)
                meta["stage"], meta["spec"] = stage, spec
                (tmp / META).write_text(json.dumps(meta, indent=1, default=str))
            except BaseException:  # a failed build (a full disk, an error) leaves nothing half-written behind
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            shutil.rmtree(path, ignore_errors=True)
            tmp.rename(path)
            shutil.rmtree(path.with_name(path.name + ".ckpt"), ignore_errors=True)  # its build's checkpoint
            return path, meta, False
