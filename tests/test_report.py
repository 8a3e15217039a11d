"""The leaderboard a user reads: one row per algorithm *variant*, seeds averaged, never configs mixed."""
import pandas as pd

from harness.config.variants import variant_id, variant_label
from harness.reporting.leaderboard import leaderboard


def _run(algo, seed, acc, variant="", vid="a"):
    return {"run_id": f"{algo}-{seed}-{vid}", "task": "arith", "model": "tiny", "algo": algo, "variant": variant,
            "variant_id": vid, "seed": seed, "status": "ok", "accuracy": acc, "accuracy_sampled": acc, "n_eval": 500,
            "wall_s": 1.0, "gen_tokens": 1, "train_tokens": 1, "flops": 1.0, "peak_mem_mb": 1.0, "data_wall_s": 0.0,
            "data_gen_tokens": 0, "data_train_tokens": 0, "data_flops": 0.0}


def test_hyperparameter_variants_are_separate_rows():
    runs = pd.DataFrame([_run("reference", 0, 0.4), _run("dqo", 0, 0.5), _run("dqo", 1, 0.6),
                         _run("dqo", 0, 0.1, "algo.lam=0", "b"), _run("dqo", 1, 0.2, "algo.lam=0", "b")])
    board = leaderboard(runs)
    assert list(board.algo) == ["reference", "dqo", "dqo"]  # reference first, then by accuracy
    plain, lam0 = board.iloc[1], board.iloc[2]
    assert plain.variant == "" and plain.n_seeds == 2 and abs(plain.accuracy - 0.55) < 1e-9
    assert lam0.variant == "algo.lam=0" and abs(lam0.accuracy - 0.15) < 1e-9


def test_a_variant_shows_its_shortest_label():
    """A tuning run's `algo.lr=1e-05` and a later run at the same (now default) lr are one variant and one row."""
    runs = pd.DataFrame([_run("reference", 0, 0.4), _run("dqo", 0, 0.5, "algo.lr=1e-05"), _run("dqo", 1, 0.6)])
    board = leaderboard(runs)
    assert len(board) == 2 and board.iloc[1].variant == "" and board.iloc[1].n_seeds == 2


def test_variant_label_keeps_only_what_changes_the_run():
    spec = {"algo": {"name": "dqo", "lam": 0.0}, "train": {"steps": 5}, "seed": 1}
    overrides = ["algo=dqo", "algo.lam=0", "seed=1", "results_dir=/tmp/x", "train.steps=5", "bank.k=2"]
    assert variant_label(overrides, spec) == "algo.lam=0 train.steps=5"  # bank is not used by this run
    ref_spec = {"algo": {"name": "reference"}, "seed": 1}
    assert variant_label(overrides, ref_spec) == ""  # the reference row is shared by every variant
    assert variant_id(spec) == variant_id({**spec, "seed": 2}) != variant_id({**spec, "train": {"steps": 6}})


def test_variant_label_includes_overrides_read_through_interpolation():
    """`bank.n_prompts=500` changes an online run through `algo.prompt_pool: ${bank.n_prompts}`: the settings keep
    the keys each section reads through an interpolation (found before Hydra resolves them), and the run's label
    names the override."""
    from omegaconf import OmegaConf

    from harness.config.schema import interpolations

    cfg = OmegaConf.create({"bank": {"n_prompts": 500, "k": 8}, "seed": 0,
                            "algo": {"name": "grpo", "prompt_pool": "${bank.n_prompts}"}})
    assert interpolations(cfg) == {"algo": ["bank.n_prompts"]}
    spec = {"algo": OmegaConf.to_container(cfg.algo, resolve=True), "seed": 0}
    assert variant_label(["algo=grpo", "bank.n_prompts=500", "bank.k=4"], spec, {"bank.n_prompts"}) == \
        "bank.n_prompts=500"


