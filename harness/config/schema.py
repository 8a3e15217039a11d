"""The shared sections of the config (docs/design.md §7), declared once, as the plug-ins declare theirs: each
option a dataclass field with its default, bounds and doc (``harness/options``). ``sweeps/config.yaml`` holds the
same defaults for Hydra to compose (``tests/test_options.py`` checks them key by key); ``settings`` turns a
composed config into these types or stops with one line; each stage then receives the sections it reads.

The ``algo`` and ``task`` sections are the plug-ins' own (their ``Options``); the model group's files
(``sweeps/model/*.yaml``) set the ``model`` options of one model.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import re
import typing
from dataclasses import dataclass
from typing import Literal

from omegaconf import DictConfig, OmegaConf

from harness.errors import UserError
from harness.options import option, parse_options

_MAX_NEW = "${model.max_new_tokens}"


@dataclass
class Lora:
    r: int = option(0, "LoRA rank; 0 = off (full fine-tuning)", ge=0)
    alpha: int = option(16, "scaling α (the update is scaled by α/r; an integer, as peft takes it)", gt=0)
    dropout: float = option(0.0, "dropout on the adapters' input", ge=0, lt=1)
    target_modules: str | list = option("all-linear", "peft's target_modules: all-linear, or a list of module names")


@dataclass
class Model:
    """Set by the model group (``model=tiny|hf``), but the memory levers, which ``config.yaml`` sets for every model."""

    name: str = option("tiny", "the model group's name (the leaderboard's model when name_or_path is null)")
    name_or_path: str | None = option(None, "null = the tiny model, built from scratch; a hub id or local path "
                                            "loads that model instead")
    vocab_size: int | None = option(None, "tiny: the BPE vocabulary of its locally trained tokenizer", ge=2)
    hidden_size: int | None = option(None, "tiny: hidden size", ge=1)
    num_layers: int | None = option(None, "tiny: transformer layers", ge=1)
    num_heads: int | None = option(None, "tiny: attention heads", ge=1)
    intermediate_size: int | None = option(None, "tiny: FFN size", ge=1)
    max_position_embeddings: int | None = option(None, "tiny: longest sequence", ge=1)
    max_new_tokens: int = option(160, "generation length limit (bank, evaluation, rollouts)", ge=1)
    warm_start_steps: int = option(0, "SFT steps that make π_ref (warm_start.steps); 0 = the model as it is", ge=0)
    warm_start_lr: float = option(2e-3, "the warm start's learning rate (warm_start.lr)", gt=0)
    dtype: Literal["float32", "bfloat16", "float16"] = option(
        "float32", "weights as loaded (bfloat16 halves weights and optimiser state)")
    gradient_checkpointing: bool = option(False, "recompute activations in the backward pass: less memory, ~1/3 "
                                                 "more compute, the same result")
    lora: Lora = option(Lora(), "LoRA adapters (peft) on the policy and a separate value model's trunk; "
                                "π_ref = the adapters off")


@dataclass
class WarmStart:
    draw: int = option(0, "which π_ref of the family: the seed of its SFT (model init, data order); a factor of "
                          "the report like the run seed", ge=0)
    rebuild: bool = option(False, "train the draw from its recipe instead of loading the shipped weights (a draw "
                                  "the family does not ship stops before any work unless this is true)")
    family_dir: str | None = option(None, "where shipped families are looked for (null = the repository's family/)")
    algo: str = option("sft", "the plug-in that trains π_ref on the demonstrations (at warm_start.lr)")
    steps: int = option("${model.warm_start_steps}", "SFT steps; 0 = the model as it is", ge=0)
    lr: float = option("${model.warm_start_lr}", "the warm start's learning rate", gt=0)
    batch_size: int = option(32, "demonstrations per optimiser step", ge=1)
    warmup_ratio: float = option(0.05, "linear warm-up over this fraction of the steps", ge=0, le=1)
    lr_schedule: str = option("cosine", "any transformers scheduler name (cosine: decay to 0 over the steps)")
    max_grad_norm: float = option(1.0, "gradient clipping (0 = off)", ge=0)
    weight_decay: float = option(0.0, "AdamW weight decay", ge=0)


@dataclass
class Bank:
    n_prompts: int = option(1000, "RL prompts sampled (from the train split, after the validation split is held out)",
                            ge=1)
    k: int = option(8, "samples per prompt", ge=1)
    temperature: float = option(1.0, "sampling temperature", gt=0)
    top_p: float = option(1.0, "nucleus sampling", gt=0, le=1)
    max_new_tokens: int = option(_MAX_NEW, "generation length limit", ge=1)


@dataclass
class Process:
    n_prompts: int = option(250, "bank prompts whose samples get step values (cost grows with it)", ge=1)
    k: int = option(4, "rollouts from π_ref per distinct step prefix", ge=1)
    temperature: float = option(1.0, "sampling temperature", gt=0)
    max_new_tokens: int = option(_MAX_NEW, "generation length limit", ge=1)


@dataclass
class ValueCheck:
    n_prompts: int = option(64, "held-out RL prompts (the ones after the bank's); 0 = off", ge=0)
    k: int = option(8, "π_ref rollouts per state", ge=1)
    seed: int = option(0, "fixed: every run and seed is checked on the same states")
    max_new_tokens: int = option(_MAX_NEW, "generation length limit", ge=1)


@dataclass
class Train:
    steps: int = option(300, "optimiser steps (equal for every algorithm: a fair comparison)", ge=1)
    batch_size: int = option(32, "examples (sequences, or pairs for DPO) per optimiser step", ge=1)
    micro_batch_size: int = option(32, "examples per forward pass; gradient accumulation makes up the rest (the same "
                                       "update up to float order: no part of a run's key)", ge=1)
    group_by_prompt: bool = option(True, "a batch holds a prompt's examples together and computes the prompt once for "
                                         "them (harness/backbone/prefix.py); false = examples shuffled one by one")
    warmup_ratio: float = option(0.1, "linear warm-up over this fraction of the steps", ge=0, le=1)
    lr_schedule: str = option("cosine", "any transformers scheduler name: cosine, linear, constant_with_warmup ...")
    max_grad_norm: float = option(1.0, "gradient clipping (0 = off)", ge=0)
    compile: bool = option(False, "torch.compile the training passes: ~1.2x faster steps on a CPU after 1-3 minutes "
                                  "of compiling; the same maths up to float order; not with dist=zero3 or fsdp")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = option(
        "auto", "autocast of forward and backward: auto (bf16 on a GPU, fp32 on a CPU) | bf16 | fp16 (GPU) | fp32")
    weight_decay: float = option(0.0, "AdamW weight decay", ge=0)
    checkpoint_every: int = option(0, "save a resumable checkpoint every N steps (0 = only by checkpoint_minutes)",
                                   ge=0)
    checkpoint_minutes: float = option(30, "and whenever this much wall time has passed since the last one (0 = "
                                           "never); neither changes a result nor is part of a run's key", ge=0)
    log_every: int = option(25, "log the loss and the algorithm's metrics every N steps (no part of a run's key)",
                            ge=0)


@dataclass
class Eval:
    split: Literal["test", "val"] = option("test", "test (the report) | val (task.n_val problems held out of train: "
                                                   "tuning, learning curves)")
    n_test: int | None = option(None, "items of that split to evaluate (null = all of it)", ge=1)
    every: int = option(0, "also score greedy accuracy on the validation split every N optimiser steps (0 = off): "
                           "the run's learning curve against compute", ge=0)
    curve_items: int = option(200, "validation items per point of that curve", ge=1)
    k: int = option(4, "samples per item for sampled accuracy and maj@k (0 = greedy only)", ge=0)
    n_sampled: int | None = option(500, "sampled accuracy, maj@k and pass@k on the first n_sampled items only "
                                        "(null = all); greedy accuracy is on all of them", ge=0)
    temperature: float = option(0.7, "sampling temperature", gt=0)
    top_p: float = option(1.0, "nucleus sampling", gt=0, le=1)
    max_new_tokens: int = option(_MAX_NEW, "generation length limit", ge=1)


@dataclass
class Generation:
    engine: Literal["hf", "vllm"] = option("hf", "hf (transformers generate; CPU or GPU) | vllm (GPU, "
                                                 "`pip install .[gpu]`)")
    batch_size: int = option(256, "sequences per generate call (hf); changes no result", ge=1)


@dataclass
class Vllm:
    gpu_memory_utilization: float = option(0.3, "share of the GPU's memory for vLLM's weights and KV cache "
                                                "(generation.engine=vllm; changes no result)", gt=0, le=1)


@dataclass
class Dist:
    name: Literal["none", "ddp", "fsdp", "zero2", "zero3"] = option(
        "none", "the dist group: one job over several processes (sweeps/dist/, accelerate_configs/)")
    num_processes: int | None = option(None, "processes of the job in all, one per GPU (null = every GPU of every "
                                             "machine; a CPU needs a number)", ge=1)
    num_machines: int = option(1, "nodes; run the same command on each with its own dist.machine_rank", ge=1)
    machine_rank: int = option(0, "this node's rank, 0 .. num_machines-1", ge=0)
    main_process_ip: str | None = option(None, "address of the node with machine_rank 0 (num_machines > 1)")
    main_process_port: int | None = option(None, "its rendezvous port (null = a free one: fine on one machine)",
                                           ge=1, le=65535)


@dataclass
class Settings:
    """Every shared section, typed; ``algo`` and ``task`` as given (their plug-ins parse them)."""

    seed: int = option(0, "run seed: bank sampling, training data order, sampled evaluation")
    results_dir: str = option("results", "all output: runs/, artifacts/, leaderboard.csv, runs.csv, hydra logs")
    include_reference: bool = option(True, "also evaluate π_ref as its own `reference` row (computed once, then "
                                           "reused)")
    isolate_jobs: bool = option(True, "in a sweep (-m), run each job in its own process (GPU state never leaks)")
    model: Model = option(Model(), "the model (its group) and the memory levers of every model")
    warm_start: WarmStart = option(WarmStart(), "π_ref = SFT of the model on the task's demonstrations, or a "
                                                "shipped draw of the family with that recipe (docs/design.md §10)")
    bank: Bank = option(Bank(), "rollout bank: k samples per RL prompt from π_ref (cached, shared)")
    process: Process = option(Process(), "Monte-Carlo process values at step boundaries (algorithms that declare "
                                         "ProcessShaped; cached)")
    value_check: ValueCheck = option(ValueCheck(), "after training, V_φ against Monte-Carlo values of π_ref on "
                                                   "held-out states (algorithms with a value model; cached)")
    train: Train = option(Train(), "the shared backbone loop; identical for every algorithm")
    eval: Eval = option(Eval(), "evaluation of the trained policy")
    generation: Generation = option(Generation(), "the sampler of the bank, rollouts and evaluation")
    vllm: Vllm = option(Vllm(), "generation.engine=vllm only")
    dist: Dist = option(Dist(), "one job over several processes: dist=none|ddp|fsdp|zero2|zero3")
    algo: dict = dataclasses.field(default_factory=dict)
    task: dict = dataclasses.field(default_factory=dict)
    #: every section as given (resolved, before typing): what run keys and artifact specs hash, so that a key
    #: never changes with how a value is typed (``alpha: 16`` stays 16, not 16.0)
    given: dict = dataclasses.field(default_factory=dict)
    #: the command line's overrides (``harness.run`` records them) and, per section, the keys it reads through
    #: ``${...}`` (``prompt_pool: ${bank.n_prompts}``): a run's variant label
    overrides: list = dataclasses.field(default_factory=list)
    interpolated: dict = dataclasses.field(default_factory=dict)


#: the shared sections (``algo`` and ``task`` belong to their plug-ins) and the top-level options
SECTIONS = {f.name: f for f in dataclasses.fields(Settings)
            if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory())}
TOP = [f.name for f in dataclasses.fields(Settings) if "doc" in f.metadata and f.name not in SECTIONS]
#: keys of a composed config that are Hydra's or the harness's own bookkeeping, not options
_NOT_OPTIONS = ("hydra", "defaults", "_overrides", "_interpolated")


def interpolations(cfg: DictConfig) -> dict[str, list[str]]:
    """Per section, the keys it reads through ``${...}`` interpolations, found before they are resolved."""
    raw = OmegaConf.to_container(cfg, resolve=False)
    return {k: sorted(set(re.findall(r"\$\{([\w.]+)\}", json.dumps(v)))) for k, v in raw.items()
            if k not in _NOT_OPTIONS and "${" in json.dumps(v)}


def settings(cfg: DictConfig | dict) -> Settings:
    """The composed config (a ``DictConfig``, or the dict ``harness.run`` hands a job) as typed sections: unknown
    keys, wrong types and out-of-range values stop with one line naming the key."""
    if isinstance(cfg, DictConfig):
        values = {**OmegaConf.to_container(cfg, resolve=True), "_interpolated": interpolations(cfg)}
    else:
        values = dict(cfg)
    extra = {k: values.get(k) for k in _NOT_OPTIONS}
    values = {k: v for k, v in values.items() if k not in _NOT_OPTIONS}
    s = parse_options(Settings, {k: v for k, v in values.items() if k not in ("algo", "task")}, "")
    s.algo, s.task, s.given = dict(values.get("algo") or {}), dict(values.get("task") or {}), values
    s.overrides, s.interpolated = list(extra["_overrides"] or []), dict(extra["_interpolated"] or {})
    if s.train.compile and s.dist.name in ("zero3", "fsdp"):
        raise UserError(f"train.compile=true does not run with sharded weights (dist={s.dist.name}): "
                        "use dist=ddp or dist=zero2, or drop train.compile")
    return s


def check_override_key(dotted: str) -> None:
    """Stop with one line when ``dotted`` (``train.stesp``) is not a shared option, naming the closest one."""
    parts, cls = dotted.split("."), Settings
    for i, part in enumerate(parts):
        names = [f.name for f in dataclasses.fields(cls) if "doc" in f.metadata or cls is not Settings]
        names += ["algo", "task"] if cls is Settings else []
        if part not in names:
            close = difflib.get_close_matches(part, names, n=1)
            hint = f" (did you mean {'.'.join([*parts[:i], close[0], *parts[i + 1:]])}?)" if close else ""
            raise UserError(f"unknown option {dotted}{hint}; python -m harness.options lists every option")
        cls = typing.get_type_hints(cls)[part]
        if not dataclasses.is_dataclass(cls):
            return


def updated(section, dotted: str, value):
    """A copy of ``section`` (``Settings`` or one of its sections) with the option ``dotted`` set to ``value``."""
    head, _, rest = dotted.partition(".")
    return dataclasses.replace(section, **{head: updated(getattr(section, head), rest, value) if rest else value})
