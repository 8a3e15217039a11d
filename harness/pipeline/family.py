"""The shipped π_ref family (docs/design.md §10): K draws of one warm-start recipe, built by
``python -m harness.pipeline.family`` and committed under ``family/<name>/draw-<k>/`` (the weights as safetensors, the
tokenizer, ``manifest.json``), so that every machine starts from the same π_ref and a claim can be made for the
recipe rather than for one checkpoint (MultiBERTs, Sellam et al. 2021, arXiv 2106.16163).

A job whose warm-start recipe (``harness/warm_start.recipe``) equals a family's loads the draw that
``warm_start.draw`` names instead of training it; ``warm_start.rebuild=true`` trains it from the recipe instead.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UserError
from harness.storage.artifacts import config_hash

ROOT = Path(__file__).resolve().parents[2] / "family"
MANIFEST = "manifest.json"
FAMILY = "family.json"  # beside the draws: the recipe, the accuracy band and the calibration table
WEIGHTS = "model.safetensors"


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Draw:
    """One shipped π_ref: its folder (a ``from_pretrained`` directory) and its manifest."""

    path: Path
    manifest: dict

    @property
    def draw(self) -> int:
        return int(self.manifest["draw"])

    @property
    def sha256(self) -> str:
        return str(self.manifest["sha256"])

    @property
    def key(self) -> str:
        """Its name in artifact keys: the family, the draw and the weights' hash (what the bank is sampled from)."""
        return f"family-{self.path.parent.name}-draw{self.draw}-{self.sha256[:12]}"

    def check(self) -> None:
        """The weights are the ones the manifest names (not a Git LFS pointer, a partial checkout or an edit)."""
        weights = self.path / WEIGHTS
        if not weights.exists() or sha256(weights) != self.sha256:
            raise UserError(f"{weights} is missing or is not the file its manifest names (sha256 "
                            f"{self.sha256[:12]}…): restore it with `git checkout -- {self.path}`, or build the "
                            f"draw here with warm_start.rebuild=true")


def draws(root: Path = ROOT) -> list[Draw]:
    """Every draw under ``root`` (a folder of families, or one family's folder), by family and draw."""
    found = sorted(root.glob(f"*/draw-*/{MANIFEST}")) + sorted(root.glob(f"draw-*/{MANIFEST}"))
    out = [Draw(p.parent, _manifest(p)) for p in found]
    return sorted(out, key=lambda d: (d.path.parent.name, d.draw))


def _manifest(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e.msg}, line {e.lineno}): restore it with `git checkout -- "
                        f"{path}`, or rebuild its draw with harness.build_family") from None


def recipe_hash(recipe: dict) -> str:
    return config_hash(recipe)


def find(recipe: dict, draw: int, root: Path = ROOT) -> Draw | None:
    """The shipped draw ``draw`` of the family made by ``recipe``, its weights checked; None if there is none."""
    want = recipe_hash(recipe)
    for d in draws(root):
        if d.manifest["recipe_hash"] == want and d.draw == draw:
            d.check()
            return d
    return None


def members(recipe: dict, root: Path = ROOT) -> list[Draw]:
    """Every shipped draw of ``recipe``'s family."""
    want = recipe_hash(recipe)
    return [d for d in draws(root) if d.manifest["recipe_hash"] == want]


def difference(recipe: dict, root: Path = ROOT) -> str:
    """Why no shipped family matches ``recipe``: the keys in which the nearest one differs, in one phrase."""
    best = None
    for d in draws(root):
        diff = _diff(d.manifest["recipe"], recipe)
        if best is None or len(diff) < len(best[1]):
            best = (d.path.parent.name, diff)
    if best is None:
        return "no family is shipped"
    name, diff = best
    shown = ", ".join(f"{k}={v!r} (family: {f!r})" for k, f, v in diff[:4]) + (" …" if len(diff) > 4 else "")
    return f"the nearest family, {name}, differs in {shown}" if diff else f"family {name} has no such draw"


def _diff(a, b, prefix: str = "") -> list[tuple[str, object, object]]:
    """(dotted key, value in a, value in b) for every leaf where two nested dicts differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str)
                for d in _diff(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [(prefix.rstrip("."), a, b)]
