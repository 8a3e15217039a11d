"""Leaderboard from run records (docs/design.md §5): ``runs.csv`` (one row per run), ``leaderboard.csv``
(one row per task × model × algo × variant: means over seeds, a 95% bootstrap CI over seeds and test
items, and a paired comparison with a baseline on the same test items), ``leaderboard.md`` (the same
for a person) and ``accuracy_vs_cost.png``.

    python -m harness.report [results_dir=results] [baseline=reference] [pairs=false]

``pairs=true`` adds ``pairwise.csv``: every algorithm against every other, Holm-adjusted (``harness/pairwise.py``).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from harness import curve
from harness.records import atomic_write
from harness.registry import REFERENCE
from harness.report_views import markdown, plot
from harness.stats import bootstrap_ci, n_boot_for, paired_bootstrap

RUN_COLUMNS = ["run_id", "task", "model", "algo", "variant", "variant_id", "seed", "status", "accuracy",
               "accuracy_sampled", "n_eval", "wall_s", "device_s", "gen_tokens", "train_tokens", "flops", "mfu",
               "peak_mem_mb", "data_wall_s", "data_device_s", "data_gen_tokens", "data_train_tokens", "data_flops",
               "post_ref_device_s", "train_gen_tokens", "n_train_examples", "examples_seen", "final_loss", "error"]
#: cost columns averaged over a row's runs
MEANS = ["wall_s", "device_s", "gen_tokens", "train_tokens", "flops", "mfu", "data_wall_s", "data_device_s",
         "data_gen_tokens", "data_train_tokens", "data_flops", "post_ref_device_s", "train_gen_tokens",
         "n_train_examples", "examples_seen"]
BOARD_COLUMNS = ["task", "model", "algo", "variant", "variant_id", "chosen", "n_seeds", "accuracy", "accuracy_std",
                 "accuracy_ci_lo", "accuracy_ci_hi", "baseline", "delta", "delta_ci_lo", "delta_ci_hi", "p_value",
                 "p_holm", "gain_per_device_hour", "common_flops", "val_acc_at_common_flops", "accuracy_sampled", "n_eval", *MEANS[:6], "peak_mem_mb", *MEANS[6:], "status"]


def collect_runs(results_dir: str | Path) -> pd.DataFrame:
    rows = []
    for p in sorted(Path(results_dir, "runs").glob("*/metrics.json")):
        try:
            rows.append(json.loads(p.read_text()))
        except (OSError, json.JSONDecodeError):
            continue  # a record being written right now
    df = pd.json_normalize(rows)  # nested records (prompt, provenance) become dotted columns
    return df.reindex(columns=RUN_COLUMNS + [c for c in df.columns if c not in RUN_COLUMNS])


def greedy_scores(results_dir: str | Path, run_ids) -> dict[str, pd.Series]:
    """Per run: greedy correctness per test item (from ``samples.jsonl``), indexed by prompt id."""
    out = {}
    for rid in run_ids:
        p = Path(results_dir, "runs", str(rid), "samples.jsonl")
        if p.exists() and p.stat().st_size:
            df = pd.read_json(p, lines=True)
            g = df[df.kind == "greedy"]
            out[rid] = pd.Series(g.correct.to_numpy(dtype=float), index=g.prompt_id.to_numpy())
    return out


def run_curves(results_dir: str | Path, run_ids) -> dict[str, pd.DataFrame]:
    """Per run with a learning curve (``eval.every``): its points (``harness/curve.py``)."""
    out = {}
    for rid in run_ids:
        p = Path(results_dir, "runs", str(rid), "train_history.jsonl")
        if p.exists() and p.stat().st_size:
            pts = curve.points(pd.read_json(p, lines=True))
            if len(pts):
                out[rid] = pts
    return out


def score_matrix(run_ids, scores) -> pd.DataFrame:
    """[n_seeds, n_items] greedy correctness of these runs, on the items all of them were graded on."""
    cols = [scores[r] for r in run_ids if r in scores]
    return pd.concat(cols, axis=1, join="inner").T if cols else pd.DataFrame()


def leaderboard(runs: pd.DataFrame, scores: dict[str, pd.Series] | None = None,
                baseline: str = REFERENCE, tuned: dict | None = None,
                curves: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Per (task, model, algo, variant): mean accuracy over the seeds' finished runs; costs are means per
    run. Runs of one algorithm with different hyper-parameters are different variants, never averaged.
    With per-item ``scores``: a 95% CI (bootstrap over seeds and items) and the paired difference from
    the matching ``baseline`` row (``matching_row``). ``tuned`` (``tuned.json``, by variant id) says which rows
    ``harness.tune`` selected: ``chosen`` is its note there, else ``defaults`` (or ``set by hand``: overrides).
    ``curves`` (run id → learning curve): validation accuracy at the largest compute every row with curves
    reached (``common_flops``), mean over the row's seeds."""
    scores, tuned, curves = scores or {}, tuned or {}, curves or {}
    if "eval_split" in runs:  # validation runs (tuning trials) are in runs.csv and tune.csv, not on the leaderboard
        runs = runs[runs.eval_split.fillna("test") != "val"]
    out, mats = [], {}
    runs = runs.assign(variant=runs.variant.astype(object).fillna(""),
                       variant_id=runs.variant_id.astype(object).fillna(""))
    for (task, model, algo, vid), g in runs.groupby(["task", "model", "algo", "variant_id"], sort=True):
        ok = g[g.status == "ok"]
        n_failed = int((g.status != "ok").sum())
        # Runs of one variant_id compute the same thing; their labels differ when a run set explicitly what is
        # (now) a default, e.g. a tuning run's `algo.lr=` that became the yaml's value: show the shortest.
        row = {"task": task, "model": model, "algo": algo, "variant": min(g.variant, key=lambda v: (len(v), v)),
               "variant_id": vid,
               "chosen": "" if algo == REFERENCE else tuned.get(vid, {}).get("chosen") or chosen_by(g.variant),
               "n_seeds": int(ok.seed.nunique()),
               "status": "ok" if not n_failed else ("failed" if ok.empty else f"partial ({n_failed} failed)")}
        if not ok.empty:
            row.update(accuracy=ok.accuracy.mean(), accuracy_std=ok.accuracy.std(ddof=1) if len(ok) > 1 else 0.0,
                       accuracy_sampled=ok.accuracy_sampled.mean(), n_eval=int(ok.n_eval.max()),
                       peak_mem_mb=ok.peak_mem_mb.max(),
                       **{c: pd.to_numeric(ok[c], errors="coerce").mean() for c in MEANS if c in ok})
            row["_curves"] = [curves[r] for r in ok.run_id if r in curves]
            mat = score_matrix(ok.run_id, scores)
            if not mat.empty:
                row["accuracy_ci_lo"], row["accuracy_ci_hi"] = bootstrap_ci(mat.to_numpy())
                mats[len(out)] = mat
        out.append(row)
    board = pd.DataFrame(out).reindex(columns=[*BOARD_COLUMNS, "_curves"])
    if board.empty:
        return board.drop(columns="_curves")
    _at_common_compute(board)
    board = board.drop(columns="_curves")
    _paired_with_baseline(board, mats, baseline)
    holm(board)
    _gain_per_device_hour(board)
    # The reference row first in each (task, model) block, then the best accuracy.
    board["_ref"] = board.algo != REFERENCE
    board = board.sort_values(["task", "model", "_ref", "accuracy", "variant"],
                              ascending=[True, True, True, False, True], na_position="last")
    return board.drop(columns="_ref").reset_index(drop=True)


