"""``train.compile`` (docs/design.md §3): the training passes through ``torch.compile`` compute what the eager ones do, on both
of the Agent's paths (shared prompts, whole sequences), values and gradients included; the state dict is the eager
module's; sharded weights are refused before any work."""
import copy

import pytest
import torch

from harness.backbone.agent import Agent
from harness.backbone.sequences import collate
from harness.backbone.value_model import ValueModel
from harness.config.compose import compose
from harness.errors import UserError
from tests.test_models import small
from tests.test_prefix import OUTPUTS, close, grouped


def passes(agent, t):
    """Both paths' outputs and every parameter's gradient of a loss on them."""
    agent.zero_grad()
    shared = agent(t, OUTPUTS)
    whole = agent._forward(t, OUTPUTS, True, True)
    loss = sum((o[0] * torch.linspace(-1, 1, o[0].size(1))).sum() + (o[1] ** 2).sum() for o in (shared, whole))
    loss.backward()
    return shared, whole, {n: p.grad.clone() for n, p in agent.named_parameters() if p.grad is not None}


@pytest.mark.slow  # compiling takes ~1 minute on 2 CPU cores
def test_compiled_passes_equal_the_eager_ones():
    tok, model = small()
    t = collate(grouped(), tok.pad_token_id)
    eager = Agent(model, ValueModel(copy.deepcopy(model)))
    compiled = Agent(copy.deepcopy(model), copy.deepcopy(eager.value), compile=True)
    assert compiled.state_dict().keys() == eager.state_dict().keys()
    assert compiled._plan(t)[0] == "prefix"
    got, want = passes(compiled, t), passes(eager, t)
    for g, w in zip(got[:2], want[:2]):
        close(g[0], w[0], 1e-4)
        close(g[1], w[1], 1e-4)
        for k in OUTPUTS:
            close(g[2][k], w[2][k], 1e-4)
    assert got[2].keys() == want[2].keys() and got[2]
    for n in want[2]:
        close(got[2][n], want[2][n], 1e-3)
    assert compiled._compiled and all(m is not compiled.policy for m in compiled._compiled.values())


def test_compile_with_sharded_weights_is_refused_before_any_work():
    for dist in ("zero3", "fsdp"):
        with pytest.raises(UserError, match="train.compile=true does not run with sharded weights"):
            compose(["train.compile=true", f"dist={dist}"])
    assert compose(["train.compile=true", "dist=ddp"]).train.compile
    with pytest.raises(UserError, match="train.compile='yes': must be true or false"):
        compose(["train.compile=yes"])
