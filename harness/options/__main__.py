"""``python -m harness.options [NAME ...]``: every option with its type, default, bounds and doc: the top-level
options, the shared sections (``train``, ``bank``, …, declared in ``harness/config/schema.py``) and the algorithms'
own (``algo.*``). NAME: ``top``, a shared section or an algorithm; none = all of them."""
from __future__ import annotations

import sys

from harness.config.schema import SECTIONS, TOP, Settings
from harness.errors import UserError
from harness.options import describe
from harness.registry import available, get_algorithm


def _print(title: str, rows: list, prefix: str) -> None:
    print(title + ("" if rows else "  (no options)"))
    for key, tp, default, doc in rows:
        print(f"  {prefix + key:<32} {tp:<22} {default:<14} {doc}")


def main(argv=None) -> int:
    names = argv if argv is not None else sys.argv[1:]
    try:
        for name in names or ["top", *SECTIONS, *available("algorithm")]:
            if name == "top":
                _print("top level", [row for row in describe(Settings) if row[0] in TOP], "")
            elif name in SECTIONS:
                f = SECTIONS[name]
                _print(f"{name}: {f.metadata['doc']}", describe(type(f.default_factory())), f"{name}.")
            else:
                _print(f"algo={name}", describe(get_algorithm(name).Options), "algo.")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