def chosen_by(labels: pd.Series) -> str:
    """``defaults`` unless the variant sets one of the algorithm's own options (``algo.lr=``): then ``set by hand``.
    Overrides shared by the whole comparison (``eval.every=``, ``train.steps=``, ``task.data_dir=``) choose no
    hyper-parameter of the algorithm."""
    label = min(labels, key=lambda v: (len(v), v))
    return "set by hand" if any(o.lstrip("+~").startswith("algo.") for o in label.split()) else "defaults"


def matching_row(block: pd.DataFrame, i, algo: str):
    """The row of ``algo`` that row ``i`` is read against: among that algorithm's variants whose overrides
    are all also overrides of row ``i`` (so `task.data_dir=...` or a shared `train.steps=` match), the
    one sharing most of them, then the one with most seeds; None if there is none."""
    mine = set(str(block.variant[i]).split())
    best, key = None, None
    for j in block.index[(block.algo == algo) & (block.index != i)]:
        theirs = set(str(block.variant[j]).split())
        if theirs <= mine and (key is None or (len(theirs), block.n_seeds[j]) > key):
            best, key = j, (len(theirs), block.n_seeds[j])
    return best


def _paired_with_baseline(board: pd.DataFrame, mats: dict[int, pd.DataFrame], baseline: str) -> None:
    """Fill ``baseline, delta, delta_ci_*, p_value``: each row against its matching baseline row
    (``matching_row``) on the test items both were graded on."""
    board["baseline"] = board["baseline"].astype(object)
    for _, block in board.groupby(["task", "model"]):
        n_boot = n_boot_for(len(block) - 1)  # p-values fine enough for Holm over the block's comparisons
        for i in block.index:
            b = matching_row(block, i, baseline)
            if b is None or i not in mats or b not in mats:
                continue
            a_mat, b_mat = mats[i].align(mats[b], join="inner", axis=1)
            if a_mat.shape[1] == 0:
                continue
            res = paired_bootstrap(a_mat.to_numpy(), b_mat.to_numpy(), n_boot=n_boot)
            board.loc[i, "baseline"] = baseline
            board.loc[i, ["delta", "delta_ci_lo", "delta_ci_hi", "p_value"]] = [
                res["delta"], res["delta_lo"], res["delta_hi"], res["p"]]


