"""Confidence intervals and the paired test on inputs whose answer is known."""
import numpy as np

from harness.reporting.stats import bootstrap_ci, paired_bootstrap


def test_ci_of_a_constant_is_a_point_and_ci_covers_the_mean():
    assert bootstrap_ci(np.ones((3, 50))) == (1.0, 1.0)
    rng = np.random.default_rng(1)
    acc = (rng.random((3, 500)) < 0.4).astype(float)
    lo, hi = bootstrap_ci(acc)
    assert lo < acc.mean() < hi
    # Binomial standard error at p=0.4 over 1500 draws is 1.26 points: the 95% CI is about ±2.5 points, a little
    # wider since seeds and items are both resampled.
    assert 0.03 < hi - lo < 0.09


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
    from harness.reporting.stats import n_boot_for

    base = np.zeros((3, 200))
    better = np.ones((3, 200))
    assert paired_bootstrap(better, base)["p"] * 55 > 0.05  # 2,000 replicates: the p floor, times 55, is > 5%
    assert paired_bootstrap(better, base, n_boot=n_boot_for(55))["p"] * 55 < 0.05


def _draws(offsets, n_seeds=3, n_items=600, p=0.5, seed=0):
    """Per-draw [seeds, items] correctness: every draw's items share one latent difficulty, shifted by the draw."""
    rng = np.random.default_rng(seed)
    difficulty = rng.random(n_items)
    return [(difficulty[None, :] < p + off + 0.02 * rng.standard_normal((n_seeds, 1))).astype(float)
            for off in offsets]


def test_a_spread_between_draws_widens_the_ci_and_shows_in_the_components():
    from harness.reporting.stats import variance_components

    same, spread = _draws([0, 0, 0, 0]), _draws([-0.1, 0.0, 0.05, 0.1])
    lo1, hi1 = bootstrap_ci(same)
    lo2, hi2 = bootstrap_ci(spread)
    assert hi2 - lo2 > 2 * (hi1 - lo1)
    comp = variance_components(spread)
    assert comp["n_draws"] == 4 and comp["sd_draw"] > 0.05 > comp["sd_seed"] and 0 < comp["se_item"] < 0.03
    assert variance_components(same)["sd_draw"] < 0.02


def test_pairing_by_draw_sees_a_gain_that_the_draws_spread_would_hide():
    """+3 points on every draw while the draws themselves spread over 20 points: paired by draw, the gain is
    clear; the same runs with the draws shuffled between the two sides are not."""
    base = _draws([-0.1, 0.0, 0.05, 0.1])
    better = _draws([-0.07, 0.03, 0.08, 0.13])
    paired = paired_bootstrap(better, base)
    assert 0.02 < paired["delta"] < 0.04 and paired["delta_lo"] > 0 and paired["p"] < 0.01
    crossed = paired_bootstrap(better, base[::-1])
    assert crossed["delta_lo"] < 0 < crossed["delta_hi"]


def test_mde_follows_the_paired_binary_formula_and_grows_with_holm():
    from harness.reporting.stats import mde

    n, psi = 2000, 0.1  # 2.8·sqrt(psi/n) at alpha 0.05, 80% power: about 2 points
    assert abs(mde(np.sqrt(psi / n)) - 2.8 * np.sqrt(psi / n)) < 2e-4
    assert mde(0.007, 11) > mde(0.007) * 1.3
    # the bootstrap's standard error of a paired difference on one draw and seed is about sqrt(psi/n)
    rng = np.random.default_rng(0)
    a = (rng.random((1, n)) < 0.5).astype(float)
    b = a.copy()
    flip = rng.choice(n, int(psi * n), replace=False)
    b[0, flip] = 1 - b[0, flip]
    assert abs(paired_bootstrap(a, b)["se"] - np.sqrt(psi / n)) < 0.15 * np.sqrt(psi / n)
