"""The leaderboard for a person: a Markdown table (CI as brackets) and an accuracy-vs-cost plot."""
from __future__ import annotations

from pathlib import Path

import pandas as pd


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
        parts.append("Greedy accuracy in points, mean over seeds, with a 95% bootstrap CI over seeds and test "
                     "items" + (f"; Δ: paired difference from `{base}` on the same items, with its CI and "
                                "two-sided bootstrap p." if base else ".") + " Points / device-h: accuracy gained over "
                     "`reference` per device-hour spent after π_ref (own stages, bank, process values). Costs are "
                     "means per run; `data` is the shared artifacts (warm start, bank, process values) the run used; "
                     "MFU is the run's own stages against the device's peak. Sampled for learning: tokens generated to make "
                     "the training signal (the bank and process values, or an online algorithm's rollouts). p (Holm): "
                     "p adjusted for the number of comparisons with the baseline in this table. Examples: distinct "
                     "training examples (pairs, trajectories or rollouts, as the algorithm builds them) / examples "
                     "seen over all optimiser steps.\n")
        parts.append(f"| algo | variant | seeds | accuracy | Δ vs {base or '—'} | p | p (Holm) | points / device-h "
                     "| sampled | examples | sampled for learning | train tokens | FLOPs run + data | wall s run + data "
                     "| MFU | status |")
        parts.append("|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
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
                parts.append(f"| {r.algo} | {variant} | 0 | failed | | | | | | | | | | | | {r.status} |")
                continue
            parts.append(f"| {r.algo} | {variant} | {int(r.n_seeds)} | {_pts(r.accuracy)}{ci} | {d} | {p} | {p_holm} "
                         f"| {gain} | {_pts(r.accuracy_sampled)} | {seen} | {_si(r.get('train_gen_tokens'))} "
                         f"| {_si(r.train_tokens)} "
                         f"| {_si(r.flops)} + {_si(r.data_flops)} "
                         f"| {r.wall_s:.0f} + {r.data_wall_s:.0f} | {mfu} | {r.status} |")
        parts.append(significance(b, base))
        parts.append(at_common_compute(b))
        parts.append("")
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


def plot(board: pd.DataFrame, path: Path, curves: dict | None = None, runs: pd.DataFrame | None = None) -> None:
    """Per task × model: accuracy (95% CI) and the paired Δ from the baseline (95% CI) against total FLOPs
    per run (own + shared data), points at equal cost spread sideways a little to stay readable; with learning
    curves (``eval.every``), a third panel: validation accuracy against compute after π_ref, one line per row
    (mean over its seeds) with the seeds' range as a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = curves or {}
    blocks = [(k, b.dropna(subset=["accuracy"])) for k, b in board.groupby(["task", "model"], sort=True)]
    fig, axes = plt.subplots(len(blocks), 3 if curves else 2, figsize=(19.5 if curves else 13, 4.8 * len(blocks)),
                             squeeze=False)
    markers = "osD^vP*Xh<>p"
    for axs, ((task, model), b) in zip(axes, blocks):
        ax, ax_d = axs[0], axs[1]
        if curves and runs is not None:
            _curve_panel(axs[2], b, curves, runs, f"{task} · {model}")
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
