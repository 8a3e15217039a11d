"""One job (docs/design.md §1): warm start → rollout bank → train → evaluate → record.

The pipeline never knows which algorithm it runs: it asks the plug-in what it needs (``trains``,
``needs_bank``, ``online``, ``needs_value_model``) and hands the shared backbone its examples and loss.
``run_job`` checks everything it can before any work; ``_run`` then calls one function per stage.
"""
from __future__ import annotations

import logging
import random
import shutil
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml
from accelerate.utils import DistributedType
from transformers import set_seed

from algorithms._base import TrainData, process_alpha
from harness.backbone import compute
from harness.backbone.agent import fill_ref_logps
from harness.backbone.hub import local_model_path, model_source
from harness.backbone.memory import check_levers, dtype_of, lora_enabled, trainable
from harness.backbone.models import load_model, load_tokenizer
from harness.backbone.online import online_plan, train_online
from harness.backbone.training import make_accelerator, mixed_precision, train
from harness.backbone.value_model import ValueHead, ValueModel
from harness.config.schema import (
    Bank,
    Eval,
    Generation,
    Model,
    Process,
    Settings,
    Train,
    ValueCheck,
    WarmStart,
    settings,
)
from harness.config.variants import drop_operational, variant_id, variant_label
from harness.distributed import ranks
from harness.distributed.strategies import SHARDED, check_dist
from harness.errors import UserError
from harness.generation.engines import ShardedEngine, check_engine, make_engine
from harness.generation.sampling import SAMPLER
from harness.pipeline import family
from harness.pipeline.bank import build_bank, load_bank
from harness.pipeline.curve import Curve
from harness.pipeline.evaluation import evaluate
from harness.pipeline.process_values import build_process_values, load_process_values, shaping
from harness.pipeline.provenance import provenance
from harness.pipeline.value_check import build_value_states, value_correlation
from harness.pipeline.warm_start import build_warm_start, encode_demo, recipe, warm_start_spec
from harness.registry import REFERENCE, get_algorithm, make_algo
from harness.storage.artifacts import ArtifactStore, config_hash
from harness.storage.records import (
    atomic_write,
    disk_full,
    is_complete,
    read_json,
    run_id,
    write_json,
    write_jsonl,
)
from tasks import get_task

log = logging.getLogger("dqo_bench")

#: config sections every run depends on; ``train`` and ``bank`` are added when the algorithm uses them
_BASE_SECTIONS = ("task", "model", "warm_start", "eval", "generation", "seed", "algo")


def model_label(model: Model) -> str:
    """The model's name in run ids and the leaderboard: the hub id's or folder's last part, or ``tiny``."""
    return Path(model.name_or_path).name if model.name_or_path else model.name


def load_task(spec: dict):
    """``(task, task_spec, n_demo)`` from the ``task`` section (its options parsed: a bad one stops here)."""
    task = get_task(spec["name"], **{k: v for k, v in spec.items() if k != "name"})
    return task, spec, task.opts.n_demo


def task_splits(task, splits: dict, n_demo: int, n_val: int = 0):
    """``(demonstrations, RL prompts, validation)``; the demonstrations as a function that returns them, since most
    jobs never read them (a shipped π_ref, an algorithm that does not train on them). They are the task's own
    (``load_demos``: a procedural task's stream of fresh problems) or cut from train (``split_train``)."""
    if task.demo_split:
        return (lambda: task.load_demos()[:n_demo]), *split_train(splits["train"], 0, n_val)[1:]
    demo, rl, val = split_train(splits["train"], n_demo, n_val)
    return (lambda: demo), rl, val


def split_train(train: list[dict], n_demo: int, n_val: int = 0) -> tuple[list[dict], list[dict], list[dict]]:
    """Demonstrations (full solutions, for π_ref), RL prompts (final answers only) and a validation split: a
    fixed split of the train set, the same for every run and seed (docs/design.md §10). Validation takes the
    end of the shuffled order, so the demonstrations, the bank's prompts and the value check's are the same
    whatever ``n_val`` is."""
    order = list(range(len(train)))
    random.Random(1234).shuffle(order)
    if n_demo + n_val >= len(train):
        raise UserError(f"task.n_demo={n_demo} and task.n_val={n_val} leave no RL prompts in a train split of "
                        f"{len(train)}; lower them")
    rl_end = len(order) - n_val
    return ([train[i] for i in order[:n_demo]], [train[i] for i in order[n_demo:rl_end]],
            [train[i] for i in order[rl_end:]])


