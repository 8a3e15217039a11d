"""Per-request sampling noise: a request draws the same tokens in any batch, order or shard, and the draws
follow softmax(logits / T), restricted to the top-p nucleus."""
import math

import torch

from harness.generation.engines import HFEngine
from harness.generation.sampling import GumbelSampler, request_keys, uniforms
from tests.test_models import TEXTS, small


def test_a_request_draws_the_same_tokens_in_any_batch_order_or_shard():
    tok, model = small()
    prompts = [t.split("Answer:")[0] + "Answer:" for t in TEXTS[:10]]
    ids = lambda out: [[s.token_ids for s in g] for g in out]  # noqa: E731
    whole = ids(HFEngine(model, tok, batch_size=64).generate(prompts, n=3, temperature=1.0, max_new_tokens=12, seed=5))
    small_batches = ids(HFEngine(model, tok, batch_size=4).generate(prompts, n=3, temperature=1.0, max_new_tokens=12,
                                                                     seed=5))
    assert small_batches == whole
    engine = HFEngine(model, tok, batch_size=7)
    for rank in range(2):  # two "processes", each with every other prompt and its global key
        shard = ids(engine.generate(prompts[rank::2], n=3, temperature=1.0, max_new_tokens=12, seed=5,
                                    keys=list(range(10))[rank::2]))
        assert shard == whole[rank::2]
    other_seed = ids(engine.generate(prompts, n=3, temperature=1.0, max_new_tokens=12, seed=6))
    assert other_seed != whole
    assert len({tuple(s) for g in whole for s in g}) > 10  # the samples of a prompt differ from each other


def test_draws_follow_the_tempered_softmax_and_top_p():
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0])
    n, T = 40_000, 0.7
    keys = request_keys(11, torch.arange(n), torch.zeros(n, dtype=torch.int64))
    sampler = GumbelSampler(keys, prompt_width=3, temperature=T)
    picks = sampler(torch.zeros(n, 3, dtype=torch.long), logits.expand(n, 5).clone()).argmax(-1)
    freq = torch.bincount(picks, minlength=5).double() / n
    p = torch.softmax(logits.double() / T, -1)
    assert (freq - p).abs().max() < 4 * math.sqrt(0.25 / n), (freq, p)  # within 4 standard errors
    nucleus = GumbelSampler(keys, prompt_width=3, temperature=1.0, top_p=0.7)
    picks = nucleus(torch.zeros(n, 3, dtype=torch.long), logits.expand(n, 5).clone()).argmax(-1)
    # p = softmax(logits) = .53 .20 .12 .07 .03: the nucleus reaching 0.7 is the first two tokens
    assert set(picks.tolist()) == {0, 1}
    u = uniforms(keys[:1000], 0, 5)
    assert 0 < u.min() and u.max() < 1 and abs(u.mean().item() - 0.5) < 0.02
    assert not torch.equal(uniforms(keys[:5], 0, 5), uniforms(keys[:5], 1, 5))  # a new draw at every position
