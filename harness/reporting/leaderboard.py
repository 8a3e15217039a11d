"""The leaderboard from run records (docs/design.md §5; ``python -m harness.report`` writes it): ``runs.csv`` (one row per run), ``leaderboard.csv``
(one row per task × model × algo × variant: means over seeds, a 95% bootstrap CI over seeds and test
items, and a paired comparison with a baseline on the same test items), ``leaderboard.md`` (the same
for a person) and ``accuracy_vs_cost.png``.

``pairs=true`` adds ``pairwise.csv``: every algorithm against every other, Holm-adjusted (``harness/reporting/pairwise.py``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from harness.registry import REFERENCE
from harness.reporting import horizon, matched_compute, stats
from harness.reporting.report_views import by_length_markdown, markdown, plot, reading
from harness.reporting.scores import aligned, read_scores, row_matrices
from harness.reporting.stats import bootstrap_ci, mde, n_boot_for, paired_bootstrap, variance_components
from harness.storage.records import atomic_write

RUN_COLUMNS = ["run_id", "task", "model", "algo", "variant", "variant_id", "ref_draw", "seed", "status", "accuracy",
               "accuracy_sampled", "n_eval", "wall_s", "device_s", "gen_tokens", "train_tokens", "flops", "mfu",
               "peak_mem_mb", "data_wall_s", "data_device_s", "data_gen_tokens", "data_train_tokens", "data_flops",
               "post_ref_device_s", "train_gen_tokens", "n_train_examples", "examples_seen", "final_loss", "ref_source",
               "ref_sha256", "error"]
#: cost columns averaged over a row's runs
MEANS = ["wall_s", "device_s", "gen_tokens", "train_tokens", "flops", "mfu", "data_wall_s", "data_device_s",
         "data_gen_tokens", "data_train_tokens", "data_flops", "post_ref_device_s", "train_gen_tokens",
         "n_train_examples", "examples_seen"]
BOARD_COLUMNS = ["task", "model", "algo", "variant", "variant_id", "chosen", "n_draws", "n_seeds", "accuracy",
                 "accuracy_std", "accuracy_ci_lo", "accuracy_ci_hi", "baseline", "delta", "delta_ci_lo", "delta_ci_hi",
                 "p_value", "p_holm", "mde", "mde_holm", "reading", "sd_draw", "sd_seed", "se_item",
                 "gain_per_device_hour", "common_flops", "val_acc_at_common_flops", "accuracy_sampled", "n_eval", *MEANS[:6], "peak_mem_mb", *MEANS[6:], "status"]


def collect_runs(results_dir: str | Path) -> pd.DataFrame:
    rows = []
    for p in sorted(Path(results_dir, "runs").glob("*/metrics.json")):
        try:
            rows.append(json.loads(p.read_text()))
        except (OSError, json.JSONDecodeError):
            continue  # a record being written right now
    df = pd.json_normalize(rows)  # nested records (prompt, provenance) become dotted columns
    return df.reindex(columns=RUN_COLUMNS + [c for c in df.columns if c not in RUN_COLUMNS])


def run_curves(results_dir: str | Path, run_ids) -> dict[str, pd.DataFrame]:
    """Per run with a learning curve (``eval.every``): its points (``harness/pipeline/curve.py``)."""
    out = {}
    for rid in run_ids:
        p = Path(results_dir, "runs", str(rid), "train_history.jsonl")
        if p.exists() and p.stat().st_size:
            pts = matched_compute.points(pd.read_json(p, lines=True))
            if len(pts):
                out[rid] = pts
    return out


def leaderboard(runs: pd.DataFrame, scores: dict[str, pd.Series] | None = None,
                baseline: str = REFERENCE, tuned: dict | None = None,
                curves: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Per (task, model, algo, variant): mean accuracy over the finished runs of every π_ref draw and seed; costs
    are means per run. Runs of one algorithm with different hyper-parameters are different variants, never
    averaged. With per-item ``scores``: a 95% CI (hierarchical bootstrap over draws, seeds and items), the row's
    variance components, and the paired difference from the matching ``baseline`` row (``matching_row``), each run
    read against the baseline's runs of the same π_ref, with its minimum detectable effect (``harness/reporting/stats.py``).
    ``tuned`` (``tuned.json``, by variant id) says which rows
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
               "n_draws": int(ok.ref_draw.nunique()) if "ref_draw" in ok and ok.ref_draw.notna().any() else 1,
               "status": "ok" if not n_failed else ("failed" if ok.empty else f"partial ({n_failed} failed)")}
        if not ok.empty:
            row.update(accuracy=ok.accuracy.mean(), accuracy_std=ok.accuracy.std(ddof=1) if len(ok) > 1 else 0.0,
                       accuracy_sampled=ok.accuracy_sampled.mean(), n_eval=int(ok.n_eval.max()),
                       peak_mem_mb=ok.peak_mem_mb.max(),
                       **{c: pd.to_numeric(ok[c], errors="coerce").mean() for c in MEANS if c in ok})
            row["_curves"] = [curves[r] for r in ok.run_id if r in curves]
            mat = row_matrices(ok, scores)
            if mat:
                (groups,) = aligned(mat)
                row["accuracy_ci_lo"], row["accuracy_ci_hi"] = bootstrap_ci(groups)
                row.update({k: v for k, v in variance_components(groups).items() if k != "n_draws"})
                mats[len(out)] = mat
        out.append(row)
    board = pd.DataFrame(out).reindex(columns=[*BOARD_COLUMNS, "_curves"])
    if board.empty:
        return board.drop(columns="_curves")
    _at_common_compute(board)
    board = board.drop(columns="_curves")
    _paired_with_baseline(board, mats, baseline)
    holm(board)
    power(board)
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


def baselines(board: pd.DataFrame, baseline: str) -> dict[int, int]:
    """Board index → the index of the row it is read against (``matching_row``), where there is one."""
    out = {}
    for _, block in board.groupby(["task", "model"]):
        for i in block.index:
            b = matching_row(block, i, baseline)
            if b is not None:
                out[i] = b
    return out


def _paired_with_baseline(board: pd.DataFrame, mats: dict[int, dict], baseline: str) -> None:
    """Fill ``baseline, delta, delta_ci_*, p_value`` and ``_se``: each row against its matching baseline row
    (``matching_row``), on the π_ref draws and test items both were graded on."""
    board["baseline"] = board["baseline"].astype(object)
    board["_se"] = float("nan")
    size = board.groupby(["task", "model"]).algo.transform("size")
    for i, b in baselines(board, baseline).items():
        if i in mats and b in mats:
            n_boot = n_boot_for(size[i] - 1)  # p-values fine enough for Holm over the block's comparisons
            a_groups, b_groups = aligned(mats[i], mats[b])
            if not a_groups:
                continue
            res = paired_bootstrap(a_groups, b_groups, n_boot=n_boot)
            board.loc[i, "baseline"] = baseline
            board.loc[i, ["delta", "delta_ci_lo", "delta_ci_hi", "p_value", "_se"]] = [
                res["delta"], res["delta_lo"], res["delta_hi"], res["p"], res["se"]]


def power(board: pd.DataFrame) -> None:
    """``mde``: each comparison's minimum detectable effect at 80% power and α 0.05; ``mde_holm``: the same at the
    level Holm's correction demands of the first rejection among the block's comparisons; ``reading``: in words."""
    for c in ("mde", "mde_holm"):
        board[c] = float("nan")
    board["reading"] = ""
    if "_se" not in board:
        return
    for _, block in board.groupby(["task", "model"]):
        tested = block.dropna(subset=["_se"])
        for i in tested.index:
            board.loc[i, "mde"] = mde(board.loc[i, "_se"])
            board.loc[i, "mde_holm"] = mde(board.loc[i, "_se"], len(tested))
            board.loc[i, "reading"] = reading(board.delta[i], board.p_holm[i], board.mde_holm[i])
    del board["_se"]


def _at_common_compute(board: pd.DataFrame) -> None:
    """``common_flops``: per (task, model) table, the largest post-π_ref compute every row with a learning curve
    reached; ``val_acc_at_common_flops``: each such row's validation accuracy there, mean over its seeds."""
    for _, block in board.groupby(["task", "model"]):
        rows = {i: block._curves[i] for i in block.index if isinstance(block._curves[i], list) and block._curves[i]}
        budget = matched_compute.common_budget(rows)
        for i, cs in rows.items():
            board.loc[i, "common_flops"] = budget
            board.loc[i, "val_acc_at_common_flops"] = float(np.nanmean([matched_compute.at_budget(c, budget) for c in cs]))


