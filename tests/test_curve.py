"""Accuracy against compute (``harness/pipeline/curve.py``, ``harness/reporting/matched_compute.py``): learning curves on validation along training, and the
leaderboard's validation accuracy at the compute every row reached."""
import json

import pandas as pd
import pytest

from harness.reporting import matched_compute as curve
from tests.conftest import run_cli


def test_accuracy_at_a_budget_interpolates_and_the_common_budget_is_the_least_reached():
    a = pd.DataFrame({"curve_flops": [10.0, 20.0, 40.0], "val_accuracy": [0.1, 0.3, 0.5]})
    b = pd.DataFrame({"curve_flops": [5.0, 30.0], "val_accuracy": [0.2, 0.4]})
    assert curve.at_budget(a, 30.0) == pytest.approx(0.4)
    assert curve.at_budget(a, 5.0) == pytest.approx(0.1)  # before the first point: its value
    assert pd.isna(curve.at_budget(b, 31.0))  # past a curve's end: unknown, never extrapolated
    assert curve.common_budget({"x": [a], "y": [b, a]}) == 30.0  # every seed of every row reached it
    history = pd.DataFrame({"step": [1, 2, 3], "loss": [1.0, 0.9, 0.8], "val_accuracy": [None, 0.5, None],
                            "curve_flops": [None, 7.0, None], "curve_device_s": [None, 1.0, None],
                            "curve_gen_tokens": [None, 3, None]})
    assert curve.points(history).step.tolist() == [2]


@pytest.mark.slow
def test_runs_record_learning_curves_and_the_leaderboard_compares_at_equal_compute(tmp_path, smoke_overrides):
    common = ["eval.every=2", "eval.curve_items=8", *smoke_overrides, f"results_dir={tmp_path}"]
    for args in (["algo=sft"], ["algo=grpo", "algo.n_samples=4", "algo.prompts_per_iter=4"]):
        proc = run_cli([*args, *common])
        assert proc.returncode == 0, proc.stderr[-3000:]
    runs = pd.read_csv(tmp_path / "runs.csv")
    for algo in ("sft", "grpo"):
        rid = runs[runs.algo == algo].run_id.iloc[0]
        pts = curve.points(pd.read_json(tmp_path / "runs" / rid / "train_history.jsonl", lines=True))
        assert len(pts) >= 2 and pts.curve_flops.is_monotonic_increasing and pts.curve_flops.iloc[0] > 0
        assert pts.val_accuracy.between(0, 1).all()
        cost = json.loads((tmp_path / "runs" / rid / "cost.json").read_text())
        assert cost["diagnostics"]["curve"]["points"] == len(pts) and cost["diagnostics"]["curve"]["items"] == 8
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    trained = board[board.algo != "reference"]
    assert trained.common_flops.nunique() == 1 and trained.val_acc_at_common_flops.notna().all()
    assert "At equal compute" in (tmp_path / "leaderboard.md").read_text()
