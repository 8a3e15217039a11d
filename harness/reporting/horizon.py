"""The horizon axis (docs/design.md §10): each leaderboard row's greedy accuracy per chain length (the number of
operations of an item's gold solution), and its paired difference from the baseline on the items of each length.
Value-based methods claim better credit assignment over long chains; if they have it, their advantage should grow
with the length, and beyond the training range (``by_length.csv``, a table in ``leaderboard.md``, a plot panel).
"""
from __future__ import annotations

import pandas as pd

from harness.reporting.scores import aligned, row_matrices, row_runs
from harness.reporting.stats import paired_bootstrap, point

COLUMNS = ["task", "model", "algo", "variant", "chain_length", "beyond_training", "n_items", "accuracy", "baseline",
           "delta", "delta_ci_lo", "delta_ci_hi", "p_value"]


def by_length(board: pd.DataFrame, runs: pd.DataFrame, scores: dict, lengths: pd.Series,
              against: dict[int, int], baseline: str) -> pd.DataFrame:
    """One row per (leaderboard row, chain length). ``against``: board index → index of its baseline row."""
    if lengths.empty or board.empty:
        return pd.DataFrame(columns=COLUMNS)
    longest = _training_max(runs)
    mats = {i: row_matrices(row_runs(runs, r), scores) for i, r in board.iterrows() if pd.notna(r.accuracy)}
    out = []
    for i, mat in mats.items():
        r = board.loc[i]
        for L in sorted(lengths.unique()):
            items = lengths.index[lengths == L]
            (groups,) = aligned(mat, items=items)
            if not groups:
                continue
            rec = {"task": r.task, "model": r.model, "algo": r.algo, "variant": r.variant, "chain_length": int(L),
                   "beyond_training": bool(longest.get((r.task, r.model)) and L > longest[(r.task, r.model)]),
                   "n_items": groups[0].shape[1], "accuracy": point(groups)}
            b = against.get(i)
            if b is not None and b in mats:
                ga, gb = aligned(mat, mats[b], items=items)
                if ga:
                    res = paired_bootstrap(ga, gb)
                    rec.update(baseline=baseline, delta=res["delta"], delta_ci_lo=res["delta_lo"],
                               delta_ci_hi=res["delta_hi"], p_value=res["p"])
            out.append(rec)
    return pd.DataFrame(out).reindex(columns=COLUMNS)


def _training_max(runs: pd.DataFrame) -> dict:
    """(task, model) → the longest chain of the training split, where the runs recorded it."""
    if "train_chain_max" not in runs:
        return {}
    known = runs.dropna(subset=["train_chain_max"])
    return {k: int(g.train_chain_max.max()) for k, g in known.groupby(["task", "model"])}
