"""The leaderboard for a person: a Markdown table (CI as brackets) and an accuracy-vs-cost plot."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

#: a comparison that finds no difference is "powered" when it would have seen one of this size (80% power, after
#: Holm's correction): the testbed's target (docs/design.md §10)
POWERED_AT = 0.02


def reading(delta: float, p_holm: float, mde_holm: float) -> str:
    """A comparison in words: a difference at 5% after Holm's correction, else whether the comparison could have
    seen one of ``POWERED_AT`` (then "no difference ≥ X points": X its minimum detectable effect) or not."""
    if pd.isna(p_holm):
        return ""
    if p_holm < 0.05:
        return "better" if delta > 0 else "worse"
    if mde_holm <= POWERED_AT:
        return f"no difference ≥ {100 * mde_holm:.1f} points"
    return f"underpowered (MDE {100 * mde_holm:.1f} points)"


def _pts(x, signed=False) -> str:
    if pd.isna(x):
        return ""
    return f"{100 * x:+.1f}" if signed else f"{100 * x:.1f}"


def _si(x) -> str:
    if pd.isna(x):
        return ""
    for div, unit in [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]:
        if abs(x) >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.3g}"


def markdown(board: pd.DataFrame) -> str:
    """One table per (task, model): accuracy in points with its 95% CI, the paired Δ from the baseline."""
    parts = []
    for (task, model), b in board.groupby(["task", "model"], sort=True):
        base = b.baseline.dropna()
        base = base.iloc[0] if len(base) else None
        parts.append(f"### {task} · {model}\n")
        parts.append("Greedy accuracy in points, mean over π_ref draws and seeds, with a 95% CI from a hierarchical "
                     "bootstrap over draws, seeds and test items" + (
                         f"; Δ: paired difference from `{base}` (each run against `{base}` of its own π_ref draw, on "
                         "the same items), with its CI and two-sided bootstrap p; MDE (Holm): the smallest difference "
                         "the comparison would find with 80% power at the level Holm's correction demands; reading: "
                         "the comparison in words." if base else ".") + " Points / device-h: accuracy gained over "
                     "`reference` per device-hour spent after π_ref (own stages, bank, process values). Costs are "
                     "means per run; `data` is the shared artifacts (warm start, bank, process values) the run used; "
                     "MFU is the run's own stages against the device's peak. Sampled for learning: tokens generated to make "
                     "the training signal (the bank and process values, or an online algorithm's rollouts). p (Holm): "
                     "p adjusted for the number of comparisons with the baseline in this table. Examples: distinct "
                     "training examples (pairs, trajectories or rollouts, as the algorithm builds them) / examples "
                     "seen over all optimiser steps.\n")
        parts.append(f"| algo | variant | draws × seeds | accuracy | Δ vs {base or '—'} | p | p (Holm) | MDE (Holm) | reading "
                     "| points / device-h | sampled | examples | sampled for learning | train tokens | FLOPs run + data "
                     "| wall s run + data | MFU | status |")
        parts.append("|---|---|---:|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for _, r in b.iterrows():
            ci = f" [{_pts(r.accuracy_ci_lo)}, {_pts(r.accuracy_ci_hi)}]" if pd.notna(r.accuracy_ci_lo) else ""
            d = (f"{_pts(r.delta, True)} [{_pts(r.delta_ci_lo, True)}, {_pts(r.delta_ci_hi, True)}]"
                 if pd.notna(r.delta) else "")
            p = f"{r.p_value:.3f}" if pd.notna(r.p_value) else ""
            p_holm = f"{r.p_holm:.3f}" if pd.notna(r.get("p_holm")) else ""
            seen = (f"{_si(r.n_train_examples)} / {_si(r.examples_seen)}"
                    if pd.notna(r.get("examples_seen")) and r.examples_seen else "")
            variant = f"`{r.variant}`" if isinstance(r.variant, str) and r.variant else ""
            if isinstance(r.get("chosen"), str) and r.chosen:
                variant = f"{variant} ({r.chosen})".strip()
            gain = f"{r.gain_per_device_hour:+.1f}" if pd.notna(r.gain_per_device_hour) else ""
            mfu = f"{100 * r.mfu:.1f}%" if pd.notna(r.mfu) else ""
            if pd.isna(r.accuracy):  # no finished run: no number to show (see runs.csv's error column)
                parts.append(f"| {r.algo} | {variant} | 0 | failed | | | | | | | | | | | | | | {r.status} |")
                continue
            runs = f"{int(r.n_draws) if pd.notna(r.get('n_draws')) else 1} × {int(r.n_seeds)}"
            parts.append(f"| {r.algo} | {variant} | {runs} | {_pts(r.accuracy)}{ci} | {d} | {p} | {p_holm} "
                         f"| {_pts(r.get('mde_holm'))} | {r.get('reading') or ''} "
                         f"| {gain} | {_pts(r.accuracy_sampled)} | {seen} | {_si(r.get('train_gen_tokens'))} "
                         f"| {_si(r.train_tokens)} "
                         f"| {_si(r.flops)} + {_si(r.data_flops)} "
                         f"| {r.wall_s:.0f} + {r.data_wall_s:.0f} | {mfu} | {r.status} |")
        parts.append(significance(b, base))
        parts.append(variance(b))
        parts.append(at_common_compute(b))
        parts.append("")
    return "\n".join(parts)


def variance(b: pd.DataFrame) -> str:
    """Where each row's uncertainty comes from (``harness/stats.variance_components``), as a small table."""
    rows = b.dropna(subset=["se_item"]) if "se_item" in b else b.iloc[0:0]
    if rows.empty:
        return ""
    out = ["\nVariance components, in points (standard deviations): between π_ref draws, between seeds of one draw, "
           "and the standard error of the mean from the test items. The row mean's variance is about "
           "draw²/draws + seed²/(draws·seeds) + item².\n",
           "| algo | variant | draws × seeds | draw | seed | item |", "|---|---|---:|---:|---:|---:|"]
    for _, r in rows.iterrows():
        variant = f"`{r.variant}`" if isinstance(r.variant, str) and r.variant else ""
        out.append(f"| {r.algo} | {variant} | {int(r.n_draws)} × {int(r.n_seeds)} | {_pts(r.sd_draw)} "
                   f"| {_pts(r.sd_seed)} | {_pts(r.se_item)} |")
    return "\n".join(out) + "\n"


