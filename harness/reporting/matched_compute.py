"""Accuracy at matched compute (docs/design.md §11): the learning-curve points of a run (``harness/pipeline/curve.py`` records
them) and the validation accuracy every row reached at a common budget. Pure pandas, for the report.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def points(history: pd.DataFrame) -> pd.DataFrame:
    """The curve points of a run's history (``train_history.jsonl``)."""
    if "val_accuracy" not in history:
        return pd.DataFrame(columns=["step", "val_accuracy", "curve_flops", "curve_device_s", "curve_gen_tokens"])
    return history.dropna(subset=["val_accuracy"])[["step", "val_accuracy", "curve_flops", "curve_device_s",
                                                    "curve_gen_tokens"]]


def at_budget(curve: pd.DataFrame, flops: float) -> float:
    """Validation accuracy at ``flops``, linear between the points around it (nan past the curve's end)."""
    x, y = curve.curve_flops.to_numpy(float), curve.val_accuracy.to_numpy(float)
    if not len(x) or flops > x.max() * (1 + 1e-9):
        return float("nan")
    return float(np.interp(flops, x, y))


def common_budget(curves: dict) -> float:
    """The largest compute every curve (each seed of each row) reached: the smallest of their last FLOPs
    (``curves``: row → [curve per seed])."""
    ends = [c.curve_flops.max() for cs in curves.values() for c in cs if len(c)]
    return min(ends) if ends else float("nan")
