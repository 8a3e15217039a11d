"""Validate the GSM8K and MATH graders on every gold solution, and measure grading throughput.

    OMP_NUM_THREADS=1 python -m benchmarks.grade_gold [--data /path/to/data] [--workers 2] [--skip-pool]

Prints, per split: gold solutions graded correct (must be all for GSM8K; every MATH failure is listed
with its gold answer), gold answers perturbed to be wrong (the last integer + 1: "N+1", a changed
fraction) graded incorrect, math-verify alone on each MATH gold answer against itself (no string
fast path: how often the symbolic path parses and agrees), MATH-500's boxed answer against PRM800K's
curated ``answer`` field, and items/s for serial and process-pool grading.
"""
from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from pathlib import Path

from harness.generation.grade_parallel import grade_many
from tasks import get_task
from tasks._grading import GradeTimeout, math_verify_equal, parse_number, time_limit

# an integer that is not an exponent or subscript (a unit's ^2 or a base's _8 is not the answer's value)
_VALUE_INT = re.compile(r"(?<![\d_^,])(?<!_\{)(?<!\^\{)(?:\d{1,3}(?:,\d{3})+|\d+)")


def perturb(answer: str) -> str | None:
    """A wrong answer: the last integer of ``answer`` that is not an exponent or subscript, plus one
    ("\\frac{1}{2}" -> "\\frac{1}{3}", "18" -> "19", "52_8" -> "53_8"); None when there is none (a name, a
    letter choice, a variable)."""
    found = list(_VALUE_INT.finditer(answer))
    if not found:
        return None
    m = found[-1]
    return answer[:m.start()] + str(int(m.group().replace(",", "")) + 1) + answer[m.end():]


def wrong_completion(task, ex) -> str | None:
    if task.name == "gsm8k":  # N + 1, as a number
        return f"...\n#### {parse_number(task.gold_answer(ex)) + 1}"
    gold = task.gold_answer(ex)
    bad = perturb(gold) if gold is not None else None
    if bad is None:
        return None
    return f"... so the result is \\boxed{{{bad}}}." if task.name.startswith("math") else f"...\n#### {bad}"


def rate(task, split: str, exs: list[dict], workers: int, pool: bool) -> None:
    t0 = time.perf_counter()
    gold = [task.grade(ex["answer"] if task.name == "gsm8k" else ex["solution"], ex) for ex in exs]
    dt = time.perf_counter() - t0
    fails = [ex for ex, g in zip(exs, gold) if g != 1.0]
    print(f"{task.name} {split}: gold solutions graded correct {len(exs) - len(fails)}/{len(exs)} "
          f"({100 * (1 - len(fails) / max(len(exs), 1)):.2f}%); serial {len(exs) / dt:.0f} items/s")
    for ex in fails:
        print(f"  FAIL {ex['id']}: gold answer {task.gold_answer(ex)!r}")
    pairs = [(c, ex) for ex in exs if (c := wrong_completion(task, ex)) is not None]
    t0 = time.perf_counter()
    wrong = [task.grade(c, ex) for c, ex in pairs]
    dt = time.perf_counter() - t0
    accepted = [(c, ex) for (c, ex), w in zip(pairs, wrong) if w]
    print(f"{task.name} {split}: perturbed answers graded incorrect {len(pairs) - len(accepted)}/{len(pairs)} "
          f"({100 * (1 - len(accepted) / max(len(pairs), 1)):.2f}%; {len(exs) - len(pairs)} answers without a digit "
          f"skipped); serial {len(pairs) / dt:.0f} items/s (wrong answers: the full, symbolic path)")
    for c, ex in accepted:
        print(f"  ACCEPTED {ex['id']}: gold {task.gold_answer(ex)!r}, perturbed {c!r}")
    if pool:  # the costly case: wrong answers, which cannot stop at the string match
        t0 = time.perf_counter()
        grade_many(task, [c for c, _ in pairs], [ex for _, ex in pairs], workers=workers, min_parallel=0,
                   desc=f"{task.name} {split} pool")
        dt = time.perf_counter() - t0
        print(f"{task.name} {split}: process pool on the perturbed answers ({workers} workers, incl. start-up) "
              f"{len(pairs) / dt:.0f} items/s")


def math_verify_alone(task, split: str, exs: list[dict]) -> None:
    """math-verify on gold vs gold (bypassing the string fast path): parse failures and disagreements."""
    none, false, timeouts = [], [], []
    t0 = time.perf_counter()
    for ex in exs:
        g = task.gold_answer(ex)
        try:
            with time_limit(task.cfg["timeout_s"]):
                v = math_verify_equal(g, g)
        except GradeTimeout:
            timeouts.append(ex)
            continue
        (none if v is None else false if not v else []).append(ex)
    dt = time.perf_counter() - t0
    ok = len(exs) - len(none) - len(false) - len(timeouts)
    print(f"{task.name} {split}: math-verify alone accepts gold==gold {ok}/{len(exs)}; no sympy parse {len(none)}, "
          f"verify False {len(false)}, timeout {len(timeouts)} ({len(exs) / dt:.0f} items/s)")
    for kind, lst in (("NO-PARSE", none), ("VERIFY-FALSE", false), ("TIMEOUT", timeouts)):
        for ex in lst:
            print(f"  {kind} {ex['id']}: {task.gold_answer(ex)!r}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"),
                    help="folder with gsm8k/, math/ and math500/ subfolders of train.jsonl/test.jsonl "
                         "(default: shared/data beside the checkout)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-pool", action="store_true", help="no process-pool throughput measurement")
    ap.add_argument("--skip-mv-alone", action="store_true", help="skip math-verify-alone diagnostics")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data = Path(args.data)
    if not data.is_dir():
        print(f"no data at {data}; pass --data PATH", file=sys.stderr)
        return 2
    for name in ("gsm8k", "math", "math500"):
        task = get_task(name, data_dir=str(data / name))
        splits = {k: task.records(k, v) for k, v in task.raw_splits().items()}  # every record, none dropped
        for split in (("test",) if name == "math500" else ("train", "test")):
            rate(task, split, splits[split], args.workers, pool=not args.skip_pool and name != "math500")
            if name.startswith("math") and not args.skip_mv_alone and name != "math500":
                math_verify_alone(task, split, splits[split])
        if name == "math500":
            test = splits["test"]
            agree = [task.grade(f"\\boxed{{{ex['answer']}}}", ex) for ex in test]
            print(f"math500 test: PRM800K `answer` field graded equal to the solution's last \\boxed{{}} "
                  f"{int(sum(agree))}/{len(test)}")
            for ex, a in zip(test, agree):
                if not a:
                    print(f"  DIFF {ex['id']}: answer {ex['answer']!r} vs boxed {task.gold_answer(ex)!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
