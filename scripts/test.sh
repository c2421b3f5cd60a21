#!/usr/bin/env bash
# Set up everything and run the whole test suite (the README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
bash scripts/setup.sh
export CAIRN_REQUIRE_ALL=${CAIRN_REQUIRE_ALL:-1}
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
