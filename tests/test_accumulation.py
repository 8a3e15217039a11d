"""The backbone's promise to every plug-in: how an optimiser batch is split into micro-batches never changes
the update. One test over every registered algorithm (and the options that add batch statistics or change
the reduction), each fed through its own data path: ``build_examples`` on a bank, or ``rollout_examples``."""
import copy
import math
import random

import pytest
import torch
from omegaconf import OmegaConf

from algorithms._base import TrainData
from harness.backbone.agent import fill_ref_logps
from harness.backbone.sequences import collate, completion_logps
from harness.backbone.training import Learner, make_accelerator
from harness.backbone.value_model import ValueHead, ValueModel
from harness.registry import available, get_algorithm
from tests.test_models import small

BATCH = 8
VARIANTS = [(n, {}) for n in available("algorithm") if get_algorithm(n).trains] + [
    ("dqo", {"is_self_normalize": True}), ("dqo", {"value_model": "shared", "value_coef": 0.5}),
    ("kto", {"desirable_weight": 1.3}), ("grpo", {"loss_type": "grpo"}), ("grpo", {"loss_type": "dr_grpo"}),
    ("tbrm", {"source": "bank"}), ("apo", {"entropy_coef": 0.01, "filter_all_incorrect": True})]


class GradientStep(torch.optim.SGD):
    """Stands in for AdamW (same call): plain SGD at each group's lr, so the update is lr x the gradient. A class,
    not a function, because DeepSpeed subclasses ``torch.optim.AdamW`` when it is imported."""

    def __init__(self, groups, **kw):
        super().__init__(groups, lr=0.0)


def bank(tok, ref_model, n_prompts=6, k=4):
    """Prompts with k samples of different lengths each, half of them correct, with π_ref's log-probs."""
    out = []
    for p in range(n_prompts):
        prompt = tok(f"Question: Ann has {p} pens.\nAnswer:")["input_ids"]
        samples = []
        for j in range(k):
            completion = tok(" " + " + 1" * (p + j + 1) + f"\n#### {p}")["input_ids"] + [tok.eos_token_id]
            samples.append({"prompt_id": f"p{p}", "sample": j, "prompt_ids": prompt, "completion_ids": completion,
                            "ref_logps": None, "reward": float(j % 2 == 0)})
        out.append({"prompt_id": f"p{p}", "prompt_ids": prompt, "samples": samples})
    fill_ref_logps(ref_model, [{"seq": s} for g in out for s in g["samples"]], ("seq",), tok.pad_token_id)
    return out


def moved(model, data, pad_id):
    """A policy some way from π_ref, so that log-ratios, KTO's z₀ and DQO's weights are not trivial: noise,
    then a few SGD steps up the likelihood of the correct samples (some log-ratios positive, some negative)."""
    policy = copy.deepcopy(model)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    opt = torch.optim.SGD(policy.parameters(), lr=0.005)
    t = collate([s for grp in data.bank for s in grp["samples"] if s["reward"] > 0], pad_id)
    for _ in range(3):
        logps, _ = completion_logps(policy, t)
        (-(logps * t["mask"]).sum() / t["mask"].sum()).backward()
        opt.step()
        opt.zero_grad()
    return policy


def examples_for(algo, tok, model, data):
    algo.prepare(data)
    if not algo.online:
        ex = algo.build_examples(data, random.Random(0))
        fill_ref_logps(model, ex, algo.slots, tok.pad_token_id)
        return ex
    return algo.rollout_examples(rollouts(data), len(data.bank[0]["samples"]))


def rollouts(data):
    """The bank's samples as the online loop hands them over: grouped by prompt, with π_old and old values."""
    g = torch.Generator().manual_seed(1)
    seqs = []
    for grp in data.bank:
        for s in grp["samples"]:
            n = len(s["completion_ids"])
            seqs.append({**s, "old_logps": [x + 0.3 * torch.randn(1, generator=g).item() for x in s["ref_logps"]],
                         "old_values": torch.rand(n, generator=g).tolist()})
    return seqs


