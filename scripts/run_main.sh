#!/usr/bin/env bash
# The main job: set up, fetch Fashion-MNIST, train SCPL (VGG, 4 stages) and print test accuracy
# and throughput. Extra arguments are passed to `scpl train`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
FMNIST=/usr/share/datasets/fashion-mnist
if [ ! -e "$FMNIST/train-images-idx3-ubyte.gz" ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  # Debian ships Fashion-MNIST; elsewhere scpl downloads it (with checksums) into its cache.
  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 || true
fi
# The main job is meant to be re-run as is: it replaces its own previous result unless asked to
# resume or given other output options.
case " $* " in
  *" --resume"*|*" --overwrite"*|*" --out"*) .venv/bin/scpl train default "$@" ;;
  *) .venv/bin/scpl train default --overwrite true "$@" ;;
esac
