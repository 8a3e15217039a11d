"""Confidence intervals and the paired test on inputs whose answer is known."""
import numpy as np

from harness.stats import bootstrap_ci, paired_bootstrap


def test_ci_of_a_constant_is_a_point_and_ci_covers_the_mean():
    assert bootstrap_ci(np.ones((3, 50))) == (1.0, 1.0)
    rng = np.random.default_rng(1)
    acc = (rng.random((3, 500)) < 0.4).astype(float)
    lo, hi = bootstrap_ci(acc)
    assert lo < acc.mean() < hi
    # Binomial standard error at p=0.4 over 1500 draws is 1.26 points: the 95% CI is about ±2.5 points.
    assert 0.03 < hi - lo < 0.08


def test_seed_spread_widens_the_ci():
    items = np.tile((np.arange(400) % 2).astype(float), (3, 1))  # 50% on every seed
    shifted = items.copy()
    shifted[0, :100] = 1 - shifted[0, :100]  # seeds now differ (mean unchanged)
    shifted[1, :40] = 1
    lo1, hi1 = bootstrap_ci(items)
    lo2, hi2 = bootstrap_ci(shifted)
    assert hi2 - lo2 > hi1 - lo1


def test_paired_test_no_difference_and_clear_difference():
    rng = np.random.default_rng(0)
    base = (rng.random((3, 300)) < 0.5).astype(float)
    same = paired_bootstrap(base, base)
    assert same["delta"] == 0 and same["p"] > 0.9 and same["delta_lo"] <= 0 <= same["delta_hi"]
    better = base.copy()
    better[:, :60] = 1.0  # +x points on the same items, every seed
    out = paired_bootstrap(better, base)
    assert out["delta"] > 0.05 and out["delta_lo"] > 0 and out["p"] < 0.01


def test_pairing_makes_a_small_consistent_gain_significant():
    # 1 point better on the same items: invisible to two independent CIs, clear when paired.
    rng = np.random.default_rng(3)
    base = np.tile((rng.random(1000) < 0.45).astype(float), (3, 1))
    better = base.copy()
    better[:, np.flatnonzero(base[0] == 0)[:10]] = 1.0
    lo_b, hi_b = bootstrap_ci(base)
    lo_a, hi_a = bootstrap_ci(better)
    assert lo_a < hi_b  # the unpaired intervals overlap
    assert paired_bootstrap(better, base)["p"] < 0.01


def test_enough_replicates_that_a_clear_difference_survives_holm_over_many_pairs():
    from harness.stats import n_boot_for

    base = np.zeros((3, 200))
    better = np.ones((3, 200))
    assert paired_bootstrap(better, base)["p"] * 55 > 0.05  # 2,000 replicates: the p floor, times 55, is > 5%
    assert paired_bootstrap(better, base, n_boot=n_boot_for(55))["p"] * 55 < 0.05
