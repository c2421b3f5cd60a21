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
# PyTorch (for the Lightning and Hugging Face tests): the CPU build on disk, installed in the same
# resolve so nothing pulls the multi-GB CUDA build from PyPI. Without it, torch is left out and
# those tests fail under CAIRN_REQUIRE_ALL=1 (skip locally).
CP=$(.venv/bin/python -c "import sys; print(f'cp{sys.version_info[0]}{sys.version_info[1]}')")
TORCH_WHEEL=${CAIRN_TORCH_WHEEL:-$(ls /opt/wheels/torch-*+cpu-"$CP"-*.whl 2>/dev/null | sort -V | tail -n 1 || true)}
if [ -n "$TORCH_WHEEL" ] && [ -f "$TORCH_WHEEL" ]; then
    TORCH=("$TORCH_WHEEL")
else
    echo "setup: no CPU PyTorch wheel in /opt/wheels; torch (Lightning, Hugging Face tests) left out"
    printf 'torch\n' >.venv/.no-torch
    TORCH=(--excludes .venv/.no-torch)
fi
uv pip install --quiet --compile-bytecode --python .venv/bin/python "${TORCH[@]}" -e ".[dev]"
# precompile: some environments set PYTHONDONTWRITEBYTECODE, which makes every start slow
.venv/bin/python -m compileall -q -j 0 src .venv/lib/python3*/site-packages >/dev/null 2>&1 || true
echo "setup: .venv ready ($(.venv/bin/python --version))"
