"""One job (DESIGN.md §1): warm start → rollout bank → train → evaluate → record.

The pipeline never knows which algorithm it runs: it asks the plug-in what it needs (``trains``,
``needs_bank``) and hands the shared backbone its examples and loss.
"""
from __future__ import annotations

import logging
import random
import shutil
import time
import traceback
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from transformers import set_seed

from algorithms.base import TrainData
from harness import compute
from harness.artifacts import ArtifactStore, config_hash
from harness.bank import build_bank, load_bank
from harness.checks import check_config
from harness.errors import UserError
from harness.evaluation import evaluate
from harness.generation import check_engine, make_engine
from harness.models import load_model, load_tokenizer
from harness.online import online_plan, train_online
from harness.process_values import build_process_values, load_process_values, shaping
from harness.provenance import provenance
from harness.records import atomic_write, is_complete, read_json, run_id, write_json, write_jsonl
from harness.registry import get_algorithm
from harness.sequences import fill_ref_logps
from harness.training import make_accelerator, train
from harness.value_check import build_value_states, value_correlation
from harness.value_model import ValueHead, ValueModel
from harness.variants import interpolated_keys, variant_id, variant_label
from harness.warm_start import build_warm_start, encode_demo, warm_start_spec
from tasks import get_task

log = logging.getLogger("dqo")

#: config sections every run depends on; ``train`` and ``bank`` are added when the algorithm uses them
_BASE_SECTIONS = ("task", "model", "warm_start", "eval", "generation", "seed", "algo")


def model_label(cfg) -> str:
    """The model's name in run ids and the leaderboard: the hub id's or folder's last part, or ``tiny``."""
    return Path(str(cfg.model.name_or_path)).name if cfg.model.name_or_path else str(cfg.model.name)


def load_task(cfg):
    """``(task, task_spec, n_demo)`` from the ``task`` config group."""
    spec = OmegaConf.to_container(cfg.task, resolve=True)
    kwargs = {k: v for k, v in spec.items() if k not in ("name", "n_demo")}
    try:
        task = get_task(spec["name"], **kwargs)
    except TypeError as e:
        raise UserError(f"task {spec['name']!r}: bad option ({e}); see sweeps/task/{spec['name']}.yaml") from None
    return task, spec, int(spec.get("n_demo", 0))


def split_train(train: list[dict], n_demo: int) -> tuple[list[dict], list[dict]]:
    """Demonstrations (full solutions, for π_ref) and RL prompts (final answers only): a fixed split
    of the train set, the same for every run and seed (DESIGN.md §10)."""
    order = list(range(len(train)))
    random.Random(1234).shuffle(order)
    if n_demo >= len(train):
        raise UserError(f"task.n_demo={n_demo} leaves no RL prompts in a train split of {len(train)}; lower it")
    return [train[i] for i in order[:n_demo]], [train[i] for i in order[n_demo:]]


def run_spec(cfg, algo_cls) -> dict:
    sections = list(_BASE_SECTIONS) + (["train"] if algo_cls.trains else []) + (["bank"] if algo_cls.needs_bank else [])
    if algo_cls.uses_process_values and cfg.algo.get("process_values"):
        sections.append("process")
    if algo_cls.needs_value_model:
        sections.append("value_check")
    spec = {k: OmegaConf.to_container(cfg[k], resolve=True) if isinstance(cfg[k], DictConfig) else cfg[k]
            for k in sections}
    if algo_cls.online:
        del spec["train"]["steps"]  # an online run's steps follow from algo.budget
    return spec


def reference_config(cfg) -> DictConfig:
    ref = OmegaConf.to_container(cfg, resolve=True)
    ref["algo"] = {"name": "reference"}
    return OmegaConf.create(ref)


