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
                     "MFU is the run's own stages against the device's peak.\n")
        parts.append(f"| algo | variant | seeds | accuracy | Δ vs {base or '—'} | p | points / device-h | sampled "
                     "| train tokens | FLOPs run + data | wall s run + data | MFU | status |")
        parts.append("|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
        for _, r in b.iterrows():
            ci = f" [{_pts(r.accuracy_ci_lo)}, {_pts(r.accuracy_ci_hi)}]" if pd.notna(r.accuracy_ci_lo) else ""
            d = (f"{_pts(r.delta, True)} [{_pts(r.delta_ci_lo, True)}, {_pts(r.delta_ci_hi, True)}]"
                 if pd.notna(r.delta) else "")
            p = f"{r.p_value:.3f}" if pd.notna(r.p_value) else ""
            variant = f"`{r.variant}`" if isinstance(r.variant, str) and r.variant else ""
            gain = f"{r.gain_per_device_hour:+.1f}" if pd.notna(r.gain_per_device_hour) else ""
            mfu = f"{100 * r.mfu:.1f}%" if pd.notna(r.mfu) else ""
            parts.append(f"| {r.algo} | {variant} | {int(r.n_seeds)} | {_pts(r.accuracy)}{ci} | {d} | {p} | {gain} "
                         f"| {_pts(r.accuracy_sampled)} | {_si(r.train_tokens)} | {_si(r.flops)} + {_si(r.data_flops)} "
                         f"| {r.wall_s:.0f} + {r.data_wall_s:.0f} | {mfu} | {r.status} |")
        parts.append("")
    return "\n".join(parts)


def plot(board: pd.DataFrame, path: Path) -> None:
    """Accuracy (with its CI) against total FLOPs per run (own + shared data), one panel per task × model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = [(k, b.dropna(subset=["accuracy"])) for k, b in board.groupby(["task", "model"], sort=True)]
    fig, axes = plt.subplots(1, len(blocks), figsize=(6.5 * len(blocks), 4.8), squeeze=False)
    for ax, ((task, model), b) in zip(axes[0], blocks):
        x = (b.flops.fillna(0) + b.data_flops.fillna(0)).to_numpy()
        y = 100 * b.accuracy.to_numpy()
        lo = 100 * (b.accuracy - b.accuracy_ci_lo.fillna(b.accuracy)).to_numpy()
        hi = 100 * (b.accuracy_ci_hi.fillna(b.accuracy) - b.accuracy).to_numpy()
        markers = "osD^vP*Xh<>p"
        for j, (_, r) in enumerate(b.iterrows()):
            label = r.algo + (f" [{r.variant}]" if isinstance(r.variant, str) and r.variant else "")
            ax.errorbar(x[j], y[j], yerr=[[lo[j]], [hi[j]]], fmt=markers[j % len(markers)], capsize=3,
                        color=f"C{j % 10}", label=label)
        ax.legend(fontsize=7, loc="best")
        ref = b[b.algo == "reference"]
        if len(ref):
            ax.axhline(100 * ref.accuracy.iloc[0], color="grey", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_xlabel("FLOPs per run (training + evaluation + shared data)")
        ax.set_ylabel("greedy accuracy, % (95% CI)")
        ax.set_title(f"{task} · {model}")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
