import copy

import pytest
import torch
from omegaconf import OmegaConf

from algorithms.sft import SFT
from harness.backbone.training import make_accelerator, step_batches, train
from tests.test_models import small


def cfg(**kw):
    base = dict(steps=1, batch_size=8, micro_batch_size=8, warmup_ratio=0.0, lr_schedule="constant",
                max_grad_norm=0.0, weight_decay=0.0, checkpoint_every=0, log_every=0)
    return OmegaConf.create({**base, **kw})


def examples(tok, n=8):
    out = []
    for i in range(n):  # completions of different lengths, so token- and sequence-means differ
        p = tok(f"Question: Ann has {i} pens.\nAnswer:")["input_ids"]
        c = tok(" " + " + 1" * (i + 1) + f"\n#### {i}")["input_ids"] + [tok.eos_token_id]
        out.append({"seq": {"prompt_ids": p, "completion_ids": c, "ref_logps": [-1.0] * len(c), "reward": 1.0},
                    "chosen": {"prompt_ids": p, "completion_ids": c, "ref_logps": [-1.0] * len(c)},
                    "rejected": {"prompt_ids": p, "completion_ids": c[: len(c) // 2 + 1],
                                 "ref_logps": [-1.5] * (len(c) // 2 + 1)}})
    return out


def test_sft_reduces_loss_and_non_finite_loss_names_the_step():
    tok, model = small()
    ex = examples(tok)
    res = train(model, SFT(lr=1e-2), ex, cfg(steps=30), seed=0, pad_id=tok.pad_token_id,
                accelerator=make_accelerator())
    assert res["history"][-1]["loss"] < 0.5 * res["history"][0]["loss"]

    class Broken(SFT):
        def loss(self, batch, stats):
            terms, m = super().loss(batch, stats)
            terms["nll"].values = terms["nll"].values * float("nan")
            return terms, m

    with pytest.raises(FloatingPointError, match="non-finite loss term 'nll' .* at step 1"):
        train(model, Broken(lr=1e-3), ex, cfg(), seed=0, pad_id=tok.pad_token_id, accelerator=make_accelerator())


def test_step_batches_cover_every_example_each_epoch():
    batches = list(step_batches(10, 4, 5, seed=0))
    flat = [i for b in batches for i in b]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
    assert batches == list(step_batches(10, 4, 5, seed=0))


def test_killed_run_resumes_from_its_checkpoint_to_the_same_result(tmp_path):
    tok, model = small()
    ex = examples(tok)
    c = cfg(steps=4, batch_size=4, micro_batch_size=4, checkpoint_every=2, lr_schedule="cosine", warmup_ratio=0.25)
    full = train(copy.deepcopy(model), SFT(lr=1e-2), ex, c, seed=0, pad_id=tok.pad_token_id,
                 accelerator=make_accelerator())["model"]

    class DiesAtStep3(SFT):
        calls = 0

        def loss(self, batch, stats):
            DiesAtStep3.calls += 1
            if DiesAtStep3.calls == 3:
                raise KeyboardInterrupt  # the job is killed during step 3
            return super().loss(batch, stats)

    interrupted = copy.deepcopy(model)
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, DiesAtStep3(lr=1e-2), ex, c, seed=0, pad_id=tok.pad_token_id,
              accelerator=make_accelerator(), ckpt_dir=tmp_path)
    assert (tmp_path / "step.json").exists()
    res = train(copy.deepcopy(model), SFT(lr=1e-2), ex, c, seed=0, pad_id=tok.pad_token_id,
                accelerator=make_accelerator(), ckpt_dir=tmp_path)
    assert res["steps"] == 2  # steps 3 and 4 only
    for a, b in zip(res["model"].parameters(), full.parameters()):
        torch.testing.assert_close(a, b)
