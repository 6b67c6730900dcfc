#!/usr/bin/env bash
# Set up, lint, and run the test suite (CPU; GPU-only tests skip themselves).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests
.venv/bin/python -m pytest "$@"
