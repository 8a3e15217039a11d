"""The prepared GPU check (README "Checking a GPU", docs/design.md §6): on a from-scratch Llama (no hub), the GPU
paths that a CPU cannot run, each step recorded whether it passes or fails, the next one run regardless.

    python -m benchmarks.gpu_check --out DIR [--cpu] [--budget-s 420]

Steps: the device and its peak; DQO and GRPO jobs (``harness.run``) with ``dist=none``, ``dist=fsdp
dist.num_processes=1`` and ``dist=zero2`` (DeepSpeed, when it imports), in bf16: training tokens/s and MFU against
the device's peak, and ``torch.cuda.max_memory_allocated`` per stage beside ``harness.plan``'s prediction for the
same job; the HF engine's generation tokens/s; ``pytest -m gpu``. Everything goes to ``DIR/gpu_check.json`` and
``DIR/gpu_check.md``. ``--cpu``: the same steps at tiny sizes with ``dist=none`` only, so that CI keeps the
script from rotting (``tests/test_gpu_check.py``); on a CPU the FSDP and DeepSpeed steps are recorded as skipped.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GiB = 2**30

#: (hidden, layers, heads, FFN): ~150M parameters on a GPU; the CPU smoke sizes of the tests elsewhere
SIZES = {"gpu": (1024, 12, 16, 2816), "cpu": (32, 2, 2, 64)}
#: the jobs' shared overrides: short, so that all of them fit in minutes, and bf16 on the GPU
JOB = {"gpu": ["model.warm_start_steps=60", "task.n_train=2000", "task.n_test=256", "task.n_val=64", "task.n_demo=2000",
               "bank.n_prompts=256", "bank.k=8", "train.steps=40", "train.batch_size=32", "train.micro_batch_size=32",
               "eval.k=2", "eval.n_sampled=64", "value_check.n_prompts=32", "value_check.k=4",
               "train.precision=bf16", "generation.batch_size=512", "train.checkpoint_minutes=0"],
       "cpu": ["model.warm_start_steps=10", "model.vocab_size=300", "task.n_train=300", "task.n_test=24",
               "task.n_val=24", "task.n_demo=100", "bank.n_prompts=16", "bank.k=4", "train.steps=3", "train.batch_size=8",
               "train.micro_batch_size=4", "eval.k=2", "eval.n_sampled=8", "value_check.n_prompts=16",
               "value_check.k=2", "generation.batch_size=64", "train.checkpoint_minutes=0"]}


def model_overrides(kind: str) -> list[str]:
    h, n, a, f = SIZES[kind]
    return [f"model.hidden_size={h}", f"model.num_layers={n}", f"model.num_heads={a}", f"model.intermediate_size={f}"]


class Steps:
    """Runs named steps, recording each one's status, wall time and figures; a failure never stops the next."""

    def __init__(self, out: Path):
        self.out, self.records = out, []

    def run(self, name: str, fn, *args) -> dict | None:
        t0 = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            figures = fn(*args) or {}
            status = figures.pop("status", "ok")
            rec = {"step": name, "status": status, "wall_s": round(time.perf_counter() - t0, 1), **figures}
        except Exception as e:  # recorded; the next step still runs
            rec = {"step": name, "status": "failed", "wall_s": round(time.perf_counter() - t0, 1),
                   "error": f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:500]}
            traceback.print_exc()
        print(json.dumps(rec), flush=True)
        self.records.append(rec)
        self.write()
        return rec

    def write(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "gpu_check.json").write_text(json.dumps(self.records, indent=1, default=str) + "\n")
        (self.out / "gpu_check.md").write_text(markdown(self.records))