def split_hash(items: list[dict]) -> str:
    """A short hash of a split's ids, recorded with each run: which items it was evaluated on."""
    return config_hash([str(ex["id"]) for ex in items])[:12]


def generation_key(generation: Generation) -> dict:
    """What of ``generation`` decides the samples: the engine and its sampler. Not the batch size: a request's
    sampling noise is its own (``harness/generation/sampling.py``)."""
    return {"engine": generation.engine, "sampler": SAMPLER}


def family_root(ws: WarmStart) -> Path:
    return Path(ws.family_dir) if ws.family_dir else family.ROOT


def looks_for_family(model: Model, ws: WarmStart) -> bool:
    """π_ref may come from a shipped family: not a model used as it is, nor a draw rebuilt on purpose."""
    return not ((model.name_or_path and ws.steps == 0) or ws.rebuild)


def shipped_ref(s: Settings, task=None) -> family.Draw | None:
    """The shipped π_ref these settings load (``harness/pipeline/family.py``), or None: a model used as it is, a
    rebuild, or no shipped family with this warm-start recipe."""
    if not looks_for_family(s.model, s.warm_start):
        return None
    return family.find(recipe(s, task or load_task(s.task)[0]), s.warm_start.draw, family_root(s.warm_start))


def check_draw(s: Settings, task) -> None:
    """A ``warm_start.draw`` that the matching shipped family lacks, or a ``warm_start.family_dir`` with no draws,
    stops here: either would silently mean building π_ref from the recipe (about 25 minutes on 2 cores) instead of
    loading a shipped one."""
    if not looks_for_family(s.model, s.warm_start):
        return
    if s.warm_start.family_dir and not family.draws(family_root(s.warm_start)):  # a typo: not a 25-minute build
        raise UserError(f"warm_start.family_dir={s.warm_start.family_dir}: no π_ref draws there (no "
                        f"draw-*/{family.MANIFEST}); give the out= folder of harness.build_family, or drop the option "
                        "to use the repository's family/")
    shipped = family.members(recipe(s, task), family_root(s.warm_start))
    draw = s.warm_start.draw
    if shipped and draw not in {d.draw for d in shipped}:
        have = ", ".join(str(d.draw) for d in shipped)
        raise UserError(f"warm_start.draw={draw}: family {shipped[0].path.parent.name} ships draws {have}; pick one "
                        f"of them, or add warm_start.rebuild=true to train draw {draw} from the family's recipe")


def run_spec(s: Settings, algo) -> dict:
    """Exactly the config sections this run's result depends on, as given: its key."""
    sections = list(_BASE_SECTIONS) + (["train"] if algo.trains else []) + (["bank"] if algo.needs_bank else [])
    if process_alpha(algo) is not None:
        sections.append("process")
    if algo.needs_value_model:
        sections.append("value_check")
    spec = {k: drop_operational(k, s.given[k]) if isinstance(s.given[k], dict) else s.given[k] for k in sections}
    spec["algo"] = {k: v for k, v in spec["algo"].items() if k != "search"}  # where harness.tune searches: no run
    if algo.online:
        del spec["train"]["steps"]  # an online run's steps follow from algo.budget
    spec["generation"] = generation_key(s.generation)
    shipped = shipped_ref(s)
    spec["ref"] = shipped.sha256 if shipped is not None else None  # new shipped weights make new runs
    return spec


def reference_settings(s: Settings) -> Settings:
    """The same job with π_ref itself as the algorithm (its ``reference`` row)."""
    ref = {**s.given, "algo": {"name": REFERENCE}, "_overrides": s.overrides, "_interpolated": s.interpolated}
    return settings(ref)


