"""Typed options: a plug-in declares each option once, as a dataclass field with its default, bounds and
a one-line doc; ``parse_options`` turns a config section into that dataclass or stops with one line.

    @dataclass
    class Options(TrainedOptions):
        beta: float = option(0.1, "KL strength β", gt=0)

A default may be an interpolation (``"${bank.n_prompts}"``): Hydra resolves it from the yaml, which
``tests/test_options.py`` checks against these declarations key by key. The shared sections (train, bank, eval,
…) are declared the same way (``harness/config/schema.py``); ``python -m harness.options`` lists them all.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal

from harness.errors import UserError


def option(default: Any, doc: str, *, ge: float | None = None, gt: float | None = None,
           le: float | None = None, lt: float | None = None):
    """A dataclass field with its doc and bounds (``ge``/``gt`` below, ``le``/``lt`` above)."""
    meta = {"doc": doc, "ge": ge, "gt": gt, "le": le, "lt": lt}
    if dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: dataclasses.replace(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def is_interpolation(value) -> bool:
    return isinstance(value, str) and value.startswith("${") and value.endswith("}")


def parse_options(cls, values: dict | None, prefix: str):
    """An instance of the dataclass ``cls`` from ``values`` (missing keys take their defaults). Unknown keys,
    wrong types and out-of-range values stop with one line naming ``prefix.key``."""
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in sorted(set(values) - set(fields)):
        check_key(cls, key, prefix)
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in values:
            default = _default(f)
            if is_interpolation(default):
                raise UserError(f"{key} is not set: its default {default} needs the full config (give it a value)")
            kwargs[name] = default
            continue
        value = _convert(values[name], hints[name], key)
        _check_bounds(value, f.metadata, key)
        kwargs[name] = value
    return cls(**kwargs)


def check_key(cls, dotted: str, prefix: str, owner: str = "") -> None:
    """Stop with one line when ``dotted`` (``beta``, ``budget.prompts``) is not an option of ``cls``."""
    head, _, rest = dotted.partition(".")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    dot = f"{prefix}." if prefix else ""
    if head not in fields:
        close = difflib.get_close_matches(head, fields, n=1)
        hint = f" (did you mean {dot}{close[0]}?)" if close else ""
        who = f" for {owner}" if owner else ""
        raise UserError(f"unknown option {dot}{head}{who}{hint}; valid: {', '.join(sorted(fields)) or 'none'}")
    tp = typing.get_type_hints(cls)[head]
    if rest and dataclasses.is_dataclass(tp):
        check_key(tp, rest, f"{dot}{head}", owner)


def _convert(value, tp, key: str):
    """``value`` as type ``tp`` (float, int, bool, str, Literal, Optional, a nested options dataclass)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for a in options:
            try:
                return _convert(value, a, key)
            except UserError:
                if len(options) == 1:
                    raise
        raise UserError(f"{key}={value!r}: must be {_type_name(tp)}")
    if value is None:
        raise UserError(f"{key}=null: it needs a value")
    if origin is Literal:
        if value not in args:
            raise UserError(f"{key}={value!r}: valid values are {', '.join(map(str, args))}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"{key}={value!r}: expected a group of options ({', '.join(f.name for f in dataclasses.fields(tp))})")
        return parse_options(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise UserError(f"{key}={value!r}: must be true or false")
        return value
    if tp is int:
        try:
            ok = not isinstance(value, bool) and float(value) == int(float(value))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise UserError(f"{key}={value!r}: must be a whole number")
        return int(float(value))
    if tp is float:
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise UserError(f"{key}={value!r} is not a number") from None
    if tp is str:
        return str(value)
    return value


def _check_bounds(value, meta, key: str) -> None:
    if value is None or isinstance(value, (bool, str)) or not isinstance(value, (int, float)):
        return
    ge, gt, le, lt = (meta.get(k) for k in ("ge", "gt", "le", "lt"))
    ok = (ge is None or value >= ge) and (gt is None or value > gt) and (le is None or value <= le) \
        and (lt is None or value < lt)
    if not ok:
        bound = " and ".join(f"{op} {b:g}" for op, b in ((">=", ge), (">", gt), ("<=", le), ("<", lt)) if b is not None)
        raise UserError(f"{key}={value:g} is out of range: it must be {bound}")


def _default(f):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def describe(cls, prefix: str = "", instance=None) -> list[tuple[str, str, str, str]]:
    """``(key, type, default, doc with bounds)`` for every option, nested groups flattened (a group's defaults
    are those of the instance its parent declares)."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        default = getattr(instance, f.name) if instance is not None else _default(f)
        if dataclasses.is_dataclass(default):
            rows += describe(type(default), key + ".", default)
            continue
        bounds = " and ".join(f"{op} {f.metadata[k]:g}" for op, k in ((">=", "ge"), (">", "gt"), ("<=", "le"), ("<", "lt"))
                              if f.metadata.get(k) is not None)
        doc = f.metadata.get("doc", "") + (f" ({bounds})" if bounds else "")
        rows.append((key, _type_name(hints[f.name]), "null" if default is None else str(default), doc))
    return rows


def _type_name(tp) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return " | ".join(map(str, args))
    if origin in (typing.Union, types.UnionType):
        return " | ".join("null" if a is type(None) else _type_name(a) for a in args)
    return getattr(tp, "__name__", str(tp))


def defaults(cls) -> dict:
    """The declared defaults as a nested dict (interpolations left as written)."""
    return {f.name: dataclasses.asdict(d) if dataclasses.is_dataclass(d := _default(f)) else d
            for f in dataclasses.fields(cls)}
