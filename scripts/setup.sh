#!/usr/bin/env bash
# Create (or reuse) .venv at the repo root and install dqo-bench with its test extra.
# torch is pinned in pyproject.toml together with everything else, so pip never swaps in a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
