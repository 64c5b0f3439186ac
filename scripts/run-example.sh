#!/usr/bin/env bash
# Runs examples/basic locally on http://127.0.0.1:8787 (PORT overrides), with the
# reference command host (SQLite, in .local/) on 127.0.0.1:7878 (HOST_PORT overrides)
# so the example's KV and D1 routes work offline. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e .

PORT=${PORT:-8787}
HOST_PORT=${HOST_PORT:-7878}
mkdir -p .local

.venv/bin/python -m containerflare.command.host \
  --listen "tcp:${HOST_PORT}:interface=127.0.0.1" --db .local/host.sqlite3 &
HOST_PID=$!
cleanup() {
  kill "$HOST_PID" 2>/dev/null || true
  wait "$HOST_PID" 2>/dev/null || true
}
trap cleanup EXIT

# Wait (bounded) for the host to listen before the app starts using it.
for _ in $(seq 1 100); do
  if .venv/bin/python -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 0.2)" "$HOST_PORT" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$HOST_PID" 2>/dev/null; then
    echo "the command host did not start" >&2
    exit 1
  fi
  sleep 0.1
done

echo "serving examples/basic on http://127.0.0.1:${PORT} (command host on 127.0.0.1:${HOST_PORT})" >&2
cd examples/basic
# The option, not CF_CMD_ENDPOINT: that variable would make the runtime
# believe it runs on Cloudflare.
PORT=$PORT "$ROOT/.venv/bin/twistd" -n --pidfile= containerflare --app app:app \
  --command-endpoint "tcp://127.0.0.1:${HOST_PORT}" &
APP_PID=$!
trap 'kill -TERM "$APP_PID" 2>/dev/null || true' INT TERM
wait "$APP_PID" || true
wait "$APP_PID" 2>/dev/null || true
