"""Policies: any Hugging Face causal LM by hub id or local path, or ``tiny`` built from config.

``tiny`` (docs/design.md §3, §10) is a small Llama with a byte-level BPE tokenizer trained here on the
task's own text, digits split one per token so that arithmetic is learnable by a ~1M-parameter model.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from harness.backbone.hub import local_model_path
from harness.errors import UserError

log = logging.getLogger(__name__)

PAD, EOS = "<pad>", "<eos>"


def train_tiny_tokenizer(texts: list[str], vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``texts``; every digit is its own pre-token."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS)


def build_tiny_model(tokenizer, *, hidden_size=128, num_layers=4, num_heads=4, intermediate_size=384,
                     max_position_embeddings=256, seed=0) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def load_tokenizer(name_or_path: str):
    """The tokenizer of a saved or hub model, with a pad token (EOS where it has none)."""
    try:
        tok = AutoTokenizer.from_pretrained(local_model_path(name_or_path))
    except (OSError, ValueError) as e:
        raise UserError(_load_hint(name_or_path, "tokenizer", e)) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(name_or_path: str, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
    """The whole model, even while a ZeRO-3 config is alive (transformers would otherwise build it already
    sharded): the harness uses it outside an engine (π_ref's log-probs, generation) and shards it at prepare."""
    try:
        with _whole_model():
            model = AutoModelForCausalLM.from_pretrained(local_model_path(name_or_path), dtype=dtype)
    except (OSError, ValueError) as e:
        raise UserError(_load_hint(name_or_path, "model", e)) from None
    return model.to(device)


@contextlib.contextmanager
def _whole_model():
    """Hide a live ZeRO-3 config from ``from_pretrained`` for the duration (transformers reads it through this
    weak reference, which an engine's preparation sets whatever accelerate's ``zero3_init_flag``)."""
    import transformers.integrations.deepspeed as hf_ds

    ref = hf_ds._hf_deepspeed_config_weak_ref
    hf_ds._hf_deepspeed_config_weak_ref = None
    try:
        yield
    finally:
        hf_ds._hf_deepspeed_config_weak_ref = ref


def _load_hint(name_or_path: str, what: str, err: Exception) -> str:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    where = "local folder" if Path(name_or_path).exists() else "hub id"
    return (f"cannot load {what} from {where} {name_or_path!r} ({first}); give model.name_or_path= a local "
            f"folder saved with save_pretrained, or a hub id reachable from this machine")


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
