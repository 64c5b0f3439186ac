#!/usr/bin/env bash
# Puts the containerflare wheel of the enclosing checkout into ./wheels when this example
# lives inside the containerflare repository (the image then runs that library); outside
# it, does nothing and the image takes containerflare from the package index.
# PYTHON picks the interpreter (default: python3).
set -euo pipefail
cd "$(dirname "$0")"

ROOT=$(cd ../.. && pwd)
if [ ! -f "$ROOT/setup.cfg" ] || ! grep -q '^name = containerflare$' "$ROOT/setup.cfg"; then
  echo "not inside the containerflare repository: containerflare comes from the package index" >&2
  exit 0
fi

PYTHON=${PYTHON:-python3}
rm -f wheels/containerflare-*.whl
echo "building the containerflare wheel from $ROOT into wheels/" >&2
"$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir wheels "$ROOT"