def check_job(s: Settings):
    """Everything that can be checked before any work (one line each); returns the plug-in."""
    algo = make_algo(s.algo)
    task = load_task(s.task)[0]
    task.check_source()
    if s.model.name_or_path:
        model_source(s.model.name_or_path)
    get_algorithm(s.warm_start.algo)  # the plug-in that trains π_ref: a typo stops here, not after the data
    check_draw(s, task)
    n_train = s.task.get("n_train")  # a split size known before loading: the split is checked now, not after work
    n_demo = 0 if task.demo_split else int(s.task["n_demo"])  # a task's own demo stream takes nothing from train
    n_val = task.opts.n_val
    if n_train is not None and n_demo + n_val >= int(n_train):
        raise UserError(f"task.n_demo={n_demo} and task.n_val={n_val} leave no RL prompts in a "
                        f"train split of {n_train}; lower them" if n_demo else
                        f"task.n_val={n_val} leaves no RL prompts in a train split of {n_train}; lower it")
    if (s.eval.split == "val" or s.eval.every) and not n_val:
        raise UserError("eval.split=val and eval.every need a validation split: task.n_val must be > 0")
    mixed_precision(s.train.precision)
    check_levers(s.model, s.generation.engine)
    check_engine(s.generation.engine)  # before the warm start, not after it
    if algo.online:
        online_plan(algo, s.train.batch_size)
    elif algo.needs_bank and s.bank.k < algo.min_samples:
        raise UserError(f"bank.k={s.bank.k}: {algo.name} needs at least {algo.min_samples} samples per prompt; "
                        f"raise bank.k")
    check_dist(s.given["dist"])
    if s.model.name == "tiny" and not s.model.name_or_path and s.task["name"] != "arith" and algo.trains:
        log.warning("model=tiny is a ~1M-parameter CPU testbed for task=arith: on task=%s expect ~0%% accuracy. "
                    "For a real comparison: model=hf model.name_or_path=Qwen/Qwen2.5-0.5B-Instruct", s.task["name"])
    return algo


def run_job(s: Settings) -> dict:
    """Run (or skip, when already complete) one job and, first, the reference row it is read against."""
    algo = check_job(s)
    if s.include_reference and algo.trains:
        run_job(reference_settings(s))
    spec = run_spec(s, algo)
    rid = run_id(s.task["name"], model_label(s.model), algo.name, s.seed, config_hash(spec))
    run_dir = Path(s.results_dir) / "runs" / rid
    # two jobs of a parallel sweep that need the same run (their reference row): one computes, one reads
    with ranks.main_lock(run_dir.parent / f".{rid}.lock"):
        if ranks.broadcast(is_complete(run_dir)):
            log.info("%s: already complete, skipping (delete %s to recompute)", rid, run_dir)
            return read_json(run_dir / "metrics.json")
        return _record(s, algo, spec, rid, run_dir)


def _record(s: Settings, algo, spec: dict, rid: str, run_dir: Path) -> dict:
    """Run the job's stages and write its record (a failure is recorded too, then raised)."""
    log.info("=== %s", rid)
    if ranks.main_process():  # a killed run's half-written files (``atomic_write``'s temporaries)
        for stale in run_dir.glob("*.tmp*"):
            stale.unlink(missing_ok=True)
    atomic_write(run_dir / "config.yaml", yaml.safe_dump({**s.given, "_overrides": s.overrides}, sort_keys=False,
                                                         allow_unicode=True))
    read = {key for section in spec for key in s.interpolated.get(section, ())}
    head = {"run_id": rid, "task": s.task["name"], "model": model_label(s.model), "algo": algo.name,
            "variant": variant_label(s.overrides, spec, read), "variant_id": variant_id(spec), "seed": s.seed}
    t0 = time.perf_counter()
    try:
        metrics = {**head, "status": "ok", **_run(s, algo, run_dir)}
        write_json(run_dir / "metrics.json", metrics)  # last: its presence marks the record complete
    except Exception as e:
        if disk_full(e, run_dir):  # not the run's failure: nothing recorded, a rerun resumes where it stopped
            raise UserError(f"no space left on the disk of results_dir={s.results_dir} ({_one_line(e)}); free "
                            f"space or give another results_dir=, then rerun: finished runs, artifacts and "
                            f"checkpoints are kept, half-written files were removed") from None
        # recorded as a failed run; the caller decides whether the sweep goes on
        write_json(run_dir / "metrics.json", {**head, "status": "failed", "error": _one_line(e),
                                              "wall_s": time.perf_counter() - t0})
        atomic_write(run_dir / "error.txt", traceback.format_exc())
        e.recorded = True  # the caller rebuilds the leaderboard only when something was recorded
        raise
    shutil.rmtree(run_dir / "checkpoint", ignore_errors=True)  # only needed to resume an unfinished run
    log.info("%s: accuracy %.4f (greedy), %s (sampled)", rid, metrics["accuracy"], metrics.get("accuracy_sampled"))
    return metrics