def run_job(cfg: DictConfig) -> dict:
    """Run (or skip, when already complete) one job and, first, the reference row it is read against."""
    algo_cls = get_algorithm(cfg.algo.name)
    check_config(cfg)
    check_engine(str(cfg.generation.engine))  # before the warm start, not after it
    if algo_cls.online:  # its options are checked before any work, too
        online_plan(_make_algo(cfg, algo_cls), int(cfg.train.batch_size))
    if cfg.include_reference and algo_cls.trains:
        run_job(reference_config(cfg))
    spec = run_spec(cfg, algo_cls)
    rid = run_id(cfg.task.name, model_label(cfg), cfg.algo.name, int(cfg.seed), config_hash(spec))
    run_dir = Path(cfg.results_dir) / "runs" / rid
    if is_complete(run_dir):
        log.info("%s: already complete, skipping (delete %s to recompute)", rid, run_dir)
        return read_json(run_dir / "metrics.json")
    log.info("=== %s", rid)
    atomic_write(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    head = {"run_id": rid, "task": cfg.task.name, "model": model_label(cfg), "algo": cfg.algo.name,
            "variant": variant_label(list(cfg.get("_overrides") or []), spec, interpolated_keys(cfg, spec)),
            "variant_id": variant_id(spec),
            "seed": int(cfg.seed)}
    t0 = time.perf_counter()
    try:
        metrics = _run(cfg, algo_cls, run_dir)
    except Exception as e:  # recorded as a failed run; the caller decides whether the sweep goes on
        write_json(run_dir / "metrics.json", {**head, "status": "failed", "error": _one_line(e),
                                              "wall_s": time.perf_counter() - t0})
        (run_dir / "error.txt").write_text(traceback.format_exc())
        raise
    metrics = {**head, "status": "ok", **metrics}
    write_json(run_dir / "metrics.json", metrics)  # last: its presence marks the record complete
    shutil.rmtree(run_dir / "checkpoint", ignore_errors=True)  # only needed to resume an unfinished run
    log.info("%s: accuracy %.4f (greedy), %s (sampled)", rid, metrics["accuracy"], metrics.get("accuracy_sampled"))
    return metrics


def _make_algo(cfg, algo_cls):
    return algo_cls(**{k: v for k, v in OmegaConf.to_container(cfg.algo, resolve=True).items() if k != "name"})


def _one_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}" if not isinstance(e, UserError) else text[0]


