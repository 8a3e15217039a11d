#!/usr/bin/env bash
# Bring the pure-Python (and two binary) packages the GPU machine lacks into .whl/ (ignored by git), for
# scripts/gpu_check.sh to install there with `pip install --no-index --no-deps`. The GPU machine's Python 3.12 has
# torch, transformers, accelerate, peft, pandas, pyarrow, scipy, statsmodels, matplotlib, pytest and xxhash.
# The versions are those this project's CPU install resolves (pyproject.toml); keep them in step.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
mkdir -p .whl
PLAT="--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
BINARY=(
  hydra-core==1.3.8 omegaconf==2.3.1 trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
  math-verify==0.9.0 latex2sympy2_extended==1.11.0 pydantic==2.14.4 pydantic_core==2.50.5
  annotated-types==0.8.0 typing-inspection==0.4.5 hjson==3.1.0
)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $PLAT -d .whl \
  "${BINARY[@]}"
# sdists only on PyPI: built here into pure-Python wheels (DeepSpeed builds its CUDA ops at run time, when asked)
"$PY" -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3 deepspeed==0.19.8
ls -la .whl
du -sh .whl
