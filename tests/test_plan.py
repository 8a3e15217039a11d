"""``harness.plan``: parameter counts against models built from config, the printed table for the Qwen2.5
fixtures, ZeRO model states against DeepSpeed's published estimators, the lever suggestion, bad overrides."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig

from harness.config.compose import compose
from harness.config.memory_plan import GiB, arch, as_args, plan, sizes
from harness.plan import main
from tests.conftest import ROOT

FIXTURES = Path(__file__).parent / "fixtures" / "configs"
QWEN = {name: FIXTURES / name for name in ("qwen2.5-1.5b", "qwen2.5-7b")}


def hf(name: str, *more: str) -> list[str]:
    return ["model=hf", f"model.name_or_path={QWEN[name]}", *more]


def meta_count(config) -> int:
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name,published", [("qwen2.5-1.5b", 1.54e9), ("qwen2.5-7b", 7.61e9)])
def test_parameter_count_of_the_fixtures(name, published):
    config = AutoConfig.from_pretrained(QWEN[name])
    assert sizes(config)["total"] == meta_count(config)
    assert sizes(config)["total"] == pytest.approx(published, rel=0.005)  # the model cards' sizes


def test_parameter_count_of_tiny_and_of_a_llama_with_biases():
    c = arch(compose(["model=tiny"]).model)
    assert sizes(c)["total"] == meta_count(c)
    llama = LlamaConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=3, num_attention_heads=8,
                        num_key_value_heads=2, intermediate_size=160, tie_word_embeddings=False,
                        attention_bias=True, mlp_bias=True)
    assert sizes(llama)["total"] == meta_count(llama)


def test_lora_count_matches_peft():
    from peft import LoraConfig, get_peft_model

    c = arch(compose(["model=tiny"]).model)
    with torch.device("meta"):
        model = get_peft_model(AutoModelForCausalLM.from_config(c),
                               LoraConfig(r=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 8 * c.num_hidden_layers * sizes(c)["lora_linear"]


@pytest.mark.parametrize("name", list(QWEN))
@pytest.mark.parametrize("dist", ["dist=none", "dist=fsdp", "dist=zero3"])
def test_table_prints_for_the_fixtures(name, dist, capsys):
    assert main(hf(name, dist, "dist.num_processes=8", "gpu_mem=80")) == 0
    out = capsys.readouterr().out
    header = next(line.split() for line in out.splitlines() if line.split()[:1] == ["stage"])
    assert header == ["stage", "weights", "grads", "optimiser", "activations", "kv_cache", "total", "fits"]
    stages = [line.split()[0] for line in out.splitlines() if line.split()[-1:] in (["yes"], ["no"])]
    assert stages == ["generation", "train"]  # a hub model is used as it is: no warm start
    assert "fits in 80 GiB" in out or "fits with:" in out


def deepspeed_zero2_gpu(total_params: int, gpus: int) -> int:
    """DeepSpeed's estimate_zero2_model_states_mem_needs, cpu_offload=False (deepspeed.runtime.zero
    .stage_1_and_2): 16-bit weights and gradients (2 + 2 bytes), fp32 master, Adam states and gradient
    partition (16 bytes) sharded."""
    return 4 * total_params + int(16 * total_params / gpus)


def deepspeed_zero3_gpu(total_params: int, largest_layer_params: int, gpus: int) -> int:
    """DeepSpeed's estimate_zero3_model_states_mem_needs, cpu_offload=False (deepspeed.runtime.zero.stage3)."""
    return 4 * largest_layer_params + int(18 * total_params / gpus)


def model_state(overrides: list[str]) -> float:
    """The train row's weights + gradients + optimiser states, in bytes."""
    cfg = compose(overrides)
    row = next(r for r in plan(cfg, arch(cfg.model), 80, 256) if r["stage"] == "train")
    return row["weights"] + row["grads"] + row["optimiser"]


