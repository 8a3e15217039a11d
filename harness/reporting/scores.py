"""Per-item greedy correctness of finished runs, arranged for the hierarchical bootstrap (``harness/reporting/stats.py``):
a leaderboard row is a dict of per-draw matrices ``{π_ref: [n_seeds, n_items]}``, keyed by the SHA-256 of the π_ref
each run was read against, so that no row mixes runs of different π_ref unawares, and each comparison pairs a run
with the runs of its own π_ref.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def read_scores(results_dir: str | Path, run_ids) -> tuple[dict[str, pd.Series], pd.Series]:
    """Per run: greedy correctness per test item (``samples.jsonl``), indexed by prompt id; and each item's chain
    length where the task defines one (the report's horizon axis)."""
    out, lengths = {}, []
    for rid in run_ids:
        p = Path(results_dir, "runs", str(rid), "samples.jsonl")
        if p.exists() and p.stat().st_size:
            df = pd.read_json(p, lines=True)
            g = df[df.kind == "greedy"]
            out[rid] = pd.Series(g.correct.to_numpy(dtype=float), index=g.prompt_id.to_numpy())
            if "chain_length" in g:
                lengths.append(pd.Series(g.chain_length.to_numpy(), index=g.prompt_id.to_numpy()).dropna())
    merged = pd.concat(lengths) if lengths else pd.Series(dtype=float)
    return out, merged[~merged.index.duplicated()].astype(int)


def draw_key(runs: pd.DataFrame) -> pd.Series:
    """Which π_ref each run was read against: the SHA-256 of its weights ('' in records older than the family)."""
    if "ref_sha256" not in runs:
        return pd.Series("", index=runs.index)
    return runs.ref_sha256.astype(object).where(runs.ref_sha256.notna(), "").astype(str)


def score_matrix(run_ids, scores) -> pd.DataFrame:
    """[n_runs, n_items] greedy correctness of these runs, on the items all of them were graded on."""
    cols = [scores[r] for r in run_ids if r in scores]
    return pd.concat(cols, axis=1, join="inner").T if cols else pd.DataFrame()


def row_runs(runs: pd.DataFrame, row) -> pd.DataFrame:
    """The finished test runs of a leaderboard row (task, model, algo, variant id)."""
    mine = runs[(runs.task == row.task) & (runs.model == row.model) & (runs.algo == row.algo)
                & (runs.variant_id.astype(object).fillna("").astype(str) == str(row.variant_id))
                & (runs.status == "ok")]
    if "eval_split" in mine:
        mine = mine[mine.eval_split.fillna("test") != "val"]
    return mine


def row_matrices(runs: pd.DataFrame, scores: dict) -> dict[str, pd.DataFrame]:
    """A row's runs as ``{π_ref: [n_seeds, n_items]}`` (draws without scored runs left out)."""
    out = {}
    for key, g in runs.groupby(draw_key(runs), sort=True):
        mat = score_matrix(g.run_id, scores)
        if not mat.empty:
            out[key] = mat
    return out


def aligned(*rows: dict[str, pd.DataFrame], items=None) -> list[list[np.ndarray]]:
    """The rows' matrices on their common π_ref draws and common items (optionally only ``items``), as
    per-draw arrays in one order for all rows; empty lists when they share no draw or no item."""
    keys = sorted(set.intersection(*(set(r) for r in rows))) if rows else []
    cols = None
    for r in rows:
        for k in keys:
            c = r[k].columns
            cols = c if cols is None else cols.intersection(c, sort=False)
    if items is not None and cols is not None:
        cols = cols.intersection(pd.Index(items), sort=False)
    if not keys or cols is None or not len(cols):
        return [[] for _ in rows]
    return [[r[k][cols].to_numpy(dtype=float) for k in keys] for r in rows]
