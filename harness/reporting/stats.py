"""Uncertainty for the leaderboard (docs/design.md §11): a hierarchical bootstrap over π_ref draws, run seeds and
test items, the minimum detectable effect of a comparison, and the variance components of a row.

A row's accuracy varies with π_ref's draw (the warm start's seed), with the run seed (bank, data order, sampling)
and with which items happen to be in the test set; an interval that ignores any of them is too narrow, and a claim
that holds for one draw holds for one checkpoint, not for the recipe. Each replicate resamples the draws with
replacement, then each drawn draw's seeds with replacement, and, independently, the test items with replacement:
the Multi-Bootstrap of MultiBERTs (Sellam et al. 2021, arXiv 2106.16163). In a paired comparison the draws and the
items are shared by both sides (each run is read against the π_ref of its own draw, on the same items) and each
side's seeds are its own.

A row is a list of per-draw matrices, ``[n_seeds, n_items]`` of 0/1 greedy correctness, item columns aligned.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import norm

POWER = 0.8  # the minimum detectable effect is the difference seen with this probability


def _item_weights(n_items: int, n_boot: int, rng) -> np.ndarray:
    """[n_boot, n_items]: how often each item is drawn in each replicate (a resample as counts)."""
    return rng.multinomial(n_items, np.full(n_items, 1.0 / n_items), size=n_boot).astype(float)


def _draw_means(groups: list[np.ndarray], w: np.ndarray, rng) -> np.ndarray:
    """[n_boot, n_draws]: for each replicate and draw, the mean over resampled seeds of that draw's runs'
    accuracies on the replicate's resampled items (``w``, counts)."""
    out = np.empty((len(w), len(groups)))
    for d, acc in enumerate(groups):
        run_means = (w @ np.asarray(acc, dtype=float).T) / w.shape[1]  # [n_boot, n_seeds]; exact sums of counts
        seeds = rng.integers(0, acc.shape[0], (len(w), acc.shape[0]))
        out[:, d] = np.take_along_axis(run_means, seeds, axis=1).mean(axis=1)
    return out


