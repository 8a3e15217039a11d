"""Uncertainty for the leaderboard (docs/design.md §5): bootstrap over seeds *and* test items.

Accuracy varies with the run seed (bank, data order, sampling) and with which test items happen to be
in the test set; a confidence interval that ignores either is too narrow. Each replicate resamples
the seeds with replacement and, independently, the test items with replacement (the same items for
every algorithm of a paired comparison, since all are evaluated on one test set).
"""
from __future__ import annotations

import numpy as np


def _replicates(acc: np.ndarray, seeds: np.ndarray, items: np.ndarray, chunk: int = 1000) -> np.ndarray:
    """Mean accuracy of ``acc[seeds[b]][:, items[b]]`` for every replicate b (``chunk`` replicates at a time:
    a [B, n_seeds, n_items] gather of 50,000 replicates would take GBs)."""
    return np.concatenate([acc[seeds[i:i + chunk, :, None], items[i:i + chunk, None, :]].mean(axis=(1, 2))
                           for i in range(0, len(seeds), chunk)])


def n_boot_for(n_tests: int, floor: int = 2000) -> int:
    """Bootstrap replicates for one of ``n_tests`` comparisons that will be Holm-adjusted: a bootstrap p is at
    least 2/(n_boot+1), so with 2,000 replicates and 55 pairs no adjusted p could fall below 0.05 however large
    the difference. 200 per test keeps the smallest adjusted p at 0.01."""
    return max(floor, 200 * int(n_tests))


def bootstrap_ci(acc, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile CI of the mean of ``acc`` ([n_seeds, n_items] correctness)."""
    acc = np.asarray(acc, dtype=float)
    rng = np.random.default_rng(seed)
    s, n = acc.shape
    reps = _replicates(acc, rng.integers(0, s, (n_boot, s)), rng.integers(0, n, (n_boot, n)))
    a = (1 - level) / 2
    return float(np.quantile(reps, a)), float(np.quantile(reps, 1 - a))


def paired_bootstrap(acc, base, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Mean(acc) − mean(base) on the same test items ([n_seeds, n_items] each, item columns aligned):
    the difference, its percentile CI and a two-sided bootstrap p-value for "no difference"."""
    acc, base = np.asarray(acc, dtype=float), np.asarray(base, dtype=float)
    if acc.shape[1] != base.shape[1]:
        raise ValueError(f"paired comparison needs the same items: {acc.shape[1]} vs {base.shape[1]}")
    rng = np.random.default_rng(seed)
    n = acc.shape[1]
    items = rng.integers(0, n, (n_boot, n))  # shared: the pairing
    diff = (_replicates(acc, rng.integers(0, acc.shape[0], (n_boot, acc.shape[0])), items)
            - _replicates(base, rng.integers(0, base.shape[0], (n_boot, base.shape[0])), items))
    a = (1 - level) / 2
    # Two-sided: twice the smaller tail beyond 0, with the +1 correction so p is never exactly 0.
    tail = min((diff <= 0).sum(), (diff >= 0).sum())
    return {"delta": float(acc.mean() - base.mean()), "delta_lo": float(np.quantile(diff, a)),
            "delta_hi": float(np.quantile(diff, 1 - a)), "p": float(min(1.0, 2 * (tail + 1) / (n_boot + 1)))}