def _one_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}" if not isinstance(e, UserError) else text[0]


@dataclass
class Job:
    """What the stages of one job share: the loaded task and policy, the engine and the bookkeeping (each stage
    receives the config sections it reads)."""

    algo: object
    task: object
    task_spec: dict
    n_demo: int
    store: ArtifactStore
    meter: compute.Meter
    accelerator: object
    seed: int
    dtype: str  # model.dtype: π_ref's weights as loaded, part of every artifact sampled from them
    #: the validation split (eval.split=val, the learning curve of eval.every)
    val: list = field(default_factory=list)
    #: shared artifacts this run consumed (their cost is charged to it), and diagnostics (charged to nobody)
    used: dict = field(default_factory=dict)
    diagnostics: dict = field(default_factory=dict)
    # set by ``load_policy``
    ref_path: str = ""
    ref_key: str = ""
    ref: dict = field(default_factory=dict)  # which π_ref, for the record: source, draw, weights' sha256
    tok: object = None
    model: object = None
    engine: object = None


@dataclass
class Trained:
    """What a train stage leaves for the rest of the job."""

    history: list = field(default_factory=list)
    n_examples: int = 0
    value_model: object = None
    online: dict = field(default_factory=dict)  # the online loop's rollout log and plan


def _run(s: Settings, algo, run_dir: Path) -> dict:
    set_seed(s.seed)
    task, task_spec, n_demo = load_task(s.task)
    job = Job(algo=algo, task=task, task_spec=task_spec, n_demo=n_demo, seed=s.seed, dtype=s.model.dtype,
              store=ArtifactStore(Path(s.results_dir) / "artifacts"), meter=compute.Meter(),
              accelerator=make_accelerator(s.train.precision))
    if ranks.main_process():
        job.store.clean_stale()
    with job.meter.stage("data"):
        splits = task.load_splits()
        demo, rl_prompts, job.val = task_splits(task, splits, n_demo, task.opts.n_val)
        items = job.val if s.eval.split == "val" else splits["test"]
        test = items[: s.eval.n_test] if s.eval.n_test else items
    load_policy(job, demo, s)
    data = TrainData(demo=lambda: encode_demo(job.tok, task, demo()))
    if algo.needs_bank:
        data.bank = rollout_bank(job, rl_prompts, s.bank, s.process, s.generation)
    if algo.needs_value_model and s.value_check.n_prompts > 0:
        job.diagnostics["value_check"] = value_states(job, rl_prompts, s.value_check, s.bank, s.generation)
    trained = Trained()
    if algo.trains:
        algo.prepare(data)
        trained = (train_online_stage(job, rl_prompts, run_dir, s.train, s.model, s.eval) if algo.online else
                   train_offline_stage(job, data, run_dir, s.train, s.model, s.eval))
    value_metrics = check_value_model(job, trained)
    metrics, rows = evaluate_stage(job, test, s.eval)
    write_jsonl(run_dir / "samples.jsonl", rows)
    write_jsonl(run_dir / "train_history.jsonl", trained.history)
    if trained.online:
        write_jsonl(run_dir / "rollouts.jsonl", trained.online["rollouts"])
    cost = compute.run_cost(job.meter.stages, job.used)
    write_json(run_dir / "cost.json", {"stages": job.meter.stages, "artifacts": job.used,
                                       "diagnostics": job.diagnostics})
    return {
        **metrics,
        "eval_split": s.eval.split, "eval_items_hash": split_hash(test),
        **dict(zip(("train_chain_min", "train_chain_max"), task.train_chain_range() or ())),
        "prompt": task.prompt_record(),
        "config_hash": run_dir.name.rsplit("-", 1)[-1],
        **job.ref,
        "provenance": provenance(task),
        **cost,
        "n_train_examples": trained.n_examples,  # distinct: pairs, trajectories or rollouts, as the plug-in builds them
        "examples_seen": sum(h.get("examples", 0) for h in trained.history),  # over every optimiser step
        "final_loss": trained.history[-1]["loss"] if trained.history else None,
        **_online_summary(trained.online),
        **{f"bank_{k}": v for k, v in job.used.get("bank", {}).items() if k.startswith("logprob_gap")
           or k == "sampler_exact"},
        **value_metrics,
    }


