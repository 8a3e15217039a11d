"""The analytic FLOP count (what the leaderboard reports) against PyTorch's own FLOP counter."""
import torch
from torch.utils.flop_counter import FlopCounterMode

from harness import compute
from harness.models import build_tiny_model, train_tiny_tokenizer
from tests.test_models import TEXTS


def test_analytic_flops_match_torch_flop_counter_within_10_percent():
    tok = train_tiny_tokenizer(TEXTS, vocab_size=512)
    model = build_tiny_model(tok)  # the default tiny model: 128 hidden, 4 layers
    batch, length = 8, 80
    x = torch.randint(0, len(tok), (batch, length))
    with FlopCounterMode(display=False) as fwd:
        model(x)
    analytic = compute.generate_flops(model.config, batch * length, length)
    assert abs(fwd.get_total_flops() / analytic - 1) < 0.10

    with FlopCounterMode(display=False) as step:
        model(x).logits.float().logsumexp(-1).mean().backward()
    analytic = compute.train_flops(model.config, batch * length, length)
    assert abs(step.get_total_flops() / analytic - 1) < 0.10
