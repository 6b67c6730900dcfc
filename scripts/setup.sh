#!/usr/bin/env bash
# Bootstrap on a fresh machine: a virtual environment with scpl and its test tools.
# torch is installed first and pinned, so pip never swaps in a multi-GB CUDA build on CPU hosts;
# on a GPU host, install your CUDA torch into .venv first and this step keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/pip install --quiet "torch==2.13.0"
fi
.venv/bin/pip install --quiet -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import scpl, torch; print(f'scpl ready (torch {torch.__version__})')"