def load_policy(job: Job, demo, s: Settings) -> None:
    """π_ref (a shipped draw, a cached warm-start artifact, or a given model used as it is), its tokenizer, and
    the generation engine that samples from the policy. Reads the model, the warm start (whose recipe spans the
    model, the task and ``train``'s operational options), the generation engine and the strategy."""
    if s.model.name_or_path and s.warm_start.steps == 0:
        job.ref_key = s.model.name_or_path  # keys name the model as the user did
        job.ref_path = local_model_path(job.ref_key)  # what every engine loads (the cached copy when offline)
        job.ref = {"ref_source": "model", "ref_draw": None, "ref_sha256": None}
    else:
        shipped = shipped_ref(s, job.task)
        if shipped is not None:
            log.info("warm start: shipped π_ref %s (draw %d, sha256 %s…)", shipped.path, shipped.draw,
                     shipped.sha256[:12])
            job.used["warm_start"] = {**shipped.manifest["cost"], "path": str(shipped.path), "hit": True}
            job.ref_path, job.ref_key = str(shipped.path), shipped.key
            job.ref = {"ref_source": "shipped", "ref_draw": shipped.draw, "ref_sha256": shipped.sha256}
        else:
            if not s.warm_start.rebuild and not s.model.name_or_path:
                log.warning("warm start: no shipped π_ref for these settings (%s): building draw %d from its recipe",
                            family.difference(recipe(s, job.task), family_root(s.warm_start)), s.warm_start.draw)
            spec = warm_start_spec(s, job.task)
            path, meta, hit = job.store.get_or_build(
                "warm_start", spec, lambda out: build_warm_start(s.model, s.warm_start, s.train, job.task, demo(),
                                                                 job.accelerator, out,
                                                                 ckpt_dir=job.store.checkpoint_dir("warm_start", spec)))
            log.info("warm start: %s %s", "reusing" if hit else "built", path)
            job.used["warm_start"], job.ref_path = {**meta, "path": str(path), "hit": hit}, str(path)
            job.ref_key = path.name  # content-addressed: artifacts keyed on it survive a moved results_dir
            job.ref = {"ref_source": "built", "ref_draw": s.warm_start.draw,
                       "ref_sha256": family.sha256(path / family.WEIGHTS)}
    job.tok = load_tokenizer(job.ref_path)
    job.task.bind_tokenizer(job.tok)  # fixes the prompt style: chat template if π_ref's tokenizer has one
    job.model = load_model(job.ref_path, dtype=dtype_of(job.dtype), device=job.accelerator.device)
    job.engine = make_engine(s.generation.engine, job.model, job.tok, batch_size=s.generation.batch_size,
                             model_path=job.ref_path, gpu_memory_utilization=s.vllm.gpu_memory_utilization,
                             exact_logprobs=job.accelerator.mixed_precision == "no",
                             synced=ranks.world_size() > 1 and s.dist.name in SHARDED)
    if ranks.world_size() > 1:
        job.engine = ShardedEngine(job.engine)  # each process samples every N-th prompt


