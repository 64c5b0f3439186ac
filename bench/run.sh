#!/usr/bin/env bash
# The containerflare benchmark, in one run (a few minutes): see docs/benchmarks.md.
# Installs what it needs (Debian's wrk, the project's [bench] extra into .venv),
# then runs `python -m bench` with any arguments given here (--help lists them).
# Loopback only; never part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then SUDO=sudo; fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq wrk
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c 'import containerflare, uvicorn, starlette' >/dev/null 2>&1; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[bench]'
fi
exec .venv/bin/python -m bench "$@"
