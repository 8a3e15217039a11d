"""One job in this process, as ``harness.run`` and each process of ``harness.pipeline.launch`` run it: the pipeline, and the
exit code that says how it ended."""
from __future__ import annotations

import logging
import sys

from harness.config.schema import settings
from harness.distributed.ranks import main_process
from harness.errors import UserError
from harness.pipeline.stages import run_job

log = logging.getLogger("dqo_bench")
STOPPED = 3  # a job's exit code when it stopped before writing any record


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")


def run_one(cfg_dict: dict) -> int:
    """Run one job, printing a one-line error: 0 on success, 1 on a failure recorded in its run folder,
    ``STOPPED`` when it stopped before writing any record."""
    try:
        run_job(settings(cfg_dict))
        return 0
    except UserError as e:
        if main_process():  # every process of a launched job meets the same error
            print(f"error: {e}", file=sys.stderr)
        return 1 if getattr(e, "recorded", False) else STOPPED
    except Exception as e:  # recorded in the run's folder with its traceback (error.txt)
        log.error("job failed: %s: %s", type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        # rank 0 writes the traceback to error.txt; another process's is its own, so it goes to stderr
        log.log(logging.DEBUG if main_process() else logging.ERROR, "traceback", exc_info=True)
        return 1 if getattr(e, "recorded", False) else STOPPED