def test_report_writes_csv_markdown_and_plot_with_paired_delta(tmp_path):
    import json

    from harness.reporting.leaderboard import write_reports

    # reference solves items 0-49 of 100; dqo also solves 50-59 on every seed: +10 points, paired.
    for algo, seeds, solved in [("reference", [0, 1], 50), ("dqo", [0, 1, 2], 60)]:
        for seed in seeds:
            rid = f"arith-tiny-{algo}-s{seed}-x"
            d = tmp_path / "runs" / rid
            d.mkdir(parents=True)
            run = _run(algo, seed, solved / 100) | {"run_id": rid}
            (d / "metrics.json").write_text(json.dumps(run))
            (d / "samples.jsonl").write_text("".join(
                json.dumps({"prompt_id": f"q{i}", "kind": "greedy", "correct": float(i < solved)}) + "\n"
                for i in range(100)))
    paths = write_reports(tmp_path)
    board = pd.read_csv(paths["leaderboard"])
    dqo = board[board.algo == "dqo"].iloc[0]
    assert dqo.baseline == "reference" and abs(dqo.delta - 0.10) < 1e-9 and dqo.p_value < 0.01
    assert dqo.accuracy_ci_lo < 0.60 < dqo.accuracy_ci_hi
    assert "| dqo |" in paths["markdown"].read_text() and "+10.0" in paths["markdown"].read_text()
    assert paths["plot"].stat().st_size > 10_000


def test_rows_are_read_against_the_baseline_run_with_the_same_shared_settings():
    from harness.reporting.leaderboard import matching_row

    rows = [_run("reference", 0, 0.4, "", "r0"), _run("reference", 0, 0.5, "task.n_test=50", "r1"),
            _run("dqo", 0, 0.6, "task.n_test=50 train.steps=5", "d1"), _run("dqo", 0, 0.6, "algo.lam=0", "d2")]
    board = leaderboard(pd.DataFrame(rows)).set_index("variant_id", drop=False).reset_index(drop=True)
    idx = {vid: i for i, vid in enumerate(board.variant_id)}
    assert matching_row(board, idx["d1"], "reference") == idx["r1"]  # same test subset, not the default
    assert matching_row(board, idx["d2"], "reference") == idx["r0"]
    assert matching_row(board, idx["r1"], "dqo") is None  # dqo's settings are not a subset of r1's


def test_p_values_are_holm_adjusted_per_block_and_the_markdown_says_which_survive():
    from harness.reporting.leaderboard import holm
    from harness.reporting.report_views import markdown

    board = pd.DataFrame({"task": "arith", "model": "tiny", "algo": ["reference", "dqo", "dpo", "kto"],
                          "variant": "", "baseline": [None, "reference", "reference", "reference"],
                          "delta": [None, 0.1, 0.05, -0.01], "p_value": [None, 0.01, 0.04, 0.30]})
    holm(board)
    # Holm: sorted p times (m, m-1, ...), running maximum: 0.01*3, 0.04*2, 0.30*1
    assert board.p_holm.isna()[0] and list(board.p_holm[1:].round(6)) == [0.03, 0.08, 0.30]
    text = markdown(board.assign(n_seeds=1, accuracy=0.5, accuracy_ci_lo=None, accuracy_ci_hi=None, delta_ci_lo=0.0,
                                 delta_ci_hi=0.0, gain_per_device_hour=None, accuracy_sampled=0.5, n_train_examples=10,
                                 examples_seen=20, train_gen_tokens=0, train_tokens=0, flops=0, data_flops=0, wall_s=1,
                                 data_wall_s=0, mfu=None, status="ok"))
    sentence = text.split("After Holm")[1]
    assert "3 comparisons" in sentence and "`dqo` (+10.0 points) differs" in sentence and "dpo" not in sentence
    assert "| 10 / 20 |" in text  # distinct examples / examples seen


def test_a_row_is_set_by_hand_only_when_it_overrides_one_of_the_algorithms_own_options():
    from harness.reporting.leaderboard import chosen_by

    assert chosen_by(pd.Series([""])) == "defaults"
    assert chosen_by(pd.Series(["eval.every=50 train.steps=100"])) == "defaults"  # the whole comparison's settings
    assert chosen_by(pd.Series(["algo.lr=1e-05 eval.every=50"])) == "set by hand"
    assert chosen_by(pd.Series(["algo.lr=1e-05", "algo.beta=0.1 algo.lr=1e-05"])) == "set by hand"