def holm(board: pd.DataFrame) -> None:
    """``p_holm``: each block's p-values against the baseline adjusted for the block's number of comparisons
    (``harness.reporting.stats.holm``), so a row that beats the baseline by luck among many does not read as a finding."""
    board["p_holm"] = float("nan")
    for _, block in board.groupby(["task", "model"]):
        p = block.p_value.dropna()
        if len(p):
            board.loc[p.index, "p_holm"] = stats.holm(p.to_numpy(dtype=float))


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
    ``pairs``: also every algorithm against every other (``harness/reporting/pairwise.py``; tens of seconds, so asked for)."""
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
        scores, lengths = read_scores(results_dir, runs.run_id)
        board = leaderboard(runs, scores, baseline, json.loads(tuned.read_text()) if tuned.exists() else None, curves)
        atomic_write(paths["runs"], runs.to_csv(index=False))
        atomic_write(paths["leaderboard"], board.to_csv(index=False, float_format="%.6g"))
        lengths_table = horizon.by_length(board, runs, scores, lengths, baselines(board, baseline), baseline)
        if not lengths_table.empty:
            paths["by_length"] = results_dir / "by_length.csv"
            atomic_write(paths["by_length"], lengths_table.to_csv(index=False, float_format="%.6g"))
        text = markdown(board) + by_length_markdown(lengths_table)
        if pairs and not board.empty:
            from harness.reporting import pairwise

            table = pairwise.pairwise(board, runs, scores)
            paths["pairs"] = results_dir / "pairwise.csv"
            atomic_write(paths["pairs"], table.to_csv(index=False, float_format="%.6g"))
            text += "\n" + pairwise.markdown(table)
        atomic_write(paths["markdown"], text)
        tmp = paths["plot"].with_name(f"{paths['plot'].stem}.tmp{os.getpid()}.png")
        try:
            if board.empty:  # validation runs alone (tuning under way): nothing to plot yet
                return paths
            plot(board, tmp, {rid: c for rid, c in curves.items()}, runs, lengths_table)
            os.replace(tmp, paths["plot"])
        finally:
            tmp.unlink(missing_ok=True)
    return paths
