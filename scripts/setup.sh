#!/usr/bin/env bash
# Create .venv with everything Cairn and its tests need. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
export PATH="$HOME/.local/bin:$PATH"
if ! command -v uv >/dev/null 2>&1; then
    echo "setup: installing uv"
    "$PY" -m pip install --quiet --user uv 2>/dev/null \
        || "$PY" -m pip install --quiet --user --break-system-packages uv 2>/dev/null \
        || "$PY" -m pip install --quiet uv 2>/dev/null \
        || {
            SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
            $SUDO apt-get update -qq && $SUDO apt-get install -y -qq python3-pip >/dev/null
            "$PY" -m pip install --quiet --user --break-system-packages uv
        }
fi
export UV_PYTHON_DOWNLOADS=never
[ -x .venv/bin/python ] || uv venv --quiet --python "$PY" .venv
uv pip install --quiet --compile-bytecode --python .venv/bin/python -e ".[dev]"
# precompile: some environments set PYTHONDONTWRITEBYTECODE, which makes every start slow
.venv/bin/python -m compileall -q -j 0 src .venv/lib/python3*/site-packages >/dev/null 2>&1 || true
echo "setup: .venv ready ($(.venv/bin/python --version))"