def rollout_bank(job: Job, rl_prompts: list[dict], bank_cfg: Bank, process: Process,
                 generation: Generation) -> list[dict]:
    """The bank (a cached artifact: ``bank.k`` samples from π_ref for the first ``bank.n_prompts`` RL prompts),
    with process-value shaping on its samples when the plug-in uses it."""
    n = bank_cfg.n_prompts
    bank_spec = {"ref": job.ref_key, "dtype": job.dtype, "task": job.task_spec, "n_demo": job.n_demo,
                 "seed": job.seed, "bank": asdict(bank_cfg), "generation": generation_key(generation)}

    def build(out):
        meta = build_bank(job.engine, job.task, rl_prompts[:n], bank_cfg, seed=job.seed, out_dir=out,
                          score=None if job.engine.exact_logprobs else lambda seqs: trainer_logps(job, seqs))
        flops = compute.sampling_flops(job.model.config, meta["gen_tokens"], meta["prompt_tokens"], meta["n_samples"])
        if meta.get("scored_tokens"):  # the trainer's forward for log π_ref
            flops += compute.generate_flops(job.model.config, meta["scored_tokens"],
                                            (meta["gen_tokens"] + meta["prompt_tokens"]) / meta["n_samples"])
        return meta | {"flops": flops}

    path, meta, hit = job.store.get_or_build("bank", bank_spec, build)
    if hit:
        log.info("rollout bank: reusing %s (sampled once, shared by every algorithm of this config)", path)
    else:
        log.info("rollout bank: sampled %s: %d prompts x %d, %.1f%% correct, %.1f%% of prompts mixed",
                 path, meta["n_prompts"], meta["k"], 100 * meta["frac_correct"], 100 * meta["frac_prompts_mixed"])
    job.used["bank"] = {**meta, "path": str(path), "hit": hit}
    bank = load_bank(path)
    if not meta.get("sampler_exact", True):
        # The one rule (docs/design.md §3): log π_ref from the trainer's forward, in the very micro-batches that
        # train on it (``Learner.fill_reference``), so that the first step's log-ratios are exactly zero.
        for g in bank:
            for smp in g["samples"]:
                smp["ref_logps"] = None
    if process_alpha(job.algo) is not None:
        job.used["process_values"] = add_process_values(job, bank_spec, bank, process)
    return bank


def trainer_logps(job: Job, seqs: list[dict]) -> tuple[list[list[float]], int]:
    """log π_ref of ``seqs`` by the trainer's forward (its path and precision), and the tokens it computed."""
    tokens = fill_ref_logps(job.model, [{"seq": q} for q in seqs], ("seq",), job.tok.pad_token_id,
                            job.accelerator.device, autocast=job.accelerator.autocast)
    return [q["ref_logps"] for q in seqs], tokens


def add_process_values(job: Job, bank_spec: dict, bank: list[dict], process: Process) -> dict:
    """Monte-Carlo step values for the first ``process.n_prompts`` bank prompts (a cached artifact),
    turned into per-token shaping rewards on those samples."""
    n = process.n_prompts
    spec = {"bank": bank_spec, "process": asdict(process)}

    def build(out):
        meta = build_process_values(job.engine, job.task, bank[:n], job.tok, process, seed=job.seed, out_dir=out)
        # Each distinct prefix is continued k times: n_prefixes * k sequences.
        return meta | {"flops": compute.sampling_flops(job.model.config, meta["gen_tokens"], meta["prompt_tokens"],
                                                       meta["n_prefixes"] * meta["k"])}

    path, meta, hit = job.store.get_or_build("process_values", spec, build)
    log.info("process values: %s %s (%d distinct step prefixes x %d rollouts)", "reusing" if hit else "built",
             path, meta["n_prefixes"], meta["k"])
    values = load_process_values(path)
    for g in bank[:n]:
        start = sum(s["reward"] for s in g["samples"]) / len(g["samples"])
        for s in g["samples"]:
            s["shaping"] = shaping(len(s["completion_ids"]), start, values[(g["prompt_id"], s["sample"])],
                                   process_alpha(job.algo))
    return {**meta, "path": str(path), "hit": hit}


