"""Leaderboard from run records (DESIGN.md §5): ``runs.csv`` (one row per run) and
``leaderboard.csv`` (one row per task × model × algo, means over seeds).

    python -m harness.report [results_dir=results]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from harness.records import atomic_write

RUN_COLUMNS = ["run_id", "task", "model", "algo", "variant", "variant_id", "seed", "status", "accuracy", "accuracy_sampled", "n_eval",
               "wall_s", "gen_tokens", "train_tokens", "flops", "peak_mem_mb", "data_wall_s", "data_gen_tokens",
               "data_train_tokens", "data_flops", "n_train_examples", "final_loss", "error"]
SUMS = ["wall_s", "gen_tokens", "train_tokens", "flops", "data_wall_s", "data_gen_tokens", "data_train_tokens",
        "data_flops"]
BOARD_COLUMNS = ["task", "model", "algo", "variant", "variant_id", "n_seeds", "accuracy", "accuracy_std", "accuracy_sampled", "n_eval",
                 *SUMS[:4], "peak_mem_mb", *SUMS[4:], "status"]


def collect_runs(results_dir: str | Path) -> pd.DataFrame:
    rows = []
    for p in sorted(Path(results_dir, "runs").glob("*/metrics.json")):
        try:
            rows.append(json.loads(p.read_text()))
        except (OSError, json.JSONDecodeError):
            continue  # a record being written right now
    df = pd.DataFrame(rows)
    return df.reindex(columns=RUN_COLUMNS + [c for c in df.columns if c not in RUN_COLUMNS])


def leaderboard(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (task, model, algo, variant): mean accuracy over the seeds' finished runs; costs are means per
    run. Runs of one algorithm with different hyper-parameters are different variants, never averaged."""
    out = []
    runs = runs.assign(variant=runs.variant.fillna(""), variant_id=runs.variant_id.fillna(""))
    for (task, model, algo, vid), g in runs.groupby(["task", "model", "algo", "variant_id"], sort=True):
        ok = g[g.status == "ok"]
        n_failed = int((g.status != "ok").sum())
        row = {"task": task, "model": model, "algo": algo, "variant": g.variant.iloc[-1], "variant_id": vid,
               "n_seeds": int(ok.seed.nunique()),
               "status": "ok" if not n_failed else ("failed" if ok.empty else f"partial ({n_failed} failed)")}
        if not ok.empty:
            row.update(accuracy=ok.accuracy.mean(), accuracy_std=ok.accuracy.std(ddof=1) if len(ok) > 1 else 0.0,
                       accuracy_sampled=ok.accuracy_sampled.mean(), n_eval=int(ok.n_eval.max()),
                       peak_mem_mb=ok.peak_mem_mb.max(), **{c: ok[c].mean() for c in SUMS})
        out.append(row)
    board = pd.DataFrame(out).reindex(columns=BOARD_COLUMNS)
    if board.empty:
        return board
    # The reference row first in each (task, model) block, then the best accuracy.
    board["_ref"] = board.algo != "reference"
    board = board.sort_values(["task", "model", "_ref", "accuracy", "variant"],
                              ascending=[True, True, True, False, True], na_position="last")
    return board.drop(columns="_ref").reset_index(drop=True)


def write_reports(results_dir: str | Path) -> dict[str, Path]:
    results_dir = Path(results_dir)
    runs = collect_runs(results_dir)
    paths = {"runs": results_dir / "runs.csv", "leaderboard": results_dir / "leaderboard.csv"}
    if runs.empty:
        return {}
    atomic_write(paths["runs"], runs.to_csv(index=False))
    atomic_write(paths["leaderboard"], leaderboard(runs).to_csv(index=False, float_format="%.6g"))
    return paths


def main(argv: list[str]) -> int:
    results_dir = "results"
    for arg in argv:
        key, _, value = arg.partition("=")
        if key != "results_dir" or not value:
            print(f"error: unknown argument {arg!r}; usage: python -m harness.report [results_dir=PATH]",
                  file=sys.stderr)
            return 2
        results_dir = value
    paths = write_reports(results_dir)
    if not paths:
        print(f"error: no run records under {results_dir}/runs; run `python -m harness.run` first", file=sys.stderr)
        return 1
    print(pd.read_csv(paths["leaderboard"]).to_string(index=False))
    for p in paths.values():
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
