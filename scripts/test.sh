#!/usr/bin/env bash
# Set up everything and run the whole test suite (the README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
bash scripts/setup.sh
export CAIRN_REQUIRE_ALL=${CAIRN_REQUIRE_ALL:-1}
# Two processes by default (the suite is mostly waiting on PostgreSQL, servers and Chromium);
# whole files go to one process, so a file's fixtures are set up once. CAIRN_TEST_WORKERS=0
# runs everything in this process.
WORKERS=${CAIRN_TEST_WORKERS:-2}
XDIST=()
if [ "$WORKERS" != 0 ]; then XDIST=(-n "$WORKERS" --dist loadfile); fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider "${XDIST[@]}" "$@"