def _run(cfg, algo_cls, run_dir: Path) -> dict:
    seed = int(cfg.seed)
    set_seed(seed)
    algo = _make_algo(cfg, algo_cls)
    meter, accelerator = compute.Meter(), make_accelerator()
    store = ArtifactStore(Path(cfg.results_dir) / "artifacts")
    task, task_spec, n_demo = load_task(cfg)
    with meter.stage("data"):
        splits = task.load_splits()
        demo, rl_prompts = split_train(splits["train"], n_demo)
        test = splits["test"][: cfg.eval.n_test] if cfg.eval.n_test else splits["test"]
    used: dict[str, dict] = {}

    # π_ref: a cached artifact, unless a given model is used as it is.
    if cfg.model.name_or_path and int(cfg.warm_start.steps) == 0:
        ref_path = ref_key = str(cfg.model.name_or_path)
    else:
        path, meta, hit = store.get_or_build(
            "warm_start", warm_start_spec(cfg, task_spec) | {"n_demo": n_demo},
            lambda out: build_warm_start(cfg, task, splits, demo, accelerator, out))
        log.info("warm start: %s %s", "reusing" if hit else "built", path)
        used["warm_start"], ref_path = {**meta, "path": str(path), "hit": hit}, str(path)
        ref_key = path.name  # content-addressed: artifacts keyed on it survive a moved results_dir
    tok = load_tokenizer(ref_path)
    task.bind_tokenizer(tok)  # fixes the prompt style: chat template if π_ref's tokenizer has one
    model = load_model(ref_path, device=accelerator.device)
    engine = make_engine(cfg.generation.engine, model, tok, batch_size=int(cfg.generation.batch_size),
                         model_path=ref_path, gpu_memory_utilization=float(cfg.vllm.gpu_memory_utilization))

    data = TrainData(demo=encode_demo(tok, task, demo))
    if algo.needs_bank:
        n = int(cfg.bank.n_prompts)
        bank_spec = {"ref": ref_key, "task": task_spec, "n_demo": n_demo, "seed": seed,
                     "bank": OmegaConf.to_container(cfg.bank, resolve=True),
                     "generation": OmegaConf.to_container(cfg.generation, resolve=True)}

        def build(out):
            meta = build_bank(engine, task, rl_prompts[:n], cfg.bank, seed=seed, out_dir=out)
            return meta | {"flops": compute.sampling_flops(model.config, meta["gen_tokens"], meta["prompt_tokens"],
                                                           meta["n_samples"])}

        path, meta, hit = store.get_or_build("bank", bank_spec, build)
        if hit:
            log.info("rollout bank: reusing %s (sampled once, shared by every algorithm of this config)", path)
        else:
            log.info("rollout bank: sampled %s: %d prompts x %d, %.1f%% correct, %.1f%% of prompts mixed",
                     path, meta["n_prompts"], meta["k"], 100 * meta["frac_correct"], 100 * meta["frac_prompts_mixed"])
        used["bank"] = {**meta, "path": str(path), "hit": hit}
        data.bank = load_bank(path)
        if algo.uses_process_values and algo.cfg.get("process_values"):
            used["process_values"] = add_process_values(cfg, algo, store, bank_spec, data.bank, engine, task, tok,
                                                        model.config, seed)

    diagnostics = {}
    if algo.needs_value_model and int(cfg.value_check.n_prompts) > 0:
        diagnostics["value_check"] = add_value_states(cfg, store, ref_key, task_spec, n_demo, rl_prompts, engine,
                                                      task, tok, model.config)

    history, value_metrics, online_log = [], {}, {}
    if algo.trains and algo.online:  # meters its own rollout and train stages
        ref_model = load_model(ref_path, device=accelerator.device).eval().requires_grad_(False) \
            if algo.needs_ref else None
        res = train_online(algo, rl_prompts, task, engine, model=model, ref_model=ref_model,
                           value_model=make_value_model(algo, model, ref_path, accelerator.device), cfg=cfg,
                           seed=seed, pad_id=tok.pad_token_id, accelerator=accelerator, meter=meter,
                           ckpt_dir=run_dir / "checkpoint", desc=f"train {algo.name}")
        del ref_model
        engine.load_weights(res["model"])
        history, n_examples = res["history"], sum(r["n_samples"] for r in res["rollouts"])
        online_log = {"rollouts": res["rollouts"], "plan": res["plan"]}
    elif algo.trains:
        with meter.stage("train") as st:
            examples = algo.build_examples(data, random.Random(seed))
            log.info("%s: %d training examples, %d steps of %d", algo.name, len(examples), cfg.train.steps,
                     cfg.train.batch_size)
            seq_len = _mean_len(examples, algo.slots)
            ref_tokens = fill_ref_logps(model, examples, algo.slots, tok.pad_token_id, accelerator.device)
            value_model = make_value_model(algo, model, ref_path, accelerator.device)
            res = train(model, algo, examples, cfg.train, lr=algo.lr, seed=seed, pad_id=tok.pad_token_id,
                        accelerator=accelerator, ckpt_dir=run_dir / "checkpoint", desc=f"train {algo.name}",
                        value_model=value_model, value_lr=algo.cfg.get("value_lr"))
            engine.load_weights(res["model"])
            history, n_examples = res["history"], len(examples)
            # A separate value model costs as much again as the policy per trained token.
            factor = 2.0 if isinstance(value_model, ValueModel) else 1.0
            st.update(train_tokens=res["train_tokens"],
                      flops=factor * compute.train_flops(model.config, res["train_tokens"], seq_len)
                      + compute.generate_flops(model.config, ref_tokens, seq_len))
        if diagnostics.get("value_check"):  # outside the train stage: a diagnostic, not the algorithm's cost
            value_metrics = value_correlation(res["value_model"], res["model"], diagnostics["value_check"]["path"],
                                              tok.pad_token_id, accelerator.device)
            log.info("value model on %d held-out states: Spearman %.3f (prompts alone %.3f), Pearson %.3f "
                     "with Monte-Carlo values", value_metrics["value_n_states"], value_metrics["value_corr_spearman"],
                     value_metrics["value_corr_prompt_spearman"], value_metrics["value_corr_pearson"])

    with meter.stage("eval") as st:
        metrics, rows, gen_tokens = evaluate(engine, task, test, cfg.eval, seed=seed)
        prompt_tokens = sum(len(x) for x in tok([task.prompt(ex) for ex in test])["input_ids"])
        st.update(gen_tokens=gen_tokens, flops=compute.sampling_flops(model.config, gen_tokens,
                                                                        prompt_tokens * (1 + int(cfg.eval.k)), len(rows)))

    write_jsonl(run_dir / "samples.jsonl", rows)
    write_jsonl(run_dir / "train_history.jsonl", history)
    if online_log:
        write_jsonl(run_dir / "rollouts.jsonl", online_log["rollouts"])
    for rec in [*meter.stages.values(), *used.values()]:  # own stages, then the shared artifacts it used
        util = compute.utilisation(rec.get("flops", 0.0), rec.get("wall_s", 0.0))
        rec.update(device_s=util["device_s"], flops_per_s=util["flops_per_s"], mfu=util["mfu"])
    cost = {"stages": meter.stages, "artifacts": used, "diagnostics": diagnostics}
    write_json(run_dir / "cost.json", cost)
    own = list(meter.stages.values())
    run_util = compute.utilisation(sum(s["flops"] for s in own), sum(s["wall_s"] for s in own))
    data_device_s = sum(a.get("wall_s", 0.0) for a in used.values()) * compute.n_devices()
    return {
        **metrics,
        "prompt": task.prompt_record(),
        "config_hash": run_dir.name.rsplit("-", 1)[-1],
        "provenance": provenance(task),
        "wall_s": sum(s["wall_s"] for s in own),
        "gen_tokens": sum(s["gen_tokens"] for s in own),
        "train_tokens": sum(s["train_tokens"] for s in own),
        "flops": sum(s["flops"] for s in own),
        "peak_mem_mb": max(s.get("peak_mem_mb", 0.0) for s in own),
        "data_wall_s": sum(a.get("wall_s", 0.0) for a in used.values()),
        "data_gen_tokens": sum(a.get("gen_tokens", 0) for a in used.values()),
        "data_train_tokens": sum(a.get("train_tokens", 0) for a in used.values()),
        "data_flops": sum(a.get("flops", 0.0) for a in used.values()),
        # sampled to make the training signal (bank, process values, or live rollouts); not evaluation
        "train_gen_tokens": sum(a.get("gen_tokens", 0) for k, a in used.items() if k != "warm_start")
        + meter.stages.get("rollout", {}).get("gen_tokens", 0),
        "device_s": run_util["device_s"],
        "data_device_s": data_device_s,
        # everything spent once π_ref exists (own stages, bank, process values): what a gain is bought with
        "post_ref_device_s": run_util["device_s"] + data_device_s
        - used.get("warm_start", {}).get("wall_s", 0.0) * compute.n_devices(),
        "mfu": run_util["mfu"],
        "train_mfu": meter.stages.get("train", {}).get("mfu"),
        "peak_flops": run_util["peak_flops"],
        "peak_flops_source": run_util["peak_source"],
        "n_train_examples": n_examples if algo.trains else 0,
        "final_loss": history[-1]["loss"] if history else None,
        **({"online_iterations": len(online_log["rollouts"]), "online_steps": online_log["plan"]["steps"],
            "rollout_reward_first": online_log["rollouts"][0]["reward_mean"],
            "rollout_reward_last": online_log["rollouts"][-1]["reward_mean"]} if online_log else {}),
        **value_metrics,
    }


