"""Build the π_ref family (docs/design.md §10): ``python -m harness.build_family [draws=0,1,2,3,4] [out=DIR]
[KEY=VALUE ...]``. The overrides are those of ``harness.run``; each draw is the warm start of that config with
``warm_start.draw`` set, measured (greedy accuracy and pass@8 on the test split, the default bank's share of mixed
prompts) and written to ``DIR/draw-<k>/`` with its manifest: the command, the code commit, the SHA-256 of the
weights, the recipe, the cost and the figures. ``DIR/family.json`` then holds the family's recipe, every draw's
figures and the accuracy band that a rebuilt draw is checked against (``tests/test_family.py``).

    python -m harness.build_family draws=0,1,2,3,4                  # the shipped family, family/arith-tiny
    python -m harness.build_family draws=0 out=/tmp/fam warm_start.steps=600
"""
from __future__ import annotations

import datetime
import json
import logging
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from harness.backbone.models import load_model, load_tokenizer
from harness.backbone.training import make_accelerator
from harness.config.compose import compose
from harness.config.schema import Eval
from harness.errors import UserError
from harness.generation.engines import make_engine
from harness.pipeline import family
from harness.pipeline.bank import build_bank
from harness.pipeline.evaluation import evaluate
from harness.pipeline.stages import load_task, task_splits
from harness.pipeline.warm_start import build_warm_start, recipe

log = logging.getLogger("dqo_bench")
PASS_K = 8  # pass@8 at T = 1 on the test split: how much room a draw leaves above its greedy accuracy
BAND_MARGIN = 0.02  # a rebuilt draw is within the family's band if within 2 points of its range


def family_name(cfg) -> str:
    return f"{cfg.task['name']}-{cfg.model.name}"


