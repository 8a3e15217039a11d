"""The vLLM engine: one clear line without a GPU; on a GPU (``pytest -m gpu``) its samples and log-probs
agree with the trainer's forward pass, and pushed weights change what it samples."""
import pytest
import torch

from harness.backbone.sequences import collate, completion_logps
from harness.errors import UserError
from harness.generation.engines import make_engine
from tests.test_models import TEXTS, small


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without a GPU")
def test_vllm_without_a_gpu_fails_with_one_line(tmp_path):
    tok, model = small()
    with pytest.raises(UserError) as e:
        make_engine("vllm", model, tok, model_path=str(tmp_path))
    assert "generation.engine=hf" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.gpu
def test_vllm_engine_logprobs_and_weight_sync(tmp_path):
    pytest.importorskip("vllm")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    tok, model = small()
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    engine = make_engine("vllm", model, tok, model_path=str(tmp_path), gpu_memory_utilization=0.2)
    prompts = [t.split("Answer:")[0] + "Answer:" for t in TEXTS[:8]]
    out = engine.generate(prompts, n=3, temperature=1.0, max_new_tokens=12, seed=0)
    assert [len(g) for g in out] == [3] * 8
    seqs = [{"prompt_ids": s.prompt_ids, "completion_ids": s.token_ids} for g in out for s in g if s.token_ids]
    t = collate(seqs, tok.pad_token_id)
    with torch.no_grad():
        ref, _ = completion_logps(model.float(), t)
    ours = torch.zeros_like(ref)
    flat = [s for g in out for s in g if s.token_ids]
    for i, s in enumerate(flat):
        ours[i, : len(s.logprobs)] = torch.tensor(s.logprobs)
    assert (ours - ref).abs().max() < 0.05  # vLLM's raw log-probs are log π, up to its kernels' precision
    greedy_before = engine.generate(prompts, n=1, temperature=0.0, max_new_tokens=12)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    engine.load_weights(model)
    greedy_after = engine.generate(prompts, n=1, temperature=0.0, max_new_tokens=12)
    assert [g[0].token_ids for g in greedy_before] != [g[0].token_ids for g in greedy_after]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without a GPU")
def test_vllm_without_a_gpu_stops_before_any_work(tmp_path):
    from tests.conftest import run_cli

    res = run_cli(["algo=grpo", "generation.engine=vllm", f"results_dir={tmp_path}"])
    assert res.returncode != 0 and "error: generation.engine=vllm needs an NVIDIA GPU" in res.stderr
    assert not (tmp_path / "artifacts").exists()  # failed before the warm start, not after it