def device() -> dict:
    import torch

    from harness.backbone.compute import peak_flops

    peak, source = peak_flops()
    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "peak_tflops": peak / 1e12 if peak else None, "peak_source": source}
    for pkg in ("transformers", "accelerate", "trl", "peft", "datasets", "hydra", "deepspeed"):
        try:
            info[pkg] = __import__(pkg).__version__
        except Exception as e:  # noqa: BLE001 - a missing package is a finding, not a failure
            info[pkg] = f"missing ({type(e).__name__})"
    return info


def job(kind: str, algo: str, dist: list[str], results: Path, timeout: int) -> dict:
    """One ``harness.run`` job; its record's throughput, MFU and per-stage peak memory beside ``harness.plan``'s."""
    overrides = [f"algo={algo}", *dist, *model_overrides(kind), *JOB[kind], f"results_dir={results}",
                 "include_reference=false"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1"}
    res = subprocess.run([sys.executable, "-m", "harness.run", *overrides], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=timeout)
    (results / f"{algo}-{'-'.join(dist) or 'none'}.log").write_text(res.stdout + res.stderr)
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()
        raise RuntimeError(f"harness.run exited {res.returncode}: {tail[-1] if tail else ''}")
    run = max((results / "runs").glob(f"*-{algo}-*/metrics.json"), key=lambda p: p.stat().st_mtime).parent
    metrics, cost = json.loads((run / "metrics.json").read_text()), json.loads((run / "cost.json").read_text())
    stages = cost["stages"]
    train = stages.get("train", {})
    predicted = {r["stage"]: r["total"] / GiB for r in plan_rows(overrides)}
    measured = {name: s.get("peak_mem_mb", 0) / 1024 for name, s in stages.items()}
    ws = cost["artifacts"].get("warm_start", {})
    if "peak_mem_mb" in ws:
        measured["warm start"] = ws["peak_mem_mb"] / 1024
    return {"train_tokens_per_s": train.get("train_tokens", 0) / train["wall_s"] if train.get("wall_s") else None,
            "train_mfu": metrics.get("train_mfu"), "run_mfu": metrics.get("mfu"),
            "accuracy": metrics.get("accuracy"), "peak_gib_measured": measured, "peak_gib_planned": predicted,
            "wall_s_job": metrics.get("wall_s")}


def plan_rows(overrides: list[str]) -> list[dict]:
    from harness.config.compose import compose
    from harness.config.memory_plan import arch, plan

    cfg = compose([o for o in overrides if not o.startswith(("results_dir=", "include_reference="))])
    gpu_mem = 80.0
    try:
        import torch

        if torch.cuda.is_available():
            gpu_mem = torch.cuda.get_device_properties(0).total_memory / GiB
    except Exception:  # noqa: BLE001
        pass
    return plan(cfg, arch(cfg.model), gpu_mem, prompt_len=128)


def generation(kind: str, results: Path) -> dict:
    """Tokens/s of the HF engine on the arith prompts, from the π_ref the jobs built (the online pattern: n samples
    per prompt at T = 1 with log-probs)."""
    import torch

    from harness.backbone.models import load_model, load_tokenizer
    from harness.generation.engines import make_engine
    from tasks import get_task

    path = max((results / "artifacts").glob("warm_start-*"), key=lambda p: p.stat().st_mtime)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tok, model = load_tokenizer(str(path)), load_model(str(path), device=device)
    task = get_task("arith")
    task.bind_tokenizer(tok)
    prompts = [task.prompt(ex) for ex in task.load_splits()["train"][: 256 if kind == "gpu" else 16]]
    engine = make_engine("hf", model, tok, batch_size=512 if kind == "gpu" else 64)
    engine.generate(prompts[:8], n=2, temperature=1.0, max_new_tokens=8, seed=0)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = engine.generate(prompts, n=8, temperature=1.0, max_new_tokens=64, seed=1)
    if device == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    toks = sum(len(s.token_ids) for g in out for s in g)
    return {"gen_tokens": toks, "gen_tokens_per_s": toks / dt, "sequences": len(prompts) * 8}


def gpu_tests(timeout: int) -> dict:
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider"], cwd=ROOT,
                         capture_output=True, text=True, timeout=timeout)
    last = (res.stdout.strip().splitlines() or [""])[-1]
    # pytest: 0 passed, 5 no tests collected; anything else is a failure
    return {"status": "ok" if res.returncode in (0, 5) else "failed", "summary": last}


