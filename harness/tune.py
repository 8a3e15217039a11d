"""``python -m harness.tune``: the comparison protocol (docs/design.md §11) as one command.

    python -m harness.tune algo=dqo,dpo,ppo [tune.trials=8] [tune.seeds=100,101] [tune.report_seeds=0,1,2,3,4]
                           [tune.draws=0] [tune.report_draws=0,1,2] [tune.sampler_seed=0] [any harness.run override ...]

For each algorithm, in turn:

1. **the same number of trials** (``tune.trials``) over the search space its yaml declares (``search:`` in
   ``sweeps/algo/<name>.yaml``: ``{log: [lo, hi]}`` log-uniform, a list of choices), drawn as one seeded Latin
   hypercube (scipy.stats.qmc), so no algorithm gets a larger budget or a smarter search than another, and a
   few trials still cover each range: every parameter gets one trial in each of K equal slices of its range
   (K independent random draws often land two trials on nearly the same learning rate);
2. each trial runs with the **tuning seeds** (``tune.seeds``, distinct from the report seeds: Eimer et al.,
   ICML 2023) on each π_ref draw of ``tune.draws`` (``warm_start.draw``) and is scored on the **validation split** (``eval.split=val``: ``task.n_val`` problems held out of
   train; greedy only, ``eval.k=0``, unless ``eval.k`` is given); the trial with the best mean greedy validation
   accuracy is selected (a failed trial is never selected);
3. the selected config runs with the fresh **report seeds** on each draw of ``tune.report_draws`` on test, and
   those are the leaderboard's rows (draws × seeds, each run read against the π_ref of its own draw).

Every trial is a ``python -m harness.run`` sweep sharing ``results_dir`` (its warm start, banks and finished runs are
reused; a rerun skips what is done). ``tune.csv`` lists every trial, ``tuned.json`` the selections, which
``leaderboard.csv`` reads for its ``chosen`` column (``tuned on val, K trials`` or ``defaults``).
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from harness.errors import UserError

#: harness.tune's own options (the rest go to every harness.run)
DEFAULTS = {"trials": 8, "seeds": "100,101", "report_seeds": "0,1,2,3,4", "draws": "0", "report_draws": "0",
            "sampler_seed": 0}


def parse(argv: list[str]) -> tuple[dict, list[str], list[str]]:
    """``(tune options, algorithms, harness.run overrides)``; a bad tune option or no algorithm is one line."""
    opts, algos, rest = dict(DEFAULTS), [], []
    for arg in argv:
        key, eq, value = arg.partition("=")
        if key == "-m":
            continue
        if key.startswith("tune."):
            name = key[len("tune."):]
            if name not in DEFAULTS or not eq:
                raise UserError(f"unknown option {key}; tune options: " + ", ".join(f"tune.{k}" for k in DEFAULTS))
            opts[name] = value
        elif key == "algo" and eq:
            algos = [a for a in value.split(",") if a]
        elif key in ("seed", "eval.split", "warm_start.draw"):
            raise UserError(f"{key} is set by harness.tune (tune.seeds, tune.report_seeds, tune.draws, "
                            f"tune.report_draws; val for trials, test for the report): drop {arg}")
        else:
            rest.append(arg)
    for name in ("trials", "sampler_seed"):
        try:
            opts[name] = int(opts[name])
        except ValueError:
            raise UserError(f"tune.{name}={opts[name]!r} is not an integer") from None
    for name in ("seeds", "report_seeds", "draws", "report_draws"):
        try:
            opts[name] = [int(s) for s in str(opts[name]).split(",") if s]
        except ValueError:
            raise UserError(f"tune.{name}={opts[name]!r}: give integers separated by commas") from None
        if not opts[name]:
            raise UserError(f"tune.{name} is empty")
    if opts["trials"] < 1:
        raise UserError(f"tune.trials={opts['trials']}: must be >= 1")
    if set(opts["seeds"]) & set(opts["report_seeds"]):
        raise UserError(f"tune.seeds {opts['seeds']} and tune.report_seeds {opts['report_seeds']} share a seed; "
                        "tune and report with different seeds")
    if not algos:
        raise UserError("name the algorithms to tune: python -m harness.tune algo=dqo,dpo,ppo")
    return opts, algos, rest


def space(algo: str) -> dict:
    """The algorithm's search space from the ``search:`` block of its yaml: ``{name: ("log", lo, hi)}`` for a
    log-uniform range, ``{name: ("choice", [values])}`` for choices."""
    import yaml

    from harness.config.sweeps import SWEEPS

    path = SWEEPS / "algo" / f"{algo}.yaml"
    if not path.exists():
        valid = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise UserError(f"unknown algo {algo!r}; valid: {', '.join(valid)}")
    block = yaml.safe_load(path.read_text()).get("search") or {}
    if not block:
        raise UserError(f"sweeps/algo/{algo}.yaml declares no search space (search:), so {algo} cannot be tuned")
    out = {}
    for key, spec in block.items():
        if isinstance(spec, dict) and set(spec) == {"log"} and len(spec["log"]) == 2:
            lo, hi = (float(x) for x in spec["log"])
            if not 0 < lo < hi:
                raise UserError(f"sweeps/algo/{algo}.yaml search.{key}: log range needs 0 < lo < hi, got {spec}")
            out[key] = ("log", lo, hi)
        elif isinstance(spec, list) and spec:
            out[key] = ("choice", list(spec))
        else:
            raise UserError(f"sweeps/algo/{algo}.yaml search.{key}: give {{log: [lo, hi]}} or a list of choices")
    return out


def draws(dists: dict, trials: int, seed: int) -> list[dict]:
    """``trials`` settings of a search space (``space``): a seeded Latin hypercube over the unit cube, mapped to
    each range in log space, or to a choice by which of ``len(choices)`` equal slices it falls in. Values keep 3
    significant digits: readable variant labels, and a grid no finer than tuning can tell apart."""
    import math

    from scipy.stats import qmc

    names = sorted(dists)  # the yaml's key order must not change the draws
    unit = qmc.LatinHypercube(d=len(names), rng=seed).random(trials)
    out = []
    for row in unit:
        params = {}
        for name, u in zip(names, row):
            kind, *args = dists[name]
            if kind == "log":
                lo, hi = args
                params[name] = float(f"{math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))):.3g}")
            else:
                params[name] = args[0][min(int(u * len(args[0])), len(args[0]) - 1)]
        out.append(params)
    return out


def run_jobs(overrides: list[str], seeds: list[int], draws: list[int]) -> int:
    """One ``python -m harness.run`` sweep over π_ref's ``draws`` × ``seeds``; its exit code (1 when a job failed,
    recorded)."""
    cmd = [sys.executable, "-m", "harness.run", "-m", *overrides, f"warm_start.draw={','.join(map(str, draws))}",
           f"seed={','.join(map(str, seeds))}"]
    print("$ " + " ".join(cmd[1:]), flush=True)
    return subprocess.run(cmd).returncode


def record(overrides: list[str], seed: int, draw: int) -> dict | None:
    """The finished run record of these overrides at ``seed`` on π_ref ``draw`` (None when it failed or never ran)."""
    from harness.config.compose import compose
    from harness.pipeline.stages import model_label, run_spec
    from harness.registry import make_algo
    from harness.storage.artifacts import config_hash
    from harness.storage.records import run_id

    cfg = compose([*overrides, f"seed={seed}", f"warm_start.draw={draw}"])
    algo = make_algo(cfg.algo)
    spec = run_spec(cfg, algo)
    path = Path(cfg.results_dir) / "runs" / run_id(cfg.task["name"], model_label(cfg.model), algo.name, seed,
                                                    config_hash(spec)) / "metrics.json"
    rec = json.loads(path.read_text()) if path.exists() else None
    return rec if rec and rec.get("status") == "ok" else None


def overrides_of(algo: str, params: dict, rest: list[str], split: str) -> list[str]:
    """A trial (``split`` val) or the report (test) of ``algo`` at ``params``. A trial is selected on greedy
    accuracy, so it samples no completions for sampled accuracy (``eval.k=0``) unless ``eval.k`` is given."""
    if split == "test":  # the default: no override, so the report's rows (and their reference) read as the defaults'
        return [f"algo={algo}", *(f"algo.{k}={v}" for k, v in params.items()), *rest]
    greedy = [] if any(a.lstrip("+~").startswith("eval.k=") for a in rest) else ["eval.k=0"]
    return [f"algo={algo}", *(f"algo.{k}={v}" for k, v in params.items()), "eval.split=val", *greedy, *rest]


def tune_one(algo: str, opts: dict, rest: list[str]) -> tuple[list[dict], dict | None]:
    """``(trials, selected)``: ``opts['trials']`` trials of ``algo`` on validation, then the best one (or None)."""
    rows = []
    for k, params in enumerate(draws(space(algo), opts["trials"], opts["sampler_seed"])):
        over = overrides_of(algo, params, rest, "val")
        run_jobs(over, opts["seeds"], opts["draws"])
        accs = [(record(over, s, d) or {}).get("accuracy") for d in opts["draws"] for s in opts["seeds"]]
        score = sum(accs) / len(accs) if all(a is not None for a in accs) else math.nan
        rows.append({"algo": algo, "trial": k, "params": json.dumps(params), "seeds": opts["seeds"],
                     "draws": opts["draws"], "val_accuracy": accs, "val_mean": score, "selected": False})
    done = [r for r in rows if not math.isnan(r["val_mean"])]
    if not done:
        return rows, None
    best = max(done, key=lambda r: r["val_mean"])  # the first of equals: the earlier trial
    best["selected"] = True
    return rows, best


def main(argv: list[str]) -> int:
    import pandas as pd
    from filelock import FileLock

    from harness.config.compose import compose
    from harness.config.variants import variant_id
    from harness.pipeline.stages import check_draw, load_task, run_spec
    from harness.registry import make_algo
    from harness.reporting.leaderboard import write_reports
    from harness.storage.records import atomic_write

    try:
        opts, algos, rest = parse(argv)
        for algo in algos:
            space(algo)  # every space readable before any work
        results_dir = Path(compose(rest).results_dir)
        for draw in sorted(set(opts["draws"]) | set(opts["report_draws"])):  # a draw not shipped: before the trials
            cfg = compose([*rest, f"warm_start.draw={draw}"])
            check_draw(cfg, load_task(cfg.task)[0])
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    results_dir.mkdir(parents=True, exist_ok=True)
    tuned_path, csv_path = results_dir / "tuned.json", results_dir / "tune.csv"
    failed = []
    for algo in algos:
        trials, best = tune_one(algo, opts, rest)
        # each algorithm's trials are saved as soon as they are done (a rerun of an algorithm replaces its rows);
        # read and rewritten under a lock: tunes of other algorithms may share this results_dir
        with FileLock(str(csv_path) + ".lock"):
            kept = [old[old.algo != algo]] if csv_path.exists() and len(old := pd.read_csv(csv_path)) else []
            atomic_write(csv_path, pd.concat([*kept, pd.DataFrame(trials)], ignore_index=True).to_csv(index=False))
        if best is None:
            failed.append(algo)
            continue
        params = json.loads(best["params"])
        over = overrides_of(algo, params, rest, "test")
        cfg = compose([*over, f"seed={opts['report_seeds'][0]}", f"warm_start.draw={opts['report_draws'][0]}"])
        key, entry = variant_id(run_spec(cfg, make_algo(cfg.algo))), {
            "algo": algo, "params": params, "trials": opts["trials"], "tuning_seeds": opts["seeds"],
            "tuning_draws": opts["draws"], "val_mean": best["val_mean"],
            "chosen": f"tuned on val, {opts['trials']} trials"}
        with FileLock(str(tuned_path) + ".lock"):
            tuned = json.loads(tuned_path.read_text()) if tuned_path.exists() else {}
            tuned[key] = entry
            atomic_write(tuned_path, json.dumps(tuned, indent=1))
        if run_jobs(over, opts["report_seeds"], opts["report_draws"]):
            failed.append(algo)
    paths = write_reports(results_dir, pairs=True)  # the protocol's end: every algorithm against every other
    print(f"wrote {csv_path}, {tuned_path}" + "".join(f", {paths[k]}" for k in ("leaderboard", "pairs") if k in paths))
    if failed:
        print(f"error: no run could be selected or reported for {', '.join(failed)} (see tune.csv and runs.csv)",
              file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
