"""``python -m harness.report [results_dir=results] [baseline=reference] [pairs=false]``: rebuild the leaderboard
from the run records under ``results_dir`` (``harness/reporting/leaderboard.py``): ``runs.csv``, ``leaderboard.csv``,
``leaderboard.md``, ``by_length.csv``, ``accuracy_vs_cost.png`` and, with ``pairs=true``, ``pairwise.csv``."""
from __future__ import annotations

import sys

from harness.registry import REFERENCE
from harness.reporting.leaderboard import write_reports


def main(argv: list[str]) -> int:
    opts = {"results_dir": "results", "baseline": REFERENCE, "pairs": "false"}
    usage = "usage: python -m harness.report [results_dir=PATH] [baseline=ALGO] [pairs=true|false]"
    for arg in argv:
        key, _, value = arg.partition("=")
        if key not in opts or not value:
            print(f"error: unknown argument {arg!r}; {usage}", file=sys.stderr)
            return 2
        opts[key] = value
    if opts["pairs"] not in ("true", "false"):
        print(f"error: pairs={opts['pairs']!r} is not true or false; {usage}", file=sys.stderr)
        return 2
    results_dir = opts["results_dir"]
    paths = write_reports(results_dir, opts["baseline"], pairs=opts["pairs"] == "true")
    if not paths:
        print(f"error: no run records under {results_dir}/runs; run `python -m harness.run` first", file=sys.stderr)
        return 1
    print(paths["markdown"].read_text())
    for p in paths.values():
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