def by_length_markdown(table: pd.DataFrame) -> str:
    """Per (task, model): greedy accuracy by chain length, and Δ from the baseline per length (``by_length.csv``)."""
    if table.empty:
        return ""
    parts = []
    for (task, model), t in table.groupby(["task", "model"], sort=True):
        lengths = sorted(t.chain_length.unique())
        beyond = sorted(t[t.beyond_training].chain_length.unique())
        head = [f"### {task} · {model}: by chain length\n",
                "Greedy accuracy in points per number of operations; in brackets the paired Δ from the baseline on "
                "the items of that length, with its 95% CI" + (f"; lengths {', '.join(map(str, beyond))} lie beyond "
                                                              "the training range (marked *)." if beyond else ".") + "\n"]
        cols = [f"{L}{'*' if L in beyond else ''}" for L in lengths]
        head += ["| algo | variant | " + " | ".join(cols) + " |", "|---|---|" + "---:|" * len(cols)]
        for (algo, variant), r in t.groupby(["algo", "variant"], sort=False):
            cells = []
            for L in lengths:
                x = r[r.chain_length == L]
                if x.empty:
                    cells.append("")
                    continue
                x = x.iloc[0]
                d = (f" ({_pts(x.delta, True)} [{_pts(x.delta_ci_lo, True)}, {_pts(x.delta_ci_hi, True)}])"
                     if pd.notna(x.delta) else "")
                cells.append(f"{_pts(x.accuracy)}{d}")
            label = f"`{variant}`" if variant else ""
            head.append(f"| {algo} | {label} | " + " | ".join(cells) + " |")
        parts.append("\n".join(head) + "\n")
    return "\n".join(parts)


