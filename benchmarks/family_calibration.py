"""Calibrate the π_ref family (docs/design.md §10): the figures that say whether a warm-start recipe makes a testbed
that can tell algorithms apart. For the shipped family (or ``out=DIR`` of ``harness.build_family``), per draw: greedy
test accuracy, pass@8 and the bank's share of mixed prompts (from the manifests); then, for one draw rebuilt under a
change that should not matter, the change in greedy accuracy:

- float order: ``train.micro_batch_size=16`` instead of the warm start's 32 (the same maths summed in another order);
- plateau: 50% more steps of the same recipe (fresh demonstrations for every step).

    python -m benchmarks.family_calibration [draw=0] [out=family/arith-tiny] [checks=order,plateau]
                                            [checks_dir=DIR] [KEY=VALUE ...]

Each check trains a π_ref from scratch (minutes each) into ``checks_dir/<check>/`` (a temporary folder by default);
one already there is read, not rebuilt, so the checks can be built apart (``python -m harness.build_family draws=0
out=DIR/order train.micro_batch_size=16``). KEY=VALUE are the family's own overrides, if any.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from harness.build_family import PASS_K, build_draw, family_name
from harness.config.compose import compose
from harness.pipeline import family

CHECKS = {"order": ["train.micro_batch_size=16"], "plateau": None}  # plateau: the steps and demonstrations × 1.5


def check_overrides(check: str, cfg) -> list[str]:
    if CHECKS[check] is not None:
        return CHECKS[check]
    steps = int(1.5 * int(cfg.warm_start.steps))  # fresh demonstrations for every step, as the recipe has
    return [f"model.warm_start_steps={steps}", f"task.n_demo={steps * int(cfg.warm_start.batch_size)}"]


def main(argv: list[str]) -> int:
    draw, out, checks, overrides, checks_dir = 0, None, ["order", "plateau"], [], None
    for arg in argv:
        key, _, value = arg.partition("=")
        if key == "draw":
            draw = int(value)
        elif key == "out":
            out = Path(value)
        elif key == "checks":
            checks = value.split(",")
        elif key == "checks_dir":
            checks_dir = Path(value)
        else:
            overrides.append(arg)
    base = compose([*overrides, f"warm_start.draw={draw}", "warm_start.rebuild=true"])
    root = out or family.ROOT / family_name(base)
    summary = json.loads((root / family.FAMILY).read_text())
    print(f"family {root}: recipe {summary['recipe_hash'][:12]}")
    print(f"| draw | greedy | pass@{PASS_K} | pass@{PASS_K} − greedy | bank correct | bank prompts mixed |")
    print("|---:|---:|---:|---:|---:|---:|")
    for d, f in sorted(summary["draws"].items(), key=lambda kv: int(kv[0])):
        print(f"| {d} | {100 * f['greedy']:.1f} | {100 * f[f'pass_at_{PASS_K}']:.1f} | "
              f"{100 * (f[f'pass_at_{PASS_K}'] - f['greedy']):+.1f} | {100 * f['bank_frac_correct']:.1f} | "
              f"{100 * f['bank_frac_prompts_mixed']:.1f} |")
    print(f"mean {100 * summary['greedy_mean']:.1f}, SD {100 * summary['greedy_sd']:.2f} over {len(summary['draws'])} "
          f"draws; band [{100 * summary['band'][0]:.1f}, {100 * summary['band'][1]:.1f}]", flush=True)
    shipped = summary["draws"][str(draw)]["greedy"]
    print(f"\n| draw {draw} rebuilt with | greedy | Δ vs shipped | wall s |\n|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for check in checks:
            extra = check_overrides(check, base)
            path = Path(checks_dir or tmp) / check / f"draw-{draw}"
            if (path / family.MANIFEST).exists():
                m = json.loads((path / family.MANIFEST).read_text())
            else:
                cfg = compose([*overrides, *extra, f"warm_start.draw={draw}", "warm_start.rebuild=true"])
                m = build_draw(cfg, path, "python -m benchmarks.family_calibration " + " ".join(argv))
            g = m["figures"]["greedy"]
            print(f"| `{' '.join(extra)}` | {100 * g:.1f} | {100 * (g - shipped):+.1f} | {m['cost']['wall_s']:.0f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
