"""The preflight of ``harness.run``'s overrides (docs/design.md §7): names of algorithms, tasks, models and
strategies, every key against what ``config.yaml`` and the plug-ins' options declare, and ``results_dir``,
checked before Hydra starts, so a typo costs one line, not a traceback."""
from __future__ import annotations

import shutil
from pathlib import Path

from harness.config.sweeps import config_choices, default_choice, main_config
from harness.errors import UserError

MIN_FREE = 256 * 1024  # bytes results_dir's disk needs before Hydra writes its logs there


def preflight(argv: list[str]) -> None:
    """Check algo/task/model/dist names, and the ``algo.`` / ``task.`` keys against the options of every chosen
    algorithm and task, before Hydra starts, so a typo costs one line, not a traceback (nor a silently
    ignored ``++algo.x=``)."""
    from harness.registry import available

    check_keys(argv)
    check_results_dir(argv)
    chosen = {"algo": [default_choice("algo")], "task": [default_choice("task")]}
    for arg in argv:
        key, eq, value = arg.partition("=")
        key = key.lstrip("+~")
        if not eq or key not in ("algo", "task", "model", "dist") or "(" in value:
            continue
        valid = config_choices(key)
        if key in ("algo", "task"):
            plugins = set(available("algorithm" if key == "algo" else "task"))
            valid = [v for v in valid if v in plugins]
        for name in value.split(","):
            if name and name not in valid:
                raise UserError(f"unknown {key} {name!r}; valid: {', '.join(valid)}")
        if key in chosen:
            chosen[key] = [n for n in value.split(",") if n]
    for group, kind in (("algo", "algorithm"), ("task", "task")):
        keys = [a.partition("=")[0].lstrip("+~")[len(group) + 1:] for a in argv if a.lstrip("+~").startswith(group + ".")]
        if keys:
            from harness.options import check_key
            from harness.registry import get

            for name in chosen[group]:
                for key in keys:
                    if key != "name":
                        check_key(get(kind, name).Options, key, group, name if len(chosen[group]) > 1 else "")


def check_keys(argv: list[str]) -> None:
    """An override of a key that no shared section declares (``harness/config/schema.py``) stops with one line
    naming the closest one (``+key=`` adds a key on purpose; ``algo.``/``task.`` keys are checked against the
    plug-in's options)."""
    from harness.config.schema import check_override_key

    for arg in argv:
        key, eq, _ = arg.partition("=")
        if not eq or key.startswith(("+", "~", "-")) or "/" in key or key.split(".")[0] in ("algo", "task", "hydra"):
            continue
        check_override_key(key)


def check_results_dir(argv: list[str]) -> None:
    """``results_dir`` can be created (Hydra writes its logs there first)."""
    value = str(main_config()["results_dir"])
    for arg in argv:
        key, eq, v = arg.partition("=")
        if eq and key.lstrip("+") == "results_dir":
            value = v
    if "," in value or "$" in value:  # a sweep over folders, or an interpolation: Hydra resolves it
        return
    try:
        Path(value).mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(value).free
    except OSError as e:
        raise UserError(f"results_dir={value}: cannot create it ({e.strerror}); give a folder you can write to") from None
    if free < MIN_FREE:
        raise UserError(f"results_dir={value}: only {free // 1024} KiB free on its disk; free space or give "
                        f"another results_dir=")
