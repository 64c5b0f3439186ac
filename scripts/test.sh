#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: creates .venv, installs the
# project with its test extras and the example's npm packages, then runs
# mypy and pytest.  Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'

if [ -f examples/basic/package-lock.json ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "npm is required for the Worker tests (examples/basic); install Node.js 20+" >&2
    exit 1
  fi
  (cd examples/basic && npm ci --no-audit --no-fund --loglevel=error)
fi

if [ -f mypy.ini ] || grep -q '^\[mypy' setup.cfg; then
  .venv/bin/mypy
fi
exec .venv/bin/python -m pytest "$@"