def _at_common_compute(board: pd.DataFrame) -> None:
    """``common_flops``: per (task, model) table, the largest post-π_ref compute every row with a learning curve
    reached; ``val_acc_at_common_flops``: each such row's validation accuracy there, mean over its seeds."""
    for _, block in board.groupby(["task", "model"]):
        rows = {i: block._curves[i] for i in block.index if isinstance(block._curves[i], list) and block._curves[i]}
        budget = curve.common_budget(rows)
        for i, cs in rows.items():
            board.loc[i, "common_flops"] = budget
            board.loc[i, "val_acc_at_common_flops"] = float(np.nanmean([curve.at_budget(c, budget) for c in cs]))


def holm(board: pd.DataFrame) -> None:
    """``p_holm``: each block's p-values against the baseline adjusted for the block's number of comparisons
    (Holm 1979, through statsmodels), so a row that beats the baseline by luck among many does not read as a
    finding (oxRL, arXiv 2603.19335: none of 20 DPO variants beats DPO once corrected)."""
    from statsmodels.stats.multitest import multipletests

    board["p_holm"] = float("nan")
    for _, block in board.groupby(["task", "model"]):
        p = block.p_value.dropna()
        if len(p):
            board.loc[p.index, "p_holm"] = multipletests(p.to_numpy(dtype=float), method="holm")[1]


def _gain_per_device_hour(board: pd.DataFrame) -> None:
    """Accuracy points gained over the matching `reference` row per device-hour spent after π_ref
    existed (the run's own stages plus its bank and process values)."""
    for _, block in board.groupby(["task", "model"]):
        for i in block.index:
            ref = matching_row(block, i, REFERENCE)
            hours = block.post_ref_device_s[i] / 3600
            if ref is not None and hours > 0:
                board.loc[i, "gain_per_device_hour"] = 100 * (block.accuracy[i] - block.accuracy[ref]) / hours


def write_reports(results_dir: str | Path, baseline: str = REFERENCE, pairs: bool = False) -> dict[str, Path]:
    """Rebuild every table from the records. Jobs that finish at once (two sweeps, a parallel launcher) take
    turns: each reads the records under the lock, so the last to write has read every finished one.
    ``pairs``: also every algorithm against every other (``harness/pairwise.py``; tens of seconds, so asked for)."""
    from filelock import FileLock

    results_dir = Path(results_dir)
    paths = {"runs": results_dir / "runs.csv", "leaderboard": results_dir / "leaderboard.csv",
             "markdown": results_dir / "leaderboard.md", "plot": results_dir / "accuracy_vs_cost.png"}
    with FileLock(str(results_dir / ".report.lock")):
        runs = collect_runs(results_dir)
        if runs.empty:
            return {}
        tuned = results_dir / "tuned.json"  # harness.tune's selections
        curves = run_curves(results_dir, runs.run_id)
        scores = greedy_scores(results_dir, runs.run_id)
        board = leaderboard(runs, scores, baseline, json.loads(tuned.read_text()) if tuned.exists() else None, curves)
        atomic_write(paths["runs"], runs.to_csv(index=False))
        atomic_write(paths["leaderboard"], board.to_csv(index=False, float_format="%.6g"))
        text = markdown(board)
        if pairs and not board.empty:
            from harness import pairwise

            table = pairwise.pairwise(board, runs, scores)
            paths["pairs"] = results_dir / "pairwise.csv"
            atomic_write(paths["pairs"], table.to_csv(index=False, float_format="%.6g"))
            text += "\n" + pairwise.markdown(table)
        atomic_write(paths["markdown"], text)
        tmp = paths["plot"].with_name(f"{paths['plot'].stem}.tmp{os.getpid()}.png")
        try:
            if board.empty:  # validation runs alone (tuning under way): nothing to plot yet
                return paths
            plot(board, tmp, {rid: c for rid, c in curves.items()}, runs)
            os.replace(tmp, paths["plot"])
        finally:
            tmp.unlink(missing_ok=True)
    return paths


def main(argv: list[str]) -> int:
    opts = {"results_dir": "results", "baseline": REFERENCE, "pairs": "false"}
    usage = "usage: python -m harness.report [results_dir=PATH] [baseline=ALGO] [pairs=true|false]"
    for arg in argv:
        key, _, value = arg.partition("=")
        if key not in opts or not value:
            print(f"error: unknown argument {arg!r}; {usage}", file=sys.stderr)
            return 2
        opts[key] = value
    if opts["pairs"] not in ("true", "false"):
        print(f"error: pairs={opts['pairs']!r} is not true or false; {usage}", file=sys.stderr)
        return 2
    results_dir = opts["results_dir"]
    paths = write_reports(results_dir, opts["baseline"], pairs=opts["pairs"] == "true")
    if not paths:
        print(f"error: no run records under {results_dir}/runs; run `python -m harness.run` first", file=sys.stderr)
        return 1
    print(paths["markdown"].read_text())
    for p in paths.values():
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