def at_common_compute(b: pd.DataFrame) -> str:
    """One sentence: each row's validation accuracy at the compute every row with a learning curve reached."""
    rows = b.dropna(subset=["val_acc_at_common_flops"]) if "val_acc_at_common_flops" in b else b.iloc[0:0]
    if rows.empty:
        return ""
    each = ", ".join(f"`{r.algo}`" + (f" (`{r.variant}`)" if isinstance(r.variant, str) and r.variant else "")
                     + f" {_pts(r.val_acc_at_common_flops)}" for _, r in
                     rows.sort_values("val_acc_at_common_flops", ascending=False).iterrows())
    return (f"\nAt equal compute ({_si(rows.common_flops.iloc[0])} FLOPs after π_ref, the most every row's learning "
            f"curve reached), validation accuracy in points: {each}.\n")


def significance(b: pd.DataFrame, base: str | None) -> str:
    """One sentence: which rows differ from the baseline at the 5% level once the p-values are Holm-adjusted."""
    tested = b.dropna(subset=["p_holm"]) if "p_holm" in b else b.iloc[0:0]
    if base is None or tested.empty:
        return ""
    label = lambda r: f"`{r.algo}`" + (f" (`{r.variant}`)" if isinstance(r.variant, str) and r.variant else "")  # noqa: E731
    sig = [f"{label(r)} ({_pts(r.delta, True)} points)" for _, r in tested.iterrows() if r.p_holm < 0.05]
    head = f"\nAfter Holm's correction over the {len(tested)} comparison{'s' * (len(tested) != 1)} with `{base}`, "
    if not sig:
        return head + "no difference from it is significant at the 5% level.\n"
    return head + f"{', '.join(sig)} differ{'s' * (len(sig) == 1)} from it at the 5% level; no other row does.\n"


