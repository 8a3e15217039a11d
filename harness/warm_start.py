"""Warm start (docs/design.md §1, §10): π_ref = SFT on the task's demonstration split, a cached artifact.

The training is the plug-in that ``warm_start.algo`` names, on the demonstrations, at ``warm_start.lr``.

For ``tiny`` the tokenizer is trained and the model built here; a hub or local model is loaded and,
when ``warm_start.steps`` is 0, used as π_ref as it is (no artifact).
"""
from __future__ import annotations

import logging
import random
from pathlib import Path

from omegaconf import OmegaConf

from algorithms._base import TrainData
from harness import compute
from harness.memory import dtype_of
from harness.models import (
    build_tiny_model,
    count_parameters,
    load_model,
    load_tokenizer,
    train_tiny_tokenizer,
)
from harness.ranks import main_process
from harness.registry import get_algorithm
from harness.variants import drop_operational
from harness.training import train

log = logging.getLogger(__name__)


def encode_demo(tokenizer, task, demo: list[dict]) -> list[dict]:
    """Gold demonstrations as sequences: prompt ids, then the solution's ids and EOS."""
    prompts = tokenizer([task.prompt(ex) for ex in demo], add_special_tokens=True)["input_ids"]
    sols = tokenizer([task.solution(ex) for ex in demo], add_special_tokens=False)["input_ids"]
    return [{"prompt_id": ex["id"], "prompt_ids": p, "completion_ids": s + [tokenizer.eos_token_id], "reward": 1.0}
            for ex, p, s in zip(demo, prompts, sols)]


def warm_start_spec(cfg, task_spec: dict) -> dict:
    """Exactly the config that determines π_ref: its cache key."""
    model = drop_operational("model", OmegaConf.to_container(cfg.model))
    model.pop("lora", None)  # applied to the algorithm's training, not to π_ref's
    return {"model": model, "task": task_spec,
            "warm_start": OmegaConf.to_container(cfg.warm_start), "train": drop_operational("train", _sft_train_cfg(cfg))}


def _sft_train_cfg(cfg) -> dict:
    t = OmegaConf.to_container(cfg.train)
    t.pop("group_by_prompt", None)  # the demonstrations' prompts are distinct: nothing to group, and π_ref's key stays
    t.update(steps=int(cfg.warm_start.steps), batch_size=int(cfg.warm_start.batch_size),
             micro_batch_size=int(cfg.warm_start.batch_size), checkpoint_every=0)
    return t


def build_warm_start(cfg, task, splits: dict, demo: list[dict], accelerator, out: Path,
                     ckpt_dir: Path | None = None) -> dict:
    """Build π_ref into ``out`` (model + tokenizer via save_pretrained); returns its cost summary. A killed
    build resumes its SFT from ``ckpt_dir`` (``train.checkpoint_minutes``)."""
    m = cfg.model
    if m.name_or_path:
        tok = load_tokenizer(m.name_or_path)
        model = load_model(m.name_or_path, dtype=dtype_of(m.dtype))
    else:
        texts = [task.prompt(ex) for ex in splits["train"]] + [task.solution(ex) for ex in demo]
        tok = train_tiny_tokenizer(texts, int(m.vocab_size))
        model = build_tiny_model(tok, hidden_size=m.hidden_size, num_layers=m.num_layers, num_heads=m.num_heads,
                                 intermediate_size=m.intermediate_size,
                                 max_position_embeddings=m.max_position_embeddings, seed=int(cfg.warm_start.seed))
    task.bind_tokenizer(tok)  # SFT prompts in the same style (chat or plain) as evaluation will use
    log.info("warm start: %s, %.2fM parameters, SFT for %d steps on %d demonstrations",
             m.name_or_path or "tiny (from scratch)", count_parameters(model) / 1e6, cfg.warm_start.steps, len(demo))
    meta, state = {"train_tokens": 0, "flops": 0.0}, None
    if int(cfg.warm_start.steps) > 0:
        algo = get_algorithm(cfg.warm_start.algo)(lr=cfg.warm_start.lr)
        examples = algo.build_examples(TrainData(demo=encode_demo(tok, task, demo)), random.Random(int(cfg.warm_start.seed)))
        res = train(model, algo, examples, OmegaConf.create(_sft_train_cfg(cfg)), seed=int(cfg.warm_start.seed),
                    pad_id=tok.pad_token_id, accelerator=accelerator, ckpt_dir=ckpt_dir, desc=f"warm start ({algo.name})")
        model, state = res["model"], res["policy_state"]()  # every process: gathers weights a strategy sharded
        meta = {"train_tokens": res["train_tokens"], "final_loss": res["history"][-1]["loss"],
                "flops": compute.train_flops(model.config, res["train_tokens"], compute.mean_length(examples, algo.slots))}
    if main_process():  # the other processes' ``out`` is scratch (``ArtifactStore``)
        model.save_pretrained(out, state_dict=state)
        tok.save_pretrained(out)
    meta["n_params"] = count_parameters(model)
    return meta