def value_states(job: Job, rl_prompts: list[dict], check: ValueCheck, bank_cfg: Bank, generation: Generation) -> dict:
    """The held-out states and their Monte-Carlo values (``harness/pipeline/value_check.py``), built with π_ref
    before training and shared by every run and seed of this π_ref; ``{}`` when no prompt is left over."""
    start, n = bank_cfg.n_prompts, check.n_prompts
    held = rl_prompts[start:start + n]
    if not held:
        log.warning("value check skipped: the bank uses all %d RL prompts, none is held out", len(rl_prompts))
        return {}
    # "format": bumped when the artifact's contents change, so an old one is never read as new
    spec = {"format": 2, "ref": job.ref_key, "dtype": job.dtype, "task": job.task_spec, "n_demo": job.n_demo,
            "after": start, "value_check": asdict(check), "generation": generation_key(generation)}

    def build(out):
        meta = build_value_states(job.engine, job.task, held, job.tok, check, out_dir=out)
        return meta | {"flops": compute.sampling_flops(job.model.config, meta["gen_tokens"], meta["prompt_tokens"],
                                                       meta["n_sequences"])}

    path, meta, hit = job.store.get_or_build("value_states", spec, build)
    log.info("value check: %s %s (%d held-out states x %d rollouts)", "reusing" if hit else "built", path,
             meta["n_states"], meta["k"])
    return {**meta, "path": str(path), "hit": hit}


def make_value_model(job: Job, model: Model):
    """V_φ for algorithms that need one: a copy of π_ref's trunk (``separate``, under the memory levers) or a
    head on the policy's."""
    if not job.algo.needs_value_model:
        return None
    device = job.accelerator.device
    if job.algo.opts.value_model == "separate":
        trunk = load_model(job.ref_path, dtype=dtype_of(job.dtype), device=device)
        return ValueModel(trainable(trunk, model, task_type=None))
    return ValueHead(job.model.config.hidden_size).to(device)


def train_offline_stage(job: Job, data: TrainData, run_dir: Path, train_cfg: Train, model: Model,
                        eval_cfg: Eval) -> Trained:
    """The plug-in's examples (π_ref's log-probs filled in where missing), then ``train.steps`` optimiser steps."""
    algo = job.algo
    with job.meter.stage("train") as st:
        examples = algo.build_examples(data, random.Random(job.seed))
        log.info("%s: %d training examples, %d steps of %d", algo.name, len(examples), train_cfg.steps,
                 train_cfg.batch_size)
        seq_len = compute.mean_length(examples, algo.slots)
        value_model = make_value_model(job, model)
        separate = isinstance(value_model, ValueModel)
        def own(lr):  # the run's FLOPs so far, for the learning curve
            return compute.train_stage_flops(job.model.config, lr.tokens, lr.forward_tokens, seq_len, separate), 0

        curve = make_curve(job, eval_cfg, own)
        res = train(trainable(job.model, model), algo, examples, train_cfg, seed=job.seed, pad_id=job.tok.pad_token_id,
                    accelerator=job.accelerator, ckpt_dir=run_dir / "checkpoint", desc=f"train {algo.name}",
                    value_model=value_model, on_step=curve)
        job.engine.load_weights(res["model"])
        st.update(train_tokens=res["train_tokens"],
                  flops=compute.train_stage_flops(job.model.config, res["train_tokens"], res["forward_tokens"],
                                                  seq_len, separate))
    if curve is not None:  # the curve's own evaluations are a diagnostic, not training time
        job.meter.stages["train"]["wall_s"] -= curve.wall_s
        job.diagnostics["curve"] = curve.diagnostics()
    return Trained(history=res["history"], n_examples=len(examples), value_model=res["value_model"])


def make_curve(job: Job, eval_cfg: Eval, own) -> Curve | None:
    """The learning curve's ``on_step`` (``eval.every`` > 0), or None; ``own(learner)``: the run's own
    ``(flops, gen_tokens)`` so far."""
    if not eval_cfg.every:
        return None
    data = [a for name, a in job.used.items() if name != "warm_start"]  # the bank, process values: after π_ref
    return Curve(job.engine, job.task, job.val[: eval_cfg.curve_items], eval_cfg.every,
                 eval_cfg.max_new_tokens, job.seed, own,
                 (sum(a.get("flops", 0.0) for a in data), sum(a.get("wall_s", 0.0) for a in data),
                  sum(a.get("gen_tokens", 0) for a in data)))


