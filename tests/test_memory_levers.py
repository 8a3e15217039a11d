"""Memory levers on every algorithm: gradient checkpointing changes no update, LoRA trains adapters only and
keeps π_ref as the same module with its adapters off, bad levers stop with one line."""
import copy
import json

import pytest
import torch
from omegaconf import OmegaConf

from harness.backbone.memory import adapters_off, check_levers, trainable
from harness.backbone.sequences import collate, completion_logps
from harness.backbone.training import Learner, make_accelerator, mixed_precision
from harness.backbone.value_model import ValueModel
from harness.errors import UserError
from harness.registry import available, get_algorithm
from tests.conftest import run_cli
from tests.test_accumulation import _defaults_for_tests, bank, examples_for, moved
from tests.test_models import small

LEVERS = {"dtype": "float32", "gradient_checkpointing": False,
          "lora": {"r": 0, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"}}
TRAIN = {"warmup_ratio": 0.0, "lr_schedule": "constant", "max_grad_norm": 1.0, "weight_decay": 0.0,
         "micro_batch_size": 4}


def levers(**kw):
    return OmegaConf.merge(OmegaConf.create(LEVERS), kw)


def one_step(model, value_model, mcfg, batch, tok, algo):
    learner = Learner(trainable(model, mcfg), algo, OmegaConf.create(TRAIN), steps=1, seed=0,
                      pad_id=tok.pad_token_id, accelerator=make_accelerator(),
                      value_model=value_model)
    learner.step(copy.deepcopy(batch), 1)
    return learner


TRAINED = [n for n in available("algorithm") if get_algorithm(n).trains]


def setup(name, **options):
    from algorithms._base import TrainData

    tok, ref = small()
    data = TrainData(bank=bank(tok, ref))
    data.demo = [s for g in data.bank for s in g["samples"] if s["reward"] > 0]
    cls = get_algorithm(name)
    algo = cls(**{**_defaults_for_tests(cls), "lr": 1e-2, **options})
    return tok, ref, algo, examples_for(algo, tok, ref, data)[:8], moved(ref, data, tok.pad_token_id)


def value_model_for(algo, policy, mcfg):
    if not algo.needs_value_model:
        return None
    return ValueModel(trainable(copy.deepcopy(policy), mcfg, task_type=None))


@pytest.mark.parametrize("name", TRAINED)
def test_gradient_checkpointing_changes_no_update(name):
    tok, ref, algo, batch, policy = setup(name)
    after = []
    for gc in (False, True):
        mcfg = levers(gradient_checkpointing=gc)
        learner = one_step(copy.deepcopy(policy), value_model_for(algo, policy, mcfg), mcfg, batch, tok, algo)
        assert learner.policy.is_gradient_checkpointing == gc
        critic = [] if learner.critic is None else list(learner.critic.parameters())
        after.append([p.detach().clone() for p in [*learner.policy.parameters(), *critic]])
    for a, b in zip(*after):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", TRAINED)
def test_lora_trains_only_adapters_on_every_algorithm(name):
    tok, ref, algo, batch, policy = setup(name)
    mcfg = levers(lora={"r": 4, "alpha": 8})
    base = {k: v.detach().clone() for k, v in policy.named_parameters()}
    value_model = value_model_for(algo, policy, mcfg)  # its own trunk, before the policy gets adapters in place
    learner = one_step(trainable(policy, mcfg), value_model, levers(), batch, tok, algo)
    moved_adapters = 0
    for key, p in learner.policy.named_parameters():
        if "lora_" in key:
            moved_adapters += int(p.requires_grad)
        else:
            torch.testing.assert_close(p, base[key.replace("base_model.model.", "").replace(".base_layer", "")])
    assert moved_adapters > 0


def test_lora_trains_adapters_only_and_pi_ref_is_the_policy_with_adapters_off():
    from algorithms._base import TrainData

    tok, ref = small()
    data = TrainData(bank=bank(tok, ref))
    algo = get_algorithm("dqo")(lr=5e-2, value_lr=5e-2)
    batch = examples_for(algo, tok, ref, data)[:8]
    t = collate([ex["seq"] for ex in batch], tok.pad_token_id)
    with torch.no_grad():
        base = completion_logps(ref, t)[0]
    mcfg = levers(lora={"r": 4, "alpha": 8})
    policy = trainable(copy.deepcopy(ref), mcfg)
    n_train = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    assert 0 < n_train < 0.2 * sum(p.numel() for p in policy.parameters())
    with torch.no_grad():  # adapters start at zero: the wrapped policy is π_ref
        torch.testing.assert_close(completion_logps(policy, t)[0], base)
    vm = ValueModel(trainable(copy.deepcopy(ref), mcfg, task_type=None))
    assert any(p.requires_grad for p in vm.head.parameters())
    learner = one_step(policy, vm, OmegaConf.create({**LEVERS, "lora": {"r": 0}}), batch, tok, algo)
    with torch.no_grad():
        trained = completion_logps(learner.policy, t)[0]
        with adapters_off(learner.policy):
            off = completion_logps(learner.policy, t)[0]
    assert (trained - base).abs().max() > 1e-4  # the adapters moved the policy ...
    torch.testing.assert_close(off, base)  # ... and π_ref is still there, with no second copy
    frozen = dict(ref.named_parameters())
    for name, p in learner.policy.named_parameters():  # the base weights did not move
        if "lora_" not in name:
            key = name.replace("base_model.model.", "").replace(".base_layer", "")
            torch.testing.assert_close(p, frozen[key])


def test_levers_this_setup_cannot_combine_stop_with_one_line():
    """(Each lever's own bad values: tests/test_schema.py.)"""
    with pytest.raises(UserError, match="model.lora with generation.engine=vllm"):
        check_levers(levers(lora={"r": 4, "alpha": 8, "dropout": 0.0}), "vllm")
    check_levers(levers(lora={"r": 4, "alpha": 8, "dropout": 0.0}), "hf")


def test_precision_options():
    assert mixed_precision("fp32") == "no" and mixed_precision("bf16") == "bf16"
    assert mixed_precision("auto") == ("bf16" if torch.cuda.is_available() else "no")
    with pytest.raises(UserError, match="train.precision='fp8'"):
        mixed_precision("fp8")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="train.precision=fp16 needs a GPU"):
            mixed_precision("fp16")


@pytest.mark.slow  # whole jobs through the CLI: the fast suite keeps one such sweep
def test_levers_end_to_end_on_the_tiny_model(tmp_path, smoke_overrides):
    """LoRA on an online algorithm whose π_ref is the adapters-off policy (GRPO with a KL term) and on an offline
    one with a separate value trunk (DQO), with gradient checkpointing and bf16 autocast; then the same DQO run
    with checkpointing off, in another results_dir, computes the same thing: the same run id (the lever is no part
    of the key) and the same losses up to float order (checkpointing turns the prompt-sharing path off, so the
    forward runs in length buckets: other sums, in bf16)."""
    common = [*smoke_overrides, "include_reference=false", "model.lora.r=4", "train.precision=bf16"]
    for args in (["algo=grpo", "algo.prompts_per_iter=8", "algo.n_samples=4"], ["algo=dqo"]):
        res = run_cli([*args, "model.gradient_checkpointing=true", f"results_dir={tmp_path / 'on'}", *common])
        assert res.returncode == 0, res.stderr[-3000:]
    res = run_cli(["algo=dqo", f"results_dir={tmp_path / 'off'}", *common])
    assert res.returncode == 0, res.stderr[-3000:]
    on, off = ({p.parent.name: p.parent for p in (tmp_path / d / "runs").glob("*dqo*/metrics.json")} for d in ("on", "off"))
    assert set(on) == set(off) and len(on) == 1
    (rid,) = on
    hist = [[json.loads(x) for x in (d[rid] / "train_history.jsonl").read_text().splitlines()] for d in (on, off)]
    for a, b in zip(*hist):
        assert a["loss"] == pytest.approx(b["loss"], rel=2e-2, abs=1e-3)
