"""The online loop (PPO, GRPO): budgets, on-policy sampling and metered generation, as a user runs it."""
import json

import pandas as pd
import pytest

from harness.backbone.online import online_plan, prompt_order
from harness.errors import UserError
from harness.registry import get_algorithm
from tests.conftest import run_cli

ONLINE = ["++algo.prompts_per_iter=8", "++algo.n_samples=4", "value_check.n_prompts=8"]


def algo(name="ppo", **cfg):
    base = {"n_samples": 4, "prompts_per_iter": 8, "epochs": 2, "prompt_pool": 24, "budget": {"prompts": 20}}
    if name == "grpo":
        base["max_completion_length"] = 12
    return get_algorithm(name)(**{**base, **cfg})


def test_plan_sees_exactly_the_budgeted_prompts():
    plan = online_plan(algo(), batch_size=8)
    assert plan["iteration_sizes"] == [8, 8, 4]
    assert plan["steps"] == 2 * (4 + 4 + 2)  # epochs x ceil(prompts x samples / batch) per iteration
    order = prompt_order(24, 60, seed=0)
    assert sorted(order[:24]) == list(range(24))  # every prompt once before any twice
    assert prompt_order(24, 60, seed=0) == order != prompt_order(24, 60, seed=1)


@pytest.mark.parametrize("cfg,msg", [({"n_samples": 0}, "algo.n_samples"), ({"epochs": 1.5}, "algo.epochs"),
                                     ({"budget": {"prompts": "lots"}}, "algo.budget.prompts"),
                                     ({"budget": {"prompts": 8, "gen_tokens": -1}}, "algo.budget.gen_tokens")])
def test_bad_online_options_fail_with_one_line(cfg, msg):
    with pytest.raises(UserError, match=msg):
        online_plan(algo(**cfg), batch_size=8)
    with pytest.raises(UserError, match="grpo"):
        online_plan(algo("grpo", n_samples=1), batch_size=8)


@pytest.mark.slow  # whole jobs through the CLI: the fast suite keeps one such sweep
def test_ppo_and_grpo_run_on_policy_and_meter_their_generation(tmp_path, smoke_overrides):
    res = run_cli(["-m", "algo=ppo,grpo", f"results_dir={tmp_path}", *smoke_overrides, *ONLINE])
    assert res.returncode == 0, res.stderr[-3000:]
    runs = pd.read_csv(tmp_path / "runs.csv").set_index("algo")
    assert (runs.status == "ok").all()
    for name in ("ppo", "grpo"):
        d = tmp_path / "runs" / runs.loc[name, "run_id"]
        rollouts = [json.loads(x) for x in (d / "rollouts.jsonl").read_text().splitlines()]
        assert len(rollouts) == 3  # bank.n_prompts=24 prompts (the budget), 8 per iteration
        assert sum(r["n_samples"] for r in rollouts) == 24 * 4
        cost = json.loads((d / "cost.json").read_text())
        # every generated token is metered: the rollout stage's are the run's learning samples
        assert cost["stages"]["rollout"]["gen_tokens"] == sum(r["gen_tokens"] for r in rollouts) \
            == runs.loc[name, "train_gen_tokens"] > 0
        assert cost["stages"]["train"]["train_tokens"] > 0 and runs.loc[name, "data_gen_tokens"] == 0
        history = [json.loads(x) for x in (d / "train_history.jsonl").read_text().splitlines()]
        assert len(history) == runs.loc[name, "online_steps"]
    # The first step on each rollout batch is on-policy: the sampler's log-probs are the trained policy's.
    d = tmp_path / "runs" / runs.loc["ppo", "run_id"]
    history = [json.loads(x) for x in (d / "train_history.jsonl").read_text().splitlines()]
    firsts = [min((h for h in history if h["iteration"] == i), key=lambda h: h["step"]) for i in (1, 2, 3)]
    assert len(firsts) == 3 and all(h["approx_kl"] < 1e-8 for h in firsts), firsts
    assert max(h["approx_kl"] for h in history) > 1e-8  # ... and later ones are not: the policy moved
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    assert set(board.algo) == {"reference", "ppo", "grpo"} and "train_gen_tokens" in board.columns


