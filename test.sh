#!/usr/bin/env bash
# Runs the test suite (and ruff check + ruff format --check). Creates or reuses .venv first. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh
echo "[test.sh] ruff check"
ruff check .
echo "[test.sh] ruff format --check"
ruff format --check .
echo "[test.sh] pytest"
exec python -m pytest "$@"