def markdown(records: list[dict]) -> str:
    lines = ["# GPU check", "", "| step | status | wall s | figures |", "|---|---|---:|---|"]
    for r in records:
        figures = {k: v for k, v in r.items() if k not in ("step", "status", "wall_s")}
        shown = "; ".join(f"{k} {_fmt(v)}" for k, v in figures.items())
        lines.append(f"| {r['step']} | {r['status']} | {r['wall_s']} | {shown} |")
    jobs = [r for r in records if r.get("peak_gib_measured")]
    if jobs:
        lines += ["", "Peak memory per stage, GiB: measured (`torch.cuda.max_memory_allocated`; the process's peak RSS "
                  "on a CPU) / planned (`harness.plan`)", "", "| job | stage | measured | planned |", "|---|---|---:|---:|"]
        for r in jobs:
            plan = r["peak_gib_planned"]
            for stage, gib in r["peak_gib_measured"].items():
                planned = {"warm start": plan.get("warm start"), "rollout": plan.get("generation"),
                           "eval": plan.get("generation"),
                           "train": plan.get("train", plan.get("train (online)"))}.get(stage)
                lines.append(f"| {r['step']} | {stage} | {gib:.2f} | {_fmt(planned) if planned else ''} |")
    return "\n".join(lines) + "\n"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items()) + "}"
    return str(v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--cpu", action="store_true", help="tiny sizes, dist=none: the CI rehearsal")
    ap.add_argument("--budget-s", type=int, default=420, help="seconds for all the steps together (each job's "
                    "timeout is a share of it)")
    args = ap.parse_args(argv)
    kind = "cpu" if args.cpu else "gpu"
    steps = Steps(args.out)
    results = args.out / "results"
    results.mkdir(parents=True, exist_ok=True)
    t_end = time.perf_counter() + args.budget_s
    steps.run("device", device)
    import torch

    cuda = torch.cuda.is_available()
    try:
        import deepspeed  # noqa: F401

        has_ds = True
    except Exception:  # noqa: BLE001
        has_ds = False
    dists = [[]]
    if kind == "gpu":
        dists += [["dist=fsdp", "dist.num_processes=1"]] + ([["dist=zero2", "dist.num_processes=1"]] if has_ds else [])
    for dist in dists:
        for algo in ("dqo", "grpo"):
            name = f"{algo} {' '.join(dist) or 'dist=none'}"
            left = int(t_end - time.perf_counter())
            if left < 20:
                steps.records.append({"step": name, "status": "skipped", "wall_s": 0, "reason": "out of budget"})
                continue
            steps.run(name, job, kind, algo, dist, results, max(60, left))
    if kind == "gpu" and not has_ds:
        steps.records.append({"step": "dqo/grpo dist=zero2", "status": "skipped", "wall_s": 0,
                              "reason": "deepspeed does not import"})
    if not cuda:
        for d in ("fsdp", "zero2"):
            steps.records.append({"step": f"dqo/grpo dist={d}", "status": "skipped", "wall_s": 0,
                                  "reason": "no CUDA device (accelerate does not shard on a CPU)"})
    steps.run("generation (hf engine)", generation, kind, results)
    steps.run("pytest -m gpu", gpu_tests, max(60, int(t_end - time.perf_counter())))
    steps.write()
    failed = [r["step"] for r in steps.records if r["status"] == "failed"]
    print(f"wrote {args.out / 'gpu_check.json'} and {args.out / 'gpu_check.md'}; "
          f"{len(failed)} step(s) failed{': ' + ', '.join(failed) if failed else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
