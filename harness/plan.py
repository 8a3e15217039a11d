"""``python -m harness.plan <overrides of harness.run> gpu_mem=80 [prompt_len=256]``: the per-device memory plan of
a job (``harness/config/memory_plan.py``) and, when a stage does not fit, the first lever that makes it fit."""
from __future__ import annotations

import sys

from harness.config.compose import compose
from harness.config.memory_plan import report
from harness.errors import UserError

OPTIONS = {"gpu_mem": 80.0, "prompt_len": 256}  # the plan's own options, taken out before composing


def parse(argv: list[str]) -> tuple[dict, list[str]]:
    """``(the plan's options, Hydra overrides)``."""
    if "-m" in argv or "--multirun" in argv:
        raise UserError("a plan is for one job: drop -m")
    opts = dict(OPTIONS)
    for key, _, value in (a.partition("=") for a in argv if a.partition("=")[0] in OPTIONS):
        try:
            opts[key] = type(OPTIONS[key])(value)
            assert opts[key] > 0
        except (ValueError, AssertionError):
            raise UserError(f"{key}={value!r}: need a number > 0") from None
    return opts, [a for a in argv if a.partition("=")[0] not in OPTIONS]


def main(argv: list[str] | None = None) -> int:
    try:
        opts, overrides = parse(sys.argv[1:] if argv is None else list(argv))
        out = report(compose(overrides), **opts)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
