"""Name -> plug-in registry for algorithms and tasks.

A plug-in is a module named after itself (``algorithms/dpo.py`` registers ``dpo``) whose class is
decorated with ``@register_algorithm("dpo")``. Modules whose name starts with ``_`` hold shared helpers,
not plug-ins. Modules are imported only when their name is asked for, so ``algo=dpo`` never imports
what ``algo=ppo`` would (vLLM, say).
"""
from __future__ import annotations

import importlib
import pkgutil

from harness.errors import UserError

_REGISTRIES: dict[str, dict[str, type]] = {"algorithm": {}, "task": {}}
_PACKAGES = {"algorithm": "algorithms", "task": "tasks"}
#: the plug-in that evaluates π_ref as it is: the row every algorithm is read against
REFERENCE = "reference"


def _register(kind: str, name: str):
    def deco(cls):
        other = _REGISTRIES[kind].get(name)
        if other is not None and other is not cls and other.__qualname__ != cls.__qualname__:
            raise ValueError(f"{kind} {name!r} registered twice: {other} and {cls}")
        cls.name = name
        _REGISTRIES[kind][name] = cls
        return cls

    return deco


def register_algorithm(name: str):
    """Class decorator: make an algorithm plug-in available as ``algo=<name>``."""
    return _register("algorithm", name)


def register_task(name: str):
    """Class decorator: make a task available as ``task=<name>``."""
    return _register("task", name)


def available(kind: str) -> list[str]:
    """Names of the plug-ins of a kind, found from module names without importing them."""
    pkg = importlib.import_module(_PACKAGES[kind])
    names = {m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")}
    return sorted(names | set(_REGISTRIES[kind]))


def get(kind: str, name: str) -> type:
    if name not in _REGISTRIES[kind]:
        valid = available(kind)
        if name not in valid:
            raise UserError(f"unknown {kind} {name!r}; valid: {', '.join(valid)}")
        importlib.import_module(f"{_PACKAGES[kind]}.{name}")
        if name not in _REGISTRIES[kind]:
            raise UserError(
                f"module {_PACKAGES[kind]}/{name}.py does not register a {kind} named {name!r}; "
                f"decorate its class with @register_{kind}({name!r})"
            )
    return _REGISTRIES[kind][name]


def get_algorithm(name: str) -> type:
    return get("algorithm", name)


def get_task_class(name: str) -> type:
    return get("task", name)


def make_algo(section: dict):
    """The plug-in that ``algo.name`` names, with its options parsed from the ``algo`` section (an unknown or bad
    one stops here); ``search`` is harness.tune's search space, no option of the plug-in."""
    options = {k: v for k, v in section.items() if k != "search"}
    return get_algorithm(options.pop("name"))(**options)