def add_process_values(cfg, algo, store, bank_spec, bank, engine, task, tok, model_config, seed) -> dict:
    """Monte-Carlo step values for the first ``process.n_prompts`` bank prompts (a cached artifact),
    turned into per-token shaping rewards on those samples."""
    n = int(cfg.process.n_prompts)
    spec = {"bank": bank_spec, "process": OmegaConf.to_container(cfg.process, resolve=True)}

    def build(out):
        meta = build_process_values(engine, task, bank[:n], tok, cfg.process, seed=seed, out_dir=out)
        # Each distinct prefix is continued k times: n_prefixes * k sequences.
        return meta | {"flops": compute.sampling_flops(model_config, meta["gen_tokens"], meta["prompt_tokens"],
                                                       meta["n_prefixes"] * meta["k"])}

    path, meta, hit = store.get_or_build("process_values", spec, build)
    log.info("process values: %s %s (%d distinct step prefixes x %d rollouts)", "reusing" if hit else "built",
             path, meta["n_prefixes"], meta["k"])
    values = load_process_values(path)
    alpha = float(algo.cfg.get("process_alpha", 1.0))
    for g in bank[:n]:
        start = sum(s["reward"] for s in g["samples"]) / len(g["samples"])
        for s in g["samples"]:
            s["shaping"] = shaping(len(s["completion_ids"]), start, values[(g["prompt_id"], s["sample"])], alpha)
    return {**meta, "path": str(path), "hit": hit}