def test_pairwise_takes_each_algorithms_tuned_row_puts_the_better_first_and_holm_adjusts():
    import numpy as np

    from harness.reporting.pairwise import pairwise

    rng = np.random.default_rng(0)
    solved = {"reference": 100, "dpo": 100, "dqo": 160}  # of 400 items; dqo's extra 60 on every seed
    runs, scores = [], {}
    for algo, n in solved.items():
        for seed in range(3):
            vid = f"{algo}-tuned" if algo != "reference" else "r"
            runs.append(_run(algo, seed, n / 400, "algo.lr=1e-05" if algo != "reference" else "", vid))
            noise = rng.random(400) < 0.02  # a few items flip per seed
            scores[runs[-1]["run_id"]] = pd.Series((np.arange(400) < n) ^ noise, dtype=float)
    runs.append(_run("dqo", 0, 0.1, "", "dqo-default"))  # its defaults: not dqo's representative once tuned
    runs.append(_run("dpo", 0, 0.9, "algo.beta=9", "dpo-hand"))  # set by hand: never a representative
    runs = pd.DataFrame(runs)
    tuned = {"dqo-tuned": {"chosen": "tuned on val, 4 trials"}, "dpo-tuned": {"chosen": "tuned on val, 4 trials"}}
    board = leaderboard(runs, scores, tuned=tuned)
    pairs = pairwise(board, runs, scores)
    assert len(pairs) == 3 and set(pairs.better_variant) | set(pairs.worse_variant) <= {"algo.lr=1e-05", ""}
    top = pairs.iloc[0]
    assert top.better == "dqo" and top.delta > 0.1 and top.p_holm < 0.05  # survives Holm over 3 pairs
    same = pairs[pairs.better.isin(["dpo", "reference"])
                 & pairs.worse.isin(["dpo", "reference"])].iloc[0]
    assert same.p_holm > 0.05 and same.p_holm >= same.p_value


def test_draws_are_a_factor_each_run_read_against_its_own_pi_ref_with_power_and_lengths(tmp_path):
    """Two π_ref draws 20 points apart, dqo +5 points on each: the runs are paired with the reference of their
    own draw, the leaderboard states draws × seeds, variance components and the MDE, and the by-length table
    shows the gain where it is (the long chains, beyond the training range)."""
    import json

    from harness.reporting.leaderboard import write_reports

    n = 400
    length = {f"q{i}": 1 + i % 4 for i in range(n)}  # chain lengths 1-4; training reached 3
    for draw, base in [(0, 0.3), (1, 0.5)]:
        for algo, gain, seeds in [("reference", 0.0, [0, 1]), ("dqo", 0.05, [0, 1])]:
            for seed in seeds:
                rid = f"arith-tiny-{algo}-d{draw}-s{seed}"
                solved = {q for q in length if int(q[1:]) < base * n}
                # dqo's gain: the 20 easiest-to-flip items of length 4 that π_ref misses
                extra = [q for q in length if q not in solved and length[q] == 4][: int(gain * n)]
                solved |= set(extra)
                d = tmp_path / "runs" / rid
                d.mkdir(parents=True)
                run = _run(algo, seed, len(solved) / n, "", "a" if algo == "dqo" else "r") | {
                    "run_id": rid, "ref_draw": draw, "ref_sha256": f"sha{draw}", "train_chain_max": 3}
                (d / "metrics.json").write_text(json.dumps(run))
                (d / "samples.jsonl").write_text("".join(json.dumps(
                    {"prompt_id": q, "kind": "greedy", "correct": float(q in solved), "chain_length": L}) + "\n"
                    for q, L in length.items()))
    paths = write_reports(tmp_path)
    board = pd.read_csv(paths["leaderboard"])
    dqo = board[board.algo == "dqo"].iloc[0]
    assert dqo.n_draws == 2 and dqo.n_seeds == 2
    assert abs(dqo.delta - 0.05) < 1e-9 and dqo.p_value < 0.01 and dqo.delta_ci_lo > 0.02
    assert 0 < dqo.mde <= dqo.mde_holm and dqo.reading == "better"
    assert dqo.sd_draw > 0.1 and dqo.sd_seed == 0 and dqo.se_item > 0
    lengths = pd.read_csv(paths["by_length"])
    mine = lengths[lengths.algo == "dqo"].set_index("chain_length")
    assert list(mine.index) == [1, 2, 3, 4] and list(mine.beyond_training) == [False, False, False, True]
    assert abs(mine.delta[4] - 0.2) < 1e-9 and (mine.delta[[1, 2, 3]] == 0).all()
    text = paths["markdown"].read_text()
    assert "| dqo |  | 2 × 2 |" in text and "Variance components" in text and "by chain length" in text
    assert "4*" in text  # the length beyond training is marked
