"""Each prompt computed once (``harness/backbone/prefix.py``, docs/design.md §3): log-probs, values, extra outputs and gradients equal
those of the full padded pass within fp32 tolerance, on groups of completions sharing prompts of mixed lengths."""
import copy

import pytest
import torch

from harness.backbone import prefix
from harness.backbone.agent import Agent
from harness.backbone.sequences import collate
from harness.backbone.value_model import ValueHead, ValueModel
from tests.test_models import small

OUTPUTS = ("entropy", "logsumexp")


def grouped(n_prompts: int = 8, per_prompt: int = 6, one_token: bool = False) -> list[dict]:
    """Prompts of 10..34 tokens, each with ``per_prompt`` completions, short (1..8 tokens) and long (40..59) in
    turn, rows interleaved."""
    torch.manual_seed(0)
    prompts = [torch.randint(3, 290, (10 + (7 * i) % 25,)).tolist() for i in range(n_prompts)]
    seqs = []
    for j in range(per_prompt):
        for i, p in enumerate(prompts):
            n = 1 if one_token else (1 + (i * 37 + j * 11) % 8 if j % 2 else 40 + (i * 7 + j) % 20)
            seqs.append({"prompt_ids": p, "completion_ids": torch.randint(3, 290, (n,)).tolist()})
    return seqs


def close(a, b, tol=1e-5):
    assert torch.allclose(a, b, atol=tol, rtol=tol), (a - b).abs().max()


@pytest.mark.parametrize("value", ["separate", "head", None])
def test_prompt_shared_forward_equals_the_padded_one(value):
    tok, model = small()
    t = collate(grouped(), tok.pad_token_id)
    vm = {"separate": lambda: ValueModel(copy.deepcopy(model)), "head": lambda: ValueHead(model.config.hidden_size),
          None: lambda: None}[value]()
    if isinstance(vm, ValueHead):  # a zero head gives zero values: move it, so values and their gradients count
        torch.nn.init.normal_(vm.linear.weight, std=0.1)
    agent = Agent(model, vm)
    path, groups = agent._plan(t)
    assert path == "prefix" and len(groups) > 1  # 8 prompts for 48 rows: shared, in several buckets
    got = agent(t, OUTPUTS)
    want = agent._forward(t, OUTPUTS, True, True)
    close(got[0], want[0])
    assert (got[1] is None) == (want[1] is None)
    if want[1] is not None:
        close(got[1], want[1])
    for k in OUTPUTS:
        close(got[2][k], want[2][k])
    grads = []
    for out in (got, want):
        agent.zero_grad()
        loss = (out[0] * torch.linspace(-1, 1, out[0].size(1))).sum()
        if out[1] is not None:
            loss = loss + (out[1] ** 2).sum()
        loss.backward(retain_graph=True)
        grads.append({n: p.grad.clone() for n, p in agent.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for n in grads[1]:
        close(grads[0][n], grads[1][n], 1e-4)


def test_values_without_the_policy_and_one_token_completions():
    tok, model = small()
    agent = Agent(model, ValueModel(copy.deepcopy(model)))
    for seqs in (grouped(), grouped(one_token=True)):
        t = collate(seqs, tok.pad_token_id)
        got, want = agent._prefix_forward(t, prefix.layout(t), (), False, True), agent._forward(t, (), False, True)
        assert got[0] is None and want[0] is None
        close(got[1], want[1])
    got, want = agent._prefix_forward(t, prefix.layout(t), (), True, False), agent._forward(t, (), True, False)
    close(got[0], want[0])


def test_the_split_keeps_a_prompts_rows_together_and_counts_what_it_computes():
    tok, _ = small()
    t = collate(grouped(), tok.pad_token_id)
    groups = prefix.split(t)
    everything = [list(range(48))]
    assert sorted(i for g in groups for i in g) == everything[0] and len(groups) > 1
    assert prefix.cost(t, groups) < prefix.cost(t, everything)
    assert prefix.cost(t, everything, overhead=0) == prefix.counts(prefix.layout(t))[1]
    # all rows of a prompt with equal completion lengths: one bucket, the prompt once
    same = [{"prompt_ids": [5] * 30, "completion_ids": [7] * 10} for _ in range(8)]
    assert prefix.split(collate(same, tok.pad_token_id)) == [list(range(8))]


def test_each_distinct_prompt_runs_once():
    tok, _ = small()
    seqs = grouped(n_prompts=6, per_prompt=4)
    t = collate(seqs, tok.pad_token_id)
    lay = prefix.layout(t)
    assert lay["prompt_ids"].size(0) == 6
    prompts = {tuple(s["prompt_ids"]) for s in seqs}
    longest = max(len(s["completion_ids"]) for s in seqs)
    assert prefix.counts(lay)[0] == sum(map(len, prompts)) + sum(min(len(s["completion_ids"]), longest - 1)
                                                                 for s in seqs)
    for row, s in enumerate(seqs):  # each row's prompt, left-padded, is its own
        g = int(lay["group"][row])
        assert lay["prompt_ids"][g][lay["prompt_mask"][g].bool()].tolist() == s["prompt_ids"]


def test_the_agent_falls_back_to_buckets_when_nothing_is_shared_or_under_gradient_checkpointing():
    tok, model = small()
    torch.manual_seed(1)
    unique = [{"prompt_ids": torch.randint(3, 290, (40,)).tolist(), "completion_ids": [5, 6]} for _ in range(8)]
    agent = Agent(model, None)
    assert agent._plan(collate(unique, tok.pad_token_id))[0] == "whole"
    t = collate(grouped(), tok.pad_token_id)
    model.gradient_checkpointing_enable()
    assert agent._plan(t)[0] == "whole"
    model.gradient_checkpointing_disable()
    assert agent._plan(t)[0] == "prefix"
    sharded = Agent(model, None, sharded=True)  # always one bucket, and shared: every process makes the same calls
    assert sharded._plan(collate(unique, tok.pad_token_id)) == ("prefix", [list(range(8))])
    close(sharded(t)[0], agent._forward(t, (), True, True)[0])


def test_batches_grouped_by_prompt_keep_each_prompts_examples_together():
    from harness.backbone.training import step_batches

    groups = [i // 8 for i in range(80)]  # 10 prompts x 8 samples, as a bank lists them
    batches = list(step_batches(80, 32, 5, seed=3, groups=groups))
    flat = [i for b in batches for i in b]
    assert sorted(flat[:80]) == list(range(80))  # an epoch is every example once
    runs = [groups[i] for i in flat[:80]]
    assert all(runs[k] == runs[k - 1] or runs[k] not in runs[:k] for k in range(1, 80))  # a prompt's 8 in a row
    assert flat != list(range(80)) + flat[80:]  # shuffled
    # distinct prompts: the same order as shuffling examples one by one (π_ref's SFT is unchanged by the option)
    assert list(step_batches(50, 16, 6, 1, groups=list(range(50)))) == list(step_batches(50, 16, 6, 1))
