"""The analytic FLOP count (what the leaderboard reports) against PyTorch's own FLOP counter."""
import torch
from torch.utils.flop_counter import FlopCounterMode

from harness.backbone import compute
from harness.backbone.models import build_tiny_model, train_tiny_tokenizer
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


def test_cpu_peak_is_probed_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(compute, "CPU_PEAK_CACHE", tmp_path / "peak.json")
    monkeypatch.setattr(compute.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(compute, "_matmul_probe", lambda: 1e10)
    assert compute.peak_flops()[0] == 1e10
    monkeypatch.setattr(compute, "_matmul_probe", lambda: 1 / 0)  # a second probe would fail
    assert compute.peak_flops()[0] == 1e10
    util = compute.utilisation(flops=5e9, wall_s=1.0)
    assert util["device_s"] == 1.0 and abs(util["mfu"] - 0.5) < 1e-12


def test_gpu_peak_comes_from_trls_table(monkeypatch):
    monkeypatch.setattr(compute.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(compute.torch.cuda, "get_device_name", lambda *a: "NVIDIA H100 80GB HBM3")
    assert compute.peak_flops()[0] == 989e12
    monkeypatch.setattr(compute.torch.cuda, "get_device_name", lambda *a: "Some Future GPU")
    assert compute.peak_flops()[0] is None  # MFU left empty rather than guessed
