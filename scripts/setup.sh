#!/usr/bin/env bash
# Create .venv and install the project at the tested versions (constraints.txt). torch==2.13.0 goes
# first: where pip's configuration offers a local CPU build (as on these machines) it takes that one;
# elsewhere PyPI's default Linux build of torch is the CUDA one (several GB). For a CPU-only machine
# install torch first from PyTorch's CPU index:
#   .venv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
quiet() { "$@" 2>&1 | { grep -vE "is ignored: it is neither a file nor a directory|^\s*$" || true; }; }
quiet .venv/bin/python -m pip install -q --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  quiet .venv/bin/python -m pip install -q "torch==2.13.0"
fi
quiet .venv/bin/python -m pip install -q -c constraints.txt -e ".[test]"  # the tested versions