def git_commit() -> str:
    """The code's commit, with ``+dirty`` when the work tree has changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def measure(cfg, task, path: Path, splits: dict, rl_prompts: list[dict], seed: int = 0) -> dict:
    """A π_ref's figures: greedy accuracy (overall and per chain length) and pass@8 at T = 1 on the test split, and
    the default bank's (``bank.*``) share of correct samples and of mixed prompts."""
    tok = load_tokenizer(str(path))
    task.bind_tokenizer(tok)
    model = load_model(str(path)).eval()
    engine = make_engine("hf", model, tok, batch_size=int(cfg.generation.batch_size))
    ev = Eval(k=PASS_K, temperature=1.0, top_p=1.0, n_sampled=None, max_new_tokens=cfg.eval.max_new_tokens)
    metrics, _, _ = evaluate(engine, task, splits["test"], ev, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        bank = build_bank(engine, task, rl_prompts[: int(cfg.bank.n_prompts)], cfg.bank, seed=seed, out_dir=Path(tmp))
    return {"greedy": metrics["accuracy"], f"pass_at_{PASS_K}": metrics[f"pass_at_{PASS_K}"],
            "sampled": metrics["accuracy_sampled"], "accuracy_by_length": metrics["accuracy_by_length"],
            "n_test": metrics["n_eval"], "bank_frac_correct": bank["frac_correct"],
            "bank_frac_prompts_mixed": bank["frac_prompts_mixed"]}


def build_draw(cfg, out: Path, command: str) -> dict:
    """Train π_ref for ``cfg.warm_start.draw`` into ``out`` (a ``from_pretrained`` folder), measure it and write its
    manifest; returns the manifest."""
    task = load_task(cfg.task)[0]
    splits = task.load_splits()
    demo, rl_prompts, _ = task_splits(task, splits, task.opts.n_demo, task.opts.n_val)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cost = build_warm_start(cfg.model, cfg.warm_start, cfg.train, task, demo(), make_accelerator(cfg.train.precision),
                            tmp)
    cost["wall_s"] = time.perf_counter() - t0
    figures = measure(cfg, task, tmp, splits, rl_prompts)
    rec = recipe(cfg, task)
    manifest = {
        "family": out.parent.name, "draw": int(cfg.warm_start.draw), "sha256": family.sha256(tmp / family.WEIGHTS),
        "recipe_hash": family.recipe_hash(rec), "recipe": rec, "command": command, "commit": git_commit(),
        "built": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor()
                    or platform.machine(), "threads": torch.get_num_threads()},
        "cost": cost, "figures": figures,
    }
    (tmp / family.MANIFEST).write_text(json.dumps(manifest, indent=1, default=str) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return manifest


def summarise(root: Path) -> dict:
    """``family.json``: the recipe, each draw's figures, their spread and the band a rebuilt draw must fall in."""
    members = [family.Draw(p.parent, json.loads(p.read_text())) for p in sorted(root.glob(f"draw-*/{family.MANIFEST}"))]
    if not members:
        return {}
    hashes = {d.manifest["recipe_hash"] for d in members}
    if len(hashes) > 1:
        raise UserError(f"{root} holds draws of {len(hashes)} different recipes; give each recipe its own out=")
    greedy = np.array([d.manifest["figures"]["greedy"] for d in members])
    summary = {
        "family": root.name, "recipe_hash": hashes.pop(), "recipe": members[0].manifest["recipe"],
        "draws": {d.draw: {"sha256": d.sha256, **{k: v for k, v in d.manifest["figures"].items()}} for d in members},
        "greedy_mean": float(greedy.mean()), "greedy_sd": float(greedy.std(ddof=1)) if len(greedy) > 1 else 0.0,
        "band": [float(greedy.min() - BAND_MARGIN), float(greedy.max() + BAND_MARGIN)],
    }
    (root / family.FAMILY).write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def parse(argv: list[str]) -> tuple[list[int], Path | None, list[str]]:
    draws, out, overrides = [0, 1, 2, 3, 4], None, []
    for arg in argv:
        key, _, value = arg.partition("=")
        if key == "draws":
            try:
                draws = [int(x) for x in value.split(",")]
            except ValueError:
                raise UserError(f"draws={value!r}: give draw numbers separated by commas, e.g. draws=0,1,2") from None
            if any(d < 0 for d in draws):
                raise UserError(f"draws={value!r}: draw numbers are >= 0")
        elif key == "out":
            out = Path(value)
        elif key in ("warm_start.draw", "warm_start.rebuild"):
            raise UserError(f"{key} is set by this command for each draw; use draws=")
        else:
            overrides.append(arg)
    return draws, out, overrides


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        draws, out, overrides = parse(argv)
        cfgs = {d: compose([*overrides, f"warm_start.draw={d}", "warm_start.rebuild=true"]) for d in draws}
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    first = cfgs[draws[0]]
    if first.model.name_or_path or not int(first.warm_start.steps):
        print("error: a family is made by training a warm start: use model=tiny (a hub model with "
              "warm_start.steps=0 is used as it is)", file=sys.stderr)
        return 2
    root = out or family.ROOT / family_name(first)
    command = "python -m harness.build_family " + " ".join(argv)
    for d in draws:
        log.info("family %s: building draw %d", root, d)
        m = build_draw(cfgs[d], root / f"draw-{d}", command)
        f = m["figures"]
        log.info("draw %d: greedy %.1f, pass@%d %.1f, bank mixed %.1f%%, %.0f s, sha256 %s…", d, 100 * f["greedy"],
                 PASS_K, 100 * f[f"pass_at_{PASS_K}"], 100 * f["bank_frac_prompts_mixed"], m["cost"]["wall_s"],
                 m["sha256"][:12])
    s = summarise(root)
    print(f"family {root}: greedy {100 * s['greedy_mean']:.1f} ± {100 * s['greedy_sd']:.1f} (SD over "
          f"{len(s['draws'])} draws), band [{100 * s['band'][0]:.1f}, {100 * s['band'][1]:.1f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
