"""Memory levers (docs/design.md §6), the same for every algorithm: the weights' dtype (``model.dtype``),
gradient checkpointing (``model.gradient_checkpointing``) and LoRA through peft (``model.lora.*``) on the
policy and on a separate value model's trunk. Precision (autocast) is ``train.precision``
(``harness/training.make_accelerator``).

With LoRA the adapters start at zero, so the wrapped policy *is* π_ref until it trains, and π_ref stays
available as the same module with its adapters disabled: no second copy is held.
"""
from __future__ import annotations

import contextlib

import torch

from harness.errors import UserError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def dtype_of(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise UserError(f"model.dtype={name!r}: valid values are {', '.join(DTYPES)}")
    return DTYPES[name]


def lora_enabled(mcfg) -> bool:
    """``mcfg``: the ``model`` section (``harness/config/schema.py``)."""
    return mcfg.lora.r > 0


def trainable(model, mcfg, task_type: str | None = "CAUSAL_LM"):
    """``model`` ready to train under the levers: gradient checkpointing on; with ``model.lora.r`` > 0 wrapped in
    LoRA adapters (the base frozen). ``task_type=None`` for a bare trunk (a value model's decoder)."""
    if mcfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if not lora_enabled(mcfg):
        return model
    from peft import LoraConfig, get_peft_model

    lora = mcfg.lora
    target = lora.target_modules
    config = LoraConfig(r=int(lora.r), lora_alpha=float(lora.alpha), lora_dropout=float(lora.dropout),
                        target_modules=target if isinstance(target, str) else list(target), bias="none",
                        task_type=task_type)
    model = get_peft_model(model, config)
    if mcfg.gradient_checkpointing:
        model.enable_input_require_grads()  # checkpointed blocks need an input that requires grad
    return model


@contextlib.contextmanager
def adapters_off(model):
    """π_ref from a LoRA policy: the same module with its adapters disabled, for the duration."""
    from accelerate.utils import extract_model_from_parallel

    with extract_model_from_parallel(model).disable_adapter():
        yield model


def check_levers(mcfg, engine: str) -> None:
    """One line, before any work, for levers this setup cannot combine (each lever's own values are checked
    against its declaration, ``harness/config/schema.py``)."""
    if lora_enabled(mcfg) and engine == "vllm":
        raise UserError("model.lora with generation.engine=vllm is not supported yet (vLLM would need the "
                        "merged weights after every update); use generation.engine=hf")
