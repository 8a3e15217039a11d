#!/usr/bin/env bash
# The prepared GPU check (README "Checking a GPU"): under 8 minutes on one H100, everything it measures in
# $OUT/gpu_check.{json,md}. On the device machine (no network, its own torch): installs the wheels that
# scripts/gpu_wheels.sh brought into .whl/, then runs benchmarks/gpu_check.py from this checkout.
#   bash scripts/gpu_check.sh                # on the GPU machine; output to $OUT (or ./gpu_check_out)
#   bash scripts/gpu_check.sh --cpu          # the CI rehearsal: tiny sizes, dist=none, this machine's .venv
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT:-gpu_check_out}
if [ "${1:-}" = "--cpu" ]; then
  PY=${PYTHON:-.venv/bin/python}
  exec "$PY" -m benchmarks.gpu_check --cpu --out "$OUT_DIR" --budget-s "${BUDGET_S:-600}"
fi
PY=${PYTHON:-python3}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || echo "warning: installing .whl failed; going on with what is installed"
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 TQDM_DISABLE=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec "$PY" -m benchmarks.gpu_check --out "$OUT_DIR" --budget-s "${BUDGET_S:-420}"