@pytest.mark.slow  # whole jobs through the CLI: the fast suite keeps one such sweep
def test_generated_token_budget_stops_early(tmp_path, smoke_overrides):
    res = run_cli(["algo=grpo", f"results_dir={tmp_path}", *smoke_overrides, *ONLINE, "include_reference=false",
                   "algo.budget.gen_tokens=1"])
    assert res.returncode == 0, res.stderr[-3000:]
    (metrics,) = [json.loads(p.read_text()) for p in tmp_path.glob("runs/*/metrics.json")]
    assert metrics["online_iterations"] == 1 and metrics["train_gen_tokens"] > 0


def online_setup(tmp_path):
    from omegaconf import OmegaConf

    from harness.generation.engines import HFEngine
    from tasks import get_task
    from tests.test_models import small

    tok, model = small()
    task = get_task("arith", n_train=64, n_test=8)
    task.bind_tokenizer(tok)
    cfg = OmegaConf.create({"model": {"max_new_tokens": 12}, "train": {
        "batch_size": 8, "micro_batch_size": 8, "warmup_ratio": 0.0, "lr_schedule": "cosine", "max_grad_norm": 1.0,
        "weight_decay": 0.0, "checkpoint_every": 4, "log_every": 0}})
    return tok, model, task, cfg, HFEngine


def test_killed_online_run_resumes_to_the_same_result(tmp_path):
    """Checkpoints at iteration boundaries, a crash mid-run, then a resume that ends where an uninterrupted
    run ends: same weights, same history and rollout log."""
    import copy

    import torch

    from algorithms.grpo import GRPO
    from harness.backbone.compute import Meter
    from harness.backbone.online import train_online
    from harness.backbone.training import make_accelerator

    tok, model, task, cfg, HFEngine = online_setup(tmp_path)
    prompts = task.load_splits()["train"]
    opts = {"lr": 1e-2, "n_samples": 4, "prompts_per_iter": 4, "epochs": 1, "prompt_pool": 16,
            "budget": {"prompts": 16}, "max_completion_length": 12, "beta": 0.0}

    def run(algo, ckpt):
        m = copy.deepcopy(model)
        return train_online(algo, prompts, task, HFEngine(m, tok, batch_size=16), model=m, ref_model=None,
                            value_model=None, cfg=cfg.train, max_new_tokens=int(cfg.model.max_new_tokens), seed=0, pad_id=tok.pad_token_id,
                            accelerator=make_accelerator(), meter=Meter(), ckpt_dir=ckpt)

    full = run(GRPO(**opts), None)
    assert len(full["rollouts"]) == 4 and len(full["history"]) == 8

    class Dies(GRPO):
        calls = 0

        def loss(self, batch, stats):
            Dies.calls += 1
            if Dies.calls == 6:
                raise KeyboardInterrupt  # killed during step 6, after the checkpoint at step 4
            return super().loss(batch, stats)

    with pytest.raises(KeyboardInterrupt):
        run(Dies(**opts), tmp_path)
    class Counts(GRPO):
        calls = 0

        def loss(self, batch, stats):
            Counts.calls += 1
            return super().loss(batch, stats)

    res = run(Counts(**opts), tmp_path)
    assert Counts.calls == 4  # resumed at step 4: steps 5-8 only
    assert [r["reward_mean"] for r in res["rollouts"]] == [r["reward_mean"] for r in full["rollouts"]]
    assert [h["step"] for h in res["history"]] == list(range(1, 9))
    for a, b in zip(res["model"].parameters(), full["model"].parameters()):
        torch.testing.assert_close(a, b)