# DeepSpeed's estimators assume mixed precision with Adam: 16-bit weights and gradients, fp32 master weights and
# Adam states. Ours is the same run: train.precision=bf16 under DeepSpeed casts the module to bf16 (whatever
# model.dtype), and the ZeRO optimiser holds the fp32 master, m, v and the fp32 gradient it steps with. One
# trained model (sft: no value model, no π_ref copy). DeepSpeed's "largest layer" is the largest module's own
# parameters: the 7B's embedding (= its untied lm_head).
@pytest.mark.parametrize("gpus", [1, 8, 64])
def test_zero3_model_states_match_deepspeed_estimator(gpus):
    ours = model_state(hf("qwen2.5-7b", "algo=sft", "dist=zero3", f"dist.num_processes={gpus}",
                          "train.precision=bf16"))
    c = AutoConfig.from_pretrained(QWEN["qwen2.5-7b"])
    p, largest = sizes(c)["total"], c.vocab_size * c.hidden_size
    assert ours == pytest.approx(deepspeed_zero3_gpu(p, largest, gpus), rel=0.25)


@pytest.mark.parametrize("gpus", [1, 2, 4, 8])
def test_zero2_model_states_against_deepspeed_estimator(gpus):
    """DeepSpeed's ZeRO-2 estimate keeps the full 16-bit gradient on every GPU (2·P); we count its shard
    (2·P/N: reduce-scattered in buckets as backward produces it). That is the only difference, and within
    25% up to 4 GPUs."""
    ours = model_state(hf("qwen2.5-7b", "algo=sft", "dist=zero2", f"dist.num_processes={gpus}",
                          "train.precision=bf16"))
    p = sizes(AutoConfig.from_pretrained(QWEN["qwen2.5-7b"]))["total"]
    assert ours + 2 * p * (1 - 1 / gpus) == pytest.approx(deepspeed_zero2_gpu(p, gpus), rel=1e-6)
    if gpus <= 4:
        assert ours == pytest.approx(deepspeed_zero2_gpu(p, gpus), rel=0.25)


def test_model_states_without_deepspeed_are_16_or_8_bytes_per_parameter():
    """torch AdamW keeps m and v in the parameters' dtype: fp32 weights 4 + 4 + 8, bf16 weights 2 + 2 + 4."""
    p = sizes(AutoConfig.from_pretrained(QWEN["qwen2.5-1.5b"]))["total"]
    assert model_state(hf("qwen2.5-1.5b", "algo=sft")) == 16 * p
    assert model_state(hf("qwen2.5-1.5b", "algo=sft", "model.dtype=bfloat16")) == 8 * p
    fsdp = model_state(hf("qwen2.5-1.5b", "algo=sft", "dist=fsdp", "dist.num_processes=4"))
    assert 16 * p / 4 < fsdp < 16 * p / 4 * 1.5  # sharded, plus one gathered unit


def test_lever_for_7b_on_one_80gb_gpu_makes_it_fit(capsys):
    base = hf("qwen2.5-7b", "dist=none")
    assert main([*base, "gpu_mem=80"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2].startswith("does not fit in 80 GiB") and "fits with: " in lines[-2]
    for line in lines[-2:]:  # the first lever, and the levers on this one device
        lever = line.split("fits with: ")[1].split()
        cfg = compose(base + lever)
        assert all(r["fits"] and r["total"] <= 80 * GiB for r in plan(cfg, arch(cfg.model), 80, 256)), lever
    assert as_args({"dist.name": "zero3", "model.gradient_checkpointing": True}) == \
        "dist=zero3 model.gradient_checkpointing=true"


@pytest.mark.parametrize("args", [["train.no_such_key=1"], ["algo=nope"], ["model.dtype=float64"], ["gpu_mem=lots"],
                                  hf("qwen2.5-7b", "model.name_or_path=/no/such/folder")])
def test_bad_override_is_one_line_and_exit_2(args, capsys):
    assert main(args) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.startswith("error: ") and out.err.count("\n") == 1


def test_cli_exit_code():
    out = subprocess.run([sys.executable, "-m", "harness.plan", "train.no_such_key=1"], cwd=ROOT, check=False,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stdout == "" and len(out.stderr.strip().splitlines()) == 1
