"""log π_ref from the trainer's own forward (docs/design.md §3): an engine whose log-probs are not the trainer's
(bf16 autocast here; vLLM on a GPU) never feeds a loss, and the tokens charged are the tokens computed."""
import copy
import math

import pytest
import torch
from omegaconf import OmegaConf

from algorithms._base import TrainData
from harness.backbone.training import Learner, make_accelerator, train
from harness.generation.engines import HFEngine
from harness.generation.logprob_gap import gap
from harness.registry import get_algorithm
from tests.test_models import TEXTS, small

CFG = dict(steps=1, batch_size=8, micro_batch_size=4, warmup_ratio=0.0, lr_schedule="constant", max_grad_norm=1.0,
           weight_decay=0.0, checkpoint_every=0, checkpoint_minutes=0, log_every=0, group_by_prompt=True)


def sampled_bank(tok, model, exact: bool):
    """A bank as an engine leaves it: the sampler's log-probs as ``ref_logps``, half the samples correct."""
    prompts = [t.split("Answer:")[0] + "Answer:" for t in TEXTS[:4]]
    out = HFEngine(model, tok, exact_logprobs=exact).generate(prompts, n=4, temperature=1.0, max_new_tokens=10, seed=0)
    return [{"prompt_id": f"p{i}", "prompt_ids": g[0].prompt_ids,
             "samples": [{"prompt_id": f"p{i}", "sample": j, "prompt_ids": s.prompt_ids, "completion_ids": s.token_ids,
                          "sampler_logps": s.logprobs, "ref_logps": s.logprobs, "reward": float(j % 2 == 0)}
                         for j, s in enumerate(g)]} for i, g in enumerate(out)]


def accelerator(precision: str):
    """A fresh Accelerator at ``precision`` (accelerate keeps one state per process: reset it between tests)."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    return make_accelerator(precision)


def first_step(algo_name, bank, *, recompute: bool, precision="bf16", cfg=CFG):
    """One optimiser step of the plug-in on ``bank``; with ``recompute`` the pipeline's rule for an inexact sampler
    (no ``ref_logps``: the trainer fills them). Returns the step's record and the updated policy."""
    tok, model = small()
    torch.manual_seed(0)
    algo = get_algorithm(algo_name)(lr=1e-3)
    bank = copy.deepcopy(bank)
    if recompute:
        for g in bank:
            for s in g["samples"]:
                s["ref_logps"] = None
    value = None
    if algo.needs_value_model:
        from harness.backbone.value_model import ValueModel

        value = ValueModel(copy.deepcopy(model))
    examples = algo.build_examples(TrainData(bank=bank), __import__("random").Random(0))
    res = train(model, algo, examples, OmegaConf.create(cfg), seed=0, pad_id=tok.pad_token_id,
                accelerator=accelerator(precision), value_model=value)
    return res["history"][0], res["model"], res


@pytest.fixture(scope="module")
def bank_bf16():
    tok, model = small()
    return sampled_bank(tok, model, exact=False)


def test_under_bf16_the_first_step_sees_log_ratios_of_exactly_zero(bank_bf16):
    """DPO's loss is log 2 and DQO's importance weights are 1 at the first step, as they must be when π_θ = π_ref;
    with the sampler's log-probs (fp32 decoding beside a bf16 trainer) they would not be."""
    dpo, _, _ = first_step("dpo", bank_bf16, recompute=True)
    assert dpo["chosen_logratio"] == 0.0 and dpo["rejected_logratio"] == 0.0
    assert abs(dpo["dpo_loss"] - math.log(2)) < 1e-6
    dqo, _, _ = first_step("dqo", bank_bf16, recompute=True)
    assert dqo["seq_logratio_mean"] == 0.0 and dqo["is_weight_mean"] == 1.0 and dqo["is_weight_sq_mean"] == 1.0
    stale, _, _ = first_step("dqo", bank_bf16, recompute=False)  # the old way: the sampler's numbers
    assert abs(stale["seq_logratio_mean"]) > 1e-4 and stale["is_weight_sq_mean"] != 1.0


def test_perturbed_sampler_logprobs_never_reach_a_loss(bank_bf16):
    """The same update whether the sampler's log-probs were right or off by a lot: they are not read."""
    noisy = copy.deepcopy(bank_bf16)
    for g in noisy:
        for s in g["samples"]:
            s["ref_logps"] = [x + 0.5 * (-1) ** i for i, x in enumerate(s["ref_logps"])]
    for algo in ("dpo", "dqo"):
        rec_a, model_a, _ = first_step(algo, bank_bf16, recompute=True)
        rec_b, model_b, _ = first_step(algo, noisy, recompute=True)
        assert rec_a["loss"] == rec_b["loss"]
        for pa, pb in zip(model_a.parameters(), model_b.parameters()):
            assert torch.equal(pa, pb)


def test_the_reference_forward_is_metered():
    tok, model = small()
    bank = sampled_bank(tok, model, exact=False)
    _, _, with_fill = first_step("dqo", bank, recompute=True, precision="fp32")
    _, _, without = first_step("dqo", bank, recompute=False, precision="fp32")
    n_tokens = sum(len(s["prompt_ids"]) + len(s["completion_ids"]) for g in bank for s in g["samples"])
    assert without["forward_tokens"] == 0 and 0 < with_fill["forward_tokens"] <= n_tokens


def test_gap_figures():
    out = gap([[-1.0, -2.0], [-0.5]], [[-1.0, -2.5], [-0.25]])
    assert out["logprob_gap_mean"] == pytest.approx(0.25) and out["logprob_gap_max"] == 0.5
    assert out["logprob_gap_seq"] == pytest.approx(0.375)
    # k3 = e^r - 1 - r with r = trainer - sampler: 0, e^-0.5 - 1 + 0.5, e^0.25 - 1 - 0.25
    assert out["logprob_gap_k3"] == pytest.approx((math.exp(-0.5) - 0.5 + math.exp(0.25) - 1.25) / 3)
    assert gap([[-1.0]], [[-1.0]])["logprob_gap_k3"] == 0.0


def test_charged_tokens_are_the_tokens_the_forward_computed():
    """A prompt shared by a batch is computed once when its completions share a forward call, and once per call
    when micro-batches split them: the count follows what ran, not the batch's distinct prompts."""
    tok, model = small()
    prompt = tok(TEXTS[0].split("Answer:")[0] + "Answer:")["input_ids"]  # ~30 tokens, shared by 16 completions
    comps = [tok(f" {i}")["input_ids"] + [tok.eos_token_id] for i in range(16)]
    examples = [{"seq": {"prompt_ids": prompt, "completion_ids": c, "ref_logps": [0.0] * len(c), "reward": 1.0}}
                for c in comps]
    algo = get_algorithm("sft")(lr=1e-3)
    counted = {}
    for mbs in (16, 1):
        learner = Learner(copy.deepcopy(model), algo, OmegaConf.create({**CFG, "batch_size": 16,
                                                                          "micro_batch_size": mbs}), steps=1,
                          seed=0, pad_id=tok.pad_token_id, accelerator=accelerator("fp32"))
        learner.step(examples, 1)
        counted[mbs] = learner.tokens
    assert counted[1] == sum(len(prompt) + len(c) for c in comps)  # each micro-batch computes the prompt again
    # one call sharing it: the prompt once, then every completion token but the longest rows' last (never fed)
    longest = max(map(len, comps))
    assert counted[16] == len(prompt) + sum(min(len(c), longest - 1) for c in comps)
