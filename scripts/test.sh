#!/usr/bin/env bash
# Set up (or reuse) the environment, then run the fast CPU test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest -q "$@"
