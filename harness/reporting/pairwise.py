"""Every algorithm against every other (``pairwise.csv``, ``python -m harness.report pairs=true``; ``harness.tune``
writes it at its end): the leaderboard compares each row with one baseline, but "does DQO beat DPO?" is a
comparison between two rows, and asking it of every pair is many comparisons at once.

Per (task, model) table, each algorithm is represented by one row: the one ``harness.tune`` selected, else its
defaults (rows set by hand are left out). Every pair is compared on the test items both were graded on (the
hierarchical bootstrap over π_ref draws, seeds and items of ``harness/reporting/stats.py``, each run read against the other
side's runs of the same draw), the p-values are Holm-adjusted over all the table's pairs (Holm 1979), with enough
bootstrap replicates that the adjustment can still reach 5%, and each pair carries its minimum detectable effect,
so that "no difference" reads as "none as large as X points" or as "underpowered".
"""
from __future__ import annotations

from itertools import combinations

import pandas as pd

from harness.reporting.report_views import POWERED_AT, reading
from harness.reporting.scores import aligned, row_matrices, row_runs
from harness.reporting.stats import holm, mde, n_boot_for, paired_bootstrap

COLUMNS = ["task", "model", "better", "better_variant", "worse", "worse_variant", "n_draws", "delta", "delta_ci_lo",
           "delta_ci_hi", "p_value", "p_holm", "mde", "mde_holm", "reading"]


def representatives(block: pd.DataFrame) -> pd.DataFrame:
    """One row per algorithm: the tuned one (most seeds first), else the defaults; never a row set by hand."""
    kind = block.chosen.fillna("").map(lambda c: 0 if c.startswith("tuned") else 1 if c in ("defaults", "") else 2)
    ok = block.assign(_kind=kind)[(kind < 2) & block.accuracy.notna()]
    ok = ok.sort_values(["_kind", "n_seeds"], ascending=[True, False])
    return ok.groupby("algo", sort=True).head(1).drop(columns="_kind")


def pairwise(board: pd.DataFrame, runs: pd.DataFrame, scores: dict) -> pd.DataFrame:
    """Every pair of representative rows per (task, model), the better first, with Holm-adjusted p-values."""
    out = []
    for (task, model), block in board.groupby(["task", "model"], sort=True):
        reps = representatives(block)
        mats = {r.algo: row_matrices(row_runs(runs, r), scores) for r in reps.itertuples()}
        pairs = [(a, b) for a, b in combinations(reps.itertuples(), 2) if mats[a.algo] and mats[b.algo]]
        rows = []
        for a, b in pairs:
            ga, gb = aligned(mats[a.algo], mats[b.algo])
            if not ga:
                continue
            res = paired_bootstrap(ga, gb, n_boot=n_boot_for(len(pairs)))
            if res["delta"] < 0:  # the better one first
                a, b = b, a
                res = {**res, "delta": -res["delta"], "delta_lo": -res["delta_hi"], "delta_hi": -res["delta_lo"]}
            rows.append({"task": task, "model": model, "better": a.algo, "better_variant": a.variant,
                         "worse": b.algo, "worse_variant": b.variant, "n_draws": len(ga), "delta": res["delta"],
                         "delta_ci_lo": res["delta_lo"], "delta_ci_hi": res["delta_hi"], "p_value": res["p"],
                         "mde": mde(res["se"]), "mde_holm": mde(res["se"], len(pairs))})
        if rows:
            p = [r["p_value"] for r in rows]
            for r, adj in zip(rows, holm(p)):
                r["p_holm"] = float(adj)
                r["reading"] = reading(r["delta"], r["p_holm"], r["mde_holm"])
        out.extend(rows)
    return pd.DataFrame(out, columns=COLUMNS).sort_values(["task", "model", "p_holm", "delta"],
                                                          ascending=[True, True, True, False], ignore_index=True)


def markdown(pairs: pd.DataFrame) -> str:
    """Per table, one sentence: which pairs differ at 5% after Holm's correction over all of them."""
    parts = []
    for (task, model), b in pairs.groupby(["task", "model"], sort=True):
        sig = b[b.p_holm < 0.05]
        head = (f"### {task} · {model}: every pair\n\nAfter Holm's correction over the {len(b)} pairs of algorithms "
                "(each algorithm's tuned row, else its defaults; `pairwise.csv`), ")
        rest = b[b.p_holm >= 0.05]
        powered = int((rest.mde_holm <= POWERED_AT).sum())
        power = (f" Of the {len(rest)} pairs without a difference, {powered} could have seen one of "
                 f"{100 * POWERED_AT:.0f} points (80% power after Holm's correction); the median minimum detectable "
                 f"effect is {100 * rest.mde_holm.median():.1f} points.\n") if len(rest) else "\n"
        if sig.empty:
            parts.append(head + "no algorithm differs from another at the 5% level." + power)
            continue
        each = ", ".join(f"`{r.better}` beats `{r.worse}` ({100 * r.delta:+.1f} points, p {r.p_holm:.3f})"
                         for r in sig.itertuples())
        parts.append(head + f"{each}; no other pair differs at the 5% level." + power)
    return "\n".join(parts)
