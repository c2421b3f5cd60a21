#!/usr/bin/env bash
# Set up Cairn and run its main job on the embedded default (SQLite + local disk): the example
# pipeline versions datasets and models and prints their lineage, then the server starts with
# the dashboard over the same store. Ctrl-C stops it. CAIRN_DEMO_NO_SERVER=1 skips the server.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CAIRN_DIR=${CAIRN_DIR:-$PWD/.cairn-demo}
echo "cairn: store at $CAIRN_DIR"
.venv/bin/python examples/pipeline.py "$@"
if [ "${CAIRN_DEMO_NO_SERVER:-}" = 1 ]; then exit 0; fi
port=${CAIRN_DEMO_PORT:-8000}
echo
echo "cairn: dashboard at http://127.0.0.1:$port/  (Ctrl-C to stop)"
exec .venv/bin/cairn server --host 127.0.0.1 --port "$port"
