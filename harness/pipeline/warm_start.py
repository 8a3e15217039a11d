"""Warm start (docs/design.md §1, §10): π_ref = SFT on the task's demonstration split, a cached artifact.

The training is the plug-in that ``warm_start.algo`` names, on the demonstrations, at ``warm_start.lr``.

For ``tiny`` the tokenizer is trained and the model built here; a hub or local model is loaded and,
when ``warm_start.steps`` is 0, used as π_ref as it is (no artifact).
"""
from __future__ import annotations

import dataclasses
import logging
import random
from pathlib import Path

from algorithms._base import TrainData
from harness.backbone import compute
from harness.backbone.memory import dtype_of
from harness.backbone.models import (
    build_tiny_model,
    count_parameters,
    load_model,
    load_tokenizer,
    train_tiny_tokenizer,
)
from harness.backbone.training import train
from harness.config.schema import Model, Train, WarmStart
from harness.config.variants import drop_operational
from harness.distributed.ranks import main_process
from harness.registry import get_algorithm

log = logging.getLogger(__name__)
_TOKENIZER_DEMOS = 10_000  # demonstrations the tiny model's tokenizer is trained on (the first ones)


def encode_demo(tokenizer, task, demo: list[dict]) -> list[dict]:
    """Gold demonstrations as sequences: prompt ids, then the solution's ids and EOS."""
    prompts = tokenizer([task.prompt(ex) for ex in demo], add_special_tokens=True)["input_ids"]
    sols = tokenizer([task.solution(ex) for ex in demo], add_special_tokens=False)["input_ids"]
    return [{"prompt_id": ex["id"], "prompt_ids": p, "completion_ids": s + [tokenizer.eos_token_id], "reward": 1.0}
            for ex, p, s in zip(demo, prompts, sols)]


#: model options that do not change the weights π_ref's SFT makes (how they are loaded, used or generated from)
_NOT_IN_RECIPE = ("lora", "dtype", "max_new_tokens", "warm_start_steps", "warm_start_lr")  # the last two: warm_start.*
#: warm-start options that pick a π_ref of a family, or where to find it, without changing the recipe
_NOT_IN_WARM_START_RECIPE = ("draw", "rebuild", "family_dir")


def recipe(s, task) -> dict:
    """What determines π_ref up to its draw: the model, the demonstrations' options and the warm start's own
    training settings (``warm_start.*``; not ``train.*``, which is the algorithm's), as given in the settings ``s``.
    Two configs with the same recipe have the same π_ref family (``harness/pipeline/family.py``)."""
    model = drop_operational("model", s.given["model"])
    return {"model": {k: v for k, v in model.items() if k not in _NOT_IN_RECIPE},
            "task": {k: v for k, v in s.given["task"].items() if k not in task.not_in_demos},
            "warm_start": {k: v for k, v in s.given["warm_start"].items() if k not in _NOT_IN_WARM_START_RECIPE}}


def warm_start_spec(s, task) -> dict:
    """Exactly the settings that determine a π_ref built here: its recipe, its draw, and the dtype and precision it
    was trained in (its cache key)."""
    return {**recipe(s, task), "draw": s.warm_start.draw, "dtype": s.model.dtype, "precision": s.train.precision}


def sft_train(ws: WarmStart, train: Train) -> Train:
    """The Learner's settings for π_ref's SFT: ``warm_start.*``, with the operational options of ``train``."""
    return dataclasses.replace(train, steps=ws.steps, batch_size=ws.batch_size,
                               micro_batch_size=min(train.micro_batch_size, ws.batch_size),
                               group_by_prompt=False, warmup_ratio=ws.warmup_ratio, lr_schedule=ws.lr_schedule,
                               max_grad_norm=ws.max_grad_norm, weight_decay=ws.weight_decay, checkpoint_every=0)


def build_warm_start(m: Model, ws: WarmStart, train_cfg: Train, task, demo: list[dict], accelerator, out: Path,
                     ckpt_dir: Path | None = None) -> dict:
    """Build π_ref into ``out`` (model + tokenizer via save_pretrained) from the model, warm-start and train sections;
    returns its cost summary. A killed build resumes its SFT from ``ckpt_dir`` (``train.checkpoint_minutes``)."""
    draw = ws.draw  # the draw is the seed of everything random in the recipe
    if m.name_or_path:
        tok = load_tokenizer(m.name_or_path)
        model = load_model(m.name_or_path, dtype=dtype_of(m.dtype))
    else:  # the tokenizer learns from the demonstrations alone, so π_ref depends on nothing else of the task
        head = demo[:_TOKENIZER_DEMOS]
        tok = train_tiny_tokenizer([task.prompt(ex) for ex in head] + [task.solution(ex) for ex in head],
                                   int(m.vocab_size))
        model = build_tiny_model(tok, hidden_size=m.hidden_size, num_layers=m.num_layers, num_heads=m.num_heads,
                                 intermediate_size=m.intermediate_size,
                                 max_position_embeddings=m.max_position_embeddings, seed=draw)
    task.bind_tokenizer(tok)  # SFT prompts in the same style (chat or plain) as evaluation will use
    log.info("warm start: %s, %.2fM parameters, SFT for %d steps on %d demonstrations",
             m.name_or_path or "tiny (from scratch)", count_parameters(model) / 1e6, ws.steps, len(demo))
    meta, state = {"train_tokens": 0, "flops": 0.0}, None
    compute.reset_peak_memory()
    if ws.steps > 0:
        algo = get_algorithm(ws.algo)(lr=ws.lr)
        examples = algo.build_examples(TrainData(demo=encode_demo(tok, task, demo)), random.Random(draw))
        res = train(model, algo, examples, sft_train(ws, train_cfg), seed=draw, pad_id=tok.pad_token_id,
                    accelerator=accelerator, ckpt_dir=ckpt_dir, desc=f"warm start ({algo.name})")
        model, state = res["model"], res["policy_state"]()  # every process: gathers weights a strategy sharded
        meta = {"train_tokens": res["train_tokens"], "final_loss": res["history"][-1]["loss"],
                "flops": compute.train_flops(model.config, res["train_tokens"], compute.mean_length(examples, algo.slots))}
    if main_process():  # the other processes' ``out`` is scratch (``ArtifactStore``)
        model.save_pretrained(out, state_dict=state)
        tok.save_pretrained(out)
    meta["n_params"] = count_parameters(model)
    meta["peak_mem_mb"] = compute.peak_memory_mb()
    return meta
