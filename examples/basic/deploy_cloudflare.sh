#!/usr/bin/env bash
# Deploys the example to Cloudflare: the Worker (worker/index.js), its container class
# (a SQLite-backed Durable Object) and the container image, which wrangler builds from
# ./Dockerfile for linux/amd64 with the local Docker and pushes to Cloudflare's registry.
# The KV namespace, D1 database, R2 bucket and queue of wrangler.jsonc are created on
# the first deploy.
#
# Needs: Node.js 20+ and npm, Docker, a Cloudflare account with Containers enabled
# (`npx wrangler login` once, or CLOUDFLARE_API_TOKEN and CLOUDFLARE_ACCOUNT_ID).
#
# Environment:
#   CONTAINERFLARE_METADATA_SECRET  when set, stored as the Worker secret of that name
#                                   (the Worker signs the metadata header with it and
#                                   passes it to the container, which checks it)
# Extra arguments go to `wrangler deploy` (e.g. --dry-run).
set -euo pipefail
cd "$(dirname "$0")"

die() {
  echo "deploy_cloudflare.sh: $*" >&2
  exit 1
}

command -v npm >/dev/null 2>&1 || die "npm is required (Node.js 20+)"
command -v docker >/dev/null 2>&1 || die "docker is required: wrangler builds the container image locally"
docker info >/dev/null 2>&1 || die "docker is installed but not running (docker info failed)"

# The pinned wrangler (package.json / package-lock.json).
if [ ! -x node_modules/.bin/wrangler ]; then
  if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund
  else
    npm install --no-audit --no-fund
  fi
fi

./build_wheel.sh

npx --no-install wrangler deploy "$@"

if [ -n "${CONTAINERFLARE_METADATA_SECRET:-}" ]; then
  printf '%s' "$CONTAINERFLARE_METADATA_SECRET" |
    npx --no-install wrangler secret put CONTAINERFLARE_METADATA_SECRET
fi
