"""Length buckets compute what the padded batch computes (docs/design.md §3): log-probs, values and extra outputs equal
within fp32 tolerance on a batch of mixed lengths, for a separate value model and a head on the policy."""
import copy

import torch

from harness.backbone.agent import Agent
from harness.backbone.buckets import OVERHEAD, split
from harness.backbone.sequences import collate
from harness.backbone.value_model import ValueHead, ValueModel
from tests.test_models import small


def test_the_split_groups_similar_lengths_and_keeps_close_ones_together():
    assert split([10, 11, 12, 10]) == [[0, 3, 1, 2]]  # close: one call
    groups = split([10] * 20 + [200] * 20)
    assert sorted(map(sorted, groups)) == [list(range(20)), list(range(20, 40))]
    lengths = [5, 300, 7, 290, 6, 310] * 8
    assert sorted(i for g in split(lengths) for i in g) == list(range(len(lengths)))
    assert split([3], OVERHEAD) == [[0]]


def test_bucketed_forward_equals_the_padded_one():
    tok, model = small()
    torch.manual_seed(0)
    seqs = []
    for i in range(24):  # prompts of 3..12 tokens, completions of 1..60: much padding in one batch
        seqs.append({"prompt_ids": torch.randint(3, 290, (3 + i % 10,)).tolist(),
                     "completion_ids": torch.randint(3, 290, (1 + (i * 37) % 60,)).tolist()})
    t = collate(seqs, tok.pad_token_id)
    assert len(split(t["attention_mask"].sum(1).tolist())) > 1  # the test exercises several buckets
    for value in (ValueModel(copy.deepcopy(model)), ValueHead(model.config.hidden_size)):
        agent = Agent(model, value)
        got = agent(t, ("entropy", "logsumexp"))
        want = agent._forward(t, ("entropy", "logsumexp"), True, True)
        for a, b in [(got[0], want[0]), (got[1], want[1]), *((got[2][k], want[2][k]) for k in want[2])]:
            assert torch.allclose(a, b, atol=1e-5, rtol=1e-5), (a - b).abs().max()
        # and the gradients through them
        grads = []
        for out in (got, want):
            agent.zero_grad()
            ((out[0] * t["mask"]).sum() + (out[1] * t["mask"]).sum()).backward(retain_graph=True)
            grads.append([p.grad.clone() for p in agent.parameters() if p.grad is not None])
        for a, b in zip(*grads):
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
