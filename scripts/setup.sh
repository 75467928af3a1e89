#!/usr/bin/env bash
# Create .venv and install the project. torch==2.13.0 goes first so that pip takes the
# CPU build on these machines instead of downloading a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
quiet() { "$@" 2>&1 | { grep -vE "is ignored: it is neither a file nor a directory|^\s*$" || true; }; }
quiet .venv/bin/python -m pip install -q --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  quiet .venv/bin/python -m pip install -q "torch==2.13.0"
fi
quiet .venv/bin/python -m pip install -q -e ".[test]"