def add_value_states(cfg, store, ref_key, task_spec, n_demo, rl_prompts, engine, task, tok, model_config) -> dict:
    """The held-out states and their Monte-Carlo values (``harness/value_check.py``), built with π_ref
    before training and shared by every run and seed of this π_ref; ``{}`` when no prompt is left over."""
    start, n = int(cfg.bank.n_prompts), int(cfg.value_check.n_prompts)
    held = rl_prompts[start:start + n]
    if not held:
        log.warning("value check skipped: the bank uses all %d RL prompts, none is held out", len(rl_prompts))
        return {}
    # "format": bumped when the artifact's contents change, so an old one is never read as new
    spec = {"format": 2, "ref": ref_key, "task": task_spec, "n_demo": n_demo, "after": start,
            "value_check": OmegaConf.to_container(cfg.value_check, resolve=True),
            "generation": OmegaConf.to_container(cfg.generation, resolve=True)}

    def build(out):
        meta = build_value_states(engine, task, held, tok, cfg.value_check, out_dir=out)
        return meta | {"flops": compute.sampling_flops(model_config, meta["gen_tokens"], meta["prompt_tokens"],
                                                       meta["n_sequences"])}

    path, meta, hit = store.get_or_build("value_states", spec, build)
    log.info("value check: %s %s (%d held-out states x %d rollouts)", "reusing" if hit else "built", path,
             meta["n_states"], meta["k"])
    return {**meta, "path": str(path), "hit": hit}


def make_value_model(algo, policy, ref_path: str, device):
    """V_φ for algorithms that need one: a copy of π_ref's trunk (``separate``) or a head on the policy's."""
    if not algo.needs_value_model:
        return None
    mode = algo.cfg.get("value_model", "separate")
    if mode == "separate":
        return ValueModel(load_model(ref_path, device=device))
    if mode == "shared":
        return ValueHead(policy.config.hidden_size).to(device)
    raise UserError(f"algo.value_model={mode!r}: valid values are separate, shared")


def _mean_len(examples: list[dict], slots) -> float:
    lens = [len(ex[s]["prompt_ids"]) + len(ex[s]["completion_ids"]) for ex in examples for s in slots]
    return sum(lens) / max(len(lens), 1)