@pytest.mark.parametrize("name", [n for n in available("algorithm") if get_algorithm(n).trains])
def test_no_plugin_changes_what_it_is_handed(name):
    """``build_examples`` and ``rollout_examples`` return new examples and leave the bank and the rollouts as
    they were (the online loop and the report read them after the plug-in)."""
    tok, ref = small()
    data = TrainData(bank=bank(tok, ref))
    data.demo = [s for g in data.bank for s in g["samples"] if s["reward"] > 0]
    cls = get_algorithm(name)
    algo = cls(**_defaults_for_tests(cls))
    algo.prepare(data)
    before = copy.deepcopy(data.bank)
    if algo.online:
        seqs = rollouts(data)
        handed = copy.deepcopy(seqs)
        algo.rollout_examples(seqs, len(data.bank[0]["samples"]))
        assert seqs == handed
    else:
        algo.build_examples(data, random.Random(0))
    assert data.bank == before


@pytest.mark.parametrize("name,options", VARIANTS, ids=[f"{n}-{'-'.join(map(str, o.values()))}" if o else n
                                                        for n, o in VARIANTS])
def test_micro_batching_never_changes_the_update(name, options, monkeypatch):
    """Micro-batches of 1, 2 and 4 examples, and the whole batch of 8: the same update of the policy and of
    the value model. SGD at lr 1 stands in for AdamW, so the update is the gradient itself (Adam's first
    step is invariant to the gradient's scale and would hide a normalisation off by a constant)."""
    monkeypatch.setattr(torch.optim, "AdamW", GradientStep)
    tok, ref = small()
    data = TrainData(bank=bank(tok, ref))
    data.demo = [s for g in data.bank for s in g["samples"] if s["reward"] > 0]
    cls = get_algorithm(name)
    algo = cls(**{**_defaults_for_tests(cls), **options, "lr": 1.0})
    batch = examples_for(algo, tok, ref, data)[:BATCH]
    assert len(batch) == BATCH
    model = moved(ref, data, tok.pad_token_id)
    cfg = OmegaConf.create({"warmup_ratio": 0.0, "lr_schedule": "constant", "max_grad_norm": 0.0, "weight_decay": 0.0})
    value_model = None
    if algo.needs_value_model:
        value_model = ValueModel(copy.deepcopy(model)) if algo.opts.value_model == "separate" else ValueHead(32)
        head = value_model.head if isinstance(value_model, ValueModel) else value_model
        head.linear.weight.data.normal_(0, 0.1)  # a zero head would hide the value trunk's gradient
    updates = []
    for micro in (1, 2, 4, BATCH):
        m, vm = copy.deepcopy(model), copy.deepcopy(value_model)
        before = _flat(m, vm)
        learner = Learner(m, algo, OmegaConf.merge(cfg, {"micro_batch_size": micro}), steps=1, seed=0,
                          pad_id=tok.pad_token_id, accelerator=make_accelerator(), value_model=vm)
        rec = learner.step(copy.deepcopy(batch), 1)
        updates.append((_flat(learner.policy, learner.critic)[0] - before[0],
                        None if vm is None else _flat(learner.policy, learner.critic)[1] - before[1], rec))
    policy, value, record = updates[-1]
    assert policy.abs().max() > 0 and (value is None or value.abs().max() > 0)
    for p, v, rec in updates[:-1]:  # float32 sums in another order: equal up to rounding at the update's scale
        torch.testing.assert_close(p, policy, rtol=1e-4, atol=1e-6 * max(1.0, policy.abs().max().item()))
        if value is not None:
            torch.testing.assert_close(v, value, rtol=1e-4, atol=1e-6 * max(1.0, value.abs().max().item()))
        assert rec.keys() == record.keys()
        for key, want in record.items():  # the loss and every logged metric: the whole batch's, however it is split
            got = rec[key]
            assert math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-4) or (math.isnan(got) and math.isnan(want)), \
                (key, got, want)


def _flat(model, value_model):
    pol = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    val = None if value_model is None else torch.cat([p.detach().flatten().clone() for p in value_model.parameters()])
    return pol, val


def _defaults_for_tests(cls) -> dict:
    """Values for the options whose default interpolates the full config."""
    from harness.options import defaults, is_interpolation

    fill = {"prompt_pool": 6, "budget": {"prompts": 6}, "max_completion_length": 16}  # the bank's 6 prompts
    return {k: v for k, v in fill.items() if k in defaults(cls.Options)
            and (is_interpolation(defaults(cls.Options)[k]) or isinstance(defaults(cls.Options)[k], dict))}