def plot(board: pd.DataFrame, path: Path, curves: dict | None = None, runs: pd.DataFrame | None = None,
         lengths: pd.DataFrame | None = None) -> None:
    """Per task × model: accuracy (95% CI) and the paired Δ from the baseline (95% CI) against total FLOPs
    per run (own + shared data), points at equal cost spread sideways a little to stay readable; with learning
    curves (``eval.every``), a third panel: validation accuracy against compute after π_ref, one line per row
    (mean over its seeds) with the seeds' range as a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = curves or {}
    lengths = lengths if lengths is not None else pd.DataFrame()
    blocks = [(k, b.dropna(subset=["accuracy"])) for k, b in board.groupby(["task", "model"], sort=True)]
    n_panels = 2 + bool(curves) + (not lengths.empty)
    fig, axes = plt.subplots(len(blocks), n_panels, figsize=(6.5 * n_panels, 4.8 * len(blocks)), squeeze=False)
    markers = "osD^vP*Xh<>p"
    for axs, ((task, model), b) in zip(axes, blocks):
        ax, ax_d = axs[0], axs[1]
        if curves and runs is not None:
            _curve_panel(axs[2], b, curves, runs, f"{task} · {model}")
        if not lengths.empty:
            _length_panel(axs[-1], lengths[(lengths.task == task) & (lengths.model == model)], f"{task} · {model}")
        x = (b.flops.fillna(0) + b.data_flops.fillna(0)).to_numpy()
        x = x * (1 + 0.006 * (pd.Series(range(len(b))) - len(b) / 2)).to_numpy()  # sideways spread
        for j, (_, r) in enumerate(b.iterrows()):
            label = r.algo + (f" [{r.variant}]" if isinstance(r.variant, str) and r.variant else "")
            style = dict(fmt=markers[j % len(markers)], capsize=3, color=f"C{j % 10}", label=label)
            lo, hi = r.accuracy_ci_lo, r.accuracy_ci_hi
            err = [[100 * (r.accuracy - lo)], [100 * (hi - r.accuracy)]] if pd.notna(lo) else None
            ax.errorbar(x[j], 100 * r.accuracy, yerr=err, **style)
            if pd.notna(r.delta):
                ax_d.errorbar(x[j], 100 * r.delta, yerr=[[100 * (r.delta - r.delta_ci_lo)],
                                                         [100 * (r.delta_ci_hi - r.delta)]], **style)
        base = b.baseline.dropna()
        ax_d.axhline(0, color="grey", lw=0.8, ls="--")
        ax.set_title(f"{task} · {model}: greedy accuracy")
        ax_d.set_title(f"{task} · {model}: paired Δ from {base.iloc[0] if len(base) else 'the baseline'}")
        ax.set_ylabel("accuracy, % (95% CI over seeds and items)")
        ax_d.set_ylabel("Δ accuracy, points (paired 95% CI)")
        for a in (ax, ax_d):
            a.set_xscale("log")
            a.set_xlabel("FLOPs per run (training + evaluation + shared data)")
            a.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a block of failed runs only has nothing to plot
            ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _length_panel(ax, t: pd.DataFrame, title: str) -> None:
    """Greedy accuracy against chain length, one line per row; lengths beyond the training range shaded."""
    for j, ((algo, variant), r) in enumerate(t.groupby(["algo", "variant"], sort=False)):
        r = r.sort_values("chain_length")
        label = algo + (f" [{variant}]" if isinstance(variant, str) and variant else "")
        ax.plot(r.chain_length, 100 * r.accuracy, marker="osD^vP*Xh<>p"[j % 12], color=f"C{j % 10}", label=label)
    beyond = t[t.beyond_training].chain_length
    if len(beyond):
        ax.axvspan(beyond.min() - 0.5, beyond.max() + 0.5, color="grey", alpha=0.12, label="beyond training")
    ax.set_title(f"{title}: accuracy by chain length")
    ax.set_xlabel("operations in the gold solution")
    ax.set_ylabel("greedy accuracy, % (mean over draws and seeds)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")


def _curve_panel(ax, b: pd.DataFrame, curves: dict, runs: pd.DataFrame, title: str) -> None:
    """Validation accuracy against FLOPs after π_ref: each row's seeds interpolated on one grid up to the
    compute all of them reached, mean line and min-max band."""
    import numpy as np

    for j, (_, r) in enumerate(b.iterrows()):
        mine = runs[(runs.task == r.task) & (runs.model == r.model) & (runs.algo == r.algo)
                    & (runs.variant_id.astype(str) == str(r.variant_id)) & (runs.status == "ok")]
        cs = [curves[rid] for rid in mine.run_id if rid in curves]
        if not cs:
            continue
        grid = np.linspace(max(c.curve_flops.min() for c in cs), min(c.curve_flops.max() for c in cs), 40)
        ys = np.array([np.interp(grid, c.curve_flops.to_numpy(float), c.val_accuracy.to_numpy(float)) for c in cs])
        label = r.algo + (f" [{r.variant}]" if isinstance(r.variant, str) and r.variant else "")
        ax.plot(grid, 100 * ys.mean(0), color=f"C{j % 10}", label=f"{label} ({len(cs)} seeds)")
        ax.fill_between(grid, 100 * ys.min(0), 100 * ys.max(0), color=f"C{j % 10}", alpha=0.15)
    common = b.common_flops.dropna() if "common_flops" in b else []
    if len(common):
        ax.axvline(common.iloc[0], color="grey", lw=0.8, ls="--")
    ax.set_title(f"{title}: validation accuracy along training")
    ax.set_xlabel("FLOPs after π_ref (shared data + the run's own training)")
    ax.set_ylabel("validation accuracy, % (mean, seeds' range)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")