def _over_draws(per_draw: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """[n_boot]: the mean over each replicate's resampled draws."""
    return np.take_along_axis(per_draw, draws, axis=1).mean(axis=1)


def _groups(x) -> list[np.ndarray]:
    """A row as a list of per-draw matrices; one matrix (the seeds of a single draw) is accepted as it is."""
    if isinstance(x, np.ndarray) or (isinstance(x, list) and x and np.ndim(x[0]) == 1):
        return [np.asarray(x, dtype=float)]
    return [np.asarray(g, dtype=float) for g in x]


def point(groups) -> float:
    """A row's accuracy: the mean over draws of each draw's mean over seeds and items (draws weigh equally)."""
    return float(np.mean([g.mean() for g in _groups(groups)]))


def n_boot_for(n_tests: int, floor: int = 2000) -> int:
    """Bootstrap replicates for one of ``n_tests`` comparisons that will be Holm-adjusted: a bootstrap p is at
    least 2/(n_boot+1), so with 2,000 replicates and 55 pairs no adjusted p could fall below 0.05 however large
    the difference. 200 per test keeps the smallest adjusted p at 0.01."""
    return max(floor, 200 * int(n_tests))


def _chunks(n_boot: int, size: int = 2000):
    """Replicates in chunks: the item weights of 10,000 replicates of 2,000 items would take 160 MB at once."""
    for start in range(0, n_boot, size):
        yield min(size, n_boot - start)


def bootstrap_ci(acc, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile CI of a row's accuracy (per-draw ``[n_seeds, n_items]`` matrices, or one such matrix)."""
    groups = _groups(acc)
    rng = np.random.default_rng(seed)
    reps = np.concatenate([_over_draws(_draw_means(groups, _item_weights(groups[0].shape[1], b, rng), rng),
                                       rng.integers(0, len(groups), (b, len(groups)))) for b in _chunks(n_boot)])
    a = (1 - level) / 2
    return float(np.quantile(reps, a)), float(np.quantile(reps, 1 - a))


def paired_bootstrap(acc, base, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Accuracy of ``acc`` minus that of ``base``, paired by draw (the i-th matrix of each is the same π_ref) and by
    item (columns aligned): the difference, its percentile CI, its bootstrap standard error and a two-sided p-value
    for "no difference"."""
    a_groups, b_groups = _groups(acc), _groups(base)
    if len(a_groups) != len(b_groups):
        raise ValueError(f"paired comparison needs the same draws: {len(a_groups)} vs {len(b_groups)}")
    if any(a.shape[1] != b.shape[1] for a, b in zip(a_groups, b_groups)):
        raise ValueError("paired comparison needs the same items on both sides")
    rng = np.random.default_rng(seed)
    parts = []
    for b in _chunks(n_boot):
        w = _item_weights(a_groups[0].shape[1], b, rng)  # shared: the pairing by item
        draws = rng.integers(0, len(a_groups), (b, len(a_groups)))  # shared: the pairing by draw
        parts.append(_over_draws(_draw_means(a_groups, w, rng) - _draw_means(b_groups, w, rng), draws))
    diff = np.concatenate(parts)
    a = (1 - level) / 2
    # Two-sided: twice the smaller tail beyond 0, with the +1 correction so p is never exactly 0.
    tail = min((diff <= 0).sum(), (diff >= 0).sum())
    return {"delta": point(a_groups) - point(b_groups), "delta_lo": float(np.quantile(diff, a)),
            "delta_hi": float(np.quantile(diff, 1 - a)), "se": float(diff.std(ddof=1)),
            "p": float(min(1.0, 2 * (tail + 1) / (n_boot + 1)))}


def holm(p_values) -> np.ndarray:
    """p-values adjusted for their number by Holm's step-down method (Holm 1979, through statsmodels): a finding
    among many comparisons must survive the correction (oxRL, arXiv 2603.19335: none of 20 DPO variants beats DPO
    once corrected)."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=float)
    return multipletests(p, method="holm")[1] if len(p) else p


def mde(se: float, n_tests: int = 1, alpha: float = 0.05, power: float = POWER) -> float:
    """The minimum detectable effect of a comparison whose difference has standard error ``se``: the true
    difference a two-sided test at level ``alpha`` finds with probability ``power``, (z_{1-α/2m} + z_power)·se.
    With ``n_tests`` = m comparisons under Holm's correction, its strictest step (α/m) is the level the
    first rejection must reach. For paired binary outcomes on n items, se ≈ √(ψ/n) with ψ the share of items
    where exactly one side is right, hence 2.8·√(ψ/n) at α 0.05 and 80% power (Connor 1987)."""
    return float((norm.ppf(1 - alpha / (2 * max(int(n_tests), 1))) + norm.ppf(power)) * se)


def variance_components(groups) -> dict:
    """Where a row's uncertainty comes from, as standard deviations of accuracy (method of moments):
    ``sd_draw`` between π_ref draws (beyond what their seeds explain), ``sd_seed`` between run seeds of one draw,
    and ``se_item``, the standard error of the row's mean from the finite test set (the spread of the items'
    mean correctness over √n). The row mean's variance is about sd_draw²/D + sd_seed²/(D·S) + se_item²: which
    term dominates says whether more draws, seeds or test items would narrow it most."""
    groups = _groups(groups)
    runs = [g.mean(axis=1) for g in groups]
    within = [r.var(ddof=1) for r in runs if len(r) > 1]
    var_seed = float(np.mean(within)) if within else float("nan")
    seeds = len(runs) / sum(1 / len(r) for r in runs)  # harmonic mean of seeds per draw
    means = np.array([r.mean() for r in runs])
    var_draw = (max(0.0, float(means.var(ddof=1)) - (var_seed if within else 0.0) / seeds)
                if len(means) > 1 else float("nan"))
    items = np.concatenate(groups, axis=0).mean(axis=0)
    return {"n_draws": len(groups), "sd_draw": float(np.sqrt(var_draw)), "sd_seed": float(np.sqrt(var_seed)),
            "se_item": float(items.std(ddof=1) / np.sqrt(len(items))) if len(items) > 1 else float("nan")}