def train_online_stage(job: Job, rl_prompts: list[dict], run_dir: Path, train_cfg: Train, model: Model,
                       eval_cfg: Eval) -> Trained:
    """The online loop (``harness/backbone/online.py``), which meters its own rollout and train stages."""
    algo = job.algo
    # π_ref: a frozen copy, or, with LoRA, the policy itself with its adapters off (ref_model None)
    ref_model = None
    if algo.needs_ref and not lora_enabled(model):
        ref_model = load_model(job.ref_path, dtype=dtype_of(job.dtype), device=job.accelerator.device)
        ref_model.eval().requires_grad_(False)
        if job.accelerator.distributed_type == DistributedType.FSDP:  # sharded like the policy (as TRL does)
            from trl.models.utils import prepare_fsdp

            ref_model = prepare_fsdp(ref_model, job.accelerator)
        elif job.accelerator.distributed_type == DistributedType.DEEPSPEED:  # an inference engine (ZeRO-3: sharded)
            from trl.models.utils import prepare_deepspeed

            ref_model = prepare_deepspeed(ref_model, job.accelerator)
    stages = job.meter.stages  # the online loop meters its rollout and train stages as it goes
    curve = make_curve(job, eval_cfg, lambda _: (sum(stages.get(n, {}).get("flops", 0.0) for n in ("rollout", "train")),
                                                 stages.get("rollout", {}).get("gen_tokens", 0)))
    res = train_online(algo, rl_prompts, job.task, job.engine, model=trainable(job.model, model), ref_model=ref_model,
                       value_model=make_value_model(job, model), cfg=train_cfg,
                       max_new_tokens=model.max_new_tokens, seed=job.seed, pad_id=job.tok.pad_token_id,
                       accelerator=job.accelerator, meter=job.meter, ckpt_dir=run_dir / "checkpoint",
                       desc=f"train {algo.name}", on_step=curve)
    if curve is not None:
        job.diagnostics["curve"] = curve.diagnostics()
    del ref_model
    job.engine.load_weights(res["model"])
    return Trained(history=res["history"], n_examples=sum(r["n_samples"] for r in res["rollouts"]),
                   value_model=res["value_model"], online={"rollouts": res["rollouts"], "plan": res["plan"]})


def check_value_model(job: Job, trained: Trained) -> dict:
    """V_φ against π_ref's Monte-Carlo values on held-out states: a diagnostic, outside the train stage."""
    check = job.diagnostics.get("value_check")
    if not check or trained.value_model is None:
        return {}
    m = value_correlation(trained.value_model, job.model, check["path"], job.tok.pad_token_id, job.accelerator.device)
    log.info("value model on %d held-out states: Spearman %.3f (prompts alone %.3f), Pearson %.3f "
             "with Monte-Carlo values", m["value_n_states"], m["value_corr_spearman"],
             m["value_corr_prompt_spearman"], m["value_corr_pearson"])
    return m


def evaluate_stage(job: Job, test: list[dict], eval_cfg: Eval) -> tuple[dict, list[dict]]:
    """Greedy and sampled accuracy of the trained policy on the test split (metered as ``eval``)."""
    with job.meter.stage("eval") as st:
        metrics, rows, gen_tokens = evaluate(job.engine, job.task, test, eval_cfg, seed=job.seed)
        lengths = [len(x) for x in job.tok([job.task.prompt(ex) for ex in test])["input_ids"]]
        prompt_tokens = sum(lengths) + eval_cfg.k * sum(lengths[:metrics["n_eval_sampled"]])
        st.update(gen_tokens=gen_tokens, flops=compute.sampling_flops(job.model.config, gen_tokens, prompt_tokens,
                                                                      len(rows)))
    return metrics, rows


def _online_summary(online: dict) -> dict:
    if not online:
        return {}
    rollouts = online["rollouts"]
    gaps = [r["logprob_gap_k3"] for r in rollouts if "logprob_gap_k3" in r]  # sampler vs trainer, when inexact
    return {"online_iterations": len(rollouts), "online_steps": online["plan"]["steps"],
            "rollout_reward_first": rollouts[0]["reward_mean"], "rollout_reward_last": rollouts[-1]["reward_mean"],
            **({"rollout_logprob_gap_k3": sum(gaps) / len(gaps)} if gaps else {})}
