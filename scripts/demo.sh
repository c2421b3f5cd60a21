#!/usr/bin/env bash
# Set up Cairn and run its main job on the embedded default (SQLite + local disk):
# the example pipeline, which versions datasets and models and prints their lineage.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CAIRN_DIR=${CAIRN_DIR:-$PWD/.cairn-demo}
echo "cairn: store at $CAIRN_DIR"
.venv/bin/python examples/pipeline.py "$@"
